"""Cloud Map adapter: implements `discovery.InstanceDirectory` with `DiscoverInstances`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from mistersmith.discovery import (
    DiscoveredInstance,
    DiscoveryError,
    DiscoveryThrottled,
    InstanceDirectory,
    ServiceResolver,
)

THROTTLING_CODES = frozenset({"ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException"})
# DiscoverInstances answers at most 1,000 instances per call (and has no paging): MaxTasks' default.
MAX_RESULTS = 1000

# One attempt per call: ServiceResolver owns the retries (backoff on throttling, stale cache otherwise),
# so botocore's own retries would only multiply them.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=2, read_timeout=5)


def _aws_host(endpoint_url: str) -> bool:
    host = urlsplit(endpoint_url).hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws"))


def discovery_client(session: boto3.session.Session | None = None, endpoint_url: str | None = None) -> Any:
    """A servicediscovery client. Region, credentials and endpoint come from `session` and
    `endpoint_url`, by default from the AWS_* environment as for every client.

    AWS serves DiscoverInstances on the `data-servicediscovery.` host, which botocore reaches by
    prefixing the endpoint's host. A local endpoint (moto on 127.0.0.1) has no such host, so there the
    prefix is turned off."""
    session = session or boto3.session.Session()
    client = session.client("servicediscovery", config=_CONFIG, endpoint_url=endpoint_url)
    if _aws_host(client.meta.endpoint_url):
        return client
    config = _CONFIG.merge(Config(inject_host_prefix=False))
    return session.client("servicediscovery", config=config, endpoint_url=endpoint_url)


class CloudMapDirectory(InstanceDirectory):
    def __init__(self, client: Any | None = None, *, health_status: str = "HEALTHY_OR_ELSE_ALL") -> None:
        # HEALTHY_OR_ELSE_ALL: healthy instances, or every instance when none is (better than nothing).
        self._client = client or discovery_client()
        self._health_status = health_status

    def discover(self, namespace: str, service: str) -> list[DiscoveredInstance]:
        try:
            response = self._client.discover_instances(
                NamespaceName=namespace,
                ServiceName=service,
                MaxResults=MAX_RESULTS,
                HealthStatus=self._health_status,
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in THROTTLING_CODES:
                raise DiscoveryThrottled(f"{code}: {namespace}/{service}") from error
            raise DiscoveryError(f"{code or 'ClientError'}: {namespace}/{service}: {error}") from error
        except BotoCoreError as error:
            raise DiscoveryError(f"{type(error).__name__}: {namespace}/{service}: {error}") from error
        return [
            DiscoveredInstance(item["InstanceId"], dict(item.get("Attributes", {})))
            for item in response.get("Instances", [])
        ]


def cloudmap_resolver(namespace: str, *, client: Any | None = None, **options: Any) -> ServiceResolver:
    """A resolver over Cloud Map; `options` are ServiceResolver's (ttl_seconds, default_port, backoff...)."""
    return ServiceResolver(CloudMapDirectory(client), namespace, **options)
