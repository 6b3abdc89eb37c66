"""The discovery resolver against a fake directory: cache, TTL, backoff, stale answers.
Also the Cloud Map adapter's error translation, on a stubbed client (no network)."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from mistersmith.adapters.cloudmap import CloudMapDirectory
from mistersmith.discovery import (
    Backoff,
    DiscoveredInstance,
    DiscoveryError,
    DiscoveryThrottled,
    DiscoveryUnavailable,
    Endpoint,
    InstanceDirectory,
    ServiceResolver,
)

pytestmark = pytest.mark.unit

NAMESPACE = "dev.mistersmith.internal"


def instance(ip: str, port: str | None = "8080", instance_id: str | None = None) -> DiscoveredInstance:
    attributes = {"AWS_INSTANCE_IPV4": ip} | ({"AWS_INSTANCE_PORT": port} if port is not None else {})
    return DiscoveredInstance(instance_id or f"task-{ip}", attributes)


class FakeDirectory(InstanceDirectory):
    """Answers from `instances`, or raises the next queued error first."""

    def __init__(self, *instances: DiscoveredInstance) -> None:
        self.instances = list(instances)
        self.errors: list[Exception] = []
        self.calls: list[tuple[str, str]] = []

    def discover(self, namespace: str, service: str) -> list[DiscoveredInstance]:
        self.calls.append((namespace, service))
        if self.errors:
            raise self.errors.pop(0)
        return list(self.instances)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_resolver(directory: InstanceDirectory, clock: FakeClock, **options) -> ServiceResolver:
    options.setdefault("backoff", Backoff(max_attempts=4, base_seconds=0.1, cap_seconds=0.25))
    # rand() = 1.0: every backoff waits its full bound, so the delays are exact.
    return ServiceResolver(directory, NAMESPACE, clock=clock, sleep=clock.sleep, rand=lambda: 1.0, **options)


def test_resolve_instances_with_address_and_port_returns_sorted_endpoints(clock):
    # Given two registered workers
    directory = FakeDirectory(instance("10.0.1.9"), instance("10.0.0.7", "9000"))
    # When the worker service is resolved
    endpoints = make_resolver(directory, clock).resolve("worker")
    # Then each becomes ip:port, in a stable order, from one DiscoverInstances call in the namespace
    assert [str(e) for e in endpoints] == ["10.0.0.7:9000", "10.0.1.9:8080"]
    assert directory.calls == [(NAMESPACE, "worker")]


def test_resolve_instance_without_address_or_port_skipped(clock):
    # Given an instance without an IPv4 address and one without a port
    directory = FakeDirectory(
        DiscoveredInstance("no-ip", {"AWS_INSTANCE_PORT": "8080"}),
        instance("10.0.0.8", port=None),
        instance("10.0.0.9", port="not-a-port"),
        instance("10.0.0.7"),
    )
    # When resolved without a default port / Then only the complete instance is an endpoint (the seed's rule)
    assert make_resolver(directory, clock).resolve("worker") == [Endpoint("10.0.0.7", 8080)]


def test_resolve_missing_port_with_default_port_uses_it(clock):
    # Given an instance registered with an A record only (no port attribute)
    directory = FakeDirectory(instance("10.0.0.8", port=None))
    # When resolved with a default port / Then the default fills in
    assert make_resolver(directory, clock, default_port=8080).resolve("worker") == [
        Endpoint("10.0.0.8", 8080)
    ]


def test_resolve_within_ttl_served_from_cache(clock):
    # Given a resolved service
    directory = FakeDirectory(instance("10.0.0.7"))
    resolver = make_resolver(directory, clock, ttl_seconds=30)
    first = resolver.resolve("worker")
    directory.instances.append(instance("10.0.0.8"))
    # When it is resolved again before the TTL runs out
    clock.now += 29.9
    second = resolver.resolve("worker")
    # Then the cached answer is served and the directory is not called again
    assert second == first
    assert len(directory.calls) == 1


def test_resolve_after_ttl_asks_directory_again(clock):
    # Given a resolved service whose TTL has run out, and a new instance since
    directory = FakeDirectory(instance("10.0.0.7"))
    resolver = make_resolver(directory, clock, ttl_seconds=30)
    resolver.resolve("worker")
    directory.instances.append(instance("10.0.0.8"))
    clock.now += 30
    # When it is resolved / Then the directory is asked again and the new instance appears
    assert [str(e) for e in resolver.resolve("worker")] == ["10.0.0.7:8080", "10.0.0.8:8080"]
    assert len(directory.calls) == 2


def test_resolve_empty_answer_cached_only_for_empty_ttl(clock):
    # Given a service with no instances yet
    directory = FakeDirectory()
    resolver = make_resolver(directory, clock, ttl_seconds=30, empty_ttl_seconds=5)
    assert resolver.resolve("worker") == []
    # When it is resolved within the short empty TTL, and again after it (a worker registered meanwhile)
    clock.now += 4
    assert resolver.resolve("worker") == []
    directory.instances.append(instance("10.0.0.7"))
    clock.now += 1
    # Then the empty answer was reused once, then the new worker is found
    assert resolver.resolve("worker") == [Endpoint("10.0.0.7", 8080)]
    assert len(directory.calls) == 2


def test_resolve_services_cached_separately(clock):
    # Given two services / When both are resolved / Then each has its own cache entry
    directory = FakeDirectory(instance("10.0.0.7"))
    resolver = make_resolver(directory, clock)
    resolver.resolve("worker")
    resolver.resolve("orchestrator")
    resolver.resolve("worker")
    assert directory.calls == [(NAMESPACE, "worker"), (NAMESPACE, "orchestrator")]


def test_resolve_throttled_then_answered_backs_off_exponentially(clock):
    # Given a directory that throttles three times, then answers
    directory = FakeDirectory(instance("10.0.0.7"))
    directory.errors = [DiscoveryThrottled("ThrottlingException")] * 3
    # When the service is resolved
    endpoints = make_resolver(directory, clock).resolve("worker")
    # Then it waited 0.1, 0.2, then the 0.25 cap between attempts, and got the answer
    assert clock.sleeps == pytest.approx([0.1, 0.2, 0.25])
    assert endpoints == [Endpoint("10.0.0.7", 8080)]
    assert len(directory.calls) == 4


def test_resolve_throttled_past_attempts_with_cache_serves_stale(clock):
    # Given a cached answer whose TTL ran out, and a directory that keeps throttling
    directory = FakeDirectory(instance("10.0.0.7"))
    resolver = make_resolver(directory, clock, ttl_seconds=30)
    resolver.resolve("worker")
    clock.now += 300
    directory.errors = [DiscoveryThrottled("RequestLimitExceeded")] * 10
    # When the service is resolved
    endpoints = resolver.resolve("worker")
    # Then after the bounded retries (4 attempts) the stale answer is served rather than nothing
    assert endpoints == [Endpoint("10.0.0.7", 8080)]
    assert len(directory.calls) == 1 + 4
    assert len(clock.sleeps) == 3


def test_resolve_throttled_past_attempts_without_cache_unavailable(clock):
    # Given nothing cached and a directory that keeps throttling
    directory = FakeDirectory()
    directory.errors = [DiscoveryThrottled("ThrottlingException")] * 10
    # When resolved / Then it gives up after the bounded attempts, saying why
    with pytest.raises(DiscoveryUnavailable, match="ThrottlingException"):
        make_resolver(directory, clock).resolve("worker")
    assert len(directory.calls) == 4


def test_resolve_other_error_not_retried_and_stale_served(clock):
    # Given a cached answer past its TTL, and a directory failing for another reason
    directory = FakeDirectory(instance("10.0.0.7"))
    resolver = make_resolver(directory, clock, ttl_seconds=30)
    resolver.resolve("worker")
    clock.now += 31
    directory.errors = [DiscoveryError("EndpointConnectionError")]
    # When resolved / Then no retry is made and the last answer is served
    assert resolver.resolve("worker") == [Endpoint("10.0.0.7", 8080)]
    assert clock.sleeps == []
    assert len(directory.calls) == 2


def test_resolve_error_with_only_empty_cache_unavailable(clock):
    # Given an empty cached answer past its TTL and a failing directory
    directory = FakeDirectory()
    resolver = make_resolver(directory, clock, empty_ttl_seconds=5)
    resolver.resolve("worker")
    clock.now += 6
    directory.errors = [DiscoveryError("ServiceNotFound")]
    # When resolved / Then an empty list is not passed off as an answer
    with pytest.raises(DiscoveryUnavailable, match="ServiceNotFound"):
        resolver.resolve("worker")


def test_invalidate_service_next_resolve_asks_directory(clock):
    # Given a fresh cached answer / When the caller invalidates it (every endpoint refused) / Then the next call asks
    directory = FakeDirectory(instance("10.0.0.7"))
    resolver = make_resolver(directory, clock)
    resolver.resolve("worker")
    resolver.invalidate("worker")
    resolver.resolve("worker")
    resolver.invalidate()
    resolver.resolve("worker")
    assert len(directory.calls) == 3


def test_resolve_returned_list_is_a_copy(clock):
    # Given a cached answer / When a caller changes the list it got / Then the cache is unaffected
    resolver = make_resolver(FakeDirectory(instance("10.0.0.7")), clock)
    resolver.resolve("worker").clear()
    assert resolver.resolve("worker") == [Endpoint("10.0.0.7", 8080)]


@pytest.mark.parametrize(
    "options",
    [{"ttl_seconds": -1}, {"empty_ttl_seconds": -1}],
)
def test_resolver_negative_ttl_rejected(options):
    # Given a negative TTL / When a resolver is made / Then it is refused
    with pytest.raises(ValueError, match="TTL"):
        ServiceResolver(FakeDirectory(), NAMESPACE, **options)


def test_resolver_empty_namespace_rejected():
    # Given no namespace / When a resolver is made / Then it is refused
    with pytest.raises(ValueError, match="namespace"):
        ServiceResolver(FakeDirectory(), "")


@pytest.mark.parametrize(
    "backoff",
    [{"max_attempts": 0}, {"base_seconds": -0.1}, {"base_seconds": 2.0, "cap_seconds": 1.0}],
)
def test_backoff_invalid_bounds_rejected(backoff):
    # Given nonsensical backoff bounds / When made / Then refused (retries must be bounded and non-negative)
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**backoff)


def test_backoff_delay_jittered_below_bound():
    # Given the default backoff / When random draws are taken / Then each delay stays within its bound
    backoff = Backoff(max_attempts=5, base_seconds=0.1, cap_seconds=2.0)
    assert backoff.delay(0, lambda: 0.5) == pytest.approx(0.05)
    assert backoff.delay(10, lambda: 1.0) == pytest.approx(2.0)


# ---------------------------------------------------------------- the adapter's error translation


def stubbed_directory() -> tuple[CloudMapDirectory, Stubber]:
    # Stubbed: nothing is sent, so the credentials are placeholders.
    client = boto3.client(
        "servicediscovery",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - a placeholder for a stubbed client
    )
    return CloudMapDirectory(client), Stubber(client)


EXPECTED_PARAMS = {
    "NamespaceName": NAMESPACE,
    "ServiceName": "worker",
    "MaxResults": 1000,
    "HealthStatus": "HEALTHY_OR_ELSE_ALL",
}


@pytest.mark.parametrize("code", ["ThrottlingException", "RequestLimitExceeded"])
def test_cloudmap_throttling_error_becomes_discovery_throttled(code):
    # Given Cloud Map answering with a throttling error
    directory, stub = stubbed_directory()
    stub.add_client_error("discover_instances", service_error_code=code, expected_params=EXPECTED_PARAMS)
    # When the adapter discovers / Then the resolver sees DiscoveryThrottled (and will back off)
    with stub, pytest.raises(DiscoveryThrottled, match=code):
        directory.discover(NAMESPACE, "worker")


def test_cloudmap_other_error_becomes_discovery_error():
    # Given Cloud Map answering NamespaceNotFound
    directory, stub = stubbed_directory()
    stub.add_client_error("discover_instances", service_error_code="NamespaceNotFound", http_status_code=404)
    # When the adapter discovers / Then it is a plain DiscoveryError (not retried)
    with stub, pytest.raises(DiscoveryError, match="NamespaceNotFound") as raised:
        directory.discover(NAMESPACE, "worker")
    assert not isinstance(raised.value, DiscoveryThrottled)


def test_cloudmap_instances_become_discovered_instances():
    # Given Cloud Map answering two instances
    directory, stub = stubbed_directory()
    stub.add_response(
        "discover_instances",
        {
            "Instances": [
                {
                    "InstanceId": "a",
                    "NamespaceName": NAMESPACE,
                    "ServiceName": "worker",
                    "Attributes": {"AWS_INSTANCE_IPV4": "10.0.0.7", "AWS_INSTANCE_PORT": "8080"},
                },
                {"InstanceId": "b", "NamespaceName": NAMESPACE, "ServiceName": "worker"},
            ]
        },
        EXPECTED_PARAMS,
    )
    # When the adapter discovers / Then each becomes an instance with its attributes
    with stub:
        found = directory.discover(NAMESPACE, "worker")
    assert found == [
        DiscoveredInstance("a", {"AWS_INSTANCE_IPV4": "10.0.0.7", "AWS_INSTANCE_PORT": "8080"}),
        DiscoveredInstance("b", {}),
    ]
