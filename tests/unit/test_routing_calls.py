"""What the router asks of the table and the queues per stream batch and per bus event, and that a
router dying between any two of the reconciler's calls leaves no task stranded (in memory)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from mistersmith.clock import iso_from_epoch
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask, TaskMessage, TaskStatus
from mistersmith.reconciling import Reconciler
from mistersmith.routing import RouteOutcome, Router
from tests.fakes import MemoryQueue, MemoryTaskStore, NullPublisher

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
TRACE = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"


class Died(BaseException):
    """The router's process ends here (a crash or a timeout): nothing after it runs."""


class Calls:
    """The router's calls to the table and the queue, in order; `die_at` (a call's number, from 1)
    ends the process just before that call."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.die_at: int | None = None

    def __call__(self, name: str) -> None:
        if self.die_at == len(self.names) + 1:
            raise Died(name)
        self.names.append(name)


class CountingStore(MemoryTaskStore):
    def __init__(self, calls: Calls) -> None:
        super().__init__()
        self.calls = calls

    def create(self, task: StoredTask) -> bool:
        self.calls("create")
        return super().create(task)

    def get(self, task_id: str) -> StoredTask | None:
        self.calls("get")
        return super().get(task_id)

    def transition(self, task_id: str, target: TaskStatus, **kwargs: Any) -> StoredTask:
        self.calls("transition")
        return super().transition(task_id, target, **kwargs)


class CountingQueue(MemoryQueue):
    def __init__(self, calls: Calls) -> None:
        super().__init__()
        self.calls = calls

    def send(self, body: str, *, trace_header: str | None = None, delay_seconds: int = 0) -> str:
        self.calls("send")
        return super().send(body, trace_header=trace_header, delay_seconds=delay_seconds)

    def send_batch(self, messages: Sequence[tuple[str, str | None]]) -> list[int]:
        self.calls("send_batch")
        for body, trace_header in messages:
            MemoryQueue.send(self, body, trace_header=trace_header)
        return []


def world() -> tuple[Calls, CountingStore, CountingQueue, Router]:
    calls = Calls()
    store, queue = CountingStore(calls), CountingQueue(calls)
    lifecycle = Lifecycle(store, NullPublisher())
    router = Router(lifecycle, queue, MemoryQueue(), analyze_lambda_limit_bytes=0, region="eu-west-1")
    return calls, store, queue, router


def submitted(store: MemoryTaskStore, task_id: str = "t", created: float = NOW) -> StoredTask:
    """A task as intake records it (its insert is what the stream delivers)."""
    message = TaskMessage(
        id=task_id, task_type="compile", payload={"files": {"a.py": "x = 1\n"}}, trace_header=TRACE
    )
    task = StoredTask.queued(message, iso_from_epoch(created))
    MemoryTaskStore.create(store, task)
    return task


def test_a_stream_batch_costs_one_batch_send_per_queue_and_no_table_request():
    # Given twelve tasks intake recorded, delivered by the stream in one batch
    calls, store, queue, router = world()
    tasks = [submitted(store, f"t{n}") for n in range(12)]
    # When they are routed
    not_sent = router.route_inserts(tasks)
    # Then all are on the queue, for one (batched) send and no read or write of the table
    assert (not_sent, calls.names, queue.depth().visible) == ([], ["send_batch"], 12)
    assert {store.get(task.id).routed_at for task in tasks} == {None}


def test_tasks_a_batch_send_refused_are_reported_for_the_stream_to_deliver_again():
    # Given a queue that refuses the second message of a batch
    _, store, queue, router = world()
    tasks = [submitted(store, f"t{n}") for n in range(3)]
    queue.send_batch = lambda messages: [1]  # type: ignore[method-assign]
    # When the batch is routed / Then that task's id is answered, to be reported as the failed item
    assert router.route_inserts(tasks) == ["t1"]


def test_a_queued_insert_that_cannot_run_is_rejected_visibly_and_the_rest_are_sent():
    # Given a QUEUED record of a type nobody handles (written by hand, or by an older intake)
    _, store, queue, router = world()
    odd = StoredTask.queued(TaskMessage(id="odd", task_type="paint", payload={}), iso_from_epoch(NOW))
    MemoryTaskStore.create(store, odd)
    # When it is routed with another task / Then it ends FAILED saying why, and the other is sent
    assert router.route_inserts([odd, submitted(store)]) == []
    assert (store.get("odd").status, store.get("odd").error.type) == (TaskStatus.FAILED, "UnknownTaskType")
    assert queue.depth().visible == 1


def test_an_orchestrator_event_is_recorded_in_this_region_and_nothing_is_sent():
    # Given an orchestrator's event (no trace header, no record)
    calls, store, queue, router = world()
    detail = {"id": "o", "task_type": "compile", "payload": {"files": {"a.py": ""}}}
    # When the bus delivers it
    _, outcome = router.accept(detail)
    # Then it is recorded QUEUED for this region's stream to route, with a trace of its own
    assert (outcome, calls.names, queue.depth().visible) == (RouteOutcome.QUEUED, ["create"], 0)
    record = store.get("o")
    assert (record.status, record.region) == (TaskStatus.QUEUED, "eu-west-1")
    assert record.trace_header is not None


def test_an_orchestrator_event_again_for_a_finished_task_is_skipped():
    # Given an orchestrator event whose task has ended
    calls, store, _, router = world()
    detail = {"id": "o", "task_type": "compile", "payload": {"files": {"a.py": ""}}}
    router.accept(detail)
    MemoryTaskStore.transition(store, "o", TaskStatus.CANCELLED, allowed_from={TaskStatus.QUEUED}, changes={})
    # When the same event comes again / Then it is skipped, and nothing is sent
    assert router.accept(detail)[1] is RouteOutcome.SKIPPED
    assert calls.names.count("send") + calls.names.count("send_batch") == 0


def test_a_bus_event_of_an_unknown_type_is_rejected_visibly():
    _, store, _, router = world()
    task_id, outcome = router.accept({"id": "u", "task_type": "paint", "payload": {}})
    assert (task_id, outcome, store.get("u").status) == ("u", RouteOutcome.REJECTED, TaskStatus.FAILED)


@pytest.mark.parametrize("dies_at", [1, 2])
def test_a_router_dying_between_the_reconcilers_send_and_note_leaves_the_task_to_the_next_run(dies_at):
    # Given a task the stream never routed, whose resend dies before its `dies_at`-th call (1: the
    # send, 2: the note)
    calls, store, queue, router = world()
    task = submitted(store, created=NOW - 3600)
    calls.die_at = dies_at
    with pytest.raises(Died):
        router.resend(task)
    calls.die_at = None
    # When the reconciler comes round
    reconciler = Reconciler(
        router.lifecycle,
        router,
        lease_grace_seconds=300,
        unrouted_after_seconds=300,
        max_recoveries=3,
        clock=lambda: NOW,
    )
    reconciler.run()
    # Then the task is on the queue (once more when the first send went out: the claim drops the copy)
    assert queue.depth().visible == dies_at
    assert store.get("t").routed_at is not None
