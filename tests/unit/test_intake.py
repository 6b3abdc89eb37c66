"""Intake on in-memory adapters: accept a task once (the record is all: its stream insert routes it),
keep big payloads aside; uploads, cancel, reads and page tokens."""

from __future__ import annotations

import hashlib
import json

import pytest

from mistersmith.callers import Caller
from mistersmith.errors import (
    InvalidRequest,
    PayloadTooLarge,
    TaskConflict,
    TaskNotFound,
    UploadRejected,
)
from mistersmith.intake import Intake
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import CompileRequest, TaskStatus, UploadedTaskRequest, task_key
from mistersmith.settings import IntakeSettings
from tests.fakes import BrokenBus, MemoryBlobStore, MemoryTaskStore, NullPublisher

pytestmark = pytest.mark.unit

BUCKET = "bucket"
SETTINGS = IntakeSettings(
    task_table_name="-",
    event_bus_name="-",
    artifacts_bucket_name=BUCKET,
    inline_payload_limit_bytes=1024,
    max_payload_bytes=4096,
)
CALLER = Caller("arn:aws:iam::123456789012:role/ci-runner")


def key(task_id: str) -> str:
    """Where the store keeps CALLER's task `task_id`."""
    return task_key(CALLER.principal, task_id)


@pytest.fixture
def store() -> MemoryTaskStore:
    return MemoryTaskStore()


@pytest.fixture
def bus() -> NullPublisher:
    return NullPublisher()


@pytest.fixture
def blobs() -> MemoryBlobStore:
    return MemoryBlobStore(BUCKET)


@pytest.fixture
def intake(store: MemoryTaskStore, bus: NullPublisher, blobs: MemoryBlobStore) -> Intake:
    return Intake(Lifecycle(store, bus), blobs, SETTINGS)


def compile_request(task_id: str, text: str = "x = 1\n") -> CompileRequest:
    return CompileRequest(id=task_id, task_type="compile", payload={"files": {"a.py": text}})


def test_a_new_task_is_recorded_queued_and_nothing_is_published(intake, store, bus):
    record, created = intake.submit(compile_request("t-1"), CALLER)
    assert created
    assert (record.id, record.status) == ("t-1", TaskStatus.QUEUED)
    assert store.get(key("t-1")).payload == {"files": {"a.py": "x = 1\n"}, "language": "python"}
    # The record's insert on the table's stream hands it on: no second request that could fail
    assert bus.published == 0


def test_the_same_id_and_body_again_returns_the_task_and_publishes_nothing(intake, bus):
    first, _ = intake.submit(compile_request("t-1"), CALLER)
    again, created = intake.submit(compile_request("t-1"), CALLER)
    assert not created
    assert again == first
    assert bus.published == 0


def test_a_new_task_carries_the_region_that_wrote_it(store, bus, blobs):
    # Given intake in us-west-2 (a global table's every replica streams every insert)
    intake = Intake(Lifecycle(store, bus), blobs, SETTINGS.model_copy(update={"aws_region": "us-west-2"}))
    # When a task is submitted / Then its record names the region whose router routes it
    intake.submit(compile_request("t-1"), CALLER)
    assert store.get(key("t-1")).region == "us-west-2"


def test_the_same_id_with_another_body_is_a_conflict(intake, store):
    intake.submit(compile_request("t-1"), CALLER)
    with pytest.raises(TaskConflict, match="different body"):
        intake.submit(compile_request("t-1", "y = 2\n"), CALLER)
    assert store.get(key("t-1")).payload["files"] == {"a.py": "x = 1\n"}


def test_a_payload_over_the_inline_limit_is_kept_aside_under_its_digest(intake, store, blobs):
    intake.submit(compile_request("t-big", "#" * 2000), CALLER)
    task = store.get(key("t-big"))
    assert task.payload is None
    body = blobs.get(BUCKET, task.payload_ref.key)
    assert hashlib.sha256(body).hexdigest() == task.payload_ref.sha256
    assert json.loads(body)["files"] == {"a.py": "#" * 2000}


def test_a_payload_over_the_maximum_is_refused_and_nothing_is_recorded(intake, store, bus):
    with pytest.raises(PayloadTooLarge, match="the limit is 4096"):
        intake.submit(compile_request("t-huge", "#" * 5000), CALLER)
    assert store.tasks == {}
    assert bus.published == 0


def test_a_bus_that_is_down_does_not_stop_a_submission(store, blobs):
    # Given a bus that refuses every event / When a task is submitted / Then it is accepted and kept
    intake = Intake(Lifecycle(store, BrokenBus()), blobs, SETTINGS)
    record, created = intake.submit(compile_request("t-1"), CALLER)
    assert (record.status, created) == (TaskStatus.QUEUED, True)
    assert store.get(key("t-1")).status is TaskStatus.QUEUED


def test_an_uploaded_payload_is_read_checked_and_then_accepted_as_if_inline(intake, store, blobs):
    ticket = intake.new_upload()
    upload_key = ticket.source_uri.removeprefix(f"s3://{BUCKET}/")
    blobs.put(
        upload_key, json.dumps({"files": {"a.py": "x = 1\n"}}).encode(), content_type="application/json"
    )
    record, created = intake.submit(
        UploadedTaskRequest(id="t-up", task_type="compile", payload_uri=ticket.source_uri), CALLER
    )
    assert created and record.status is TaskStatus.QUEUED
    assert store.get(key("t-up")).payload["files"] == {"a.py": "x = 1\n"}


@pytest.mark.parametrize(
    ("content", "error_type"),
    [(None, "upload_missing"), (b"not json", "upload_not_json"), (b'{"files": {}}', "too_short")],
)
def test_an_upload_that_is_missing_or_not_a_payload_is_refused_at_payload_uri(
    intake, store, blobs, content, error_type
):
    if content is not None:
        blobs.put("uploads/u1", content, content_type="application/json")
    request = UploadedTaskRequest(id="t-up", task_type="compile", payload_uri=f"s3://{BUCKET}/uploads/u1")
    with pytest.raises(UploadRejected) as refused:
        intake.submit(request, CALLER)
    assert refused.value.errors[0]["loc"][:2] == ["body", "payload_uri"]
    assert refused.value.errors[0]["type"] == error_type
    assert store.tasks == {}


def test_cancel_ends_a_queued_task_at_once_and_asks_a_running_one_to_stop(intake, store):
    intake.submit(compile_request("queued"), CALLER)
    intake.submit(compile_request("running"), CALLER)
    store.claim(key("running"), worker_id="w", token=key("running"), expires_at=60, now=0)
    assert intake.cancel("queued", CALLER).status is TaskStatus.CANCELLED
    running = intake.cancel("running", CALLER)
    assert (running.status, running.cancel_requested) == (TaskStatus.RUNNING, True)


def test_cancel_of_an_ended_task_is_a_conflict_and_of_an_unknown_one_not_found(intake):
    intake.submit(compile_request("t-1"), CALLER)
    intake.cancel("t-1", CALLER)
    with pytest.raises(TaskConflict, match="already CANCELLED"):
        intake.cancel("t-1", CALLER)
    with pytest.raises(TaskNotFound):
        intake.cancel("nobody", CALLER)
    with pytest.raises(TaskNotFound):
        intake.get("nobody", CALLER)


@pytest.mark.parametrize("token", ["not-base64!", "WzksIG51bGxd", "WyJ4IiwgbnVsbF0="])
def test_a_page_token_this_api_did_not_issue_is_an_invalid_request(intake, token):
    # (garbage, a position past the statuses, a position that is not a number)
    with pytest.raises(InvalidRequest, match="next_token"):
        intake.list(CALLER, status=None, task_type=None, limit=10, next_token=token)
