"""The reconciler in memory: what it puts back, what it leaves alone, and that it gives up in the end."""

from __future__ import annotations

import pytest

from mistersmith.clock import iso_from_epoch
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask, TaskMessage, TaskStatus
from mistersmith.reconciling import Reconciler
from mistersmith.routing import Router
from tests.fakes import MemoryQueue, MemoryTaskStore, NullPublisher

pytestmark = pytest.mark.unit

LEASE = 300
UNROUTED_AFTER = 300
NOW = 1_800_000_000.0


@pytest.fixture
def world():
    store, queue = MemoryTaskStore(), MemoryQueue()
    lifecycle = Lifecycle(store, NullPublisher())
    router = Router(lifecycle, queue, MemoryQueue(), analyze_lambda_limit_bytes=0)
    reconciler = Reconciler(
        lifecycle,
        router,
        lease_grace_seconds=LEASE,
        unrouted_after_seconds=UNROUTED_AFTER,
        max_recoveries=3,
        clock=lambda: NOW,
    )
    return store, queue, reconciler


def task(store: MemoryTaskStore, task_id: str, created: float, **fields) -> StoredTask:
    message = TaskMessage(id=task_id, task_type="compile", payload={"files": {"a.py": "x = 1\n"}})
    record = StoredTask.queued(message, iso_from_epoch(created)).model_copy(update=fields)
    store.create(record)
    return record


def test_a_running_task_whose_lease_lapsed_long_ago_is_queued_and_routed_again_once(world):
    store, queue, reconciler = world
    # Given a task whose worker died and whose message was deleted by hand
    task(
        store,
        "lost",
        NOW - 3600,
        status=TaskStatus.RUNNING,
        worker_id="dead",
        lease_expires_at=NOW - LEASE - 1,
    )
    # When the reconciler runs, twice
    first, second = reconciler.run(), reconciler.run()
    # Then it is back on the queue once, counted as a recovery
    assert (first.requeued, first.routed, second.requeued, second.routed) == (1, 1, 0, 0)
    record = store.get("lost")
    assert (record.status, record.recoveries, record.worker_id) == (TaskStatus.QUEUED, 1, None)
    assert record.routed_at is not None
    assert queue.depth().visible == 1


def test_a_lease_that_lapsed_recently_or_is_live_is_left_to_the_queue(world):
    store, queue, reconciler = world
    task(store, "recent", NOW - 3600, status=TaskStatus.RUNNING, worker_id="w", lease_expires_at=NOW - 10)
    task(store, "live", NOW - 3600, status=TaskStatus.RUNNING, worker_id="w", lease_expires_at=NOW + 100)
    report = reconciler.run()
    assert (report.requeued, queue.depth().visible) == (0, 0)
    assert {store.get(i).status for i in ("recent", "live")} == {TaskStatus.RUNNING}


def test_a_task_that_used_up_its_recoveries_ends_dead_lettered_saying_why(world):
    store, queue, reconciler = world
    task(
        store,
        "hangs",
        NOW - 3600,
        status=TaskStatus.RUNNING,
        worker_id="w9",
        lease_expires_at=0.0,
        recoveries=3,
    )
    report = reconciler.run()
    record = store.get("hangs")
    assert (report.dead_lettered, record.status, queue.depth().visible) == (1, TaskStatus.DEAD_LETTERED, 0)
    assert record.error.type == "WorkerLost"
    assert "w9" in record.error.message


def test_a_queued_task_never_routed_within_the_bound_is_routed(world):
    store, queue, reconciler = world
    task(store, "orphan", NOW - UNROUTED_AFTER - 1)
    task(store, "young", NOW - 5)
    task(store, "routed", NOW - 3600, routed_at=iso_from_epoch(NOW - 3500))
    report = reconciler.run()
    assert report.routed == 1
    assert store.get("orphan").routed_at is not None
    assert store.get("young").routed_at is None
    assert queue.depth().visible == 1


def test_the_router_records_that_it_resent_a_task():
    store, queue = MemoryTaskStore(), MemoryQueue()
    router = Router(Lifecycle(store, NullPublisher()), queue, MemoryQueue(), analyze_lambda_limit_bytes=0)
    router.resend(task(store, "t", NOW))
    assert store.get("t").routed_at is not None
