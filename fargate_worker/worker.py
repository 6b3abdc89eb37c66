"""The worker loop of seed 1.1: receive, process, delete on success, leave failures to the queue."""

from __future__ import annotations

import signal
import threading

from pydantic import ValidationError

from fargate_worker.health import HealthServer
from mistersmith import wiring
from mistersmith.adapters.sqs import SqsWorkQueue
from mistersmith.models import TaskMessage
from mistersmith.observability import logger, metrics
from mistersmith.ports import QueueMessage, WorkQueue
from mistersmith.processing import Disposition, TaskProcessor
from mistersmith.settings import WorkerSettings, load


class Worker:
    def __init__(self, queue: WorkQueue, processor: TaskProcessor, settings: WorkerSettings) -> None:
        self.queue = queue
        self.processor = processor
        self.settings = settings
        self.stopping = threading.Event()

    def is_ready(self) -> bool:
        return not self.stopping.is_set()

    def stop(self, *_: object) -> None:
        """Finish the current poll and task, hand back what was not started, then leave."""
        if not self.stopping.is_set():
            logger.info("stopping: draining", extra={"worker_id": self.settings.worker_id})
        self.stopping.set()

    def run(self) -> None:
        while not self.stopping.is_set():
            messages = self.queue.receive(
                max_messages=self.settings.receive_batch_size,
                wait_seconds=self.settings.receive_wait_seconds,
            )
            for message in messages:
                if self.stopping.is_set():
                    # Visible again at once, so another worker starts it without waiting out the timeout.
                    self.queue.change_visibility(message.receipt_handle, 0)
                else:
                    self.handle(message)

    def handle(self, message: QueueMessage) -> None:
        try:
            task = TaskMessage.model_validate_json(message.body)
        except ValidationError as error:
            # Nothing to record it against: the queue redelivers it, then moves it to the DLQ.
            logger.error(
                "unreadable message left for the DLQ",
                extra={"message_id": message.message_id, "error": str(error)},
            )
            return
        disposition = self.processor.process(task, attempt=message.receive_count)
        if disposition is Disposition.DELETE:
            self.queue.delete(message.receipt_handle)
        metrics.flush_metrics()


def main() -> int:
    settings = load(WorkerSettings)
    worker = Worker(SqsWorkQueue(settings.work_queue_url), wiring.processor(settings), settings)
    signal.signal(signal.SIGTERM, worker.stop)
    signal.signal(signal.SIGINT, worker.stop)
    health = HealthServer(settings.health_host, settings.health_port, worker.is_ready)
    health.start()
    logger.info("worker started", extra={"worker_id": settings.worker_id, "health_port": health.port})
    try:
        worker.run()
    finally:
        health.stop()
    logger.info("worker stopped", extra={"worker_id": settings.worker_id})
    return 0
