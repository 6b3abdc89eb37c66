"""What the router asks of the table and the queue per event, and that a router dying between any two
of its calls leaves no task stranded (in memory)."""

from __future__ import annotations

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


def world() -> tuple[Calls, CountingStore, CountingQueue, Router]:
    calls = Calls()
    store, queue = CountingStore(calls), CountingQueue(calls)
    lifecycle = Lifecycle(store, NullPublisher())
    return calls, store, queue, Router(lifecycle, queue, MemoryQueue(), analyze_lambda_limit_bytes=0)


def submitted(store: MemoryTaskStore, task_id: str = "t", created: float = NOW) -> dict[str, Any]:
    """A task as intake records it and the detail of the event it publishes."""
    message = TaskMessage(
        id=task_id, task_type="compile", payload={"files": {"a.py": "x = 1\n"}}, trace_header=TRACE
    )
    MemoryTaskStore.create(store, StoredTask.queued(message, iso_from_epoch(created)))
    return message.model_dump(mode="json", exclude_none=True)


def test_an_intake_event_costs_one_send_and_one_conditional_update():
    # Given a task intake recorded, and its event
    calls, store, _, router = world()
    detail = submitted(store)
    # When it is routed
    _, outcome = router.route(detail)
    # Then it is sent, then noted in one write: no failing create, no read
    assert outcome is RouteOutcome.QUEUED
    assert calls.names == ["send", "transition"]
    assert store.get("t").routed_at is not None


def test_an_event_whose_task_a_worker_claimed_before_the_note_is_still_routed():
    _, store, queue, router = world()
    detail = submitted(store)
    # Given a worker that claims the message as soon as it is sent
    send = queue.send

    def send_then_claim(body: str, **kwargs: Any) -> str:
        sent = send(body, **kwargs)
        MemoryTaskStore.claim(
            store,
            "t",
            worker_id="w",
            token="lease-k",  # noqa: S106 - a lease token, not a secret
            expires_at=NOW + 60,
            now=NOW,
        )
        return sent

    queue.send = send_then_claim  # type: ignore[method-assign]
    # When it is routed / Then it counts as routed, and the worker's lease is left alone
    assert router.route(detail)[1] is RouteOutcome.QUEUED
    assert (store.get("t").status, store.get("t").worker_id) == (TaskStatus.RUNNING, "w")


def test_an_event_with_a_trace_whose_record_is_missing_gets_one_after_the_send():
    # Given an event carrying a trace header whose task has no record (an orchestrator's, traced)
    calls, store, queue, router = world()
    detail = TaskMessage(id="o", task_type="compile", payload={"files": {"a.py": ""}}, trace_header=TRACE)
    # When it is routed
    _, outcome = router.route(detail.model_dump(mode="json", exclude_none=True))
    # Then it is on the queue and recorded QUEUED, noted as routed
    assert (outcome, calls.names.count("send"), queue.depth().visible) == (RouteOutcome.QUEUED, 1, 1)
    record = store.get("o")
    assert (record.status, record.trace_header, record.routed_at is not None) == (
        TaskStatus.QUEUED,
        TRACE,
        True,
    )


def test_an_orchestrator_event_for_a_finished_task_is_skipped_without_a_send():
    # Given an orchestrator event (no trace header) whose task was routed once and has ended
    calls, store, queue, router = world()
    detail = {"id": "o", "task_type": "compile", "payload": {"files": {"a.py": ""}}}
    router.route(detail)
    MemoryTaskStore.transition(store, "o", TaskStatus.CANCELLED, allowed_from={TaskStatus.QUEUED}, changes={})
    # When the same event comes again / Then it is skipped, and nothing more is sent
    assert router.route(detail)[1] is RouteOutcome.SKIPPED
    assert (calls.names.count("send"), queue.depth().visible) == (1, 1)


@pytest.mark.parametrize("dies_at", [1, 2])
def test_a_router_dying_between_its_calls_leaves_the_task_to_the_reconciler_or_the_queue(dies_at):
    # Given an intake task whose router dies before its `dies_at`-th call (1: the send, 2: the note)
    calls, store, queue, router = world()
    detail = submitted(store, created=NOW - 3600)
    calls.die_at = dies_at
    with pytest.raises(Died):
        router.route(detail)
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
