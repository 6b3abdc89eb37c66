"""The Cloud Map resolver on moto: a namespace and service like the template's, instances registered
the way ECS registers worker tasks, resolved through the real adapter and client.

moto runs in server mode on loopback, as for the local stack, and every client names its endpoint and
credentials: nothing here patches botocore or changes the environment, so the session's local stack
(in the same process) is never disturbed. Namespace names are unique per test for the same reason."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from mistersmith.adapters.cloudmap import CloudMapDirectory, cloudmap_resolver, discovery_client
from mistersmith.discovery import DiscoveryUnavailable, Endpoint, ServiceResolver

pytestmark = pytest.mark.integration

REGION = "us-east-1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's placeholder credentials
        region_name=REGION,
    )


@dataclass
class CloudMap:
    """The admin side (what the template and ECS do) and the resolver side (what the code does)."""

    admin: Any
    client: Any
    namespace: str
    service_id: str

    def register(self, task: str, ip: str, port: int = 8080) -> None:
        # What ECS registers for a task of a service with ServiceRegistries (awsvpc, SRV record, port 8080).
        self.admin.register_instance(
            ServiceId=self.service_id,
            InstanceId=task,
            Attributes={
                "AWS_INSTANCE_IPV4": ip,
                "AWS_INSTANCE_PORT": str(port),
                "ECS_CLUSTER_NAME": "workers",
            },
        )


@pytest.fixture
def cloud_map(moto_url: str, session: boto3.session.Session) -> CloudMap:
    """The template's namespace and worker service (A + SRV records, custom health), freshly named."""
    admin = session.client("servicediscovery", endpoint_url=moto_url)
    ec2 = session.client("ec2", endpoint_url=moto_url)
    namespace = f"t{uuid.uuid4().hex[:10]}.mistersmith.internal"
    vpc_id = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    operation = admin.create_private_dns_namespace(Name=namespace, Vpc=vpc_id)["OperationId"]
    namespace_id = admin.get_operation(OperationId=operation)["Operation"]["Targets"]["NAMESPACE"]
    service = admin.create_service(
        Name="worker",
        NamespaceId=namespace_id,
        DnsConfig={
            "RoutingPolicy": "MULTIVALUE",
            "DnsRecords": [{"Type": "A", "TTL": 10}, {"Type": "SRV", "TTL": 10}],
        },
        HealthCheckCustomConfig={"FailureThreshold": 1},
    )
    return CloudMap(admin, discovery_client(session, moto_url), namespace, service["Service"]["Id"])


def test_discovery_client_local_endpoint_drops_host_prefix(cloud_map):
    # Given the adapter's client for a loopback endpoint
    # When it is built / Then DiscoverInstances goes to that host, not to "data-servicediscovery.127.0.0.1"
    assert cloud_map.client.meta.config.inject_host_prefix is False


def test_discovery_client_aws_endpoint_keeps_host_prefix(session):
    # Given the AWS endpoint / When the adapter's client is built / Then DiscoverInstances goes to the data host
    client = discovery_client(session, f"https://servicediscovery.{REGION}.amazonaws.com")
    assert client.meta.config.inject_host_prefix is True


def test_resolver_registered_workers_resolved_to_endpoints(cloud_map):
    # Given two worker tasks registered in the template's namespace and service
    cloud_map.register("task-a", "10.42.0.10")
    cloud_map.register("task-b", "10.42.4.11")
    # When the resolver resolves the service
    endpoints = cloudmap_resolver(cloud_map.namespace, client=cloud_map.client).resolve("worker")
    # Then both tasks come back as ip:port
    assert [str(e) for e in endpoints] == ["10.42.0.10:8080", "10.42.4.11:8080"]


def test_resolver_cache_holds_until_ttl_then_sees_changes(cloud_map):
    # Given a resolved service on a fake clock with a 30 s TTL
    cloud_map.register("task-a", "10.42.0.10")
    clock = FakeClock()
    resolver = ServiceResolver(
        CloudMapDirectory(cloud_map.client), cloud_map.namespace, ttl_seconds=30, clock=clock
    )
    assert resolver.resolve("worker") == [Endpoint("10.42.0.10", 8080)]
    # When a task is replaced (Spot reclaimed one, ECS started another)
    cloud_map.admin.deregister_instance(ServiceId=cloud_map.service_id, InstanceId="task-a")
    cloud_map.register("task-c", "10.42.0.12")
    clock.now = 29
    before_ttl = resolver.resolve("worker")
    clock.now = 30
    after_ttl = resolver.resolve("worker")
    # Then the cached answer holds until the TTL runs out, and the next resolve sees the replacement
    assert before_ttl == [Endpoint("10.42.0.10", 8080)]
    assert after_ttl == [Endpoint("10.42.0.12", 8080)]


def test_resolver_unknown_namespace_unavailable(cloud_map):
    # Given no such namespace / When resolved with nothing cached / Then it says it cannot resolve
    resolver = cloudmap_resolver("missing.mistersmith.internal", client=cloud_map.client)
    with pytest.raises(DiscoveryUnavailable):
        resolver.resolve("worker")


def test_resolver_directory_gone_serves_stale_answer(cloud_map):
    # Given a resolved service, then the service disappears from Cloud Map
    cloud_map.register("task-a", "10.42.0.10")
    clock = FakeClock()
    resolver = ServiceResolver(
        CloudMapDirectory(cloud_map.client), cloud_map.namespace, ttl_seconds=30, clock=clock
    )
    resolver.resolve("worker")
    cloud_map.admin.deregister_instance(ServiceId=cloud_map.service_id, InstanceId="task-a")
    cloud_map.admin.delete_service(Id=cloud_map.service_id)
    clock.now = 120
    # When resolved after the TTL / Then the last answer is served instead of an error
    assert resolver.resolve("worker") == [Endpoint("10.42.0.10", 8080)]
