"""Domain errors: raised by logic and adapters, mapped to HTTP or task outcomes at the edges."""

from __future__ import annotations

from typing import Any


class MisterSmithError(Exception):
    """Base of every error the domain raises on purpose."""


class TaskNotFound(MisterSmithError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} does not exist")
        self.task_id = task_id


class TaskConflict(MisterSmithError):
    """The id exists with a different body, or the task is already terminal."""


class PayloadTooLarge(MisterSmithError):
    pass


class CallerUnknown(MisterSmithError):
    """A task request that names no caller: nothing can be shown or recorded for nobody."""


class TransitionRejected(MisterSmithError):
    """A conditional write found the task in a state that does not allow the change."""

    def __init__(self, task_id: str, current: str | None, target: str) -> None:
        super().__init__(f"task {task_id!r} cannot move from {current} to {target}")
        self.task_id = task_id
        self.current = current
        self.target = target


class LeaseHeld(TransitionRejected):
    """A claim found the task RUNNING under another holder's lease, which runs until `expires_at`."""

    def __init__(self, task_id: str, expires_at: float) -> None:
        super().__init__(task_id, "RUNNING", "RUNNING")
        self.expires_at = expires_at


class TaskFailure(MisterSmithError):
    """A deterministic failure of the task itself: recorded as FAILED and never retried."""

    def __init__(self, error_type: str, message: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.result = result


class InvalidRequest(MisterSmithError):
    """A request that passed the schema but cannot be served (a bad page token, say)."""


class UploadRejected(InvalidRequest):
    """The uploaded payload a task names is missing or does not fit its task type."""

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


class PublishFailed(MisterSmithError):
    """The bus did not take an event; the caller may retry with the same task id."""


class PublishUncertain(MisterSmithError):
    """The bus may or may not have taken the event: a request reached it and its answer was lost."""


class TaskStopped(MisterSmithError):
    """The task was stopped before it finished: cancelled, or its lease passed to another worker."""
