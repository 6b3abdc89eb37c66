"""The Lambda functions and the API: runtimes, environment contracts, routes and their auth."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.infrastructure

FUNCTION_NAMES = (
    "IntakeFunction",
    "RouterFunction",
    "AnalyzeFunction",
    "DeadLetterFunction",
    "AutoscalerFunction",
    "ReconcilerFunction",
)

# The regional table, the global table, or (in a secondary region) the primary's replica.
TASK_TABLE = {
    "Fn::If": [
        "UseExternalTable",
        {"Ref": "ExternalTaskTableName"},
        {"Fn::If": ["CreateGlobalTable", {"Ref": "TaskGlobalTable"}, {"Ref": "TaskTable"}]},
    ]
}

COMMON_ENV = {
    "TASK_TABLE_NAME": TASK_TABLE,
    "EVENT_BUS_NAME": {"Ref": "EventBus"},
    "POWERTOOLS_SERVICE_NAME": "mistersmith",
    "POWERTOOLS_METRICS_NAMESPACE": "MisterSmith",
    "LOG_LEVEL": {"Ref": "LogLevel"},
}

# Each function's own variables, on top of COMMON_ENV: the contract with the settings models.
FUNCTION_ENV = {
    "IntakeFunction": {
        "ARTIFACTS_BUCKET_NAME": {"Ref": "ArtifactsBucket"},
        "INLINE_PAYLOAD_LIMIT_BYTES": {"Ref": "InlinePayloadLimitBytes"},
        "API_ADMIN_PRINCIPALS": {"Fn::Join": [",", {"Ref": "ApiAdminPrincipals"}]},
    },
    "RouterFunction": {
        "WORK_QUEUE_URL": {"Ref": "WorkQueue"},
        "ANALYZE_QUEUE_URL": {"Ref": "AnalyzeQueue"},
    },
    "AnalyzeFunction": {
        "ARTIFACTS_BUCKET_NAME": {"Ref": "ArtifactsBucket"},
        "LEASE_SECONDS": 360,
        "EXECUTE_TIMEOUT_SECONDS": 45,
    },
    "DeadLetterFunction": {},
    "AutoscalerFunction": {
        "WORK_QUEUE_URL": {"Ref": "WorkQueue"},
        "CLUSTER_NAME": {"Ref": "WorkerCluster"},
        "WORKER_SERVICE_NAME": {"Fn::GetAtt": ["WorkerService", "Name"]},
        "SCALING_STEPS": {"Ref": "ScalingSteps"},
        "MIN_TASKS": {"Ref": "MinTasks"},
        "MAX_TASKS": {"Ref": "MaxTasks"},
        "COOLDOWN_SECONDS": {"Ref": "ScalingCooldownSeconds"},
        "SCALING_POLICY": {"Ref": "ScalingPolicy"},
        "SCALING_LATENCY_SECONDS": {"Ref": "ScalingLatencySeconds"},
        "SCALING_TASK_SECONDS": {"Ref": "ScalingTaskSeconds"},
        "WORKER_START_SECONDS": {"Ref": "WorkerStartSeconds"},
        "SCALING_HEADROOM": {"Ref": "ScalingHeadroom"},
        "WORKER_CONCURRENCY": {"Ref": "WorkerConcurrency"},
    },
    "ReconcilerFunction": {
        "WORK_QUEUE_URL": {"Ref": "WorkQueue"},
        "ANALYZE_QUEUE_URL": {"Ref": "AnalyzeQueue"},
        "ANALYZE_LAMBDA_LIMIT_BYTES": {"Ref": "AnalyzeLambdaLimitBytes"},
        "LEASE_SECONDS": {"Ref": "QueueVisibilityTimeoutSeconds"},
        "MAX_RECOVERIES": {"Ref": "MaxReceiveCount"},
    },
}

# The HTTP contract: (path, method) -> API Gateway security scheme.
API_ROUTES = {
    ("/tasks", "post"): "AWS_IAM",
    ("/tasks", "get"): "AWS_IAM",
    ("/tasks/{id}", "get"): "AWS_IAM",
    ("/tasks/{id}", "delete"): "AWS_IAM",
    ("/tasks/{id}/payload", "get"): "AWS_IAM",
    ("/tasks/{id}/artifacts/{name}", "get"): "AWS_IAM",
    ("/stats", "get"): "AWS_IAM",
    ("/uploads", "post"): "AWS_IAM",
    ("/health", "get"): "NONE",
    ("/ready", "get"): "AWS_IAM",
}


def _api_methods(resources: dict) -> dict[tuple[str, str], dict]:
    paths = resources["IntakeApi"]["Properties"]["Body"]["paths"]
    return {
        (path, method): operation for path, methods in paths.items() for method, operation in methods.items()
    }


@pytest.mark.parametrize("function", FUNCTION_NAMES)
def test_function_runtime_python312_or_newer(resources, function):
    # Given a function / When Lambda runs it / Then it is on Python 3.12 or newer
    runtime = resources[function]["Properties"]["Runtime"]
    major, minor = (int(part) for part in runtime.removeprefix("python").split("."))
    assert runtime.startswith("python") and (major, minor) >= (3, 12)


@pytest.mark.parametrize("function", FUNCTION_NAMES)
def test_function_environment_names_its_settings(function_environment, function):
    # Given a function's environment after Globals merged in
    env = function_environment(function)
    # When its settings model validates at cold start
    # Then every variable it needs is set to the right resource or parameter
    expected = COMMON_ENV | FUNCTION_ENV[function]
    assert {name: env.get(name) for name in expected} == expected


@pytest.mark.parametrize("function", FUNCTION_NAMES)
def test_function_tracing_active_with_shared_layer(resources, function):
    # Given a function / When it runs / Then X-Ray tracing is on and the shared layer is attached
    properties = resources[function]["Properties"]
    assert properties["TracingConfig"] == {"Mode": "Active"}
    assert properties["Handler"] == "app.handler"
    assert len(properties["Layers"]) == 1
    assert properties["Layers"][0]["Ref"].startswith("SharedLayer")


@pytest.mark.parametrize("function", FUNCTION_NAMES)
def test_function_logs_to_its_own_retained_log_group(resources, function):
    # Given a function / When it logs / Then its log group has the template's retention
    log_group = resources[function]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    assert resources[log_group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_autoscaler_schedule_runs_every_minute(resources):
    # Given the autoscaler's schedule rule / When it is enabled / Then it fires every minute
    rule = resources["AutoscalerFunctionEveryMinute"]["Properties"]
    assert rule["ScheduleExpression"] == "rate(1 minute)"


def test_autoscaler_stale_ticks_not_retried(resources):
    # Given the autoscaler's async invoke configuration / When a tick fails / Then it is not retried later
    config = resources["AutoscalerFunctionEventInvokeConfig"]["Properties"]
    assert config["MaximumRetryAttempts"] == 0


def test_scaling_parameter_defaults_match_seed(parameter_defaults):
    # Given the scaling parameters / When none is overridden / Then the seed's table and limits apply
    assert parameter_defaults["ScalingSteps"] == "<=0:-1,>=10:1,>=100:5,>=1000:20,>=5000:50"
    assert (int(parameter_defaults["MinTasks"]), int(parameter_defaults["MaxTasks"])) == (2, 1000)
    assert int(parameter_defaults["ScalingCooldownSeconds"]) == 60


def test_api_routes_match_http_contract(resources):
    # Given the API definition SAM generates / When clients call it / Then exactly the contract's routes exist
    assert set(_api_methods(resources)) == set(API_ROUTES)


def test_api_health_method_authorization_none(resources):
    # Given the liveness route / When called without credentials / Then API Gateway lets it through
    assert _api_methods(resources)[("/health", "get")]["security"] == [{"NONE": []}]


def test_api_task_methods_authorization_aws_iam(resources, default_deployment):
    # Given the task routes with default parameters (ApiAuth=AWS_IAM)
    # When called / Then API Gateway demands a SigV4-signed request
    methods = _api_methods(default_deployment.resources)
    for route, scheme in API_ROUTES.items():
        if scheme == "AWS_IAM":
            assert methods[route]["security"] == [{"AWS_IAM": []}], route
    schemes = resources["IntakeApi"]["Properties"]["Body"]["securityDefinitions"]
    assert schemes["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"


def test_api_integrations_invoke_function_without_caller_credentials(resources):
    # Given each API integration
    # When API Gateway invokes the function
    # Then it uses the function's resource policy, so callers need no lambda:InvokeFunction
    for route, operation in _api_methods(resources).items():
        integration = operation["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy", route
        assert "credentials" not in integration, route


def test_api_stage_named_after_environment_with_tracing(resources):
    # Given the API stage / When deployed / Then it is the environment's stage and traced by X-Ray
    stage = resources["IntakeApiStage"]["Properties"]
    assert stage["StageName"] == {"Ref": "Environment"}
    assert stage["TracingEnabled"] is True


def test_inline_payload_limit_default_is_64_kib(parameter_defaults):
    # Given the intake parameters / When none is overridden / Then payloads over 64 KiB go to S3
    assert int(parameter_defaults["InlinePayloadLimitBytes"]) == 65536


def test_scaling_policy_parameter_defaults_to_drain(parameter_defaults):
    assert parameter_defaults["ScalingPolicy"] == "drain"


def test_intake_in_the_cloud_never_trusts_the_local_caller_header(function_environment, parameter_defaults):
    # Given the intake function's environment as deployed
    env = function_environment("IntakeFunction")
    # When its settings are read / Then the local stack's caller header is off, and no one is an admin by default
    assert "LOCAL_CALLER_HEADER" not in env
    assert parameter_defaults["ApiAdminPrincipals"] == ""
