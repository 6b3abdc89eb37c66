"""A table that does not answer (after botocore's retries) is a 503 the client retries with the same
id, not a 500 it gives up on; a fault of ours is still a 500."""

from __future__ import annotations

import warnings

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from local_stack.lambda_runtime import fresh_module
from mistersmith.callers import CALLER_HEADER
from mistersmith.intake import Intake
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask
from mistersmith.settings import IntakeSettings
from tests.fakes import MemoryTaskStore, NullPublisher

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's testclient warns about its httpx dependency
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.unit

SETTINGS = IntakeSettings(
    task_table_name="tasks", event_bus_name="bus", artifacts_bucket_name="bucket", local_caller_header=True
)
CALLER = "arn:aws:iam::123456789012:role/ci-runner"


class FailingStore(MemoryTaskStore):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def create(self, task: StoredTask) -> bool:
        raise self.error


def submit(error: Exception):
    module = fresh_module("functions/intake", "app")
    intake = Intake(Lifecycle(FailingStore(error), NullPublisher()), blobs=None, settings=SETTINGS)
    module.app.dependency_overrides[module.get_intake] = lambda: intake
    client = TestClient(module.app, headers={CALLER_HEADER: CALLER}, raise_server_exceptions=False)
    body = {"id": "down-1", "task_type": "compile", "payload": {"files": {"a.c": "int main(){}"}}}
    return client.post("/tasks", json=body)


def throttled(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "slow down"}}, "PutItem")


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com/"),
        ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com/"),
        throttled("ProvisionedThroughputExceededException"),
        throttled("ThrottlingException"),
        throttled("InternalServerError"),
    ],
    ids=["no-connection", "no-answer", "provisioned-throughput", "throttled", "its-own-fault"],
)
def test_a_table_that_does_not_answer_is_a_503_to_retry(error):
    # Given a table that fails to answer a submission's write / When a task is submitted
    response = submit(error)
    # Then the answer is a 503 problem the client retries (with the same id: a submission is idempotent)
    assert response.status_code == 503
    assert response.json()["type"].endswith(":unavailable")
    assert "retry with the same id" in response.json()["detail"]
    assert response.headers["Retry-After"] == "1"


@pytest.mark.parametrize("error", [RuntimeError("a bug of ours"), throttled("ValidationException")])
def test_a_fault_of_ours_or_a_refused_request_is_still_a_500(error):
    response = submit(error)
    assert response.status_code == 500
    assert response.json()["type"].endswith(":internal-error")
