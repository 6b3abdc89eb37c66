"""Leases and redeliveries (in memory): a message that comes back because its holder died is run,
while one whose holder is alive is not run twice."""

from __future__ import annotations

import pytest

from mistersmith.clock import now_iso
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask, TaskMessage, TaskStatus
from mistersmith.processing import Disposition, TaskProcessor
from mistersmith.work import WorkLimits
from tests.fakes import MemoryBlobStore, MemoryTaskStore, NullPublisher

pytestmark = pytest.mark.unit

VISIBILITY = 10.0
MESSAGE = TaskMessage(id="t-1", task_type="analyze", payload={"files": {"a.py": "x = 1\n"}})


def processor(store: MemoryTaskStore, worker_id: str, now: float) -> TaskProcessor:
    return TaskProcessor(
        Lifecycle(store, NullPublisher()),
        MemoryBlobStore(),
        worker_id=worker_id,
        lease_seconds=VISIBILITY,
        limits=WorkLimits(),
        clock=lambda: now,
    )


@pytest.fixture
def store() -> MemoryTaskStore:
    store = MemoryTaskStore()
    store.create(StoredTask.queued(MESSAGE, now_iso()))
    # A holder claimed the task at t=100 (its receive was a moment earlier) and then died.
    assert processor(store, "dead", 100.0)._claim(MESSAGE) is not None
    return store


def test_a_redelivery_when_the_visibility_lapses_finds_the_dead_holder_s_lease_expired(store):
    # Given the message back in the queue the moment its visibility lapsed (receive at t=99.9)
    # When another worker receives it / Then it takes the task over and runs it
    assert processor(store, "next", 99.9 + VISIBILITY).process(MESSAGE) is Disposition.DELETE
    task = store.get("t-1")
    assert (task.status, task.attempts) == (TaskStatus.SUCCEEDED, 2)


def test_a_duplicate_while_the_holder_s_lease_runs_is_not_run_again(store):
    # Given a duplicate delivery well inside the live holder's lease
    # When another worker receives it / Then it is dropped and the holder keeps the task
    assert processor(store, "other", 103.0).process(MESSAGE) is Disposition.DELETE
    task = store.get("t-1")
    assert (task.status, task.worker_id, task.attempts) == (TaskStatus.RUNNING, "dead", 1)
