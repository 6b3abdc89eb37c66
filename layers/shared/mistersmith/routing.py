"""Routing logic: a new task becomes a message on the queue for its type."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
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


def _body(message: TaskMessage) -> str:
    return canonical_json(message.model_dump(mode="json", exclude_none=True))


class UnknownTaskType(ValueError):
    pass


class RouteOutcome(StrEnum):
    QUEUED = "queued"
    REJECTED = "rejected"
    SKIPPED = "skipped"


class Router:
    """Sends compile and execute to the worker queue; analyze goes to the analyze Lambda's queue
    when its files are inline, small and without C, and to the worker when they are big, in an
    archive or include C sources (only the worker image has cppcheck).

    New tasks reach it one way: the task table's stream (`route_inserts`). A `Worker Task` event
    from the bus is only recorded (`accept`), so its insert comes back on the stream like intake's;
    the reconciler sends what the stream could not (`resend`)."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        work_queue: WorkQueue,
        analyze_queue: WorkQueue,
        *,
        analyze_lambda_limit_bytes: int,
        region: str | None = None,
    ) -> None:
        self.lifecycle = lifecycle
        self.store = lifecycle.store
        self.work_queue = work_queue
        self.analyze_queue = analyze_queue
        self.analyze_lambda_limit_bytes = analyze_lambda_limit_bytes
        self.region = region

    @traced
    def accept(self, detail: dict[str, Any]) -> tuple[str, RouteOutcome]:
        """Records one bus event's task as QUEUED (its stream insert routes it) or rejects it
        visibly; returns the task id and what happened to it. A redelivered event finds the record."""
        raw_id = detail.get("id")
        with task_context(
            raw_id if is_task_key(raw_id) else "unidentified", trace_root(detail.get("trace_header"))
        ):
            try:
                message = TaskMessage.model_validate(detail)
                task_type = self._checked_type(message)
            except (ValidationError, ValueError) as error:
                return self._reject(detail, error)
            # A task with no trace of its own (an orchestrator's) starts one.
            message = message.model_copy(update={"trace_header": trace_header_for(message.trace_header)})
            if self.store.create(StoredTask.queued(message, now_iso(), region=self.region)):
                logger.info("task recorded; its insert routes it", extra={"task_id": message.id})
                return message.id, RouteOutcome.QUEUED
            task = self.store.get(message.id)
            if task is None or task.status is TaskStatus.QUEUED:
                return message.id, RouteOutcome.QUEUED
            logger.info(
                "task not routed: already past QUEUED", extra={"task_id": task.id, "status": task.status}
            )
            count("TasksSkipped", task_type=task_type.value)
            return task.id, RouteOutcome.SKIPPED

    @traced
    def route_inserts(self, tasks: Sequence[StoredTask]) -> list[str]:
        """Sends new QUEUED tasks (the stream's inserts) to their queues, in as few requests as the
        queues allow; a task that cannot run is rejected visibly. Returns the ids not sent, which
        the stream delivers again (a copy of one that was sent after all is dropped by the claim)."""
        batches: dict[int, tuple[WorkQueue, list[tuple[StoredTask, TaskType, TaskMessage]]]] = {}
        for task in tasks:
            with task_context(task.id, task.trace_id):
                prepared = self._prepared(task)
            if prepared is None:
                continue
            task_type, message = prepared
            queue = self._destination(task_type, message)
            batches.setdefault(id(queue), (queue, []))[1].append((task, task_type, message))
        not_sent: list[str] = []
        for queue, items in batches.values():
            refused = set(
                queue.send_batch([(_body(message), message.trace_header) for _, _, message in items])
            )
            for index, (task, task_type, _) in enumerate(items):
                with task_context(task.id, task.trace_id):
                    if index in refused:
                        logger.warning(
                            "task not sent; the stream delivers it again", extra={"task_id": task.id}
                        )
                        not_sent.append(task.id)
                    else:
                        self._routed(task.id, task_type, self._queue_name(queue))
        return not_sent

    def resend(self, task: StoredTask) -> RouteOutcome:
        """Sends a task nothing else will (the reconciler's), then notes it: dying between the two
        leaves it unnoted (sent again next time, the claim drops the copy), never noted unsent."""
        prepared = self._prepared(task)
        if prepared is None:
            return RouteOutcome.REJECTED
        task_type, message = prepared
        queue = self._destination(task_type, message)
        queue.send(_body(message), trace_header=message.trace_header)
        self._mark_routed(task.id)
        self._routed(task.id, task_type, self._queue_name(queue))
        return RouteOutcome.QUEUED

    def _prepared(self, task: StoredTask) -> tuple[TaskType, TaskMessage] | None:
        """The task's checked type and its message, in a trace of its own if it had none; None
        once a task that cannot run has been rejected visibly."""
        message = task.message()
        try:
            task_type = self._checked_type(message)
        except (ValidationError, ValueError) as error:
            self._reject(message.model_dump(mode="json", exclude_none=True), error)
            return None
        return task_type, message.model_copy(update={"trace_header": trace_header_for(message.trace_header)})

    def _routed(self, task_id: str, task_type: TaskType, queue: str) -> None:
        logger.info("task routed", extra={"task_id": task_id, "task_type": task_type.value, "queue": queue})
        count("TasksRouted", task_type=task_type.value, queue=queue)

    def _queue_name(self, queue: WorkQueue) -> str:
        return "analyze" if queue is self.analyze_queue else "work"

    def _mark_routed(self, task_id: str) -> None:
        """Notes that the task is on a queue, so the reconciler does not send it again."""
        try:
            self.store.transition(
                task_id, TaskStatus.QUEUED, allowed_from={TaskStatus.QUEUED}, changes={"routed_at": now_iso()}
            )
        except TransitionRejected:
            pass  # a worker has it already, or it ended
        except Exception:  # the message is sent; at worst it is sent again, and the claim drops the copy
            logger.exception("routing not recorded", extra={"task_id": task_id})

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
