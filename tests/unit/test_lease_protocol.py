"""The lease protocol in memory, on a clock the test moves: the lease/visibility invariant, claims
idempotent for their own holder, renewals refused once expired, and deletes that survive failures."""

from __future__ import annotations

import threading

import pytest

from fargate_worker.deletes import DeferredDeletes
from mistersmith.clock import now_iso
from mistersmith.errors import LeaseHeld, TransitionRejected
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask, TaskMessage, TaskStatus
from mistersmith.processing import Heartbeat, Lease, StopReason, StopSignal, TaskProcessor, lease_margin
from mistersmith.work import WorkLimits
from tests.fakes import MemoryBlobStore, MemoryQueue, MemoryTaskStore, NullPublisher

pytestmark = pytest.mark.unit

VISIBILITY = 30.0
MESSAGE = TaskMessage(id="t-1", task_type="analyze", payload={"files": {"a.py": "x = 1\n"}})


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> MemoryTaskStore:
    store = MemoryTaskStore()
    store.create(StoredTask.queued(MESSAGE, now_iso()))
    return store


def lease(store: MemoryTaskStore, clock: Clock, holder: str = "w1") -> Lease:
    return Lease(
        Lifecycle(store, NullPublisher()), "t-1", holder=holder, visibility_seconds=VISIBILITY, clock=clock
    )


def processor(store: MemoryTaskStore, clock: Clock) -> TaskProcessor:
    return TaskProcessor(
        Lifecycle(store, NullPublisher()),
        MemoryBlobStore(),
        worker_id="w1",
        lease_seconds=VISIBILITY,
        limits=WorkLimits(),
        clock=clock,
    )


def test_a_lease_never_outlives_its_message_even_when_an_extension_fails(store):
    # Given a task received at t=1000 (its message is invisible until 1030) and claimed later
    clock = Clock()
    message_visible_at = clock.now + VISIBILITY
    held = lease(store, clock)
    clock.now += 1.5
    held.claim(received_at=1000.0)
    assert store.get("t-1").lease_expires_at + lease_margin(VISIBILITY) <= message_visible_at
    # When heartbeats run, and every other extension of the message's visibility fails
    processing = processor(store, clock)
    stop = StopSignal()
    failing = iter([False, True] * 5)

    def extend(seconds: int) -> None:
        nonlocal message_visible_at
        if next(failing):
            raise ConnectionError("SQS unreachable")
        message_visible_at = clock.now + seconds

    beat = processing._beat_for(held, stop, extend)
    for _ in range(10):
        clock.now += 9
        beat()
        # Then after every beat the lease ends at least the margin before the message is back
        assert store.get("t-1").lease_expires_at + lease_margin(VISIBILITY) <= message_visible_at
    assert stop.reason is None


def test_a_claim_resent_after_its_answer_was_lost_is_the_same_claim(store):
    clock = Clock()
    held = lease(store, clock)
    # Given a claim that was applied, its answer lost
    first = held.claim(received_at=clock.now)
    # When the holder sends it again / Then it holds the task, counted once
    again = held.claim(received_at=clock.now)
    assert (again.worker_id, again.lease_token, again.attempts) == ("w1", first.lease_token, 1)
    # while another claim by the same worker (a duplicate message) is told to wait for the lease
    with pytest.raises(LeaseHeld) as held_by:
        lease(store, clock).claim(received_at=clock.now)
    assert held_by.value.expires_at == first.lease_expires_at


def test_a_holder_waking_after_its_lease_expired_cannot_renew_it(store):
    # Given a holder paused (SIGSTOP, a long GC) past the end of its lease
    clock = Clock()
    held = lease(store, clock)
    held.claim(received_at=clock.now)
    clock.now += VISIBILITY
    # When it wakes and renews, before another worker has claimed the redelivered message
    with pytest.raises(TransitionRejected):
        held.renew(visible_from=clock.now)
    # Then the other worker's claim is not refused because of it
    assert lease(store, clock, holder="w2").claim(received_at=clock.now).worker_id == "w2"


def test_a_heartbeat_renews_after_the_extension_and_stops_the_task_when_the_lease_is_gone(store):
    clock = Clock()
    held = lease(store, clock)
    held.claim(received_at=clock.now)
    calls: list[str] = []
    stop = StopSignal()
    beat = processor(store, clock)._beat_for(held, stop, lambda seconds: calls.append("extend"))
    clock.now += 9
    assert beat() is True
    assert calls == ["extend"]
    # Given another worker took the task over after the lease ran out
    clock.now += VISIBILITY
    lease(store, clock, holder="w2").claim(received_at=clock.now)
    # When the old holder's heartbeat beats / Then its task is told it lost the lease
    assert beat() is False
    assert stop.reason is StopReason.LEASE_LOST


def test_the_cancel_watch_stops_a_running_task_whatever_the_lease(store):
    clock = Clock()
    processing = processor(store, clock)
    held = lease(store, clock)
    held.claim(received_at=clock.now)
    stop = StopSignal()
    processing._running["t-1"] = (held, stop)
    assert processing._watch_flags() and stop.reason is None
    # When the task's cancel is requested / Then the next watch stops it as cancelled
    store.transition(
        "t-1", TaskStatus.RUNNING, allowed_from={TaskStatus.RUNNING}, changes={"cancel_requested": True}
    )
    processing._watch_flags()
    assert stop.reason is StopReason.CANCELLED


def test_a_heartbeat_that_raises_keeps_beating_and_its_thread_stays_healthy():
    beats = threading.Semaphore(0)

    def failing() -> bool:
        beats.release()
        raise ConnectionError("table unreachable")

    heartbeat = Heartbeat(0.01, "test")
    key = heartbeat.add(failing)
    for _ in range(3):
        assert beats.acquire(timeout=10)
    heartbeat.remove(key)
    assert heartbeat.healthy(stalled_after=30)


class CountingDeletes(MemoryQueue):
    """Says when each delete call has been made, and with how many handles."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []
        self.called = threading.Semaphore(0)

    def delete_batch(self, receipt_handles: list[str]) -> list[str]:
        failed = super().delete_batch(receipt_handles)
        self.calls.append(len(receipt_handles))
        self.called.release()
        return failed


class FlakyQueue(CountingDeletes):
    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    def delete_batch(self, receipt_handles: list[str]) -> list[str]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("SQS unreachable")
        return super().delete_batch(receipt_handles)


def test_a_failed_delete_batch_is_kept_and_retried_and_never_raises():
    queue = FlakyQueue()
    for n in range(3):
        queue.send(f"m{n}")
    deletes = DeferredDeletes(queue)
    for message in queue.receive(max_messages=10, wait_seconds=0):
        deletes.add(message.receipt_handle)
    # When the first delete call fails / Then nothing is raised and the handles are kept
    deletes.flush()
    assert len(deletes) == 3
    # and the next flush, after its back-off, deletes them
    deletes.flush(wait=True)
    assert len(deletes) == 0
    assert queue.depth().in_flight == 0


def received(queue: MemoryQueue, count: int) -> list[str]:
    for n in range(count):
        queue.send(f"m{n}")
    return [message.receipt_handle for message in queue.receive(max_messages=count, wait_seconds=0)]


def test_a_handle_left_alone_is_deleted_once_it_has_waited_with_no_flush_asked_for():
    # Given deletes that wait a tenth of a second for others to share a call
    queue = CountingDeletes()
    deletes = DeferredDeletes(queue, max_wait_seconds=0.1)
    # When one handle is added and nobody calls flush
    deletes.add(*received(queue, 1))
    # Then its own thread deletes it
    assert queue.called.acquire(timeout=30)
    assert queue.calls == [1] and queue.depth().in_flight == 0


def test_a_full_batch_is_deleted_at_once_without_waiting_out_the_others_wait():
    # Given deletes that would wait a minute for company
    queue = CountingDeletes()
    deletes = DeferredDeletes(queue, max_wait_seconds=60)
    # When ten handles arrive / Then they go in one call, long before the minute
    for handle in received(queue, 10):
        deletes.add(handle)
    assert queue.called.acquire(timeout=30)
    assert queue.calls == [10]


def test_a_delete_call_that_fails_on_the_thread_is_made_again_after_its_back_off():
    # Given a queue whose first delete call fails, and deletes that wait a tenth of a second
    queue = FlakyQueue()
    deletes = DeferredDeletes(queue, max_wait_seconds=0.1)
    # When a handle waits alone and nobody calls flush
    deletes.add(*received(queue, 1))
    # Then the thread tries again after the back-off and the message is gone
    assert queue.called.acquire(timeout=30)
    assert queue.failures == 0 and queue.depth().in_flight == 0 and len(deletes) == 0
