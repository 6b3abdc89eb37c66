"""Dead letters: a message SQS gave up on ends its task DEAD_LETTERED, with the last error seen."""

from __future__ import annotations

from mistersmith.clock import now_iso
from mistersmith.errors import TransitionRejected
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask, TaskError, TaskMessage, TaskStatus, known_task_type
from mistersmith.observability import count, logger, task_context, trace_root, traced


class DeadLetters:
    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.store = lifecycle.store

    @traced
    def record(self, message: TaskMessage, *, receive_count: int) -> StoredTask | None:
        """Marks the task DEAD_LETTERED unless it already ended; returns the record it moved."""
        with task_context(message.id, trace_root(message.trace_header)):
            return self._record(message, receive_count)

    def _record(self, message: TaskMessage, receive_count: int) -> StoredTask | None:
        task = self.store.get(message.id)
        if task is None:
            # Never recorded (an orchestrator event that went wrong early): record it now, then end it.
            task = StoredTask.queued(message, now_iso())
            self.store.create(task)
        if task.status.is_terminal:
            logger.info(
                "dead letter for a task that already ended", extra={"task_id": task.id, "status": task.status}
            )
            return None
        workers = ", ".join(task.attempt_workers) or "none recorded"
        if task.status is TaskStatus.RUNNING:  # its last attempt never ended: the worker was lost
            last = TaskError(
                type="WorkerLost",
                message=f"gave up after {receive_count} receives: the worker was lost during the attempt "
                f"(attempts on workers: {workers})",
            )
        else:
            error = task.error or TaskError(type="Unprocessable", message="no attempt recorded an error")
            last = TaskError(
                type=error.type,
                message=f"gave up after {receive_count} receives (attempts on workers: {workers}); "
                f"last error: {error.message}",
            )
        try:
            moved = self.lifecycle.move(task.id, TaskStatus.DEAD_LETTERED, error=last, finished_at=now_iso())
        except TransitionRejected:
            return None
        count("TasksDeadLettered", task_type=known_task_type(task.task_type))
        logger.error(
            "task dead-lettered",
            extra={"task_id": task.id, "task_type": task.task_type, "error_type": last.type},
        )
        return moved
