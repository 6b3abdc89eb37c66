"""TaskProcessor on in-memory adapters: a delivered task is claimed, run and recorded; a task that
will always fail ends FAILED at once; an infrastructure fault hands it back for a retry."""

from __future__ import annotations

import hashlib
import json

import pytest

from mistersmith.clock import now_iso
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import PayloadRef, StoredTask, TaskMessage, TaskStatus
from mistersmith.processing import Disposition, TaskProcessor
from mistersmith.work import WorkLimits
from tests.fakes import MemoryBlobStore, MemoryTaskStore, NullPublisher

pytestmark = pytest.mark.unit

BUCKET = "bucket"
PAYLOAD = {"files": {"a.py": "def f():\n    return 1\n"}}
MESSAGE = TaskMessage(id="t-1", task_type="analyze", payload=PAYLOAD)


class UnreachableBlobs(MemoryBlobStore):
    def get(self, bucket: str, key: str) -> bytes:
        raise ConnectionError("bucket unreachable")


def processor(store: MemoryTaskStore, blobs: MemoryBlobStore | None = None) -> TaskProcessor:
    return TaskProcessor(
        Lifecycle(store, NullPublisher()),
        blobs or MemoryBlobStore(BUCKET),
        worker_id="w",
        lease_seconds=60,
        limits=WorkLimits(),
    )


def queued(store: MemoryTaskStore, message: TaskMessage) -> MemoryTaskStore:
    store.create(StoredTask.queued(message, now_iso()))
    return store


def stored_aside(blobs: MemoryBlobStore, payload: dict, *, corrupt: bool = False) -> TaskMessage:
    body = json.dumps(payload).encode()
    blobs.put("payloads/t-1/p.json", body + (b" " if corrupt else b""), content_type="application/json")
    ref = PayloadRef(
        bucket=BUCKET, key="payloads/t-1/p.json", sha256=hashlib.sha256(body).hexdigest(), size=9
    )
    return TaskMessage(id="t-1", task_type="analyze", payload_ref=ref)


def test_a_queued_task_runs_to_succeeded_with_its_result_and_the_lease_cleared():
    store = queued(MemoryTaskStore(), MESSAGE)
    assert processor(store).process(MESSAGE).disposition is Disposition.DELETE
    task = store.get("t-1")
    assert (task.status, task.attempts, task.worker_id) == (TaskStatus.SUCCEEDED, 1, None)
    assert task.result["functions"] == 1
    assert task.duration_ms is not None and task.finished_at is not None


def test_a_message_without_a_record_is_recorded_and_run():
    store = MemoryTaskStore()
    assert processor(store).process(MESSAGE).disposition is Disposition.DELETE
    assert store.get("t-1").status is TaskStatus.SUCCEEDED


def test_a_task_that_already_ended_is_not_run_again():
    store = queued(MemoryTaskStore(), MESSAGE)
    store.transition("t-1", TaskStatus.CANCELLED, allowed_from={TaskStatus.QUEUED}, changes={})
    assert processor(store).process(MESSAGE).disposition is Disposition.DELETE
    task = store.get("t-1")
    assert (task.status, task.attempts, task.result) == (TaskStatus.CANCELLED, 0, None)


def test_a_payload_stored_aside_is_read_back_and_run():
    blobs = MemoryBlobStore(BUCKET)
    message = stored_aside(blobs, PAYLOAD)
    store = queued(MemoryTaskStore(), message)
    assert processor(store, blobs).process(message).disposition is Disposition.DELETE
    assert store.get("t-1").status is TaskStatus.SUCCEEDED


def test_a_payload_that_does_not_match_its_digest_fails_at_once_not_retried():
    blobs = MemoryBlobStore(BUCKET)
    message = stored_aside(blobs, PAYLOAD, corrupt=True)
    store = queued(MemoryTaskStore(), message)
    assert processor(store, blobs).process(message).disposition is Disposition.DELETE
    task = store.get("t-1")
    assert (task.status, task.error.type) == (TaskStatus.FAILED, "PayloadCorrupt")


def test_an_unreachable_bucket_hands_the_task_back_for_a_retry_with_the_error():
    blobs = UnreachableBlobs(BUCKET)
    message = stored_aside(MemoryBlobStore(BUCKET), PAYLOAD)
    store = queued(MemoryTaskStore(), message)
    assert processor(store, blobs).process(message).disposition is Disposition.RETRY
    task = store.get("t-1")
    assert (task.status, task.worker_id) == (TaskStatus.QUEUED, None)
    assert (task.error.type, task.error.message) == ("ConnectionError", "bucket unreachable")
