"""The worker, made safe to kill: it long-polls only for the tasks it can start, keeps
them alive while they run, records before it deletes, and on SIGTERM hands back what it cannot
finish within the grace period."""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from queue import Empty, SimpleQueue

from pydantic import ValidationError

from fargate_worker.deletes import DeferredDeletes
from fargate_worker.health import HealthServer
from mistersmith import wiring
from mistersmith.adapters.ecs_agent import EcsAgentTaskProtection, NoTaskProtection
from mistersmith.adapters.sqs import SqsWorkQueue
from mistersmith.models import TaskMessage
from mistersmith.observability import logger, start_tracing
from mistersmith.ports import QueueMessage, TaskProtection, WorkQueue
from mistersmith.processing import (
    STALL_SECONDS,
    Disposition,
    Outcome,
    StopReason,
    StopSignal,
    TaskProcessor,
    persist,
)
from mistersmith.settings import WorkerSettings, load
from mistersmith.work.sandbox import SEALED_TEMP_DIRS, seal_shared_temp

# Scale-in protection outlives a renewal interval by a wide margin, and lapses if the worker dies.
PROTECTION_MINUTES = 15
PR_SET_DUMPABLE = 4
# SQS delays a message by at most 15 minutes; a longer deferral keeps the original invisible instead.
MAX_DELAY_SECONDS = 900
# Where SQS keeps the trace context of a message (set by the router, or by X-Ray instrumentation).
TRACE_ATTRIBUTE = "AWSTraceHeader"


class Worker:
    def __init__(
        self,
        queue: WorkQueue,
        processor: TaskProcessor,
        settings: WorkerSettings,
        protection: TaskProtection | None = None,
    ) -> None:
        self.queue = queue
        self.processor = processor
        self.settings = settings
        self.protection = protection or NoTaskProtection()
        self.stopping = threading.Event()
        self._stop_requests = itertools.count()
        self.drain_deadline = float("inf")
        self.running: dict[str, StopSignal] = {}
        self._lock = threading.Lock()
        self._slots = Slots(settings.concurrency)
        # The messages started and the threads that run them, one per slot at most (None: stop).
        self._started: SimpleQueue[QueueMessage | None] = SimpleQueue()
        self._task_threads: list[threading.Thread] = []
        self.deletes = DeferredDeletes(queue)
        self._in_flight = 0
        self._poller: threading.Thread | None = None
        self._poll_tick = time.monotonic()
        # Scale-in protection is kept from a task's start until the worker finds nothing to do,
        # renewed by a task that starts once half of it has passed (monotonic; 0: not protected).
        self._protected_until = 0.0
        self._protection_lock = threading.Lock()
        # Held by the one task that is gathering every slot to run alone; set while it does.
        self._alone_lock = threading.Lock()
        self._gathering = threading.Event()

    def is_ready(self) -> bool:
        return not self.stopping.is_set() and self.is_alive()

    def is_alive(self) -> bool:
        """False once a background thread has died or stopped making progress: ECS replaces the task."""
        poller = self._poller
        # A receive may hold the poll thread for its long poll plus botocore's retries of a timeout.
        stalled_after = self.settings.receive_wait_seconds + STALL_SECONDS
        polling = poller is None or (
            (poller.is_alive() or self.stopping.is_set())
            and (self.stopping.is_set() or time.monotonic() - self._poll_tick < stalled_after)
        )
        return polling and self.processor.healthy()

    def request_stop(self, *_: object) -> None:
        """First signal: stop receiving and drain within the grace; a second one: drain now."""
        # Counted, not checked then set: a second signal can arrive inside the first's handler.
        if next(self._stop_requests):
            logger.warning("second stop signal: handing back running tasks now")
            self.drain_deadline = time.monotonic()
            return
        logger.info(
            "stop signal: draining",
            extra={"worker_id": self.settings.worker_id, "running": len(self.running)},
        )
        self.drain_deadline = time.monotonic() + self.settings.drain_grace_seconds
        self.stopping.set()

    def run(self) -> None:
        """Polls until stopped, then drains; returns when nothing of this worker's is in flight."""
        self._poller = threading.Thread(target=self._poll, name="poll", daemon=True)
        self._poller.start()
        while not self.stopping.wait(0.5):
            pass
        self._drain()
        # The poll in flight ends within the long-poll wait; what it brought is handed back at once.
        self._poller.join()
        self.deletes.flush(wait=True)
        self.processor.lifecycle.events.flush()
        self._unprotect_if_idle()

    def _poll(self) -> None:
        try:
            failures = 0
            while not self.stopping.is_set():
                self._poll_tick = time.monotonic()
                free = self._acquire_slots()
                if not free:  # stopping: no slot was taken, so none is given back
                    break
                try:
                    messages = self.queue.receive(
                        max_messages=min(free, self.settings.receive_batch_size),
                        wait_seconds=self.settings.receive_wait_seconds,
                    )
                    failures = 0
                    if not messages:  # nothing to do: what waits to be deleted goes now
                        self.deletes.flush()
                        self._unprotect_if_idle()
                except Exception:  # the queue is unreachable for now: back off, never die
                    logger.exception("receive failed; retrying")
                    messages = []
                    failures += 1
                    self.stopping.wait(min(20, 2 ** (failures - 1)))
                free = self._start(messages, free)
                for _ in range(free):
                    self._slots.release()
        except BaseException:
            logger.exception("poll thread died")
            raise

    def _start(self, messages: list[QueueMessage], free: int) -> int:
        """Starts each message (or hands it back when stopping); returns the slots left unused."""
        for message in messages:
            # Checked where in_flight is counted: once the drain has seen none in flight, none starts.
            with self._lock:
                start = not self.stopping.is_set()
                if start:
                    self._in_flight += 1
                    # A thread per message in flight, up to the concurrency: none ever waits for one.
                    if len(self._task_threads) < self._in_flight:
                        self._task_threads.append(
                            threading.Thread(
                                target=self._run_tasks, name=f"task_{len(self._task_threads)}", daemon=True
                            )
                        )
                        self._task_threads[-1].start()
            if start:
                free -= 1
                self._started.put(message)
            else:
                self._hand_back(message)
        return free

    def _acquire_slots(self) -> int:
        """Waits for at least one free slot, then takes all that are free: never more messages
        than the worker can start (and none while a task gathers the slots to run alone)."""
        while self._gathering.is_set() or not self._slots.acquire(0.5):
            if self._gathering.is_set():
                self.stopping.wait(0.5)
            self._poll_tick = time.monotonic()
            if self.stopping.is_set():
                return 0
        taken = 1
        while taken < self.settings.receive_batch_size and self._slots.acquire(0):
            taken += 1
        return taken

    def _run_tasks(self) -> None:
        """A task thread: runs started messages one after another until told to stop (None)."""
        while (message := self._started.get()) is not None:
            try:
                self._process(message)
            except Exception:  # never the thread's end: the message comes back after its visibility
                logger.exception("task not settled", extra={"message_id": message.message_id})
            finally:
                with self._lock:
                    self._in_flight -= 1
                # The last step before the thread waits again: the poll thread wakes to a free GIL.
                self._slots.release()

    def _process(self, message: QueueMessage) -> None:
        try:
            task = TaskMessage.model_validate_json(message.body)
        except ValidationError as error:
            # Nothing to record it against: the queue redelivers it, then the DLQ keeps it.
            logger.error(
                "unreadable message left for the DLQ",
                extra={"message_id": message.message_id, "error": str(error)},
            )
            return
        stop = StopSignal()
        self._track(task.id, stop)
        try:
            outcome = self.processor.process(
                task,
                attempt=message.receive_count,
                stop=stop,
                extend_visibility=lambda seconds: self.queue.change_visibility(
                    message.receipt_handle, seconds
                ),
                trace_header=message.attributes.get(TRACE_ATTRIBUTE),
                received_at=message.received_at,
                alone=self._alone,
            )
        except Exception:  # unexpected around the work: the message comes back when its visibility ends
            logger.exception("processing failed; the message will be redelivered", extra={"task_id": task.id})
            outcome = Outcome(Disposition.ABANDON)
        finally:
            self._untrack(task.id)
        self._settle(message, outcome)

    @contextlib.contextmanager
    def _alone(self) -> Iterator[bool]:
        """Runs the caller's task with no other beside it: takes every other slot as the tasks
        running now finish, and takes no new work meanwhile. False (at once) when another task is
        already doing so, or when the worker is told to stop while it waits."""
        if not self._alone_lock.acquire(blocking=False):
            yield False
            return
        taken = 0
        self._gathering.set()
        try:
            while taken < self.settings.concurrency - 1 and not self.stopping.is_set():
                if self._slots.acquire(0.5):
                    taken += 1
            yield taken == self.settings.concurrency - 1
        finally:
            self._gathering.clear()
            for _ in range(taken):
                self._slots.release()
            self._alone_lock.release()

    def _hand_back(self, message: QueueMessage) -> None:
        """Puts an unfinished message back as a fresh copy: a drain or a scale-in must not use up
        one of the receives after which SQS dead-letters a task (only crashes should)."""
        self._replace(message, 0)

    def _replace(self, message: QueueMessage, delay: float) -> None:
        """A fresh copy of the message, visible after `delay`, in place of the original; the
        original is kept (invisible for `delay`) when the copy cannot be sent."""
        seconds = int(delay + 0.999)
        if seconds <= MAX_DELAY_SECONDS:
            try:
                persist(
                    lambda: self.queue.send(
                        message.body,
                        trace_header=message.attributes.get(TRACE_ATTRIBUTE),
                        delay_seconds=seconds,
                    ),
                    "re-send",
                )
            except Exception:
                logger.exception(
                    "copy not sent; keeping the original", extra={"message_id": message.message_id}
                )
            else:
                self._delete(message.receipt_handle)
                return
        self._set_visibility(message, seconds)

    def _set_visibility(self, message: QueueMessage, seconds: int) -> None:
        try:
            persist(lambda: self.queue.change_visibility(message.receipt_handle, seconds), "visibility")
        except Exception:  # it comes back when its current visibility ends, which outlasts its lease
            logger.exception("visibility not changed", extra={"message_id": message.message_id})

    def _settle(self, message: QueueMessage, outcome: Outcome) -> None:
        disposition = outcome.disposition
        if disposition is Disposition.DELETE:
            self._delete(message.receipt_handle)
        elif disposition is Disposition.RELEASE:
            self._hand_back(message)
        elif disposition is Disposition.DEFER:
            # A fresh copy: waiting out a live holder must not use up a receive toward the DLQ.
            self._replace(message, outcome.delay)
        elif disposition is Disposition.RETRY:
            self._set_visibility(message, int(outcome.delay + 0.999))

    def _delete(self, receipt_handle: str) -> None:
        """Deletes in batches: a finished task's handle waits (a second at most) for the others
        finishing after it; the deletes' thread makes the call, or the poll thread when the queue is empty."""
        self.deletes.add(receipt_handle)

    def _track(self, task_id: str, stop: StopSignal) -> None:
        with self._lock:
            self.running[task_id] = stop
        with self._protection_lock:
            now = time.monotonic()
            if now > self._protected_until - PROTECTION_MINUTES * 30 and self._protect(True):
                self._protected_until = now + PROTECTION_MINUTES * 60

    def _untrack(self, task_id: str) -> None:
        with self._lock:
            self.running.pop(task_id, None)

    def _unprotect_if_idle(self) -> None:
        """Drops scale-in protection once nothing runs and a receive found nothing to start: a
        worker running tasks back to back asks the ECS agent once, not twice per task."""
        with self._protection_lock:
            with self._lock:
                idle = not self.running
            if idle and self._protected_until and self._protect(False):
                self._protected_until = 0.0

    def _protect(self, protected: bool) -> bool:
        """Asks for protection on or off; whether the agent took it."""
        try:
            self.protection.set(protected, minutes=PROTECTION_MINUTES)
        except Exception:  # protection is a safeguard; the work goes on without it
            logger.exception("task protection not updated", extra={"protected": protected})
            return False
        return True

    def _drain(self) -> None:
        """Lets running tasks finish until the deadline, then stops them (they are handed back)."""
        while True:
            with self._lock:
                in_flight, running = self._in_flight, list(self.running.values())
            if in_flight == 0:
                break
            if time.monotonic() >= self.drain_deadline:
                for stop in running:
                    stop.set(StopReason.DRAIN)
            time.sleep(0.05)
        for _ in self._task_threads:
            self._started.put(None)
        for thread in self._task_threads:
            thread.join()


class Slots:
    """A worker's free task slots: a counting semaphore on a C-level queue, so that a release runs
    no Python code after waking the waiter (threading.Semaphore runs a Condition's), and the woken
    poll thread seldom finds the GIL still held and has to sleep again."""

    def __init__(self, count: int) -> None:
        self._free: SimpleQueue[None] = SimpleQueue()
        for _ in range(count):
            self._free.put(None)

    def acquire(self, timeout: float) -> bool:
        """Takes a slot, waiting up to `timeout` seconds (0: not at all); whether it took one."""
        try:
            if timeout:
                self._free.get(timeout=timeout)
            elif self._free.empty():  # the common case, without raising
                return False
            else:
                self._free.get_nowait()
        except Empty:
            return False
        return True

    def release(self) -> None:
        self._free.put(None)


def _keep_environment_from_children() -> None:
    """Makes the worker non-dumpable, so /proc/<pid>/environ (with the container-credentials URI)
    belongs to root: a sandboxed child running as the worker's own user cannot read it."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _log_thread_death(args: threading.ExceptHookArgs) -> None:
    """Any thread that dies says so, with its traceback, in the structured log."""
    name = args.thread.name if args.thread else "?"
    if args.exc_value is not None:
        logger.error(
            "thread died",
            exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
            extra={"thread_name": name},
        )


def seal_in_ecs(ecs_agent_uri: str | None, directories: Sequence[str] = SEALED_TEMP_DIRS) -> list[str]:
    """Seals the shared temporary directories in an ECS task (ECS_AGENT_URI set), where the worker
    owns them; never on a developer's machine. The directories it sealed."""
    if not ecs_agent_uri:
        return []
    sealed = seal_shared_temp(directories)
    logger.info("shared temporary directories sealed", extra={"sealed": sealed})
    return sealed


def main() -> int:
    _keep_environment_from_children()
    settings = load(WorkerSettings)
    seal_in_ecs(settings.ecs_agent_uri)
    protection = EcsAgentTaskProtection(settings.ecs_agent_uri) if settings.ecs_agent_uri else None
    worker = Worker(SqsWorkQueue(settings.work_queue_url), wiring.processor(settings), settings, protection)
    signal.signal(signal.SIGTERM, worker.request_stop)
    signal.signal(signal.SIGINT, worker.request_stop)
    threading.excepthook = _log_thread_death
    health = HealthServer(settings.health_host, settings.health_port, worker.is_ready, worker.is_alive)
    health.start()
    stop_tracing = start_tracing(settings.otel_exporter_otlp_endpoint, logger.service)
    logger.info(
        "worker started",
        extra={
            "worker_id": settings.worker_id,
            "health_port": health.port,
            "tracing": settings.otel_exporter_otlp_endpoint or "off",
        },
    )
    try:
        worker.run()
    finally:
        health.stop()
        if stop_tracing:
            stop_tracing()
    logger.info("worker stopped", extra={"worker_id": settings.worker_id})
    return 0
