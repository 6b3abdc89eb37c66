"""The worker, made safe to kill: it long-polls only for the tasks it can start, keeps
them alive while they run, records before it deletes, and on SIGTERM hands back what it cannot
finish within the grace period."""

from __future__ import annotations

import ctypes
import itertools
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from pydantic import ValidationError

from fargate_worker.health import HealthServer
from mistersmith import wiring
from mistersmith.adapters.ecs_agent import EcsAgentTaskProtection, NoTaskProtection
from mistersmith.adapters.sqs import SqsWorkQueue
from mistersmith.models import TaskMessage
from mistersmith.observability import logger, start_tracing
from mistersmith.ports import QueueMessage, TaskProtection, WorkQueue
from mistersmith.processing import Disposition, StopReason, StopSignal, TaskProcessor
from mistersmith.settings import WorkerSettings, load
from mistersmith.work.sandbox import seal_shared_temp

# Scale-in protection outlives a renewal interval by a wide margin, and lapses if the worker dies.
PROTECTION_MINUTES = 15
PR_SET_DUMPABLE = 4
# SQS deletes at most ten messages per call.
DELETE_BATCH = 10
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
        self._slots = threading.Semaphore(settings.concurrency)
        self._pool = ThreadPoolExecutor(max_workers=settings.concurrency, thread_name_prefix="task")
        self._pending_deletes: list[str] = []
        self._in_flight = 0

    def is_ready(self) -> bool:
        return not self.stopping.is_set()

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
        poller = threading.Thread(target=self._poll, name="poll", daemon=True)
        poller.start()
        while not self.stopping.wait(0.5):
            pass
        self._drain()
        # The poll in flight ends within the long-poll wait; what it brought is handed back at once.
        poller.join()
        self._flush_deletes()

    def _poll(self) -> None:
        while not self.stopping.is_set():
            free = self._acquire_slots()
            if not free:  # stopping: no slot was taken, so none is given back
                break
            try:
                messages = self.queue.receive(
                    max_messages=min(free, self.settings.receive_batch_size),
                    wait_seconds=self.settings.receive_wait_seconds,
                )
            except Exception:  # the queue is unreachable for now: back off, never die
                logger.exception("receive failed; retrying")
                messages = []
                self.stopping.wait(1)
            for message in messages:
                if self.stopping.is_set():
                    self._hand_back(message)
                else:
                    free -= 1
                    with self._lock:
                        self._in_flight += 1
                    self._pool.submit(self._handle, message)
            for _ in range(free):
                self._slots.release()

    def _acquire_slots(self) -> int:
        """Waits for at least one free slot, then takes all that are free: never more messages
        than the worker can start."""
        while not self._slots.acquire(timeout=0.5):
            # Finished tasks' deletes wait at most this long for others to share their batch.
            self._flush_deletes()
            if self.stopping.is_set():
                return 0
        taken = 1
        while taken < self.settings.receive_batch_size and self._slots.acquire(blocking=False):
            taken += 1
        return taken

    def _handle(self, message: QueueMessage) -> None:
        try:
            self._process(message)
        finally:
            with self._lock:
                self._in_flight -= 1
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
            disposition = self.processor.process(
                task,
                attempt=message.receive_count,
                stop=stop,
                extend_visibility=lambda seconds: self.queue.change_visibility(
                    message.receipt_handle, seconds
                ),
                trace_header=message.attributes.get(TRACE_ATTRIBUTE),
            )
        except Exception:  # the store or the bus failed around the work: the queue retries
            logger.exception("processing failed; the message will be redelivered", extra={"task_id": task.id})
            disposition = Disposition.RETRY
        finally:
            self._untrack(task.id)
        self._settle(message, disposition)

    def _hand_back(self, message: QueueMessage) -> None:
        """Puts an unfinished message back as a fresh copy: a drain or a scale-in must not use up
        one of the receives after which SQS dead-letters a task (only crashes should)."""
        try:
            self.queue.send(message.body, trace_header=message.attributes.get(TRACE_ATTRIBUTE))
        except Exception:  # keep the original instead: visible at once, at the cost of one receive
            logger.exception(
                "copy not sent; handing back the original", extra={"message_id": message.message_id}
            )
            try:
                self.queue.change_visibility(message.receipt_handle, 0)
            except Exception:  # it comes back after the visibility timeout instead
                logger.exception("message not handed back", extra={"message_id": message.message_id})
            return
        self._delete(message.receipt_handle)

    def _settle(self, message: QueueMessage, disposition: Disposition) -> None:
        if disposition is Disposition.DELETE:
            self._delete(message.receipt_handle)
        elif disposition is Disposition.RELEASE:
            self._hand_back(message)
        elif disposition is Disposition.RETRY:
            delay = min(self.settings.max_retry_delay_seconds, 10 * 2 ** (message.receive_count - 1))
            self.queue.change_visibility(message.receipt_handle, delay)

    def _delete(self, receipt_handle: str) -> None:
        """Deletes in batches: a finished task's handle waits for the others finishing with it."""
        with self._lock:
            self._pending_deletes.append(receipt_handle)
            flush = not self.running or len(self._pending_deletes) >= DELETE_BATCH
        if flush:
            self._flush_deletes()

    def _flush_deletes(self) -> None:
        with self._lock:
            batch, self._pending_deletes = (
                self._pending_deletes[:DELETE_BATCH],
                self._pending_deletes[DELETE_BATCH:],
            )
        while batch:
            for failed in self.queue.delete_batch(batch):
                # The record is already terminal, so a redelivery of this message is only skipped.
                logger.warning(
                    "message not deleted; it will be skipped when it comes back",
                    extra={"receipt": failed[:16]},
                )
            with self._lock:
                batch, self._pending_deletes = (
                    self._pending_deletes[:DELETE_BATCH],
                    self._pending_deletes[DELETE_BATCH:],
                )

    def _track(self, task_id: str, stop: StopSignal) -> None:
        with self._lock:
            self.running[task_id] = stop
            first = len(self.running) == 1
        if first:
            self._protect(True)

    def _untrack(self, task_id: str) -> None:
        with self._lock:
            self.running.pop(task_id, None)
            idle = not self.running
        if idle:
            self._protect(False)
            self._flush_deletes()

    def _protect(self, protected: bool) -> None:
        try:
            self.protection.set(protected, minutes=PROTECTION_MINUTES)
        except Exception:  # protection is a safeguard; the work goes on without it
            logger.exception("task protection not updated", extra={"protected": protected})

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
        self._pool.shutdown(wait=True)


def _keep_environment_from_children() -> None:
    """Makes the worker non-dumpable, so /proc/<pid>/environ (with the container-credentials URI)
    belongs to root: a sandboxed child running as the worker's own user cannot read it."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def main() -> int:
    _keep_environment_from_children()
    settings = load(WorkerSettings)
    if settings.ecs_agent_uri:  # in an ECS task, where the worker owns /tmp and /dev/shm
        logger.info("shared temporary directories sealed", extra={"sealed": seal_shared_temp()})
    protection = EcsAgentTaskProtection(settings.ecs_agent_uri) if settings.ecs_agent_uri else None
    worker = Worker(SqsWorkQueue(settings.work_queue_url), wiring.processor(settings), settings, protection)
    signal.signal(signal.SIGTERM, worker.request_stop)
    signal.signal(signal.SIGINT, worker.request_stop)
    health = HealthServer(settings.health_host, settings.health_port, worker.is_ready)
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
