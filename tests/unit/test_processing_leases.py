"""Leases and redeliveries (in memory): a message that comes back because its holder died is run,
while one whose holder is alive is not run twice."""

from __future__ import annotations

import pytest

from mistersmith.clock import now_iso
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask, TaskMessage, TaskStatus
from mistersmith.processing import Disposition, TaskProcessor, lease_expiry
from mistersmith.work import WorkLimits
from tests.fakes import MemoryBlobStore, MemoryTaskStore, NullPublisher

pytestmark = pytest.mark.unit

VISIBILITY = 10.0
DEAD_TOKEN = "dead-holder-claim"  # noqa: S105 - a lease token, not a secret
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
    # A holder received the task at t=99.9, claimed it at t=100 and then died.
    store.claim(
        "t-1", worker_id="dead", token=DEAD_TOKEN, expires_at=lease_expiry(99.9, VISIBILITY), now=100.0
    )
    return store


def test_a_redelivery_when_the_visibility_lapses_finds_the_dead_holder_s_lease_expired(store):
    # Given the message back in the queue the moment its visibility lapsed (receive at t=99.9)
    # When another worker receives it / Then it takes the task over and runs it
    outcome = processor(store, "next", 99.9 + VISIBILITY).process(MESSAGE, received_at=99.9 + VISIBILITY)
    assert outcome.disposition is Disposition.DELETE
    task = store.get("t-1")
    assert (task.status, task.attempts) == (TaskStatus.SUCCEEDED, 2)


def test_a_duplicate_while_the_holder_s_lease_runs_is_deferred_until_the_lease_ends(store):
    # Given a duplicate delivery well inside the holder's lease (which ends at 99.9 + 10 - 2)
    # When another worker receives it
    outcome = processor(store, "other", 103.0).process(MESSAGE, received_at=103.0)
    # Then it is not run, and not dropped either: it comes back a margin after the lease ends
    assert outcome.disposition is Disposition.DEFER
    assert outcome.delay == pytest.approx(107.9 - 103.0 + 2.0)
    task = store.get("t-1")
    assert (task.status, task.worker_id, task.attempts) == (TaskStatus.RUNNING, "dead", 1)
