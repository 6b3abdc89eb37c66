"""Least privilege, encryption, data protection, tags and the outputs other tools read."""

from __future__ import annotations

import pytest
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

from tests.infrastructure.conftest import iter_role_statements

pytestmark = pytest.mark.infrastructure

# Actions that have no resource-level permissions in IAM, so "*" is the only valid Resource.
UNSCOPABLE_ACTIONS = {
    "ecr:GetAuthorizationToken": "registry login is account-wide",
    "xray:PutTraceSegments": "X-Ray has no resource types",
    "xray:PutTelemetryRecords": "X-Ray has no resource types",
    "xray:GetSamplingRules": "X-Ray has no resource types",
    "xray:GetSamplingTargets": "X-Ray has no resource types",
    "cloudwatch:PutMetricData": "metrics have no ARNs (a namespace condition can narrow it)",
}

COST_TAGS = {"Project": "MisterSmith", "CostCenter": "Engineering", "ManagedBy": "SAM"}

# The property that carries a resource type's tags, where it is not "Tags".
TAG_PROPERTY = {"AWS::Route53::HealthCheck": "HealthCheckTags"}

# Resources SAM generates from a function's event sources without a way to tag them (SAM's EventBridgeRule,
# Schedule and SQS events take no Tags); EventBridge rules and event source mappings cost nothing themselves.
UNTAGGABLE_BY_SAM = {"AWS::Events::Rule", "AWS::Lambda::EventSourceMapping"}


def _taggable(resource_type: str) -> str | None:
    """The resource type's tag property per the CloudFormation schema cfn-lint ships, or None."""
    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", resource_type).schema
    prop = TAG_PROPERTY.get(resource_type, "Tags")
    return prop if prop in schema["properties"] else None


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _tags(tags) -> dict:
    return tags if isinstance(tags, dict) else {tag["Key"]: tag["Value"] for tag in tags}


def _statement(role: dict, sid: str) -> dict:
    statements = [
        s for policy in role["Properties"]["Policies"] for s in policy["PolicyDocument"]["Statement"]
    ]
    (statement,) = [s for s in statements if s.get("Sid") == sid]
    return statement


def test_role_statements_resource_star_only_for_unscopable_actions(role_statements):
    # Given every inline statement in the template's IAM roles and policies
    # When one grants on Resource "*"
    offenders = [
        (where, action)
        for where, statement in role_statements
        if statement.get("Effect") == "Allow" and "*" in _as_list(statement.get("Resource"))
        for action in _as_list(statement["Action"])
        if action not in UNSCOPABLE_ACTIONS
    ]
    # Then it is only for actions that cannot name a resource
    assert offenders == []


def test_role_statements_no_wildcard_actions(role_statements):
    # Given every inline statement / When it grants actions / Then none is a service-wide wildcard
    wildcards = [
        (where, action)
        for where, statement in role_statements
        for action in _as_list(statement["Action"])
        if action == "*" or action.endswith(":*")
    ]
    assert wildcards == []


def test_autoscaler_ecs_permissions_scoped_to_worker_service(resources):
    # Given the autoscaler's role / When it scales / Then it may touch only the worker service, by ARN
    statement = _statement(resources["AutoscalerFunctionRole"], "ScaleWorkerService")
    assert set(statement["Action"]) == {"ecs:DescribeServices", "ecs:UpdateService"}
    assert statement["Resource"] == {"Ref": "WorkerService"}


def test_autoscaler_queue_permission_read_only_on_work_queue(resources):
    # Given the autoscaler's role / When it reads queue depth / Then it can only read attributes of WorkQueue
    statement = _statement(resources["AutoscalerFunctionRole"], "ReadQueueDepth")
    assert statement["Action"] == ["sqs:GetQueueAttributes"]
    assert statement["Resource"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}


def test_worker_task_role_grants_only_listed_actions(resources):
    # Given the worker's task role
    role = resources["WorkerTaskRole"]
    # When its permissions are collected
    actions = {
        action
        for policy in role["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        for action in _as_list(statement["Action"])
    }
    # Then they are exactly what the worker does (read its queue and inputs, write results, plus lease, state, events, task protection)
    assert actions == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:SendMessage",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "events:PutEvents",
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "ecs:GetTaskProtection",
        "ecs:UpdateTaskProtection",
    }


def test_worker_task_role_queue_access_only_on_work_queue(resources):
    # Given the worker's task role / When it consumes / Then only WorkQueue is reachable
    statement = _statement(resources["WorkerTaskRole"], "ConsumeWorkQueue")
    assert statement["Resource"] == {"Fn::GetAtt": ["WorkQueue", "Arn"]}


def test_roles_trust_only_their_service(resources):
    # Given the worker roles / When something assumes them / Then only ECS tasks of this account can
    for role in ("WorkerTaskRole", "WorkerExecutionRole"):
        (statement,) = resources[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}, role
        assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}, role


def test_artifacts_bucket_denies_insecure_transport(resources):
    # Given the bucket policy / When a request comes without TLS / Then it is denied
    (statement,) = resources["ArtifactsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Deny"
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_artifacts_bucket_blocks_public_access_and_encrypts(resources):
    # Given the bucket / When objects are written / Then they are encrypted and never public
    properties = resources["ArtifactsBucket"]["Properties"]
    assert set(properties["PublicAccessBlockConfiguration"].values()) == {True}
    assert properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]


def test_artifacts_bucket_expires_payloads_after_30_days(resources):
    # Given the bucket lifecycle / When a claim-checked payload is 30 days old / Then S3 deletes it
    rules = resources["ArtifactsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    (rule,) = [r for r in rules if r.get("Prefix") == "payloads/"]
    assert (rule["Status"], rule["ExpirationInDays"]) == ("Enabled", 30)


def test_task_table_keys_and_status_and_owner_indexes(resources):
    # Given the task table / When tasks are read by id, listed by status or by owner / Then the keys serve all
    properties = resources["TaskTable"]["Properties"]
    assert properties["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    indexes = {index["IndexName"]: index for index in properties["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"by-status", "by-owner"}
    for name, partition in (("by-status", "status"), ("by-owner", "owner")):
        assert indexes[name]["KeySchema"] == [
            {"AttributeName": partition, "KeyType": "HASH"},
            {"AttributeName": "created_at", "KeyType": "RANGE"},
        ]
        assert indexes[name]["Projection"] == {"ProjectionType": "ALL"}
    assert {"AttributeName": "owner", "AttributeType": "S"} in properties["AttributeDefinitions"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"


def test_task_table_protects_and_expires_data(resources):
    # Given the task table / When data is written / Then it is encrypted, recoverable, streamed and expires
    properties = resources["TaskTable"]["Properties"]
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert properties["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert resources["TaskTable"]["DeletionPolicy"] == "Retain"


def test_taggable_resources_carry_cost_allocation_tags(all_on_deployment, default_deployment):
    # Given every resource whose type takes tags, with every option on and with the defaults
    untagged = []
    for stack in (all_on_deployment, default_deployment):
        for name, resource in stack.resources.items():
            prop = _taggable(resource["Type"])
            if prop is None or resource["Type"] in UNTAGGABLE_BY_SAM:
                continue
            tag_sets = [resource["Properties"].get(prop, [])]
            if resource["Type"] == "AWS::DynamoDB::GlobalTable":
                tag_sets = [replica.get("Tags", []) for replica in resource["Properties"]["Replicas"]]
            # When costs are allocated
            # Then each carries the project's tags (cost allocation) and its environment
            for tags in map(_tags, tag_sets):
                if not COST_TAGS.items() <= tags.items() or tags.get("Environment") != {"Ref": "Environment"}:
                    untagged.append(name)
    assert untagged == []


def test_untaggable_exceptions_are_only_sam_event_sources(all_on_deployment):
    # Given the resource types exempted from tagging / When they appear / Then SAM made them from function events
    exempt = [name for name, r in all_on_deployment.resources.items() if r["Type"] in UNTAGGABLE_BY_SAM]
    functions = [
        name for name, r in all_on_deployment.resources.items() if r["Type"] == "AWS::Lambda::Function"
    ]
    assert exempt
    assert all(any(name.startswith(function) for function in functions) for name in exempt), exempt


@pytest.mark.parametrize(
    ("resource_type", "encrypted"),
    [
        ("AWS::SQS::Queue", lambda p: p.get("KmsMasterKeyId") == {"Ref": "QueueKey"}),
        ("AWS::SNS::Topic", lambda p: p.get("KmsMasterKeyId") == {"Ref": "QueueKey"}),
        ("AWS::DynamoDB::Table", lambda p: p.get("SSESpecification") == {"SSEEnabled": True}),
        ("AWS::DynamoDB::GlobalTable", lambda p: p.get("SSESpecification") == {"SSEEnabled": True}),
        ("AWS::S3::Bucket", lambda p: bool(p["BucketEncryption"]["ServerSideEncryptionConfiguration"])),
    ],
    ids=["queues", "topics", "tables", "global-tables", "buckets"],
)
def test_data_stores_encrypted_at_rest(all_on_deployment, resources, resource_type, encrypted):
    # Given every queue, topic, table and bucket (global tables only exist with replica regions)
    stores = {
        name: r["Properties"]
        for source in (resources, all_on_deployment.resources)
        for name, r in source.items()
        if r["Type"] == resource_type
    }
    assert stores, f"no {resource_type}"
    # When data is written / Then it is encrypted at rest
    assert [name for name, properties in stores.items() if not encrypted(properties)] == []


def test_log_groups_retention_set(resources):
    # Given every log group / When logs age / Then they are deleted after LogRetentionDays (one week by default)
    groups = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::Logs::LogGroup"}
    assert groups
    assert [
        name for name, p in groups.items() if p.get("RetentionInDays") != {"Ref": "LogRetentionDays"}
    ] == []


def test_functions_log_to_template_log_groups(resources):
    # Given every function / When it logs / Then it writes to a log group the template owns (with retention),
    # not to one Lambda would create on first use without any
    functions = {
        name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::Lambda::Function"
    }
    for name, properties in functions.items():
        group = properties["LoggingConfig"]["LogGroup"]["Ref"]
        assert resources[group]["Type"] == "AWS::Logs::LogGroup", name


def test_role_statements_with_every_option_resource_star_only_for_unscopable_actions(all_on_deployment):
    # Given the roles with every option on (CodeDeploy, scaling, endpoints) / When one grants on "*"
    # Then it is only for actions that cannot name a resource
    offenders = [
        (where, action)
        for where, statement in iter_role_statements(all_on_deployment.resources)
        if statement.get("Effect") == "Allow" and "*" in _as_list(statement.get("Resource"))
        for action in _as_list(statement["Action"])
        if action not in UNSCOPABLE_ACTIONS
    ]
    assert offenders == []


def test_worker_execution_role_pulls_only_the_worker_repository(resources):
    # Given the execution role / When ECS pulls the image / Then only the worker's ECR repository is readable
    statement = _statement(resources["WorkerExecutionRole"], "EcrPull")
    assert statement["Resource"]["Fn::Sub"].endswith(":repository/${WorkerEcrRepositoryName}")


def test_worker_task_role_state_access_only_on_task_table(resources):
    # Given the worker's task role / When it reads and writes task state / Then only the task table
    statement = _statement(resources["WorkerTaskRole"], "TaskState")
    assert statement["Resource"]["Fn::Sub"][0] == (
        "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${Table}"
    )


def test_queue_key_used_only_by_named_principals(resources):
    # Given the key policy / When a service uses the key / Then only EventBridge and CloudWatch of this account may
    statements = resources["QueueKey"]["Properties"]["KeyPolicy"]["Statement"]
    services = {s["Principal"]["Service"] for s in statements if "Service" in s["Principal"]}
    assert services == {"events.amazonaws.com", "cloudwatch.amazonaws.com"}
    for statement in statements:
        if "Service" in statement["Principal"]:
            assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_outputs_name_every_resource_clients_need(cfn_template):
    # Given the stack outputs / When scripts and the local stack read them / Then every name is there
    expected = {
        "ApiUrl",
        "EventBusName",
        "WorkQueueUrl",
        "WorkDLQUrl",
        "AnalyzeQueueUrl",
        "TaskTableName",
        "ArtifactsBucketName",
        "WorkerClusterName",
        "WorkerServiceName",
        "AlarmTopicArn",
        "DashboardName",
        "DiscoveryNamespaceName",
        "DiscoveryServiceName",
        "WorkerSubnetIds",
    }
    assert expected <= set(cfn_template["Outputs"])


def test_parameters_each_have_a_description(sam_template):
    # Given the template parameters / When someone deploys / Then each explains itself
    undocumented = [name for name, spec in sam_template["Parameters"].items() if not spec.get("Description")]
    assert undocumented == []


def test_logs_insights_queries_are_the_seeds_three(resources):
    # Given the saved Logs Insights queries / When operators open them / Then the seed's three are there
    queries = [
        r["Properties"]["QueryString"]
        for r in resources.values()
        if r["Type"] == "AWS::Logs::QueryDefinition"
    ]
    assert len(queries) == 3
    assert any("/task_duration/" in q and "duration > 10000" in q for q in queries)
    assert any('"error_type"' in q and "stats count() by errorType" in q for q in queries)
    assert any("/scaling_event/" in q and '"desired_count"' in q and '"running_count"' in q for q in queries)


def test_autoscaler_table_access_limited_to_its_record_and_the_status_index(resources):
    role = resources["AutoscalerFunctionRole"]
    record = _statement(role, "KeepScalingRecord")
    durations = _statement(role, "ReadRecentTaskDurations")
    assert set(record["Action"]) == {"dynamodb:GetItem", "dynamodb:PutItem"}
    assert record["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["control#autoscaler#*"]}
    }
    assert durations["Action"] == ["dynamodb:Query"]
    assert durations["Resource"]["Fn::Sub"][0].endswith("/index/by-status")
