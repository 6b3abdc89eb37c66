"""Retention: a task's record expires (DynamoDB TTL on `expires_at`) a set time after it ends, never before."""

from __future__ import annotations

import time

import pytest

from mistersmith.clock import now_iso
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask, TaskMessage, TaskStatus
from mistersmith.settings import LifecycleSettings
from tests.fakes import MemoryTaskStore, NullPublisher

pytestmark = pytest.mark.unit

DAY = 86_400


def lifecycle_with_task(**options) -> tuple[Lifecycle, MemoryTaskStore]:
    store = MemoryTaskStore()
    store.create(StoredTask.queued(TaskMessage(id="t-1", task_type="execute", payload={}), now_iso()))
    return Lifecycle(store, NullPublisher(), **options), store


@pytest.mark.parametrize("terminal", [TaskStatus.CANCELLED, TaskStatus.DEAD_LETTERED])
def test_lifecycle_terminal_write_sets_expires_at_the_retention_after_now(terminal):
    # Given a lifecycle keeping finished tasks 7 days
    lifecycle, store = lifecycle_with_task(retention_days=7)
    # When the task ends
    before = time.time()
    lifecycle.move("t-1", terminal)
    # Then its record expires 7 days later, in epoch seconds (what DynamoDB TTL reads)
    expires_at = store.get("t-1").expires_at
    assert isinstance(expires_at, int)
    assert before + 7 * DAY - 1 <= expires_at <= time.time() + 7 * DAY


def test_lifecycle_non_terminal_write_sets_no_expiry():
    lifecycle, store = lifecycle_with_task()
    lifecycle.move("t-1", TaskStatus.RUNNING)
    assert store.get("t-1").expires_at is None


def test_lifecycle_keeps_finished_tasks_thirty_days_by_default(monkeypatch):
    lifecycle, store = lifecycle_with_task()
    lifecycle.move("t-1", TaskStatus.CANCELLED)
    assert store.get("t-1").expires_at >= time.time() + 30 * DAY - 5
    monkeypatch.setenv("TASK_TABLE_NAME", "t")
    monkeypatch.setenv("EVENT_BUS_NAME", "b")
    assert LifecycleSettings().task_retention_days == 30
    monkeypatch.setenv("TASK_RETENTION_DAYS", "0")
    with pytest.raises(ValueError):
        LifecycleSettings()
