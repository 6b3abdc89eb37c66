"""A worker knows when it is broken: a dead background thread fails its health, and SQS errors in
its poll and delete paths are retried without ending a thread (in memory, no sockets)."""

from __future__ import annotations

import threading
import time

import pytest

from fargate_worker.worker import Worker
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import TaskMessage, canonical_json
from mistersmith.processing import TaskProcessor
from mistersmith.work import WorkLimits
from tests.fakes import MemoryBlobStore, MemoryQueue, MemoryTaskStore, NullPublisher, worker_settings

pytestmark = pytest.mark.unit


def worker_on(queue: MemoryQueue, store: MemoryTaskStore, concurrency: int = 2) -> Worker:
    settings = worker_settings(concurrency=concurrency)
    processor = TaskProcessor(
        Lifecycle(store, NullPublisher()),
        MemoryBlobStore(),
        worker_id="w",
        lease_seconds=30,
        limits=WorkLimits(),
    )
    return Worker(queue, processor, settings)


def analyze(task_id: str) -> str:
    message = TaskMessage(id=task_id, task_type="analyze", payload={"files": {"a.py": "x = 1\n"}})
    return canonical_json(message.model_dump(mode="json", exclude_none=True))


def wait_until(condition, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


class DeleteFailsOnce(MemoryQueue):
    def __init__(self) -> None:
        super().__init__()
        self.failed = threading.Event()

    def delete_batch(self, receipt_handles: list[str]) -> list[str]:
        if not self.failed.is_set():
            self.failed.set()
            raise ConnectionError("EndpointConnectionError")
        return super().delete_batch(receipt_handles)


def test_a_failed_delete_neither_ends_the_poll_loop_nor_loses_the_delete():
    # Given a worker of concurrency 2 whose first delete call fails
    queue, store = DeleteFailsOnce(), MemoryTaskStore()
    worker = worker_on(queue, store)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        queue.send(analyze("first"))
        assert wait_until(queue.failed.is_set)
        # When more work arrives after it / Then the worker still takes it, and stays healthy
        queue.send(analyze("second"))
        assert wait_until(lambda: (task := store.get("second")) is not None and task.status == "SUCCEEDED")
        assert worker.is_alive()
        # and the failed delete was made again: nothing is left in the queue
        assert wait_until(lambda: queue.depth().in_flight == 0 and queue.depth().visible == 0)
    finally:
        worker.request_stop()
        runner.join(timeout=30)


class ReceiveBreaks(MemoryQueue):
    def receive(self, *, max_messages: int, wait_seconds: int):
        return None  # a bug, not an outage: iterating it ends the poll thread


def test_a_dead_poll_thread_makes_the_worker_unhealthy():
    worker = worker_on(ReceiveBreaks(), MemoryTaskStore())
    assert worker.is_alive()
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        assert wait_until(lambda: not worker.is_alive())
        assert not worker.is_ready()
    finally:
        worker.request_stop()
        runner.join(timeout=30)


class ReceiveFailsTwice(MemoryQueue):
    def __init__(self) -> None:
        super().__init__()
        self.failures = 2

    def receive(self, *, max_messages: int, wait_seconds: int):
        if self.failures:
            self.failures -= 1
            raise ConnectionError("SQS unreachable")
        return super().receive(max_messages=max_messages, wait_seconds=wait_seconds)


def test_receive_errors_are_retried_with_back_off_and_the_work_still_runs():
    queue, store = ReceiveFailsTwice(), MemoryTaskStore()
    queue.send(analyze("later"))
    worker = worker_on(queue, store, concurrency=1)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        assert wait_until(lambda: (task := store.get("later")) is not None and task.status == "SUCCEEDED")
        assert worker.is_alive()
    finally:
        worker.request_stop()
        runner.join(timeout=30)
