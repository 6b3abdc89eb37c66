"""Dead letters on in-memory adapters: a message SQS gave up on ends its task DEAD_LETTERED with the
last error seen, once; a task that already ended keeps its outcome."""

from __future__ import annotations

import pytest

from mistersmith.clock import now_iso
from mistersmith.dead_letters import DeadLetters
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask, TaskError, TaskMessage, TaskStatus
from tests.fakes import MemoryTaskStore, NullPublisher

pytestmark = pytest.mark.unit

MESSAGE = TaskMessage(id="t-1", task_type="compile", payload={"files": {"a.py": ""}})


@pytest.fixture
def store() -> MemoryTaskStore:
    return MemoryTaskStore()


@pytest.fixture
def dead_letters(store: MemoryTaskStore) -> DeadLetters:
    return DeadLetters(Lifecycle(store, NullPublisher()))


def test_a_released_task_ends_dead_lettered_with_its_last_error(store, dead_letters):
    # Given a task whose last attempt was released with an error
    store.create(StoredTask.queued(MESSAGE, now_iso()))
    store.transition(
        "t-1",
        TaskStatus.QUEUED,
        allowed_from={TaskStatus.QUEUED},
        changes={"error": TaskError(type="Timeout", message="store slow").model_dump()},
    )
    # When its message is dead-lettered after three receives
    moved = dead_letters.record(MESSAGE, receive_count=3)
    # Then it ends DEAD_LETTERED, naming the receives and the last error
    assert moved.status is TaskStatus.DEAD_LETTERED
    assert moved.error.type == "Timeout"
    assert (
        moved.error.message
        == "gave up after 3 receives (attempts on workers: none recorded); last error: store slow"
    )
    assert moved.finished_at is not None


def test_a_task_never_recorded_is_recorded_and_ended(store, dead_letters):
    moved = dead_letters.record(MESSAGE, receive_count=1)
    assert moved.status is TaskStatus.DEAD_LETTERED
    assert moved.error.type == "Unprocessable"
    assert store.get("t-1").status is TaskStatus.DEAD_LETTERED


def test_a_task_that_already_ended_keeps_its_outcome(store, dead_letters):
    store.create(StoredTask.queued(MESSAGE, now_iso()))
    store.transition("t-1", TaskStatus.SUCCEEDED, allowed_from={TaskStatus.QUEUED}, changes={})
    assert dead_letters.record(MESSAGE, receive_count=3) is None
    assert store.get("t-1").status is TaskStatus.SUCCEEDED
