"""Lifecycle on in-memory adapters: conditional moves between statuses, each announced on the bus."""

from __future__ import annotations

from typing import Any

import pytest

from mistersmith.clock import now_iso
from mistersmith.errors import TransitionRejected
from mistersmith.lifecycle import STATUS_CHANGED, Lifecycle
from mistersmith.models import StoredTask, TaskError, TaskMessage, TaskStatus
from tests.fakes import BrokenBus, MemoryTaskStore, NullPublisher

pytestmark = pytest.mark.unit


class RecordingBus(NullPublisher):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, dict[str, Any]]] = []

    def publish(self, *, source: str, detail_type: str, detail: dict[str, Any]) -> None:
        super().publish(source=source, detail_type=detail_type, detail=detail)
        self.events.append((detail_type, detail))


def store_with(task_id: str, *, worker: str | None = None) -> MemoryTaskStore:
    """A store holding one QUEUED task, RUNNING under `worker` when one is named."""
    store = MemoryTaskStore()
    store.create(StoredTask.queued(TaskMessage(id=task_id, task_type="analyze", payload={}), now_iso()))
    if worker:
        store.claim(task_id, worker_id=worker, token=f"{task_id}-{worker}", expires_at=60, now=0)
    return store


def test_a_move_writes_the_status_and_announces_the_public_record():
    bus = RecordingBus()
    lifecycle = Lifecycle(store_with("t-1", worker="w"), bus)
    moved = lifecycle.move("t-1", TaskStatus.SUCCEEDED, holder="w", result={"ok": True})
    assert (moved.status, moved.result) == (TaskStatus.SUCCEEDED, {"ok": True})
    ((detail_type, detail),) = bus.events
    assert detail_type == STATUS_CHANGED
    assert (detail["id"], detail["status"]) == ("t-1", "SUCCEEDED")
    assert "worker_id" not in detail and "payload" not in detail


@pytest.mark.parametrize("target", [TaskStatus.FAILED, TaskStatus.QUEUED])
def test_ending_or_releasing_a_task_clears_its_lease(target):
    store = store_with("t-1", worker="w")
    error = TaskError(type="Boom", message="it broke")
    moved = Lifecycle(store, NullPublisher()).move("t-1", target, holder="w", error=error)
    assert (moved.worker_id, moved.lease_expires_at) == (None, None)
    assert moved.error == error


def test_a_terminal_task_never_moves_and_nothing_is_announced():
    store, bus = store_with("t-1"), RecordingBus()
    lifecycle = Lifecycle(store, bus)
    lifecycle.move("t-1", TaskStatus.CANCELLED)
    with pytest.raises(TransitionRejected):
        lifecycle.move("t-1", TaskStatus.DEAD_LETTERED)
    assert store.get("t-1").status is TaskStatus.CANCELLED
    assert len(bus.events) == 1


def test_only_the_holder_of_the_lease_can_move_a_running_task():
    store = store_with("t-1", worker="w")
    with pytest.raises(TransitionRejected):
        Lifecycle(store, NullPublisher()).move("t-1", TaskStatus.SUCCEEDED, holder="someone-else")
    assert store.get("t-1").status is TaskStatus.RUNNING


def test_a_bus_failure_does_not_undo_the_move():
    store = store_with("t-1")
    moved = Lifecycle(store, BrokenBus()).move("t-1", TaskStatus.CANCELLED)
    assert moved.status is TaskStatus.CANCELLED
    assert store.get("t-1").status is TaskStatus.CANCELLED
