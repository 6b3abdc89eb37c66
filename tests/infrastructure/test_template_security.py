"""Least privilege, encryption, data protection, tags and the outputs other tools read."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.infrastructure

# Actions that have no resource-level permissions in IAM, so "*" is the only valid Resource.
UNSCOPABLE_ACTIONS = {
    "ecr:GetAuthorizationToken": "registry login is account-wide",
    "xray:PutTraceSegments": "X-Ray has no resource types",
    "xray:PutTelemetryRecords": "X-Ray has no resource types",
    "cloudwatch:PutMetricData": "metrics have no ARNs (a namespace condition can narrow it)",
}

COST_TAGS = {"Project": "MisterSmith", "CostCenter": "Engineering", "ManagedBy": "SAM"}

# Resource types here take a Tags property; every one of them must carry the cost-allocation tags.
TAGGABLE_TYPES = {
    "AWS::SQS::Queue",
    "AWS::KMS::Key",
    "AWS::Events::EventBus",
    "AWS::DynamoDB::Table",
    "AWS::S3::Bucket",
    "AWS::Logs::LogGroup",
    "AWS::IAM::Role",
    "AWS::Lambda::Function",
    "AWS::ApiGateway::Stage",
    "AWS::ECS::Cluster",
    "AWS::ECS::TaskDefinition",
    "AWS::ECS::Service",
    "AWS::EC2::SecurityGroup",
}


def _as_list(value):
    return value if isinstance(value, list) else [value]


def _tags(resource: dict) -> dict:
    tags = resource["Properties"].get("Tags", [])
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
    # Then they are exactly what the worker does (seed 5.1 plus lease, state, events, task protection)
    assert actions == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "events:PutEvents",
        "s3:GetObject",
        "s3:PutObject",
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


def test_task_table_keys_and_status_index(resources):
    # Given the task table / When tasks are read by id or listed by status / Then the keys serve both
    properties = resources["TaskTable"]["Properties"]
    assert properties["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    (index,) = properties["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by-status"
    assert index["KeySchema"] == [
        {"AttributeName": "status", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "ALL"}
    assert properties["BillingMode"] == "PAY_PER_REQUEST"


def test_task_table_protects_and_expires_data(resources):
    # Given the task table / When data is written / Then it is encrypted, recoverable, streamed and expires
    properties = resources["TaskTable"]["Properties"]
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert properties["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert resources["TaskTable"]["DeletionPolicy"] == "Retain"


@pytest.mark.parametrize("resource_type", sorted(TAGGABLE_TYPES))
def test_taggable_resources_carry_cost_allocation_tags(resources, resource_type):
    # Given every resource of a taggable type
    tagged = {name: _tags(r) for name, r in resources.items() if r["Type"] == resource_type}
    assert tagged, f"no {resource_type} in the template"
    # When costs are allocated / Then each carries the project's tags and its environment
    for name, tags in tagged.items():
        assert COST_TAGS.items() <= tags.items(), name
        assert tags.get("Environment") == {"Ref": "Environment"}, name


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
