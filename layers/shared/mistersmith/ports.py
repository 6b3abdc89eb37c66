"""Ports: what the logic needs from the outside world. Adapters implement them; tests pass fakes."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mistersmith.errors import LeaseHeld, MisterSmithError, TransitionRejected
from mistersmith.models import StoredTask, TaskStatus

if TYPE_CHECKING:  # scaling imports this module's data types: the decision is named for types only
    from mistersmith.scaling import Decision


class TaskStore(ABC):
    """The state table. Every status change is a conditional write: terminal tasks never change."""

    @abstractmethod
    def create(self, task: StoredTask) -> bool:
        """Writes `task` if its id is new; returns False (and writes nothing) when it exists."""

    @abstractmethod
    def get(self, task_id: str) -> StoredTask | None: ...

    @abstractmethod
    def list(
        self,
        *,
        status: TaskStatus | None,
        task_type: str | None,
        limit: int,
        next_token: str | None,
        owner: str | None = None,
    ) -> tuple[list[StoredTask], str | None]:
        """Newest first; with `owner`, only that owner's tasks (the by-owner index)."""

    @abstractmethod
    def count_tasks(self, status: TaskStatus, task_type: str | None = None, owner: str | None = None) -> int:
        """How many tasks are in `status` (of `task_type`, of `owner`), counted by the store, not listed."""

    @abstractmethod
    def transition(
        self,
        task_id: str,
        target: TaskStatus,
        *,
        allowed_from: Collection[TaskStatus],
        changes: dict[str, Any],
        holder: str | None = None,
    ) -> StoredTask:
        """Moves the task to `target` if it is in one of `allowed_from` (and, when `holder` is given,
        still leased by that worker), setting `changes`. Raises TransitionRejected otherwise."""

    @abstractmethod
    def claim(self, task_id: str, *, worker_id: str, token: str, expires_at: float, now: float) -> StoredTask:
        """QUEUED -> RUNNING under the lease `token` until `expires_at`, or takes over a RUNNING task
        whose lease expired before `now`. A resent claim with the same token returns the task it
        already holds. Raises LeaseHeld when another lease is live, TransitionRejected otherwise."""

    @abstractmethod
    def renew(self, task_id: str, *, worker_id: str, token: str, expires_at: float, now: float) -> StoredTask:
        """Moves the lease `token` to `expires_at`, only while it is still this worker's and has not
        expired at `now`; raises TransitionRejected otherwise."""

    @abstractmethod
    def created_before(
        self, status: TaskStatus, before: str, *, limit: int, unrouted: bool = False
    ) -> Sequence[StoredTask]:
        """Up to `limit` tasks in `status` created before the ISO time `before`, oldest first;
        `unrouted`: only those the router never sent to a queue."""

    @abstractmethod
    def get_many(self, task_ids: Collection[str]) -> Sequence[StoredTask]:
        """The records of those ids that exist (in no particular order), read consistently."""


def claim_refused(current: StoredTask | None, task_id: str, token: str) -> StoredTask:
    """A refused claim: the task it already holds when the lease is `token`'s (a resent claim whose
    first answer was lost), or the reason it cannot be taken."""
    if current is not None and current.status is TaskStatus.RUNNING:
        if current.lease_token == token:
            return current
        raise LeaseHeld(task_id, current.lease_expires_at or 0.0)
    raise TransitionRejected(task_id, current.status if current else None, TaskStatus.RUNNING)


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    body: str
    receipt_handle: str
    receive_count: int = 1
    attributes: dict[str, str] = field(default_factory=dict)
    # Epoch seconds at or before which the message became invisible: its lease is dated from here.
    received_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class QueueDepth:
    visible: int
    in_flight: int
    delayed: int


class WorkQueue(ABC):
    @abstractmethod
    def send(self, body: str, *, trace_header: str | None = None, delay_seconds: int = 0) -> str:
        """Sends a message, visible after `delay_seconds` (at most 900); `trace_header` becomes its
        AWSTraceHeader system attribute."""

    def send_batch(self, messages: Sequence[tuple[str, str | None]]) -> list[int]:
        """Sends (body, trace header) messages, in as few requests as the queue allows; returns the
        indexes of those not sent. By default one `send` each."""
        failed = []
        for index, (body, trace_header) in enumerate(messages):
            try:
                self.send(body, trace_header=trace_header)
            except Exception:
                failed.append(index)
        return failed

    @abstractmethod
    def receive(self, *, max_messages: int, wait_seconds: int) -> list[QueueMessage]: ...

    @abstractmethod
    def delete(self, receipt_handle: str) -> None: ...

    @abstractmethod
    def delete_batch(self, receipt_handles: list[str]) -> list[str]:
        """Deletes up to ten messages in one call; returns the handles that could not be deleted."""

    @abstractmethod
    def change_visibility(self, receipt_handle: str, seconds: int) -> None: ...

    @abstractmethod
    def depth(self) -> QueueDepth: ...


@dataclass(frozen=True)
class Event:
    source: str
    detail_type: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class Refusal:
    """An event a bus did not take, why, and whether sending it again may do better."""

    event: Event
    reason: str
    retryable: bool


class EventPublisher(ABC):
    @abstractmethod
    def publish(self, *, source: str, detail_type: str, detail: dict[str, Any]) -> None: ...

    def publish_batch(self, events: Sequence[Event]) -> list[Refusal]:
        """Publishes up to ten events, in one request where the bus allows, once; returns those it
        refused, in order. By default one `publish` each (which retries on its own)."""
        refused = []
        for event in events:
            try:
                self.publish(source=event.source, detail_type=event.detail_type, detail=event.detail)
            except Exception as error:
                refused.append(Refusal(event, str(error), retryable=False))
        return refused

    def flush(self) -> None:  # noqa: B027 - optional, no-op
        """Publishes what a buffering publisher holds back; nothing to do for the others."""


class BlobNotFound(MisterSmithError):
    """No object at the key a BlobStore was asked for."""

    def __init__(self, bucket: str, key: str) -> None:
        super().__init__(f"s3://{bucket}/{key} does not exist")
        self.bucket = bucket
        self.key = key


class BlobForbidden(MisterSmithError):
    """The bucket refused to read the object (S3's 403): never a server error of ours."""

    def __init__(self, bucket: str, key: str) -> None:
        super().__init__(f"s3://{bucket}/{key} may not be read")
        self.bucket = bucket
        self.key = key


class BlobStore(ABC):
    @abstractmethod
    def put(self, key: str, data: bytes, *, content_type: str) -> str:
        """Stores `data` and returns its `s3://bucket/key` URI."""

    @abstractmethod
    def get(self, bucket: str, key: str) -> bytes:
        """The object's bytes; raises BlobNotFound when there is none, BlobForbidden when refused."""

    @abstractmethod
    def size(self, bucket: str, key: str) -> int:
        """The object's size in bytes, without reading it; raises BlobNotFound or BlobForbidden."""

    @abstractmethod
    def presign_get(self, key: str, *, expires_seconds: int) -> str:
        """A URL that downloads this bucket's object `key` without credentials until it expires."""

    @abstractmethod
    def presign_put(self, key: str, *, content_type: str, expires_seconds: int) -> str:
        """A URL that lets whoever holds it PUT one object at `key` in this store's bucket, with
        exactly this Content-Type, until it expires; no other credentials are needed."""

    @property
    @abstractmethod
    def bucket(self) -> str: ...


@dataclass(frozen=True)
class ServiceCounts:
    desired: int
    running: int
    pending: int
    deployment_in_progress: bool


class WorkerService(ABC):
    """The ECS service that runs the Fargate workers."""

    @abstractmethod
    def counts(self) -> ServiceCounts: ...

    @abstractmethod
    def set_desired(self, count: int) -> None: ...


class TaskProtection(ABC):
    """ECS task scale-in protection for the worker's own task."""

    @abstractmethod
    def set(self, protected: bool, *, minutes: int) -> None: ...


@dataclass(frozen=True)
class Observation:
    """What one autoscaler invocation saw: the next one's reference for growth and arrival rate."""

    at: float  # epoch seconds
    waiting: int  # visible + delayed messages
    busy: int  # busy task slots: min(in flight, running x concurrency)
    load: float = 0.0  # drain: smoothed offered load, slots (arrival rate x task time)


@dataclass(frozen=True)
class LastAction:
    """The autoscaler's record between invocations: its last change (for the cooldowns and drain's
    hold) and what the last invocation saw."""

    at: float  # epoch seconds of the last change (0: none yet)
    desired: int  # the count it set
    base: int  # the count it started from
    adjustment: int  # signed change it meant to make (for `step`, the table's step; 0: none)
    seen: Observation | None = None
    version: int = 0  # bumped on every write; writes are conditional on the version read

    @property
    def scaled_out(self) -> bool:
        return self.adjustment > 0

    @property
    def scaled_in(self) -> bool:
        return self.adjustment < 0


class ScalingState(ABC):
    """Where the autoscaler keeps its last action between invocations."""

    @abstractmethod
    def last_action(self) -> LastAction | None: ...

    @abstractmethod
    def record(self, action: LastAction, *, previous: LastAction | None) -> bool:
        """Writes `action` if the stored record is still `previous` (by version); returns False when
        another invocation wrote first, in which case the caller must not act."""

    def record_decision(  # noqa: B027 - optional, no-op
        self, decision: Decision, *, now: float, depth: QueueDepth, counts: ServiceCounts
    ) -> None:
        """Keeps one applied decision with the readings it was made on for a history (e.g. an item of
        its own with a TTL, which GET /stats shows); called once per tick after the record is written
        and the count applied. By default no history is kept."""


@dataclass(frozen=True)
class TaskTimes:
    """What the autoscaler's task-time estimate reads: the newest finished worker tasks by creation
    time, and the running ones created no earlier than the oldest of those (the same cohort)."""

    finished: tuple[tuple[float, float], ...]  # (created at, seconds taken), newest first
    running: tuple[tuple[float, float], ...]  # (created at, started at), epoch seconds


class TaskTimeSource(ABC):
    """The worker tasks' times, as the autoscaler reads them each tick."""

    @abstractmethod
    def task_times(self, *, sample: int) -> TaskTimes:
        """The `sample` newest finished worker tasks by creation time, and every running one created
        at or after the oldest of them (all running ones when none finished)."""
