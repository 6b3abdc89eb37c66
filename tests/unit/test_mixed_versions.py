"""Old and new side by side (a rolling or blue/green deploy): a message and a record written by the
code before format versions, and a lease taken by an old worker, go through the new worker and the
task ends once; what the new code writes is read by a model that knows only the old fields."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from mistersmith.lifecycle import Lifecycle
from mistersmith.models import FORMAT_VERSION, StoredTask, TaskMessage, TaskStatus
from mistersmith.processing import Disposition, TaskProcessor
from mistersmith.work import WorkLimits
from tests.fakes import MemoryBlobStore, MemoryTaskStore, NullPublisher

pytestmark = pytest.mark.unit

# Exactly what the router wrote before versions (canonical JSON, no format_version).
OLD_MESSAGE = '{"id":"old-1","payload":{"files":{"a.py":"x = 1\\n"}},"task_type":"analyze"}'
# The record an old worker left when it died: a lease with no token, long expired.
OLD_RECORD = {
    "id": "old-1",
    "task_type": "analyze",
    "status": "RUNNING",
    "created_at": "2026-01-01T00:00:00.000Z",
    "updated_at": "2026-01-01T00:00:01.000Z",
    "attempts": 1,
    "payload": {"files": {"a.py": "x = 1\n"}},
    "worker_id": "old-worker",
    "lease_expires_at": 1000.0,
}


def new_worker(store: MemoryTaskStore) -> TaskProcessor:
    return TaskProcessor(
        Lifecycle(store, NullPublisher()),
        MemoryBlobStore(),
        worker_id="new",
        lease_seconds=30,
        limits=WorkLimits(),
    )


def test_an_old_message_and_an_old_worker_s_lapsed_lease_end_once_on_the_new_worker():
    store = MemoryTaskStore()
    store.tasks["old-1"] = StoredTask.model_validate(OLD_RECORD)
    message = TaskMessage.model_validate_json(OLD_MESSAGE)
    assert message.format_version == 1
    # When the new worker receives the old message twice (a redelivery)
    first = new_worker(store).process(message)
    second = new_worker(store).process(message)
    # Then the task ran once and ended, and the duplicate was dropped as terminal
    assert (first.disposition, second.disposition) == (Disposition.DELETE, Disposition.DELETE)
    task = store.get("old-1")
    assert (task.status, task.attempts) == (TaskStatus.SUCCEEDED, 2)


class OldTaskMessage(BaseModel):
    """The message model before format versions (pydantic ignores unknown fields)."""

    id: str
    task_type: str
    payload: dict | None = None


def test_what_the_new_code_writes_is_read_by_the_old_models():
    record = StoredTask.queued(TaskMessage.model_validate_json(OLD_MESSAGE), "2026-01-01T00:00:00.000Z")
    body = json.dumps(record.message().model_dump(mode="json", exclude_none=True))
    assert json.loads(body)["format_version"] == FORMAT_VERSION
    assert OldTaskMessage.model_validate_json(body).id == "old-1"
