"""Property: whatever JSON (or bytes) is POSTed to /tasks, the answer is never a 5xx, and a refused
body leaves no record and no event behind. Checked in-process on in-memory adapters (many bodies)
and on the local stack (fewer)."""

from __future__ import annotations

import json
import uuid
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

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's testclient warns about its httpx dependency
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

BUCKET = "bucket"
SETTINGS = IntakeSettings(
    task_table_name="tasks",
    event_bus_name="bus",
    artifacts_bucket_name=BUCKET,
    inline_payload_limit_bytes=1024,
    max_payload_bytes=4096,
    local_caller_header=True,  # no API Gateway here: the requests come from the local caller
)
# Any text JSON can carry, lone surrogates ("\ud800") included: valid JSON, not encodable as UTF-8.
TEXT = st.text(st.characters(exclude_categories=()))

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# Bodies close to valid ones, so that the checks deep inside the payload models are reached too.
PAYLOADS = st.fixed_dictionaries(
    {},
    optional={
        "command": st.lists(st.text(max_size=8), max_size=3) | JSON,
        "files": st.dictionaries(st.text(max_size=12), st.text(max_size=12), max_size=3) | JSON,
        "language": st.sampled_from(["python", ""]) | JSON,
        "stdin": JSON,
        "env": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2) | JSON,
        "timeout_seconds": st.floats(allow_nan=False, allow_infinity=False) | JSON,
        "shell": JSON,
    },
)
NEAR_VALID = st.fixed_dictionaries(
    {},
    optional={
        "id": st.from_regex(r"[A-Za-z0-9._:-]{1,128}", fullmatch=True) | st.text(max_size=140) | JSON,
        "task_type": st.sampled_from(["execute", "compile", "analyze", "deploy", "", "EXECUTE"]) | JSON,
        "payload": PAYLOADS | JSON,
        "payload_uri": st.sampled_from([f"s3://{BUCKET}/uploads/none", "s3://other/uploads/x", ""]) | JSON,
        "extra": JSON,
    },
)
BODIES = NEAR_VALID | JSON


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
    if status == 202:
        assert (created, published) == (1, 1)
    else:
        assert status in (400, 409, 413, 422)
        assert (created, published) == (0, 0)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=BODIES)
def test_api_post_tasks_any_json_body_never_5xx_and_refused_leaves_nothing(in_memory, body: Any):
    # Given an empty store and bus
    in_memory.fresh()
    # When any JSON body is posted
    # Sent as ASCII JSON (surrogates escaped), as a client's json.dumps would.
    content = json.dumps(body)
    response = in_memory.client.post("/tasks", content=content, headers={"content-type": "application/json"})
    # Then it is accepted with one record and one event, or refused (4xx, problem details) with neither
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


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=NEAR_VALID)
def test_api_post_tasks_on_the_stack_never_5xx_and_refused_body_records_nothing(api, body: dict[str, Any]):
    # Given a body with a fresh id, so that its task can be looked for afterwards (never an execute
    # task: the stack's workers would run whatever command an accepted body names)
    if body.get("task_type") == "execute":
        body = body | {"task_type": "analyze"}
    task_id = f"prop-{uuid.uuid4().hex}"
    # When it is posted to the local stack's API
    response = api.post("/tasks", json=body | {"id": task_id})
    # Then it is never a 5xx, and a refused body left no task (so nothing was put on the bus)
    assert response.status_code < 500, response.text
    if response.status_code != 202:
        assert api.get(f"/tasks/{task_id}").status_code == 404
