"""The Fargate worker's loop on in-memory adapters: it runs what it receives and deletes it after
the record is written, leaves an unreadable message for the DLQ, backs off a retry and hands a
released task back as a fresh copy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from fargate_worker.deletes import DeferredDeletes
from fargate_worker.worker import Slots, Worker, seal_in_ecs
from mistersmith.clock import now_iso
from mistersmith.event_batching import BatchingPublisher
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask, TaskMessage, TaskStatus, canonical_json
from mistersmith.ports import QueueMessage, TaskProtection
from mistersmith.processing import Disposition, Outcome, StopSignal, TaskProcessor
from mistersmith.settings import WorkerSettings
from mistersmith.work import WorkLimits
from tests.fakes import (
    BatchBus,
    MemoryBlobStore,
    MemoryQueue,
    MemoryTaskStore,
    NullPublisher,
    worker_settings,
)

pytestmark = pytest.mark.unit

SETTINGS = worker_settings(concurrency=2, max_retry_delay_seconds=300)


class RecordingQueue(MemoryQueue):
    """Remembers every visibility change."""

    def __init__(self) -> None:
        super().__init__(visibility_seconds=300)
        self.visibility_changes: list[int] = []

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        self.visibility_changes.append(seconds)
        super().change_visibility(receipt_handle, seconds)


class Answering(TaskProcessor):
    """Answers one disposition for every task (the work itself is TaskProcessor's, tested apart)."""

    def __init__(self, disposition: Disposition, max_retry_delay_seconds: float = 300) -> None:
        self.disposition = disposition
        self.max_retry_delay_seconds = max_retry_delay_seconds
        self.seen: list[str] = []
        self.lifecycle = Lifecycle(MemoryTaskStore(), NullPublisher())

    def healthy(self) -> bool:
        return True

    def process(
        self, message: TaskMessage, *, stop: StopSignal | None = None, attempt: int = 1, **_: object
    ) -> Outcome:
        self.seen.append(message.id)
        # The retry delay travels with the disposition, as TaskProcessor computes it.
        delay = self.retry_delay(attempt) if self.disposition is Disposition.RETRY else 0.0
        return Outcome(self.disposition, delay)


def message(n: int) -> TaskMessage:
    return TaskMessage(id=f"t-{n}", task_type="analyze", payload={"files": {"a.py": "x = 1\n"}})


def send(queue: MemoryQueue, task: TaskMessage) -> None:
    queue.send(canonical_json(task.model_dump(mode="json", exclude_none=True)))


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the worker never got there"
        time.sleep(0.01)


@pytest.fixture
def running() -> Iterator[Callable[[Worker], None]]:
    """Starts a worker's run loop; stops it and waits for it at the end of the test."""
    started: list[tuple[Worker, threading.Thread]] = []

    def start(worker: Worker) -> None:
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))

    yield start
    for worker, thread in started:
        worker.request_stop()
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_the_worker_runs_what_it_receives_and_deletes_each_message_once_recorded(running):
    store, queue = MemoryTaskStore(), MemoryQueue(visibility_seconds=300)
    for n in range(5):
        store.create(StoredTask.queued(message(n), now_iso()))
        send(queue, message(n))
    processor = TaskProcessor(
        Lifecycle(store, NullPublisher()),
        MemoryBlobStore(),
        worker_id="w",
        lease_seconds=60,
        limits=WorkLimits(),
    )
    running(Worker(queue, processor, SETTINGS))
    wait_until(lambda: queue.depth().visible == queue.depth().in_flight == 0)
    assert {task.status for task in store.tasks.values()} == {TaskStatus.SUCCEEDED}


def test_status_events_held_back_for_a_shared_request_are_out_when_the_worker_stops():
    # Given a worker whose status events wait (a long time) for others to share their request
    store, queue, bus = MemoryTaskStore(), MemoryQueue(visibility_seconds=300), BatchBus()
    store.create(StoredTask.queued(message(1), now_iso()))
    send(queue, message(1))
    events = BatchingPublisher(bus, window_seconds=3600)
    processor = TaskProcessor(
        Lifecycle(store, events), MemoryBlobStore(), worker_id="w", lease_seconds=60, limits=WorkLimits()
    )
    worker = Worker(queue, processor, SETTINGS)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    wait_until(lambda: store.get("t-1").status is TaskStatus.SUCCEEDED)
    # When it is told to stop / Then both of the task's events went out before it returned
    worker.request_stop()
    thread.join(timeout=30)
    assert [e.detail["status"] for e in bus.taken] == ["RUNNING", "SUCCEEDED"]


def test_an_unreadable_message_is_left_for_the_dead_letter_queue(running):
    queue, processor = RecordingQueue(), Answering(Disposition.DELETE)
    queue.send("{not a task")
    running(Worker(queue, processor, SETTINGS))
    wait_until(lambda: queue.depth().in_flight == 1)
    assert processor.seen == []
    assert queue.visibility_changes == []


def test_a_retry_comes_back_after_a_back_off_that_doubles_with_each_receive_up_to_the_cap():
    queue, processor = RecordingQueue(), Answering(Disposition.RETRY, max_retry_delay_seconds=30)
    send(queue, message(1))
    worker = Worker(queue, processor, SETTINGS)
    for _ in range(3):
        (received,) = queue.receive(max_messages=1, wait_seconds=0)
        worker._process(received)
        queue.change_visibility(received.receipt_handle, 0)  # as if the back-off had passed
    assert queue.visibility_changes == [10, 0, 20, 0, 30, 0]


def test_a_released_task_goes_back_as_a_fresh_copy_without_using_up_a_receive():
    queue, processor = RecordingQueue(), Answering(Disposition.RELEASE)
    send(queue, message(1))
    worker = Worker(queue, processor, SETTINGS)
    (received,) = queue.receive(max_messages=1, wait_seconds=0)
    worker._process(received)
    (copy,) = queue.receive(max_messages=1, wait_seconds=0)
    assert (copy.body, copy.receive_count) == (received.body, 1)
    assert copy.message_id != received.message_id


def test_the_worker_seals_the_shared_temporary_directories_only_inside_an_ecs_task(tmp_path):
    # Given world-writable stand-ins for /tmp and /var/tmp (this host's own are never touched)
    shared = [tmp_path / "tmp", tmp_path / "var-tmp"]
    for path in shared:
        path.mkdir()
        path.chmod(0o1777)
    directories = [str(path) for path in shared]
    # When the worker starts outside ECS (no ECS_AGENT_URI), then it leaves them as they are
    assert seal_in_ecs(None, directories) == []
    assert [path.stat().st_mode & 0o7777 for path in shared] == [0o1777, 0o1777]
    # When it starts in an ECS task, then children may only pass through them
    assert seal_in_ecs("http://169.254.170.2/api/task", directories) == directories
    assert [path.stat().st_mode & 0o7777 for path in shared] == [0o711, 0o711]


class CountingQueue(MemoryQueue):
    """Remembers each delete call's handles."""

    def __init__(self) -> None:
        super().__init__(visibility_seconds=300)
        self.delete_calls: list[list[str]] = []

    def delete_batch(self, receipt_handles: list[str]) -> list[str]:
        self.delete_calls.append(list(receipt_handles))
        return super().delete_batch(receipt_handles)


class RecordingProtection(TaskProtection):
    def __init__(self) -> None:
        self.calls: list[bool] = []

    def set(self, protected: bool, *, minutes: int) -> None:
        self.calls.append(protected)


def one_at_a_time() -> WorkerSettings:
    return SETTINGS.model_copy(update={"concurrency": 1})


def test_tasks_run_back_to_back_share_one_delete_call_and_one_protection(running):
    # Given five tasks queued for a worker that runs one at a time, in an ECS task
    queue, protection = CountingQueue(), RecordingProtection()
    for n in range(5):
        send(queue, message(n))
    worker = Worker(queue, Answering(Disposition.DELETE), one_at_a_time(), protection)
    worker.deletes = DeferredDeletes(queue, max_wait_seconds=60)
    # When it runs them back to back and then finds the queue empty
    running(worker)
    wait_until(lambda: queue.depth().visible == queue.depth().in_flight == 0)
    # Then one call deletes all five, and scale-in protection was asked for once and dropped once
    assert [len(call) for call in queue.delete_calls] == [5]
    wait_until(lambda: protection.calls == [True, False])


class Blocking(Answering):
    """Holds the task named `held` until released."""

    def __init__(self, held: str) -> None:
        super().__init__(Disposition.DELETE)
        self.held, self.release = held, threading.Event()

    def process(self, message: TaskMessage, **options: object) -> Outcome:
        if message.id == self.held:
            self.release.wait(30)
        return super().process(message, **options)  # type: ignore[arg-type]


def test_a_finished_task_is_deleted_within_the_wait_while_the_next_one_still_runs(running):
    # Given a worker running one at a time, whose second task runs on and on
    queue, processor = CountingQueue(), Blocking("t-1")
    for n in range(2):
        send(queue, message(n))
    worker = Worker(queue, processor, one_at_a_time())
    worker.deletes = DeferredDeletes(queue, max_wait_seconds=0.2)
    running(worker)
    # When the first has finished / Then its delete does not wait for the second one to end
    wait_until(lambda: queue.delete_calls != [])
    assert processor.seen == ["t-0"] and queue.depth().in_flight == 1
    processor.release.set()


class LongPollQueue(CountingQueue):
    """Records the wait each receive asks for; an empty receive waits a little, as a long poll
    that nothing answers would (bounded, so that a stopping worker is not held up)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[int] = []

    def receive(self, *, max_messages: int, wait_seconds: int) -> list[QueueMessage]:
        self.waits.append(wait_seconds)
        received = super().receive(max_messages=max_messages, wait_seconds=wait_seconds)
        if not received:
            time.sleep(0.05)
        return received


def test_a_delete_waiting_for_others_never_cuts_the_long_poll_short(running):
    # Given an idle worker with a 20 s long poll, whose deletes wait a quarter second to share a call
    queue = LongPollQueue()
    worker = Worker(
        queue, Answering(Disposition.DELETE), one_at_a_time().model_copy(update={"receive_wait_seconds": 20})
    )
    worker.deletes = DeferredDeletes(queue, max_wait_seconds=0.25)
    running(worker)
    # When one task arrives alone and finishes
    send(queue, message(0))
    wait_until(lambda: queue.delete_calls != [])
    time.sleep(0.3)
    # Then its delete was made within its wait, and no receive asked for less than the full wait:
    # a shorter one returns empty when nothing comes, a request that a lone task would pay for
    assert queue.delete_calls == [["0:1"]]
    assert set(queue.waits) == {20}


@pytest.mark.parametrize("vcpus", [1, 2, 16])
def test_concurrency_defaults_to_four_tasks_at_once_whatever_the_vcpu_count(monkeypatch, vcpus):
    # Given a worker host of any size and no CONCURRENCY set
    monkeypatch.setattr("os.cpu_count", lambda: vcpus)
    monkeypatch.delenv("CONCURRENCY", raising=False)
    settings = WorkerSettings(
        task_table_name="-", event_bus_name="-", artifacts_bucket_name="-", work_queue_url="-"
    )
    # Then it runs four at once: its tasks mostly wait on a child or an AWS call, not on a vCPU
    assert settings.concurrency == 4
    # and the setting still decides
    monkeypatch.setenv("CONCURRENCY", "7")
    assert WorkerSettings(**settings.model_dump(exclude={"concurrency"})).concurrency == 7


def test_slots_hand_out_no_more_than_their_count_and_a_released_one_is_taken_again():
    slots = Slots(2)
    assert slots.acquire(0) and slots.acquire(0.01)
    # None left: at once without waiting, and after waiting out the timeout
    assert not slots.acquire(0)
    assert not slots.acquire(0.01)
    # A slot released from another thread wakes the one waiting for it
    threading.Timer(0.01, slots.release).start()
    assert slots.acquire(5)
    assert not slots.acquire(0)
