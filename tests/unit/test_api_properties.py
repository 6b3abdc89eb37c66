"""Property: whatever JSON (or bytes) is POSTed to /tasks, the answer is never a 5xx, and a refused
body leaves no record and no event behind. Checked in-process on in-memory adapters (many bodies);
tests/integration/test_api_properties.py checks fewer on the local stack."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local_stack.lambda_runtime import fresh_module
from mistersmith.intake import Intake
from mistersmith.lifecycle import Lifecycle
from mistersmith.ports import BlobNotFound, BlobStore
from mistersmith.settings import IntakeSettings
from tests.fakes import MemoryTaskStore, NullPublisher
from tests.strategies import BODIES, BUCKET

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's testclient warns about its httpx dependency
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.unit

SETTINGS = IntakeSettings(
    task_table_name="tasks",
    event_bus_name="bus",
    artifacts_bucket_name=BUCKET,
    inline_payload_limit_bytes=1024,
    max_payload_bytes=4096,
    local_caller_header=True,  # no API Gateway here: the requests come from the local caller
)


class NoBlobs(BlobStore):
    """A bucket with nothing uploaded to it."""

    bucket = BUCKET

    def put(self, key: str, data: bytes, *, content_type: str) -> str:
        return f"s3://{BUCKET}/{key}"

    def get(self, bucket: str, key: str) -> bytes:
        raise BlobNotFound(bucket, key)

    def size(self, bucket: str, key: str) -> int:
        raise BlobNotFound(bucket, key)

    def presign_get(self, key: str, *, expires_seconds: int) -> str:
        return f"https://{BUCKET}.example/{key}"

    def presign_put(self, key: str, *, content_type: str, expires_seconds: int) -> str:
        return f"https://{BUCKET}.example/{key}"


class InMemoryApi:
    """The app on a fresh store and publisher per call of `fresh()`."""

    def __init__(self) -> None:
        self.module = fresh_module("functions/intake", "app")
        self.client = TestClient(self.module.app, raise_server_exceptions=False)
        self.fresh()

    def fresh(self) -> None:
        self.store = MemoryTaskStore()
        self.events = NullPublisher()
        intake = Intake(Lifecycle(self.store, self.events), NoBlobs(), SETTINGS)
        self.module.app.dependency_overrides[self.module.get_intake] = lambda: intake


@pytest.fixture(scope="module")
def in_memory() -> InMemoryApi:
    return InMemoryApi()


def assert_outcome(status: int, created: int, published: int) -> None:
    assert status < 500
    # No event either way: an accepted task's record is all (its stream insert routes it)
    assert published == 0
    if status == 202:
        assert created == 1
    else:
        assert status in (400, 409, 413, 415, 422)
        assert created == 0


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODIES)
def test_api_post_tasks_any_json_body_never_5xx_and_refused_leaves_nothing(in_memory, body: Any):
    # Given an empty store and bus
    in_memory.fresh()
    # When any JSON body is posted
    # Sent as ASCII JSON (surrogates escaped), as a client's json.dumps would.
    content = json.dumps(body)
    response = in_memory.client.post("/tasks", content=content, headers={"content-type": "application/json"})
    # Then it is accepted with one record, or refused (4xx, problem details) with none
    assert_outcome(response.status_code, len(in_memory.store.tasks), in_memory.events.published)
    if response.status_code != 202:
        assert response.headers["content-type"] == "application/problem+json"
        assert {"type", "title", "status", "detail"} <= set(response.json())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200), content_type=st.sampled_from(["application/json", "text/plain", ""]))
def test_api_post_tasks_any_bytes_never_5xx_and_refused_leaves_nothing(
    in_memory, data: bytes, content_type: str
):
    in_memory.fresh()
    response = in_memory.client.post("/tasks", content=data, headers={"content-type": content_type})
    assert_outcome(response.status_code, len(in_memory.store.tasks), in_memory.events.published)
