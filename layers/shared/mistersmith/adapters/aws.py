"""boto3 clients, created once per process (region and endpoint come from the AWS_* environment)."""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as AwsConnectionError

# Standard retry mode backs off on throttling; short timeouts keep a stuck call from eating a Lambda.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)
# A long poll holds the connection for up to 20 s, so SQS gets a longer read timeout.
_SQS_CONFIG = _CONFIG.merge(Config(read_timeout=40))


# A session is not safe to make clients from in two threads at once (the local stack's functions).
_lock = threading.Lock()


@cache
def _session() -> boto3.session.Session:
    """One session for every client: each session loads its own copy of botocore's endpoint and
    service data (a worker's three clients took 15 MiB more on sessions of their own)."""
    return boto3.session.Session()


@cache
def client(service: str, config: Config | None = None) -> Any:
    """`config` replaces the default one; pass a module-level constant (clients are kept per config)."""
    with _lock:
        return _session().client(service, config=config or (_SQS_CONFIG if service == "sqs" else _CONFIG))


# Answers that blame the service's load or health, not the request: worth the caller's retry.
_UNAVAILABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)


def is_unavailable(error: BaseException) -> bool:
    """Whether an AWS call failed, after botocore's own retries, for want of the service (no
    connection, no answer in time, throttled, its own fault) rather than for what it was asked."""
    if isinstance(error, ClientError):
        return error.response.get("Error", {}).get("Code") in _UNAVAILABLE_CODES
    return isinstance(error, AwsConnectionError | HTTPClientError)
