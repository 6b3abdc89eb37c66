"""Processing one delivered task: claim it, keep it alive, do the work, record the outcome.
Shared by the Fargate worker and the analyze Lambda."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from mistersmith.clock import epoch_from_iso, now_iso
from mistersmith.errors import TaskFailure, TaskStopped, TransitionRejected
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import (
    TERMINAL_STATUSES,
    StoredTask,
    TaskError,
    TaskMessage,
    TaskStatus,
    known_task_type,
)
from mistersmith.observability import logger, record_metrics, task_context, task_span, traced
from mistersmith.payloads import PayloadProblem, PayloadStore, PayloadUnavailable
from mistersmith.ports import BlobStore
from mistersmith.work import WorkLimits, perform


class Disposition(StrEnum):
    """What the caller does with the queue message once processing returns."""

    DELETE = "delete"  # terminal now, or already terminal, or another live worker holds it
    RETRY = "retry"  # a retryable error: visible again after a back-off, dead-lettered in the end
    RELEASE = "release"  # handed back unfinished (drain): visible again at once
    ABANDON = "abandon"  # the lease or the message was lost to another worker: touch nothing


class StopReason(StrEnum):
    CANCELLED = "cancelled"
    LEASE_LOST = "lease_lost"
    DRAIN = "drain"


class StopSignal:
    """Asks a running task to stop, remembering the first reason given."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: StopReason | None = None
        self._lock = threading.Lock()

    def set(self, reason: StopReason) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
                self.event.set()


# The least time between a lease's end and the message's return to the queue.
LEASE_MARGIN_SECONDS = 2.0

# A source archive the task names and cannot have: the task's FAILED error type.
_SOURCE_FAILURES = {
    PayloadProblem.FOREIGN: "InvalidSource",
    PayloadProblem.MISSING: "SourceNotFound",
    PayloadProblem.FORBIDDEN: "SourceForbidden",
    PayloadProblem.TOO_LARGE: "SourceTooLarge",
}

_OUTCOME_METRICS = {
    TaskStatus.SUCCEEDED: "TasksSucceeded",
    TaskStatus.FAILED: "TasksFailed",
    TaskStatus.CANCELLED: "TasksCancelled",
}


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
        self.payloads = PayloadStore(blobs)
        self.worker_id = worker_id
        # The message's visibility timeout, which heartbeats extend to.
        self.lease_seconds = lease_seconds
        # The lease ends this much before the message would be visible again (it is taken after the
        # receive): a redelivery after the holder died finds it expired and takes over, and is
        # never dropped as a duplicate of a task nobody is running any more.
        self.lease_duration = lease_seconds - max(LEASE_MARGIN_SECONDS, lease_seconds / 10)
        self.limits = limits
        self.clock = clock
        self.heartbeats = _Heartbeats(self)

    @traced
    def process(
        self,
        message: TaskMessage,
        *,
        attempt: int = 1,
        stop: StopSignal | None = None,
        extend_visibility: Callable[[int], None] | None = None,
        trace_header: str | None = None,
    ) -> Disposition:
        """Runs the task once, unless it is terminal or leased by another live worker.

        While it runs, a heartbeat renews the lease (and, through `extend_visibility`, the
        message) every third of the lease; a cancel request or a lost lease stops the work.
        The work is a span in the trace of `trace_header` (SQS's AWSTraceHeader) or, without
        one, of the header the message carries."""
        attributes = {
            "task.id": message.id,
            "task.type": message.task_type,
            "task.attempt": attempt,
            "worker.id": self.worker_id,
        }
        with task_span(
            f"{message.task_type} task", trace_header or message.trace_header, attributes
        ) as trace_id:
            log = {
                "task_id": message.id,
                "task_type": message.task_type,
                "attempt": attempt,
                "worker_id": self.worker_id,
                "trace_id": trace_id,
            }
            with task_context(message.id, trace_id):
                return self._run(message, log, stop or StopSignal(), extend_visibility)

    def _run(
        self,
        message: TaskMessage,
        log: dict[str, Any],
        stop: StopSignal,
        extend_visibility: Callable[[int], None] | None,
    ) -> Disposition:
        task = self._claim(message)
        if task is None:
            logger.info("task not run: terminal or held by another worker", extra=log)
            return Disposition.DELETE
        self.lifecycle.announce(task)
        beat = self.heartbeats.add(task.id, stop, extend_visibility)
        started = self.clock()
        try:
            result = perform(
                task.task_type,
                self._payload(message),
                self.limits,
                stop.event,
                self.payloads.artifact_sink(task.id),
                self._source,
            )
        except TaskFailure as failure:
            error = TaskError(type=failure.error_type, message=failure.message)
            return self._finish(task, TaskStatus.FAILED, started, log, result=failure.result, error=error)
        except TaskStopped:
            return self._stopped(task, stop.reason, started, log)
        except Exception as error:  # infrastructure or unexpected: the queue retries, then dead-letters
            fields = log | {"error_type": type(error).__name__}
            logger.exception("task attempt failed; released for retry", extra=fields)
            self._release(task, TaskError(type=type(error).__name__, message=str(error)))
            return Disposition.RETRY
        finally:
            self.heartbeats.remove(beat)
        if stop.reason is not None:
            return self._stopped(task, stop.reason, started, log)
        return self._finish(task, TaskStatus.SUCCEEDED, started, log, result=result)

    def _source(self, uri: str, limit_bytes: int) -> bytes:
        """A `source_uri` archive from this worker's bucket, its size checked before it is read."""
        try:
            return self.payloads.read_source(uri, limit_bytes)
        except PayloadUnavailable as error:
            raise TaskFailure(_SOURCE_FAILURES[error.reason], str(error)) from None

    def renew(self, task_id: str) -> StoredTask:
        """Extends the lease this worker holds; raises TransitionRejected when it holds none."""
        return self.store.transition(
            task_id,
            TaskStatus.RUNNING,
            allowed_from={TaskStatus.RUNNING},
            changes={"lease_expires_at": self.clock() + self.lease_duration},
            holder=self.worker_id,
        )

    def _claim(self, message: TaskMessage) -> StoredTask | None:
        try:
            return self.store.claim(
                message.id, worker_id=self.worker_id, lease_seconds=self.lease_duration, now=self.clock()
            )
        except TransitionRejected as rejected:
            if rejected.current is not None:
                return None
        # A message with no record (it was deleted, or never written): recreate it, then claim.
        self.store.create(StoredTask.queued(message, now_iso()))
        try:
            return self.store.claim(
                message.id, worker_id=self.worker_id, lease_seconds=self.lease_duration, now=self.clock()
            )
        except TransitionRejected:
            return None

    def _payload(self, message: TaskMessage) -> dict[str, Any]:
        if message.payload_ref is None:
            return message.payload or {}
        try:
            payload: dict[str, Any] = json.loads(self.payloads.load(message.payload_ref))
        except PayloadUnavailable as error:
            # Missing or refused may be passing (a deploy, a policy change): those are retried.
            if error.reason is PayloadProblem.CORRUPT:
                raise TaskFailure("PayloadCorrupt", str(error)) from None
            raise
        return payload

    def _stopped(
        self, task: StoredTask, reason: StopReason | None, started: float, log: dict[str, Any]
    ) -> Disposition:
        logger.info("task stopped before it finished", extra=log | {"stop_reason": reason})
        if reason is StopReason.CANCELLED:
            error = TaskError(type="Cancelled", message="cancelled while running")
            return self._finish(task, TaskStatus.CANCELLED, started, log, result=None, error=error)
        if reason is StopReason.DRAIN:
            self._release(task, TaskError(type="Released", message="worker stopping; handed back"))
            return Disposition.RELEASE
        return Disposition.ABANDON

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
            # Cancelled meanwhile, or the lease passed to another worker: that outcome stands.
            logger.warning("outcome not recorded", extra=log | {"current_status": rejected.current})
            gone = rejected.current is None or rejected.current in TERMINAL_STATUSES
            return Disposition.DELETE if gone else Disposition.ABANDON
        queue_wait_ms = max(0, int((started - epoch_from_iso(task.created_at)) * 1000))
        fields = log | {"duration_ms": duration_ms, "queue_wait_ms": queue_wait_ms, "status": status.value}
        if error is None:
            logger.info("task_duration", extra=fields)
        else:
            logger.error("task_duration", extra=fields | {"error_type": error.type, "error": error.message})
        record_metrics(
            {
                _OUTCOME_METRICS[status]: (MetricUnit.Count, 1),
                "TaskDuration": (MetricUnit.Milliseconds, duration_ms),
                "TaskQueueWait": (MetricUnit.Milliseconds, queue_wait_ms),
            },
            task_type=known_task_type(task.task_type),
        )
        return Disposition.DELETE

    def _release(self, task: StoredTask, error: TaskError) -> None:
        try:
            self.lifecycle.move(task.id, TaskStatus.QUEUED, holder=self.worker_id, error=error)
        except TransitionRejected:
            logger.warning("release not recorded", extra={"task_id": task.id})


@dataclass
class _Beat:
    task_id: str
    stop: StopSignal
    extend_visibility: Callable[[int], None] | None
    due: float


class _Heartbeats:
    """One thread renews the lease (and the message's visibility) of every running task a third
    of the lease after the last renewal, and stops a task whose lease or message is gone or whose
    cancel was requested. One thread for all tasks: a thread per task costs more than the task."""

    def __init__(self, processor: TaskProcessor) -> None:
        self.processor = processor
        # A third of the lease: two renewals can fail before the lease runs out.
        self.interval = max(0.5, processor.lease_duration / 3)
        self.beats: dict[int, _Beat] = {}
        self._keys = itertools.count()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, task_id: str, stop: StopSignal, extend_visibility: Callable[[int], None] | None) -> int:
        key = next(self._keys)
        with self._lock:
            self.beats[key] = _Beat(task_id, stop, extend_visibility, time.monotonic() + self.interval)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="heartbeats", daemon=True)
                self._thread.start()
        return key

    def remove(self, key: int) -> None:
        with self._lock:
            self.beats.pop(key, None)

    def _run(self) -> None:
        while True:
            time.sleep(min(self.interval, 0.5))
            now = time.monotonic()
            with self._lock:
                due = [(key, beat) for key, beat in self.beats.items() if beat.due <= now]
            for key, beat in due:
                if self._renew(beat):
                    beat.due = time.monotonic() + self.interval
                else:
                    self.remove(key)

    def _renew(self, beat: _Beat) -> bool:
        """True while the task may go on."""
        try:
            task = self.processor.renew(beat.task_id)
        except TransitionRejected:
            beat.stop.set(StopReason.LEASE_LOST)
            return False
        except Exception:  # the table is unreachable for now: the next beat tries again
            logger.exception("lease not renewed", extra={"task_id": beat.task_id})
            return True
        if task.cancel_requested:
            beat.stop.set(StopReason.CANCELLED)
            return False
        if beat.extend_visibility is not None:
            try:
                beat.extend_visibility(int(self.processor.lease_seconds))
            except Exception:  # an invalid receipt handle: the message is someone else's now
                logger.exception(
                    "visibility not extended; stopping the task", extra={"task_id": beat.task_id}
                )
                beat.stop.set(StopReason.LEASE_LOST)
                return False
        return True
