"""boto3 clients, created once per process (region and endpoint come from the AWS_* environment)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Standard retry mode backs off on throttling; short timeouts keep a stuck call from eating a Lambda.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)
# A long poll holds the connection for up to 20 s, so SQS gets a longer read timeout.
_SQS_CONFIG = _CONFIG.merge(Config(read_timeout=40))


@cache
def client(service: str) -> Any:
    return boto3.session.Session().client(service, config=_SQS_CONFIG if service == "sqs" else _CONFIG)
