"""The process's boto3 clients: one session holds botocore's data once for all of them."""

from __future__ import annotations

import pytest

from mistersmith.adapters import aws

pytestmark = pytest.mark.unit


def test_the_clients_of_a_process_share_one_session_and_its_loaded_data(monkeypatch):
    # Given a process's AWS environment (making a client makes no request)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # When it makes clients for several services
    sqs, dynamodb, s3 = (aws.client(service) for service in ("sqs", "dynamodb", "s3"))
    # Then they load botocore's endpoint and service data through one loader, not one each
    assert sqs._loader is dynamodb._loader is s3._loader
    assert aws.client("sqs") is sqs
