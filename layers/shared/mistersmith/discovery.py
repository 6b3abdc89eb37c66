"""Service discovery: resolve a service's endpoints from a directory (Cloud Map), with a TTL
cache, bounded exponential backoff when the directory throttles, and the last answer served when
the directory cannot be reached.

The directory is a port; `mistersmith.adapters.cloudmap.CloudMapDirectory` implements it with
`DiscoverInstances`. Tests pass a fake."""

from __future__ import annotations

import logging
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mistersmith.errors import MisterSmithError

# The attributes ECS (and RegisterInstance callers) set on an IP instance.
IPV4_ATTRIBUTE = "AWS_INSTANCE_IPV4"
PORT_ATTRIBUTE = "AWS_INSTANCE_PORT"

_log = logging.getLogger(__name__)


class DiscoveryError(MisterSmithError):
    """The directory could not answer (not found, access denied, unreachable, ...)."""


class DiscoveryThrottled(DiscoveryError):
    """The directory refused the call for its rate (ThrottlingException / RequestLimitExceeded)."""


class DiscoveryUnavailable(DiscoveryError):
    """No answer from the directory and nothing cached to fall back on."""


@dataclass(frozen=True)
class DiscoveredInstance:
    instance_id: str
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, order=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class InstanceDirectory(ABC):
    """Where service instances are registered: Cloud Map in AWS, a fake in tests."""

    @abstractmethod
    def discover(self, namespace: str, service: str) -> list[DiscoveredInstance]:
        """The service's instances. Raises DiscoveryThrottled when rate-limited, DiscoveryError otherwise."""


@dataclass
class _Entry:
    endpoints: list[Endpoint]
    fetched_at: float


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n waits a random time up to min(cap, base * 2**n)."""

    max_attempts: int = 4
    base_seconds: float = 0.1
    cap_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_seconds < 0 or self.cap_seconds < self.base_seconds:
            raise ValueError("backoff needs max_attempts >= 1 and 0 <= base_seconds <= cap_seconds")

    def delay(self, retry: int, rand: Callable[[], float]) -> float:
        return rand() * min(self.cap_seconds, self.base_seconds * 2.0**retry)


class ServiceResolver:
    """Resolves `service` in `namespace` to endpoints ("ip:port"), caching answers for `ttl_seconds`.

    - A fresh cached answer is served without calling the directory. Empty answers are cached only
      for `empty_ttl_seconds`, so that newly registered instances show up quickly.
    - Throttling is retried with bounded exponential backoff (`backoff`); other errors are not.
    - When the directory cannot answer, the last non-empty answer is served however old it is
      (a stale list beats none: callers connect and fail over per endpoint); with nothing cached,
      DiscoveryUnavailable is raised.
    """

    def __init__(
        self,
        directory: InstanceDirectory,
        namespace: str,
        *,
        ttl_seconds: float = 30.0,
        empty_ttl_seconds: float = 5.0,
        default_port: int | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not namespace:
            raise ValueError("namespace must not be empty")
        if ttl_seconds < 0 or empty_ttl_seconds < 0:
            raise ValueError("TTLs must not be negative")
        self._directory = directory
        self._namespace = namespace
        self._ttl = ttl_seconds
        self._empty_ttl = empty_ttl_seconds
        self._default_port = default_port
        self._backoff = backoff or Backoff()
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    @property
    def namespace(self) -> str:
        return self._namespace

    def resolve(self, service: str) -> list[Endpoint]:
        cached = self._cached(service)
        if cached is not None and self._fresh(cached):
            return list(cached.endpoints)
        try:
            instances = self._discover_with_backoff(service)
        except DiscoveryError as error:
            if cached is not None and cached.endpoints:
                _log.warning(
                    "discovery of %s/%s failed (%s); serving %d cached endpoints from %.0f s ago",
                    self._namespace,
                    service,
                    error,
                    len(cached.endpoints),
                    self._clock() - cached.fetched_at,
                )
                return list(cached.endpoints)
            raise DiscoveryUnavailable(f"cannot resolve {self._namespace}/{service}: {error}") from error
        endpoints = sorted(self._endpoints(instances))
        with self._lock:
            self._cache[service] = _Entry(endpoints, self._clock())
        return list(endpoints)

    def invalidate(self, service: str | None = None) -> None:
        """Forgets one service's answer (say, after every endpoint refused a connection) or all of them."""
        with self._lock:
            if service is None:
                self._cache.clear()
            else:
                self._cache.pop(service, None)

    def _cached(self, service: str) -> _Entry | None:
        with self._lock:
            return self._cache.get(service)

    def _fresh(self, entry: _Entry) -> bool:
        ttl = self._ttl if entry.endpoints else self._empty_ttl
        return self._clock() - entry.fetched_at < ttl

    def _discover_with_backoff(self, service: str) -> list[DiscoveredInstance]:
        for retry in range(self._backoff.max_attempts):
            try:
                return self._directory.discover(self._namespace, service)
            except DiscoveryThrottled:
                if retry + 1 == self._backoff.max_attempts:
                    raise
                delay = self._backoff.delay(retry, self._rand)
                _log.info("discovery of %s/%s throttled; retrying in %.2f s", self._namespace, service, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _endpoints(self, instances: list[DiscoveredInstance]) -> list[Endpoint]:
        endpoints = []
        for instance in instances:
            host = instance.attributes.get(IPV4_ATTRIBUTE)
            port_text = instance.attributes.get(PORT_ATTRIBUTE)
            port = int(port_text) if port_text and port_text.isdigit() else self._default_port
            if not host or port is None or not 0 < port < 65536:
                # An instance without an address and a port cannot be called: skipped.
                continue
            endpoints.append(Endpoint(host, port))
        return endpoints
