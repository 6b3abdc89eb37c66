"""The Fargate worker: service, capacity, task definition and container hardening."""

from __future__ import annotations

import pytest

from tests.infrastructure.conftest import containers

pytestmark = pytest.mark.infrastructure

FARGATE_PROVIDERS = {"FARGATE", "FARGATE_SPOT"}


def _strategy_branches(service: dict) -> tuple[list, list]:
    """The capacity provider strategy's (UseSpot, on-demand only) branches of its Fn::If."""
    condition, with_spot, without_spot = service["Properties"]["CapacityProviderStrategy"]["Fn::If"]
    assert condition == "UseSpotCapacity"
    return with_spot, without_spot


def test_worker_service_desired_count_absent(resources):
    # Given the worker service
    properties = resources["WorkerService"]["Properties"]
    # When the stack is updated
    # Then no DesiredCount resets the count the autoscaler set
    assert "DesiredCount" not in properties


def test_worker_service_circuit_breaker_rolls_back(resources):
    # Given the worker service / When a deployment's tasks keep failing / Then ECS stops it and rolls back
    breaker = resources["WorkerService"]["Properties"]["DeploymentConfiguration"]["DeploymentCircuitBreaker"]
    assert breaker == {"Enable": True, "Rollback": True}


def test_worker_service_capacity_providers_fargate_only(resources):
    # Given both branches of the service's capacity provider strategy
    with_spot, without_spot = _strategy_branches(resources["WorkerService"])
    # When either is deployed
    # Then it uses FARGATE / FARGATE_SPOT only
    assert {item["CapacityProvider"] for item in with_spot + without_spot} <= FARGATE_PROVIDERS


def test_worker_service_spot_strategy_matches_seed_weights(resources, parameter_defaults):
    # Given the UseSpot branch (the default)
    with_spot, _ = _strategy_branches(resources["WorkerService"])
    by_provider = {item["CapacityProvider"]: item for item in with_spot}
    # When tasks are placed
    # Then the on-demand base comes first and the rest splits Spot 2 : on-demand 1
    assert parameter_defaults["UseSpot"] == "true"
    assert by_provider["FARGATE_SPOT"] == {
        "CapacityProvider": "FARGATE_SPOT",
        "Weight": {"Ref": "SpotWeight"},
        "Base": 0,
    }
    assert by_provider["FARGATE"]["Weight"] == {"Ref": "OnDemandWeight"}
    assert by_provider["FARGATE"]["Base"] == {"Ref": "OnDemandBase"}
    assert (int(parameter_defaults["SpotWeight"]), int(parameter_defaults["OnDemandWeight"])) == (2, 1)
    assert int(parameter_defaults["OnDemandBase"]) == 2


def test_worker_service_without_spot_uses_fargate_only(resources):
    # Given the UseSpot=false branch / When deployed / Then every task is on-demand FARGATE
    _, without_spot = _strategy_branches(resources["WorkerService"])
    assert [item["CapacityProvider"] for item in without_spot] == ["FARGATE"]


def test_worker_cluster_capacity_providers_associated_before_service(resources):
    # Given the cluster's capacity provider association
    association = resources["WorkerClusterCapacityProviders"]["Properties"]
    # When the service is created
    # Then FARGATE and FARGATE_SPOT are already on the cluster
    assert set(association["CapacityProviders"]) == FARGATE_PROVIDERS
    assert association["Cluster"] == {"Ref": "WorkerCluster"}
    assert "WorkerClusterCapacityProviders" in resources["WorkerService"]["DependsOn"]


def test_worker_cluster_container_insights_enabled(resources):
    # Given the cluster / When tasks run / Then Container Insights collects task counts for the dashboard
    settings = resources["WorkerCluster"]["Properties"]["ClusterSettings"]
    assert {"Name": "containerInsights", "Value": "enabled"} in settings


def test_worker_service_public_ip_disabled(resources):
    # Given the service's network configuration / When tasks start / Then they get no public IP
    network = resources["WorkerService"]["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert network["SecurityGroups"] == [{"Ref": "WorkerSecurityGroup"}]


def test_worker_security_group_no_ingress_https_egress_only(resources):
    # Given the worker security group
    properties = resources["WorkerSecurityGroup"]["Properties"]
    # When anything tries to reach a task, or a task reaches out
    # Then nothing gets in, and only HTTPS gets out
    assert not properties.get("SecurityGroupIngress")
    (egress,) = properties["SecurityGroupEgress"]
    assert (egress["IpProtocol"], egress["FromPort"], egress["ToPort"]) == ("tcp", 443, 443)


def test_worker_task_definition_fargate_with_parameters(resources):
    # Given the task definition / When registered / Then it is Fargate, awsvpc, sized and built by parameters
    properties = resources["WorkerTaskDefinition"]["Properties"]
    assert properties["RequiresCompatibilities"] == ["FARGATE"]
    assert properties["NetworkMode"] == "awsvpc"
    assert properties["Cpu"] == {"Ref": "WorkerCpu"}
    assert properties["Memory"] == {"Ref": "WorkerMemory"}
    assert properties["RuntimePlatform"]["CpuArchitecture"] == {"Ref": "WorkerCpuArchitecture"}


def test_worker_container_stop_timeout_is_120_seconds(worker_container):
    # Given the container / When Fargate Spot reclaims the task (2-minute notice) / Then it has 120 s to drain
    assert worker_container["StopTimeout"] == 120


def test_worker_container_root_filesystem_read_only(worker_container):
    # Given the container / When code inside tries to change the image / Then the root filesystem refuses
    assert worker_container["ReadonlyRootFilesystem"] is True


def test_worker_container_root_keeps_only_what_handing_children_their_own_uids_takes(worker_container):
    # Given the container / When it starts / Then it is root (children of each run then get a uid of
    # their own, which cannot read PID 1's environment) with every other default capability dropped
    assert worker_container["User"] == "0"
    dropped = set(worker_container["LinuxParameters"]["Capabilities"]["Drop"])
    docker_defaults = {
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
        "NET_BIND_SERVICE", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    }  # fmt: skip
    assert docker_defaults - dropped == {"CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETUID", "SETGID"}
    assert "Add" not in worker_container["LinuxParameters"]["Capabilities"]


def test_worker_container_tmp_is_a_writable_scratch_volume(resources, worker_container):
    # Given the read-only container / When the sandbox writes files / Then /tmp is a writable task volume
    (mount,) = [m for m in worker_container["MountPoints"] if m["ContainerPath"] == "/tmp"]
    assert mount["ReadOnly"] is False
    volumes = {v["Name"] for v in resources["WorkerTaskDefinition"]["Properties"]["Volumes"]}
    assert mount["SourceVolume"] in volumes


def test_worker_container_init_process_enabled(worker_container):
    # Given the container / When sandboxed children exit / Then an init process reaps them and forwards SIGTERM
    assert worker_container["LinuxParameters"]["InitProcessEnabled"] is True


def test_worker_container_health_check_probes_port_8080_with_python(worker_container):
    # Given the container health check
    check = worker_container["HealthCheck"]
    # When ECS runs it in the slim image (no curl)
    # Then python probes /health on 8080 with the seed's timings
    assert check["Command"][:3] == ["CMD", "python", "-c"]
    assert "http://127.0.0.1:8080/health" in check["Command"][3]
    assert (check["Interval"], check["Timeout"], check["Retries"], check["StartPeriod"]) == (30, 10, 3, 60)
    assert {"ContainerPort": 8080, "Protocol": "tcp"} in worker_container["PortMappings"]


def test_worker_container_logs_go_to_worker_log_group(worker_container):
    # Given the container / When it logs / Then awslogs ships to the worker log group
    options = worker_container["LogConfiguration"]["Options"]
    assert worker_container["LogConfiguration"]["LogDriver"] == "awslogs"
    assert options["awslogs-group"] == {"Ref": "WorkerLogGroup"}


def test_worker_container_environment_names_every_setting(worker_container):
    # Given the container environment
    env = {item["Name"]: item["Value"] for item in worker_container["Environment"]}
    # When the worker validates its settings at start
    # Then every resource it needs is named
    assert env["TASK_TABLE_NAME"] == {
        "Ref": "TaskTable"
    }  # by default; the global or external table otherwise
    assert env["EVENT_BUS_NAME"] == {"Ref": "EventBus"}
    assert env["ARTIFACTS_BUCKET_NAME"] == {"Ref": "ArtifactsBucket"}
    assert env["WORK_QUEUE_URL"] == {"Ref": "WorkQueue"}
    assert env["POWERTOOLS_SERVICE_NAME"] == "mistersmith-worker"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "MisterSmith"
    assert env["LOG_LEVEL"] == {"Ref": "LogLevel"}


def test_worker_lease_seconds_follows_queue_visibility(resources, worker_container):
    # Given the container environment and the work queue
    env = {item["Name"]: item["Value"] for item in worker_container["Environment"]}
    # When the worker leases a message
    # Then its lease is the queue's visibility timeout (one parameter for both)
    assert env["LEASE_SECONDS"] == resources["WorkQueue"]["Properties"]["VisibilityTimeout"]


def test_worker_log_group_retention_follows_parameter(resources, parameter_defaults):
    # Given the worker log group / When deployed with defaults / Then logs are kept one week
    assert resources["WorkerLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert int(parameter_defaults["LogRetentionDays"]) == 7


def test_worker_tracing_sidecar_receives_otlp_beside_the_worker(default_deployment, deployment):
    # Given the default deployment and one with tracing off
    traced, untraced = containers(default_deployment), containers(deployment(WorkerTracing="false"))
    # Then by default an ADOT collector runs beside the worker, non-root, read-only, not essential,
    # and the worker sends to it on localhost and starts after it
    collector = traced["otel-collector"]
    assert collector["Essential"] is False
    assert collector["ReadonlyRootFilesystem"] is True
    assert collector["User"] == "10001"
    assert collector["LogConfiguration"]["Options"]["awslogs-stream-prefix"] == "otel"
    env = {item["Name"]: item["Value"] for item in traced["worker"]["Environment"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://localhost:4318"
    assert traced["worker"]["DependsOn"] == [{"ContainerName": "otel-collector", "Condition": "START"}]
    # And with tracing off there is no collector, and the worker is told of none
    assert set(untraced) == {"worker"}
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in {item["Name"] for item in untraced["worker"]["Environment"]}
    assert "DependsOn" not in untraced["worker"]


def test_worker_children_have_no_network_unless_the_deployment_allows_it(
    parameter_defaults, worker_container
):
    # Given the container environment and the template's defaults
    env = {item["Name"]: item["Value"] for item in worker_container["Environment"]}
    # When a deployment keeps the defaults, then execute's children get no IPv4/IPv6 sockets
    assert env["EXECUTE_ALLOW_NETWORK"] == {"Ref": "ExecuteNetworkAccess"}
    assert parameter_defaults["ExecuteNetworkAccess"] == "false"


def test_worker_concurrency_and_autoscaler_concurrency_are_one_parameter(deployment):
    # Given a stack deployed with WorkerConcurrency 3
    stack = deployment(WorkerConcurrency="3")
    worker = {item["Name"]: item["Value"] for item in containers(stack)["worker"]["Environment"]}
    autoscaler = stack.resources["AutoscalerFunction"]["Properties"]["Environment"]["Variables"]
    # When the worker takes tasks and the autoscaler counts busy workers
    # Then both read the one parameter: the worker runs as many tasks at once as the autoscaler assumes
    assert worker["CONCURRENCY"] == autoscaler["WORKER_CONCURRENCY"] == {"Ref": "WorkerConcurrency"}
    assert str(stack.parameters["WorkerConcurrency"]) == "3"
