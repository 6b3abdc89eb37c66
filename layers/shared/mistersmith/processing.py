"""Processing one delivered task: claim it, keep it alive, do the work, record the outcome.
Shared by the Fargate worker and the analyze Lambda.

The invariant between a lease and its message, kept in this module and nowhere else:

    lease_expires_at + margin <= the time the message can be received again

A holder keeps it three ways: (1) a claim's lease is dated from the receive (`received_at`), not
from the claim; (2) the heartbeat extends the message's visibility first and only then renews the
lease, dating the renewal from before the extension; (3) a message whose task is held under another
lease is never deleted because of it: it is deferred until that lease ends, plus the margin. So a
message that comes back finds its task terminal, its lease expired (the holder died or paused), or
held by a live holder it waits for; a task is never left RUNNING with no message to run it."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from aws_lambda_powertools.metrics import MetricUnit

from mistersmith.clock import epoch_from_iso, now_iso
from mistersmith.errors import LeaseHeld, MisterSmithError, TaskFailure, TaskStopped, TransitionRejected
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

T = TypeVar("T")

# The least time between a lease's end and the message's return to the queue.
LEASE_MARGIN_SECONDS = 2.0
# How often a worker reads the cancel flags of all its running tasks (one batched read).
WATCH_SECONDS = 2.0
# A background thread that has not come round for this long is stuck: the worker reports itself broken.
STALL_SECONDS = 300.0
# Store writes that fail for want of an answer are tried again this many times, backing off.
PERSIST_ATTEMPTS = 4


def lease_margin(visibility_seconds: float) -> float:
    return max(LEASE_MARGIN_SECONDS, visibility_seconds / 10)


def lease_expiry(visible_from: float, visibility_seconds: float) -> float:
    """When a lease ends whose message became invisible at `visible_from` for `visibility_seconds`."""
    return visible_from + visibility_seconds - lease_margin(visibility_seconds)


def persist(call: Callable[[], T], what: str, attempts: int = PERSIST_ATTEMPTS) -> T:
    """`call` again after an infrastructure error (throttling, a reset, a timeout), backing off
    0.2, 0.4, 0.8 s; domain answers (a rejected transition) are final. Only idempotent calls."""
    for attempt in range(attempts):
        try:
            return call()
        except MisterSmithError:
            raise
        except Exception:
            if attempt == attempts - 1:
                raise
            logger.warning(f"{what} failed; trying again", exc_info=True)
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


class Disposition(StrEnum):
    """What the caller does with the queue message once processing returns."""

    DELETE = "delete"  # terminal now, or already terminal
    RETRY = "retry"  # a retryable error: visible again after the outcome's delay, dead-lettered in the end
    RELEASE = "release"  # handed back unfinished (drain): visible again at once
    DEFER = "defer"  # another lease holds the task: back when it has run out (the outcome's delay)
    ABANDON = "abandon"  # the lease passed to another worker: touch nothing


@dataclass(frozen=True)
class Outcome:
    disposition: Disposition
    # Seconds until the message is to be received again (RETRY, DEFER).
    delay: float = 0.0


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


class Lease:
    """One holder's lease on one task, under a token of its own: a claim resent after its answer
    was lost is recognised as the same claim, and a renewal is refused once the lease has expired
    or passed to another claim, even one by the same worker."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        task_id: str,
        *,
        holder: str,
        visibility_seconds: float,
        clock: Callable[[], float],
    ) -> None:
        self.lifecycle = lifecycle
        self.store = lifecycle.store
        self.task_id = task_id
        self.holder = holder
        self.visibility_seconds = visibility_seconds
        self.clock = clock
        self.token = uuid.uuid4().hex
        self.expires_at = 0.0

    def claim(self, received_at: float) -> StoredTask:
        """Takes the task; raises LeaseHeld (another lease is live) or TransitionRejected."""
        expires_at = lease_expiry(received_at, self.visibility_seconds)
        task = persist(
            lambda: self.store.claim(
                self.task_id, worker_id=self.holder, token=self.token, expires_at=expires_at, now=self.clock()
            ),
            "claim",
        )
        self.expires_at = expires_at
        return task

    def renew(self, visible_from: float) -> StoredTask:
        """Moves the lease on after the message was made invisible from `visible_from`."""
        expires_at = lease_expiry(visible_from, self.visibility_seconds)
        task = self.store.renew(
            self.task_id, worker_id=self.holder, token=self.token, expires_at=expires_at, now=self.clock()
        )
        self.expires_at = expires_at
        return task

    def release(self, error: TaskError) -> bool:
        """RUNNING -> QUEUED; False when the lease could not be given up (it then runs out)."""
        try:
            persist(
                lambda: self.lifecycle.move(self.task_id, TaskStatus.QUEUED, holder=self.holder, error=error),
                "release",
            )
        except TransitionRejected:
            logger.warning("release not recorded: the task moved on", extra={"task_id": self.task_id})
        except Exception:
            logger.exception(
                "release not recorded; the lease runs out instead", extra={"task_id": self.task_id}
            )
            return False
        self.expires_at = 0.0
        return True

    def wait_after(self) -> float:
        """Seconds until a message for this task finds the lease run out."""
        return max(0.0, self.expires_at - self.clock()) + lease_margin(self.visibility_seconds)


class Heartbeat:
    """One thread calls every registered beat each `interval` seconds: one thread for all tasks (a
    thread per task costs more than the task). A beat that returns False is dropped; one that
    raises is logged and kept. `healthy` is False once the thread has died or stopped ticking."""

    def __init__(self, interval: float, name: str) -> None:
        self.interval = interval
        self.name = name
        self.beats: dict[int, tuple[Callable[[], bool], float]] = {}
        self.last_tick = time.monotonic()
        self._keys = itertools.count()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, beat: Callable[[], bool], *, at_once: bool = False) -> int:
        key = next(self._keys)
        with self._lock:
            self.beats[key] = (beat, time.monotonic() + (0 if at_once else self.interval))
            if self._thread is None:
                self.last_tick = time.monotonic()
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        return key

    def remove(self, key: int) -> None:
        with self._lock:
            self.beats.pop(key, None)

    def healthy(self, stalled_after: float) -> bool:
        thread = self._thread
        return thread is None or (thread.is_alive() and time.monotonic() - self.last_tick < stalled_after)

    def _run(self) -> None:
        try:
            while True:
                time.sleep(min(self.interval, 0.5))
                self.last_tick = now = time.monotonic()
                with self._lock:
                    due = [(key, beat) for key, (beat, at) in self.beats.items() if at <= now]
                for key, beat in due:
                    self._beat(key, beat)
        except BaseException:
            logger.exception("heartbeat thread died", extra={"thread_name": self.name})
            raise

    def _beat(self, key: int, beat: Callable[[], bool]) -> None:
        try:
            keep = beat()
        except Exception:  # the table or the queue is unreachable for now: the next beat tries again
            logger.exception("beat failed", extra={"thread_name": self.name})
            keep = True
        with self._lock:
            if key not in self.beats:
                return
            if keep:
                self.beats[key] = (beat, time.monotonic() + self.interval)
            else:
                del self.beats[key]


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
        max_retry_delay_seconds: float = 300,
        watch_seconds: float = WATCH_SECONDS,
    ) -> None:
        self.lifecycle = lifecycle
        self.store = lifecycle.store
        self.payloads = PayloadStore(blobs)
        self.worker_id = worker_id
        # The message's visibility timeout, which heartbeats extend to.
        self.lease_seconds = lease_seconds
        self.limits = limits
        self.clock = clock
        self.max_retry_delay_seconds = max_retry_delay_seconds
        # A third of the lease: two renewals can fail before the lease runs out.
        lease = lease_seconds - lease_margin(lease_seconds)
        self.heartbeat = Heartbeat(max(0.5, lease / 3), "leases")
        self.watch = Heartbeat(watch_seconds, "cancel-watch")
        self._watching = False
        self._running: dict[str, tuple[Lease, StopSignal]] = {}
        self._lock = threading.Lock()

    def healthy(self) -> bool:
        """False when a background thread of the processor has died or stalled."""
        # Generous: a call that botocore retries through an outage may hold a beat for minutes, and
        # an outage must not have ECS replace every worker; a thread that is gone fails at once.
        return self.heartbeat.healthy(max(STALL_SECONDS, self.heartbeat.interval * 4)) and self.watch.healthy(
            STALL_SECONDS
        )

    def retry_delay(self, attempt: int) -> float:
        """10 s, 20 s, 40 s ... after the first, second, third attempt; at most the configured cap."""
        return min(float(self.max_retry_delay_seconds), 10.0 * (1 << (max(1, attempt) - 1)))

    @traced
    def process(
        self,
        message: TaskMessage,
        *,
        attempt: int = 1,
        stop: StopSignal | None = None,
        extend_visibility: Callable[[int], None] | None = None,
        trace_header: str | None = None,
        received_at: float | None = None,
        alone: Callable[[], AbstractContextManager[bool]] | None = None,
    ) -> Outcome:
        """Runs the task once, unless it is terminal or leased by another live worker.

        While it runs, a heartbeat extends the message (through `extend_visibility`) and then the
        lease every third of the lease, and a watch reads its cancel flag every couple of seconds;
        a cancel request or a lost lease stops the work. After an attempt that lost its worker,
        `alone` (the worker's) keeps the task apart from others, or says it cannot (False). The work is a span in the trace of
        `trace_header` (SQS's AWSTraceHeader) or, without one, of the header the message carries."""
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
                received = self.clock() if received_at is None else received_at
                return self._run(
                    message, log, stop or StopSignal(), extend_visibility, received, attempt, alone
                )

    def _run(
        self,
        message: TaskMessage,
        log: dict[str, Any],
        stop: StopSignal,
        extend_visibility: Callable[[int], None] | None,
        received_at: float,
        attempt: int,
        alone: Callable[[], AbstractContextManager[bool]] | None,
    ) -> Outcome:
        lease = Lease(
            self.lifecycle,
            message.id,
            holder=self.worker_id,
            visibility_seconds=self.lease_seconds,
            clock=self.clock,
        )
        try:
            task = self._claim(lease, message, received_at)
        except LeaseHeld as held:
            delay = max(0.0, held.expires_at - self.clock()) + lease_margin(self.lease_seconds)
            logger.info("task held under another lease; deferred", extra=log | {"delay_seconds": delay})
            return Outcome(Disposition.DEFER, delay)
        except TransitionRejected as rejected:
            logger.info("task not run: already ended", extra=log | {"current_status": rejected.current})
            return Outcome(Disposition.DELETE)
        except Exception:  # the table is unreachable: a claim that landed unheard is waited out
            logger.exception("claim failed; the message comes back", extra=log)
            return Outcome(Disposition.RETRY, self.retry_delay(attempt))
        self.lifecycle.announce(task)
        beat = self.heartbeat.add(self._beat_for(lease, stop, extend_visibility))
        self._track(lease, stop)
        try:
            with self._alone_if_lost(task, alone) as by_itself:
                if not by_itself:  # another task of this worker waits to run alone: back to the queue
                    lease.release(TaskError(type="Released", message="waits to run alone on a worker"))
                    return Outcome(Disposition.RELEASE)
                return self._work(lease, task, message, log, stop, attempt)
        finally:
            self.heartbeat.remove(beat)
            self._untrack(lease)

    def _alone_if_lost(
        self, task: StoredTask, alone: Callable[[], AbstractContextManager[bool]] | None
    ) -> AbstractContextManager[bool]:
        """After an attempt lost its worker, the task runs alone on this one (when it can say so)."""
        lost = task.claimed_from is TaskStatus.RUNNING
        if lost and not task.isolate:
            try:  # remembered, so that a hand-back while it waits to be alone keeps it apart
                persist(
                    lambda: self.store.transition(
                        task.id,
                        TaskStatus.RUNNING,
                        allowed_from={TaskStatus.RUNNING},
                        changes={"isolate": True},
                        holder=self.worker_id,
                    ),
                    "isolate",
                )
            except Exception:
                logger.exception("isolation not recorded", extra={"task_id": task.id})
        if (lost or task.isolate) and alone is not None:
            logger.warning("its last attempt lost its worker: running it alone", extra={"task_id": task.id})
            return alone()
        return nullcontext(True)

    def _work(
        self,
        lease: Lease,
        task: StoredTask,
        message: TaskMessage,
        log: dict[str, Any],
        stop: StopSignal,
        attempt: int,
    ) -> Outcome:
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
            return self._finish(
                lease, task, TaskStatus.FAILED, started, log, result=failure.result, error=error
            )
        except TaskStopped:
            return self._stopped(lease, task, stop.reason, started, log)
        except Exception as error:  # infrastructure or unexpected: the queue retries, then dead-letters
            fields = log | {"error_type": type(error).__name__}
            logger.exception("task attempt failed; released for retry", extra=fields)
            released = lease.release(TaskError(type=type(error).__name__, message=str(error)))
            delay = self.retry_delay(attempt)
            return Outcome(Disposition.RETRY, delay if released else max(delay, lease.wait_after()))
        if stop.reason is not None:
            return self._stopped(lease, task, stop.reason, started, log)
        return self._finish(lease, task, TaskStatus.SUCCEEDED, started, log, result=result)

    def _claim(self, lease: Lease, message: TaskMessage, received_at: float) -> StoredTask:
        try:
            return lease.claim(received_at)
        except LeaseHeld:
            raise
        except TransitionRejected as rejected:
            if rejected.current is not None:
                raise
        # A message with no record (it was deleted, or never written): recreate it, then claim.
        persist(lambda: self.store.create(StoredTask.queued(message, now_iso())), "create")
        return lease.claim(received_at)

    def _beat_for(
        self, lease: Lease, stop: StopSignal, extend_visibility: Callable[[int], None] | None
    ) -> Callable[[], bool]:
        def beat() -> bool:
            """Visibility first, then the lease: a lease never outlives its message."""
            if stop.event.is_set():
                return False
            if extend_visibility is None:  # nothing to extend: the lease may not outgrow the message
                return True
            visible_from = self.clock()
            try:
                extend_visibility(int(self.lease_seconds))
            except Exception:  # the lease is left as it is; the next beat tries again
                logger.exception("visibility not extended", extra={"task_id": lease.task_id})
                return True
            try:
                task = lease.renew(visible_from)
            except TransitionRejected:
                logger.warning("lease lost; stopping the task", extra={"task_id": lease.task_id})
                stop.set(StopReason.LEASE_LOST)
                return False
            if task.cancel_requested:
                stop.set(StopReason.CANCELLED)
                return False
            return True

        return beat

    def _track(self, lease: Lease, stop: StopSignal) -> None:
        with self._lock:
            self._running[lease.task_id] = (lease, stop)
            start = not self._watching
            self._watching = True
        if start:
            self.watch.add(self._watch_flags)

    def _untrack(self, lease: Lease) -> None:
        with self._lock:
            if self._running.get(lease.task_id, (None,))[0] is lease:
                del self._running[lease.task_id]

    def _watch_flags(self) -> bool:
        """One read of the records of every running task: a cancel stops its task within seconds,
        whatever the lease's length; a record no longer under this lease stops it too."""
        with self._lock:
            running = dict(self._running)
        if not running:
            return True
        for record in self.store.get_many([*running]):
            lease, stop = running[record.id]
            if record.cancel_requested:
                stop.set(StopReason.CANCELLED)
            elif record.status is not TaskStatus.RUNNING or record.lease_token != lease.token:
                stop.set(StopReason.LEASE_LOST)
        return True

    def _source(self, uri: str, limit_bytes: int) -> bytes:
        """A `source_uri` archive from this worker's bucket, its size checked before it is read."""
        try:
            return self.payloads.read_source(uri, limit_bytes)
        except PayloadUnavailable as error:
            raise TaskFailure(_SOURCE_FAILURES[error.reason], str(error)) from None

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
        self, lease: Lease, task: StoredTask, reason: StopReason | None, started: float, log: dict[str, Any]
    ) -> Outcome:
        logger.info("task stopped before it finished", extra=log | {"stop_reason": reason})
        if reason is StopReason.CANCELLED:
            error = TaskError(type="Cancelled", message="cancelled while running")
            return self._finish(lease, task, TaskStatus.CANCELLED, started, log, result=None, error=error)
        if reason is StopReason.DRAIN:
            lease.release(TaskError(type="Released", message="worker stopping; handed back"))
            return Outcome(Disposition.RELEASE)
        return Outcome(Disposition.ABANDON)

    def _finish(
        self,
        lease: Lease,
        task: StoredTask,
        status: TaskStatus,
        started: float,
        log: dict[str, Any],
        *,
        result: dict[str, Any] | None,
        error: TaskError | None = None,
    ) -> Outcome:
        duration_ms = int((self.clock() - started) * 1000)
        finished_at = now_iso()
        try:
            persist(
                lambda: self.lifecycle.move(
                    task.id,
                    status,
                    holder=self.worker_id,
                    error=error,
                    result=result,
                    finished_at=finished_at,
                    duration_ms=duration_ms,
                ),
                "outcome",
            )
        except TransitionRejected as rejected:
            return self._not_recorded(task, status, rejected, log)
        except Exception:  # the table stays unreachable: the lease runs out and the task runs again
            logger.exception("outcome not recorded; the task comes back after its lease", extra=log)
            return Outcome(Disposition.RETRY, lease.wait_after())
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
        return Outcome(Disposition.DELETE)

    def _not_recorded(
        self, task: StoredTask, status: TaskStatus, rejected: TransitionRejected, log: dict[str, Any]
    ) -> Outcome:
        if rejected.current == status.value:
            # Our write landed and its answer was lost (or an equal outcome stands): announce the record.
            record = self.store.get(task.id)
            if record is not None and record.status is status:
                self.lifecycle.announce(record)
            return Outcome(Disposition.DELETE)
        # Cancelled meanwhile, or the lease passed to another worker: that outcome stands.
        logger.warning("outcome not recorded", extra=log | {"current_status": rejected.current})
        gone = rejected.current is None or rejected.current in TERMINAL_STATUSES
        return Outcome(Disposition.DELETE if gone else Disposition.ABANDON)
