"""Test doubles: in-memory adapters with the same conditional semantics as the AWS ones, for unit
tests and for benchmarks that measure the worker's own overhead without a network. Not shipped."""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Collection, Sequence
from typing import Any

from mistersmith.errors import TransitionRejected
from mistersmith.models import StoredTask, TaskStatus
from mistersmith.ports import (
    BlobNotFound,
    BlobStore,
    Event,
    EventPublisher,
    QueueDepth,
    QueueMessage,
    Refusal,
    TaskStore,
    WorkQueue,
    claim_refused,
)
from mistersmith.settings import WorkerSettings


class MemoryTaskStore(TaskStore):
    def __init__(self) -> None:
        self.tasks: dict[str, StoredTask] = {}
        self._lock = threading.Lock()

    def create(self, task: StoredTask) -> bool:
        with self._lock:
            if task.id in self.tasks:
                return False
            self.tasks[task.id] = task.model_copy()
            return True

    def get(self, task_id: str) -> StoredTask | None:
        with self._lock:
            task = self.tasks.get(task_id)
            return task.model_copy() if task else None

    def list(
        self,
        *,
        status: TaskStatus | None,
        task_type: str | None,
        limit: int,
        next_token: str | None,
        owner: str | None = None,
    ) -> tuple[list[StoredTask], str | None]:
        with self._lock:
            matching = [
                task
                for task in sorted(self.tasks.values(), key=lambda t: t.created_at, reverse=True)
                if (status is None or task.status is status)
                and (task_type is None or task.task_type == task_type)
                and (owner is None or task.owner == owner)
            ]
        start = int(next_token or 0)
        page = matching[start : start + limit]
        return [task.model_copy() for task in page], (
            str(start + limit) if start + limit < len(matching) else None
        )

    def count_tasks(self, status: TaskStatus, task_type: str | None = None, owner: str | None = None) -> int:
        with self._lock:
            return sum(
                task.status is status and task_type in (None, task.task_type) and owner in (None, task.owner)
                for task in self.tasks.values()
            )

    def transition(
        self,
        task_id: str,
        target: TaskStatus,
        *,
        allowed_from: Collection[TaskStatus],
        changes: dict[str, Any],
        holder: str | None = None,
    ) -> StoredTask:
        with self._lock:
            task = self.tasks.get(task_id)
            if (
                task is None
                or task.status not in allowed_from
                or (holder is not None and task.worker_id != holder)
            ):
                raise TransitionRejected(task_id, task.status if task else None, target)
            self.tasks[task_id] = StoredTask.model_validate(task.model_dump() | {"status": target, **changes})
            return self.tasks[task_id].model_copy()

    def claim(self, task_id: str, *, worker_id: str, token: str, expires_at: float, now: float) -> StoredTask:
        with self._lock:
            task = self.tasks.get(task_id)
            expired = (
                task is not None and task.status is TaskStatus.RUNNING and (task.lease_expires_at or 0) < now
            )
            if task is None or not (task.status is TaskStatus.QUEUED or expired):
                return claim_refused(task.model_copy() if task else None, task_id, token)
            task = task.model_copy(
                update={
                    "status": TaskStatus.RUNNING,
                    "worker_id": worker_id,
                    "lease_expires_at": expires_at,
                    "lease_token": token,
                    "attempts": task.attempts + 1,
                    "claimed_from": task.status,
                    "attempt_workers": [*task.attempt_workers, worker_id],
                }
            )
            self.tasks[task_id] = task
            return task.model_copy()

    def renew(self, task_id: str, *, worker_id: str, token: str, expires_at: float, now: float) -> StoredTask:
        with self._lock:
            task = self.tasks.get(task_id)
            if (
                task is None
                or task.status is not TaskStatus.RUNNING
                or task.worker_id != worker_id
                or task.lease_token != token
                or (task.lease_expires_at or 0) <= now
            ):
                raise TransitionRejected(task_id, task.status if task else None, TaskStatus.RUNNING)
            self.tasks[task_id] = task.model_copy(update={"lease_expires_at": expires_at})
            return self.tasks[task_id].model_copy()

    def created_before(
        self, status: TaskStatus, before: str, *, limit: int, unrouted: bool = False
    ) -> Sequence[StoredTask]:
        with self._lock:
            matching = sorted(
                (
                    task
                    for task in self.tasks.values()
                    if task.status is status
                    and task.created_at < before
                    and not (unrouted and task.routed_at is not None)
                ),
                key=lambda task: task.created_at,
            )
            return [task.model_copy() for task in matching[:limit]]

    def get_many(self, task_ids: Collection[str]) -> Sequence[StoredTask]:
        with self._lock:
            return [self.tasks[i].model_copy() for i in dict.fromkeys(task_ids) if i in self.tasks]


class MemoryQueue(WorkQueue):
    """A queue with visibility timeouts and receive counts; `receive` never blocks longer than
    it takes to find nothing."""

    def __init__(self, visibility_seconds: float = 30) -> None:
        self.visibility_seconds = visibility_seconds
        self._visible: deque[str] = deque()
        self._messages: dict[str, tuple[str, int]] = {}  # id -> (body, receive count)
        self._attributes: dict[str, dict[str, str]] = {}  # id -> system attributes
        self._in_flight: dict[str, tuple[str, float]] = {}  # receipt -> (id, visible again at)
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def send(self, body: str, *, trace_header: str | None = None, delay_seconds: int = 0) -> str:
        with self._lock:
            message_id = str(next(self._ids))
            self._messages[message_id] = (body, 0)
            self._attributes[message_id] = {"AWSTraceHeader": trace_header} if trace_header else {}
            if delay_seconds:  # delayed: kept like an in-flight message with a receipt nobody holds
                self._in_flight[f"{message_id}:delayed"] = (message_id, time.monotonic() + delay_seconds)
            else:
                self._visible.append(message_id)
            return message_id

    def receive(self, *, max_messages: int, wait_seconds: int) -> list[QueueMessage]:
        with self._lock:
            self._expire(time.monotonic())
            received = []
            while self._visible and len(received) < max_messages:
                message_id = self._visible.popleft()
                body, count = self._messages[message_id]
                self._messages[message_id] = (body, count + 1)
                receipt = f"{message_id}:{count + 1}"
                self._in_flight[receipt] = (message_id, time.monotonic() + self.visibility_seconds)
                attributes = self._attributes[message_id]
                received.append(QueueMessage(message_id, body, receipt, count + 1, dict(attributes)))
            return received

    def delete(self, receipt_handle: str) -> None:
        with self._lock:
            message_id, _ = self._in_flight.pop(receipt_handle)
            del self._messages[message_id]
            del self._attributes[message_id]

    def delete_batch(self, receipt_handles: list[str]) -> list[str]:
        failed = []
        for receipt in receipt_handles:
            try:
                self.delete(receipt)
            except KeyError:
                failed.append(receipt)
        return failed

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        with self._lock:
            message_id, _ = self._in_flight[receipt_handle]
            self._in_flight[receipt_handle] = (message_id, time.monotonic() + seconds)
            self._expire(time.monotonic())

    def depth(self) -> QueueDepth:
        with self._lock:
            return QueueDepth(visible=len(self._visible), in_flight=len(self._in_flight), delayed=0)

    def _expire(self, now: float) -> None:
        for receipt, (message_id, visible_at) in list(self._in_flight.items()):
            if visible_at <= now:
                del self._in_flight[receipt]
                self._visible.append(message_id)


class NullPublisher(EventPublisher):
    """Counts events instead of sending them."""

    def __init__(self) -> None:
        self.published = 0

    def publish(self, *, source: str, detail_type: str, detail: dict[str, Any]) -> None:
        self.published += 1


class BrokenBus(EventPublisher):
    """A bus that refuses every event."""

    def publish(self, *, source: str, detail_type: str, detail: dict[str, Any]) -> None:
        raise ConnectionError("bus unreachable")


class BatchBus(EventPublisher):
    """A bus that keeps each request it gets (the events in it) and what it took, in order.
    `refusals` scripts the next requests' answers: per request, the positions it refuses, each
    with whether for a passing reason."""

    def __init__(self) -> None:
        self.requests: list[list[Event]] = []
        self.taken: list[Event] = []
        self.refusals: deque[dict[int, bool]] = deque()
        self.got_one = threading.Event()

    def publish(self, *, source: str, detail_type: str, detail: dict[str, Any]) -> None:
        if refused := self.publish_batch([Event(source, detail_type, detail)]):
            raise ConnectionError(refused[0].reason)

    def publish_batch(self, events: Sequence[Event]) -> list[Refusal]:
        refusing = self.refusals.popleft() if self.refusals else {}
        self.requests.append(list(events))
        self.taken += [event for i, event in enumerate(events) if i not in refusing]
        self.got_one.set()
        return [Refusal(events[i], "refused", retryable) for i, retryable in sorted(refusing.items())]


class MemoryBlobStore(BlobStore):
    """A bucket in a dict."""

    def __init__(self, bucket: str = "memory") -> None:
        self._bucket = bucket
        self.objects: dict[str, bytes] = {}

    @property
    def bucket(self) -> str:
        return self._bucket

    def put(self, key: str, data: bytes, *, content_type: str) -> str:
        self.objects[key] = data
        return f"s3://{self._bucket}/{key}"

    def get(self, bucket: str, key: str) -> bytes:
        return self._object(bucket, key)

    def size(self, bucket: str, key: str) -> int:
        return len(self._object(bucket, key))

    def _object(self, bucket: str, key: str) -> bytes:
        if bucket != self._bucket or key not in self.objects:
            raise BlobNotFound(bucket, key)
        return self.objects[key]

    def presign_get(self, key: str, *, expires_seconds: int) -> str:
        return f"memory://{self._bucket}/{key}"

    def presign_put(self, key: str, *, content_type: str, expires_seconds: int) -> str:
        return f"memory://{self._bucket}/{key}"


def worker_settings(**overrides: Any) -> WorkerSettings:
    """A worker's settings off AWS: placeholder resource names, no long poll, health on any free
    port; `overrides` set the rest."""
    defaults: dict[str, Any] = {
        "task_table_name": "-",
        "event_bus_name": "-",
        "artifacts_bucket_name": "-",
        "work_queue_url": "-",
        "receive_wait_seconds": 0,
        "health_port": 0,
    }
    return WorkerSettings(**(defaults | overrides))
