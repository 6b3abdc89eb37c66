"""A worker of a test's own, in this process, on a queue of its own on the local AWS, with the real
adapters wrapped for fault injection (tests/faults.py)."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from fargate_worker.worker import Worker
from mistersmith.adapters.dynamodb import DynamoTaskStore
from mistersmith.adapters.eventbridge import EventBridgePublisher
from mistersmith.adapters.s3 import S3BlobStore
from mistersmith.adapters.sqs import SqsWorkQueue
from mistersmith.event_batching import BatchingPublisher
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import canonical_json
from mistersmith.ports import Event, Refusal
from mistersmith.processing import TaskProcessor
from mistersmith.settings import WorkerSettings
from mistersmith.work import WorkLimits
from tests.faults import Faulty, Recorder

# The queue's visibility timeout and so the lease (3 s after the margin; a heartbeat every second).
VISIBILITY = 5
# Long enough for two heartbeats; each run notes its start in a file, so repeats are counted.
WORK_SECONDS = 2.2


class RecordingPublisher:
    """The real bus, and the statuses announced for each task (to compare with the record)."""

    def __init__(self, inner: EventBridgePublisher) -> None:
        self.inner = inner
        self.statuses: list[str] = []

    def publish(self, *, source: str, detail_type: str, detail: dict[str, Any]) -> None:
        self.inner.publish(source=source, detail_type=detail_type, detail=detail)
        self.statuses.append(detail.get("status", ""))

    def publish_batch(self, events: Sequence[Event]) -> list[Refusal]:
        refusals = self.inner.publish_batch(events)
        refused = {id(refusal.event) for refusal in refusals}
        self.statuses += [event.detail.get("status", "") for event in events if id(event) not in refused]
        return refusals


@contextlib.contextmanager
def private_queue(stack, visibility: int = VISIBILITY) -> Iterator[str]:
    """A work queue of the test's own on the local AWS: the stack's workers never read it."""
    sqs = stack.client("sqs")
    url = sqs.create_queue(
        QueueName=f"faults-{uuid.uuid4().hex[:10]}", Attributes={"VisibilityTimeout": str(visibility)}
    )["QueueUrl"]
    try:
        yield url
    finally:
        sqs.delete_queue(QueueUrl=url)


def queue_count(stack, url: str) -> int:
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def worker_for(
    stack, url: str, recorder: Recorder, *, lease_seconds: int = VISIBILITY, **settings: Any
) -> tuple[Worker, RecordingPublisher]:
    """The real worker on the real adapters, each wrapped to record its calls and fail on cue."""
    refs = stack.template.refs
    publisher = RecordingPublisher(EventBridgePublisher(refs["EventBus"]))
    store = Faulty("store", DynamoTaskStore(refs["TaskTable"]), recorder)
    processor = TaskProcessor(
        # Batched as the worker's wiring does: the announce step is a batch's request.
        Lifecycle(store, BatchingPublisher(Faulty("events", publisher, recorder))),
        S3BlobStore(refs["ArtifactsBucket"]),
        worker_id=f"faults-{uuid.uuid4().hex[:8]}",
        lease_seconds=lease_seconds,
        limits=WorkLimits(),
        # A task of a couple of seconds meets its cancel watch at least once.
        watch_seconds=1.0,
    )
    worker_settings = WorkerSettings(
        task_table_name=refs["TaskTable"],
        event_bus_name=refs["EventBus"],
        artifacts_bucket_name=refs["ArtifactsBucket"],
        work_queue_url=url,
        lease_seconds=lease_seconds,
        concurrency=settings.pop("concurrency", 1),
        receive_wait_seconds=1,
        max_retry_delay_seconds=1,
        drain_grace_seconds=0,
        health_port=0,
        **settings,
    )
    return Worker(Faulty("queue", SqsWorkQueue(url), recorder), processor, worker_settings), publisher


def execute_body(task_id: str, marks: Path, seconds: float = WORK_SECONDS) -> str:
    code = (
        f"import os, time; os.umask(0); open({str(marks / task_id)!r}, 'a').write('run\\n'); "
        f"time.sleep({seconds})"
    )
    return canonical_json(
        {"id": task_id, "task_type": "execute", "payload": {"command": ["python3", "-c", code]}}
    )


@contextlib.contextmanager
def running(worker: Worker) -> Iterator[threading.Thread]:
    thread = threading.Thread(target=worker.run, name="worker-under-test", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        worker.request_stop()
        thread.join(timeout=30)
