"""Status changes of a task: written conditionally, then announced on the bus."""

from __future__ import annotations

import time
from typing import Any

from mistersmith.clock import now_iso
from mistersmith.models import StoredTask, TaskError, TaskStatus, sources_allowed_into
from mistersmith.observability import logger
from mistersmith.ports import EventPublisher, TaskStore

STATUS_SOURCE = "mistersmith.tasks"
STATUS_CHANGED = "Task Status Changed"
DAY_SECONDS = 86_400


class Lifecycle:
    """Moves tasks between states through the store and publishes `Task Status Changed`."""

    def __init__(self, store: TaskStore, events: EventPublisher, *, retention_days: int = 30) -> None:
        self.store = store
        self.events = events
        # A finished task's record expires (DynamoDB TTL on expires_at) this long after it ends.
        self.retention_seconds = retention_days * DAY_SECONDS

    def move(
        self,
        task_id: str,
        target: TaskStatus,
        *,
        holder: str | None = None,
        error: TaskError | None = None,
        **changes: Any,
    ) -> StoredTask:
        """Moves the task to `target` from any state allowed to reach it; raises TransitionRejected."""
        changes["updated_at"] = now_iso()
        if error is not None:
            changes["error"] = error.model_dump()
        if target.is_terminal or target is TaskStatus.QUEUED:
            changes |= {"worker_id": None, "lease_expires_at": None, "lease_token": None}
        if target.is_terminal:
            changes["expires_at"] = int(time.time()) + self.retention_seconds
        if target.is_terminal and holder is not None:
            # The lease ends; which worker ran the task stays on its record.
            changes["worker"] = holder
        task = self.store.transition(
            task_id, target, allowed_from=sources_allowed_into(target), changes=changes, holder=holder
        )
        self.announce(task)
        return task

    def announce(self, task: StoredTask) -> None:
        """Publishes the task's current record; a bus failure is logged, the state is already saved."""
        try:
            self.events.publish(
                source=STATUS_SOURCE,
                detail_type=STATUS_CHANGED,
                detail=task.public().model_dump(mode="json", exclude_none=True),
            )
        except Exception:
            logger.exception("status event not published", extra={"task_id": task.id})
