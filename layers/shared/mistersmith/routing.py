"""Routing logic: a `Worker Task` event becomes a message on the queue for its type."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from mistersmith.clock import now_iso
from mistersmith.errors import TransitionRejected
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import (
    PAYLOAD_MODELS,
    StoredTask,
    TaskError,
    TaskMessage,
    TaskStatus,
    TaskType,
    canonical_json,
    has_c_sources,
    is_task_key,
)
from mistersmith.observability import count, logger, task_context, trace_header_for, trace_root, traced
from mistersmith.ports import WorkQueue


class UnknownTaskType(ValueError):
    pass


class RouteOutcome(StrEnum):
    QUEUED = "queued"
    REJECTED = "rejected"
    SKIPPED = "skipped"


class Router:
    """Sends compile and execute to the worker queue; analyze goes to the analyze Lambda's queue
    when its files are inline, small and without C, and to the worker when they are big, in an
    archive or include C sources (only the worker image has cppcheck)."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        work_queue: WorkQueue,
        analyze_queue: WorkQueue,
        *,
        analyze_lambda_limit_bytes: int,
    ) -> None:
        self.lifecycle = lifecycle
        self.store = lifecycle.store
        self.work_queue = work_queue
        self.analyze_queue = analyze_queue
        self.analyze_lambda_limit_bytes = analyze_lambda_limit_bytes

    @traced
    def route(self, detail: dict[str, Any]) -> tuple[str, RouteOutcome]:
        """Routes one event's detail; returns the task id and what happened to it."""
        raw_id = detail.get("id")
        with task_context(
            raw_id if is_task_key(raw_id) else "unidentified", trace_root(detail.get("trace_header"))
        ):
            return self._route(detail)

    def _route(self, detail: dict[str, Any]) -> tuple[str, RouteOutcome]:
        try:
            message = TaskMessage.model_validate(detail)
            task_type = self._checked_type(message)
        except (ValidationError, ValueError) as error:
            return self._reject(detail, error)
        if message.trace_header is None:  # from the orchestrator: the task starts its own trace
            return self._route_new(
                task_type, message.model_copy(update={"trace_header": trace_header_for(None)})
            )
        # Intake's and the reconciler's events: the record exists, so the note's answer is the check.
        # Send, then note: dying between them leaves it unnoted (re-sent by the reconciler), never noted unsent.
        queue = self.send(task_type, message)
        self._mark_routed(message)
        return self._routed(message.id, task_type, queue)

    def _route_new(self, task_type: TaskType, message: TaskMessage) -> tuple[str, RouteOutcome]:
        """An orchestrator's event: its record is created (or found) first, so that a redelivered
        event of a task that has moved on sends nothing, and keeps the trace its record started."""
        task = self._record_for(message)
        if task.status is not TaskStatus.QUEUED:
            logger.info(
                "task not routed: already past QUEUED", extra={"task_id": task.id, "status": task.status}
            )
            count("TasksSkipped", task_type=task_type.value)
            return task.id, RouteOutcome.SKIPPED
        message = message.model_copy(update={"trace_header": task.trace_header or message.trace_header})
        queue = self.send(task_type, message)
        self._mark_routed(message)
        return self._routed(task.id, task_type, queue)

    def _routed(self, task_id: str, task_type: TaskType, queue: str) -> tuple[str, RouteOutcome]:
        logger.info("task routed", extra={"task_id": task_id, "task_type": task_type.value, "queue": queue})
        count("TasksRouted", task_type=task_type.value, queue=queue)
        return task_id, RouteOutcome.QUEUED

    def send(self, task_type: TaskType, message: TaskMessage) -> str:
        """Sends the task's message to the queue for its type; returns which ("work" or "analyze")."""
        body = canonical_json(message.model_dump(mode="json", exclude_none=True))
        destination = self._destination(task_type, message)
        destination.send(body, trace_header=message.trace_header)
        return "analyze" if destination is self.analyze_queue else "work"

    def _mark_routed(self, message: TaskMessage) -> None:
        """Notes that the task is on a queue: without the note the reconciler routes it again. One
        conditional write, whose refusal tells a task that moved on from one with no record."""
        routed_at = now_iso()
        try:
            self.store.transition(
                message.id,
                TaskStatus.QUEUED,
                allowed_from={TaskStatus.QUEUED},
                changes={"routed_at": routed_at},
            )
        except TransitionRejected as rejected:
            if rejected.current is None:  # a traced event with no record: recorded now, as sent
                self.store.create(
                    StoredTask.queued(message, routed_at).model_copy(update={"routed_at": routed_at})
                )
            # else a worker has it already, or it ended (a redelivered event's copy, which the claim drops)
        except Exception:  # the message is sent; at worst the reconciler sends a duplicate, which claims drop
            logger.exception("routing not recorded", extra={"task_id": message.id})

    def _destination(self, task_type: TaskType, message: TaskMessage) -> WorkQueue:
        if task_type is not TaskType.ANALYZE or message.payload is None or "source_uri" in message.payload:
            return self.work_queue
        if has_c_sources(message.payload.get("files") or {}):
            return self.work_queue  # the Lambda has no C analyzer
        size = len(canonical_json(message.payload).encode())
        return self.analyze_queue if size <= self.analyze_lambda_limit_bytes else self.work_queue

    @staticmethod
    def _checked_type(message: TaskMessage) -> TaskType:
        try:
            task_type = TaskType(message.task_type)
        except ValueError:
            valid = ", ".join(t.value for t in TaskType)
            raise UnknownTaskType(
                f"unknown task_type {message.task_type!r}; expected one of {valid}"
            ) from None
        if message.payload_ref is None:
            PAYLOAD_MODELS[task_type].model_validate(message.payload or {})
        return task_type

    def _record_for(self, message: TaskMessage) -> StoredTask:
        """The task's record; events from the orchestrator arrive with none, so one is created."""
        task = StoredTask.queued(message, now_iso())
        if self.store.create(task):
            return task
        return self.store.get(message.id) or task

    def _reject(self, detail: dict[str, Any], error: Exception) -> tuple[str, RouteOutcome]:
        """Records the task as FAILED with a readable error, so that nothing vanishes silently."""
        error_type = "UnknownTaskType" if isinstance(error, UnknownTaskType) else "InvalidTask"
        task_error = TaskError(type=error_type, message=str(error))
        raw_id = detail.get("id")
        task_id = raw_id if is_task_key(raw_id) else f"rejected-{uuid.uuid4().hex}"
        now = now_iso()
        rejected = StoredTask(
            id=task_id,
            task_type=str(detail.get("task_type", "unknown"))[:64],
            status=TaskStatus.FAILED,
            created_at=now,
            updated_at=now,
            finished_at=now,
            error=task_error,
        )
        if self.store.create(rejected):
            self.lifecycle.announce(rejected)
        else:
            try:
                self.lifecycle.move(task_id, TaskStatus.FAILED, error=task_error, finished_at=now)
            except TransitionRejected:
                logger.info("rejected task already terminal", extra={"task_id": task_id})
        logger.warning(
            "task rejected", extra={"task_id": task_id, "error_type": error_type, "error": str(error)}
        )
        count("TasksRejected", stage="router", reason=error_type)
        return task_id, RouteOutcome.REJECTED
