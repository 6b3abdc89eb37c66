"""Optional pieces: each is absent when its parameter is off and present when it is on.

Each case transforms the template with SAM (offline) for the given parameter values, evaluates the
Conditions on those values and keeps what CloudFormation would create."""

from __future__ import annotations

import pytest

from tests.infrastructure.conftest import ALL_ON, intrinsics
from tests.infrastructure.test_template_observability import FUNCTIONS

pytestmark = pytest.mark.infrastructure

EXISTING_VPC = {
    "VpcId": "vpc-0123456789abcdef0",
    "SubnetIds": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
}
CREATED_VPC = {
    "Vpc",
    "PrivateSubnetA",
    "PrivateSubnetB",
    "PrivateRouteTable",
    "PrivateSubnetARouteTable",
    "PrivateSubnetBRouteTable",
}
NAT = {
    "InternetGateway",
    "InternetGatewayAttachment",
    "NatSubnet",
    "NatSubnetRouteTable",
    "NatSubnetDefaultRoute",
    "NatSubnetRouteTableAssociation",
    "NatAddress",
    "NatGateway",
    "PrivateDefaultRoute",
}
INTERFACE_ENDPOINTS = {
    "EndpointSecurityGroup",
    "SqsEndpoint",
    "EventsEndpoint",
    "LogsEndpoint",
    "EcrApiEndpoint",
    "EcrDockerEndpoint",
    "XRayEndpoint",
}
GATEWAY_ENDPOINTS = {"S3GatewayEndpoint", "DynamoDbGatewayEndpoint"}
CANARY = {"ServerlessDeploymentApplication", "CodeDeployServiceRole"} | {
    f"{f}DeploymentGroup" for f in FUNCTIONS
}
FAILOVER = {"ApiDomain", "ApiBasePathMapping", "ApiHealthCheck", "ApiFailoverRecord"}
FAILOVER_ON = {
    "HostedZoneId": ALL_ON["HostedZoneId"],
    "ApiDomainName": ALL_ON["ApiDomainName"],
    "ApiCertificateArn": ALL_ON["ApiCertificateArn"],
}

# feature: (parameters off, parameters on, resources that exist only when on)
OPTIONAL = {
    "created-vpc-with-nat": (EXISTING_VPC, {}, CREATED_VPC | NAT),
    "endpoints-in-existing-vpc": (
        EXISTING_VPC,
        EXISTING_VPC | {"UseVpcEndpoints": "true"},
        INTERFACE_ENDPOINTS,
    ),
    "endpoints-in-created-vpc": (
        {},
        {"UseVpcEndpoints": "true"},
        INTERFACE_ENDPOINTS | GATEWAY_ENDPOINTS,
    ),
    "load-balancer-ingress": (
        {},
        {"LoadBalancerSecurityGroupId": "sg-0123456789abcdef0"},
        {"WorkerIngressFromLoadBalancer"},
    ),
    "alarm-email": ({}, {"AlarmEmail": "oncall@example.com"}, {"AlarmEmailSubscription"}),
    "cpu-memory-scale-out": (
        {},
        {"CpuMemoryScaleOut": "true"},
        {"WorkerScalableTarget", "WorkerCpuScaleOut", "WorkerMemoryScaleOut"},
    ),
    "lambda-canary": ({}, {"LambdaCanaryDeploys": "true"}, CANARY),
    "global-table": ({}, {"ReplicaRegions": "us-west-2"}, {"TaskGlobalTable"}),
    "failover": ({}, FAILOVER_ON, FAILOVER),
    "api-key-auth": (
        {},
        {"ApiAuth": "API_KEY"},
        {"IntakeApiUsagePlan", "IntakeApiKey", "IntakeApiUsagePlanKey"},
    ),
    "worker-tracing": ({"WorkerTracing": "false"}, {}, {"WorkerTracingPolicy"}),
}
# On unless switched off: the Lambdas trace actively too, and a trace that stops at the queue is no trace.
ON_BY_DEFAULT = {"worker-tracing"}


@pytest.mark.parametrize("feature", sorted(OPTIONAL))
def test_optional_resources_parameter_off_absent(deployment, feature):
    # Given a feature's parameters switched off
    off, _, only_when_on = OPTIONAL[feature]
    # When the stack is deployed
    resources = deployment(**off).resources
    # Then none of the feature's resources exists
    assert only_when_on.isdisjoint(resources), only_when_on & set(resources)


@pytest.mark.parametrize("feature", sorted(OPTIONAL))
def test_optional_resources_parameter_on_present(deployment, feature):
    # Given a feature's parameters switched on
    _, on, only_when_on = OPTIONAL[feature]
    # When the stack is deployed
    resources = deployment(**on).resources
    # Then every one of the feature's resources exists
    assert only_when_on <= set(resources), only_when_on - set(resources)


def test_conditional_resources_each_belong_to_a_tested_feature(sam_template, all_on_deployment, deployment):
    # Given every resource that exists only under some parameter values
    conditional = {name for name, r in sam_template["Resources"].items() if "Condition" in r}
    generated_by_options = set(all_on_deployment.resources) - set(deployment().resources)
    # When the features above are listed
    covered = set().union(*(resources for _, _, resources in OPTIONAL.values())) | {"TaskTable"}
    # Then none is left untested
    assert (conditional | generated_by_options) - covered == set()


def test_default_deployment_expensive_options_absent(default_deployment):
    # Given no parameter overridden / When deployed / Then only the small VPC with one NAT gateway is extra
    resources = set(default_deployment.resources)
    assert resources >= (CREATED_VPC | NAT)
    for feature, (_, _, only_when_on) in OPTIONAL.items():
        if feature not in ON_BY_DEFAULT:
            assert only_when_on.isdisjoint(resources - CREATED_VPC - NAT)


def test_created_vpc_with_endpoints_has_no_nat_gateway(deployment):
    # Given a created VPC that reaches AWS through endpoints / When deployed / Then it has no internet path
    resources = deployment(UseVpcEndpoints="true").resources
    assert set(resources) >= CREATED_VPC
    assert NAT.isdisjoint(resources)


def test_task_table_global_replaces_regional(deployment):
    # Given replica regions / When deployed / Then the global table stands in for the regional one
    resources = deployment(ReplicaRegions="us-west-2").resources
    assert "TaskTable" not in resources
    assert resources["TaskGlobalTable"]["Type"] == "AWS::DynamoDB::GlobalTable"


def test_task_table_external_neither_table_created(deployment):
    # Given a secondary region naming the primary's replica
    stack = deployment(ExternalTaskTableName="mistersmith-tasks-prod")
    # When deployed
    # Then it creates no table and every consumer names the replica
    assert {"TaskTable", "TaskGlobalTable"}.isdisjoint(stack.resources)
    env = stack.resources["IntakeFunction"]["Properties"]["Environment"]["Variables"]
    assert env["TASK_TABLE_NAME"] == {"Ref": "ExternalTaskTableName"}


@pytest.mark.parametrize(
    ("regions", "expected"),
    [
        ("us-west-2", ["us-west-2"]),
        ("us-west-2,eu-west-1", ["us-west-2", "eu-west-1"]),
        ("us-west-2,eu-west-1,ap-southeast-2", ["us-west-2", "eu-west-1", "ap-southeast-2"]),
    ],
)
def test_global_table_replicas_follow_parameter(deployment, regions, expected):
    # Given one to three replica regions
    stack = deployment(ReplicaRegions=regions)
    # When the global table is deployed
    replicas = stack.resources["TaskGlobalTable"]["Properties"]["Replicas"]
    evaluator = intrinsics({}, stack.parameters | {"AWS::Region": "us-east-1"})
    names = [evaluator.evaluate(r["Region"]) for r in replicas]
    # Then it has this region's table plus one replica per listed region
    assert names == ["us-east-1", *expected]


def test_global_table_matches_regional_table(resources, all_on_deployment):
    # Given the regional table and the global one
    regional = resources["TaskTable"]["Properties"]
    global_ = all_on_deployment.resources["TaskGlobalTable"]["Properties"]
    # When either holds the tasks
    # Then keys, index, encryption, expiry and stream are the same, and every replica is recoverable
    for key in ("AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes", "TimeToLiveSpecification"):
        assert global_[key] == regional[key], key
    assert global_["BillingMode"] == "PAY_PER_REQUEST"
    assert global_["SSESpecification"] == {"SSEEnabled": True}
    assert global_["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    for replica in global_["Replicas"]:
        assert replica["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert all_on_deployment.resources["TaskGlobalTable"]["DeletionPolicy"] == "Retain"


def _deployment_configuration(stack) -> dict:
    return stack.resources["WorkerService"]["Properties"]["DeploymentConfiguration"]


def test_worker_deployment_default_rolling_without_bake_or_alarms(default_deployment):
    # Given the default strategy / When the worker deploys / Then it rolls, with no bake time or alarm rollback
    config = _deployment_configuration(default_deployment)
    assert config["Strategy"] == "ROLLING"
    assert "BakeTimeInMinutes" not in config
    assert "Alarms" not in config


def test_worker_deployment_blue_green_bakes_and_rolls_back_on_dead_letters(deployment, parameter_defaults):
    # Given BLUE_GREEN
    config = _deployment_configuration(deployment(WorkerDeploymentStrategy="BLUE_GREEN"))
    # When the worker deploys
    # Then the new revision bakes (5 minutes by default) and new dead letters roll it back
    assert config["Strategy"] == "BLUE_GREEN"
    assert config["BakeTimeInMinutes"] == {"Ref": "WorkerBakeTimeMinutes"}
    assert int(parameter_defaults["WorkerBakeTimeMinutes"]) == 5
    assert config["Alarms"] == {"AlarmNames": [{"Ref": "WorkDlqAlarm"}], "Enable": True, "Rollback": True}
    assert config["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_lambda_canary_off_alias_updates_at_once(default_deployment, function):
    # Given canaries off / When a function's code changes / Then its alias moves without CodeDeploy
    alias = default_deployment.resources[f"{function}Aliaslive"]
    assert "UpdatePolicy" not in alias


@pytest.mark.parametrize("function", FUNCTIONS)
def test_lambda_canary_on_shifts_ten_percent_for_five_minutes(deployment, function):
    # Given canaries on
    resources = deployment(LambdaCanaryDeploys="true").resources
    # When a function's code changes
    group = resources[f"{function}DeploymentGroup"]["Properties"]
    # Then CodeDeploy shifts its alias 10 % for 5 minutes and rolls back on any function's error alarm
    assert "Canary10Percent5Minutes" in str(group["DeploymentConfigName"])
    alarms = {item["Name"]["Ref"] for item in group["AlarmConfiguration"]["Alarms"]}
    assert alarms == {f"{f.removesuffix('Function')}ErrorsAlarm" for f in FUNCTIONS}
    assert group["AutoRollbackConfiguration"]["Enabled"] is True
    assert "CodeDeployLambdaAliasUpdate" in resources[f"{function}Aliaslive"]["UpdatePolicy"]


def test_failover_health_check_probes_this_regions_health_route(deployment):
    # Given a hosted zone
    resources = deployment(**FAILOVER_ON).resources
    check = resources["ApiHealthCheck"]["Properties"]["HealthCheckConfig"]
    # When Route 53 checks the region
    # Then it calls the regional API's unauthenticated /health over HTTPS
    assert (check["Type"], check["Port"], check["EnableSNI"]) == ("HTTPS", 443, True)
    assert check["ResourcePath"] == {"Fn::Sub": "/${Environment}/health"}
    assert "${IntakeApi}.execute-api.${AWS::Region}" in check["FullyQualifiedDomainName"]["Fn::Sub"]


def test_failover_record_routes_by_health_and_role(deployment):
    # Given a hosted zone / When the failover record is created
    record = deployment(**FAILOVER_ON).resources["ApiFailoverRecord"]["Properties"]
    # Then it points at this region's API domain, guarded by its health check, in this region's role
    assert record["Failover"] == {"Ref": "FailoverRole"}
    assert record["HealthCheckId"] == {"Ref": "ApiHealthCheck"}
    assert record["AliasTarget"]["DNSName"] == {"Fn::GetAtt": ["ApiDomain", "RegionalDomainName"]}
    assert record["HostedZoneId"] == {"Ref": "HostedZoneId"}


def test_failover_domain_maps_the_environment_stage(deployment):
    # Given a hosted zone / When the API domain is mapped / Then it serves the environment's stage over TLS 1.2
    resources = deployment(**FAILOVER_ON).resources
    assert resources["ApiBasePathMapping"]["Properties"]["Stage"] == {"Ref": "IntakeApiStage"}
    assert resources["ApiDomain"]["Properties"]["SecurityPolicy"] == "TLS_1_2"


def test_cpu_memory_scale_out_never_scales_in(deployment, parameter_defaults):
    # Given CPU / memory scale-out switched on
    resources = deployment(CpuMemoryScaleOut="true").resources
    # When utilization crosses the seed's targets
    # Then target tracking adds tasks but never removes them (the queue autoscaler owns scale-in)
    expected = {"WorkerCpuScaleOut": "CpuTargetPercent", "WorkerMemoryScaleOut": "MemoryTargetPercent"}
    for policy, target in expected.items():
        config = resources[policy]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        assert config["DisableScaleIn"] is True, policy
        assert config["TargetValue"] == {"Ref": target}, policy
    assert (int(parameter_defaults["CpuTargetPercent"]), int(parameter_defaults["MemoryTargetPercent"])) == (
        70,
        80,
    )


def test_cpu_memory_scale_out_bounds_match_queue_autoscaler(deployment):
    # Given CPU / memory scale-out / When it registers the service / Then it uses the autoscaler's bounds
    target = deployment(CpuMemoryScaleOut="true").resources["WorkerScalableTarget"]["Properties"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == ({"Ref": "MinTasks"}, {"Ref": "MaxTasks"})
    assert target["ScalableDimension"] == "ecs:service:DesiredCount"


def test_cpu_memory_scale_out_default_off(parameter_defaults):
    # Given the defaults / When deployed / Then only the queue autoscaler sets the desired count
    assert parameter_defaults["CpuMemoryScaleOut"] == "false"
