"""Processing one delivered task: claim it, do the work, record the outcome. Shared by the Fargate
worker and the analyze Lambda."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from mistersmith.clock import epoch_from_iso, now_iso
from mistersmith.errors import TaskFailure, TransitionRejected
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask, TaskError, TaskMessage, TaskStatus
from mistersmith.observability import logger, metrics
from mistersmith.ports import BlobStore
from mistersmith.work import WorkLimits, perform


class Disposition(StrEnum):
    """What to do with the queue message once processing returns."""

    DELETE = "delete"  # the task reached a terminal state, or another worker owns it
    RETRY = "retry"  # leave it to the visibility timeout: SQS redelivers, then dead-letters


class TaskProcessor:
    def __init__(
        self,
        lifecycle: Lifecycle,
        blobs: BlobStore,
        *,
        worker_id: str,
        lease_seconds: float,
        limits: WorkLimits,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lifecycle = lifecycle
        self.store = lifecycle.store
        self.blobs = blobs
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.limits = limits
        self.clock = clock

    def process(self, message: TaskMessage, *, attempt: int = 1) -> Disposition:
        """Runs the task once, unless it is terminal or leased by another live worker."""
        log = {
            "task_id": message.id,
            "task_type": message.task_type,
            "attempt": attempt,
            "worker_id": self.worker_id,
        }
        task = self._claim(message)
        if task is None:
            logger.info("task not run: terminal or held by another worker", extra=log)
            return Disposition.DELETE
        self.lifecycle.announce(task)
        started = self.clock()
        try:
            result = perform(task.task_type, self._payload(message), self.limits)
        except TaskFailure as failure:
            return self._finish(
                task,
                TaskStatus.FAILED,
                started,
                log,
                result=failure.result,
                error=TaskError(type=failure.error_type, message=failure.message),
            )
        except Exception as error:  # infrastructure or unexpected: the queue retries, then dead-letters
            logger.exception(
                "task attempt failed; released for retry", extra=log | {"error_type": type(error).__name__}
            )
            self._release(task, TaskError(type=type(error).__name__, message=str(error)))
            return Disposition.RETRY
        return self._finish(task, TaskStatus.SUCCEEDED, started, log, result=result)

    def _claim(self, message: TaskMessage) -> StoredTask | None:
        try:
            return self.store.claim(
                message.id, worker_id=self.worker_id, lease_seconds=self.lease_seconds, now=self.clock()
            )
        except TransitionRejected as rejected:
            if rejected.current is not None:
                return None
        # A message with no record (it was deleted, or never written): recreate it, then claim.
        self.store.create(StoredTask.queued(message, now_iso()))
        try:
            return self.store.claim(
                message.id, worker_id=self.worker_id, lease_seconds=self.lease_seconds, now=self.clock()
            )
        except TransitionRejected:
            return None

    def _payload(self, message: TaskMessage) -> dict[str, Any]:
        if message.payload_ref is None:
            return message.payload or {}
        ref = message.payload_ref
        body = self.blobs.get(ref.bucket, ref.key)
        if hashlib.sha256(body).hexdigest() != ref.sha256:
            raise TaskFailure("PayloadCorrupt", f"s3://{ref.bucket}/{ref.key} does not match its sha256")
        return json.loads(body)

    def _finish(
        self,
        task: StoredTask,
        status: TaskStatus,
        started: float,
        log: dict[str, Any],
        *,
        result: dict[str, Any] | None,
        error: TaskError | None = None,
    ) -> Disposition:
        duration_ms = int((self.clock() - started) * 1000)
        try:
            self.lifecycle.move(
                task.id,
                status,
                holder=self.worker_id,
                error=error,
                result=result,
                finished_at=now_iso(),
                duration_ms=duration_ms,
            )
        except TransitionRejected as rejected:
            # Cancelled, or the lease passed to another worker: that outcome stands, this one is dropped.
            logger.warning("outcome not recorded", extra=log | {"current_status": rejected.current})
            return Disposition.DELETE
        queue_wait_ms = max(0, int((started - epoch_from_iso(task.created_at)) * 1000))
        fields = log | {"duration_ms": duration_ms, "queue_wait_ms": queue_wait_ms, "status": status.value}
        if error is None:
            logger.info("task_duration", extra=fields)
            metrics.add_metric(name="TasksSucceeded", unit=MetricUnit.Count, value=1)
        else:
            logger.error("task_duration", extra=fields | {"error_type": error.type, "error": error.message})
            metrics.add_metric(name="TasksFailed", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="TaskDuration", unit=MetricUnit.Milliseconds, value=duration_ms)
        return Disposition.DELETE

    def _release(self, task: StoredTask, error: TaskError) -> None:
        try:
            self.lifecycle.move(task.id, TaskStatus.QUEUED, holder=self.worker_id, error=error)
        except TransitionRejected:
            logger.warning("release not recorded", extra={"task_id": task.id})
