"""Where the router sends a task, and how intake and a worker check a task's source archive (in memory)."""

from __future__ import annotations

import io
import zipfile

import pytest

from mistersmith.callers import Caller
from mistersmith.clock import now_iso
from mistersmith.errors import PayloadTooLarge
from mistersmith.intake import Intake
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import AnalyzeRequest, StoredTask, TaskMessage, TaskStatus
from mistersmith.processing import TaskProcessor
from mistersmith.routing import Router
from mistersmith.settings import IntakeSettings
from mistersmith.work import WorkLimits
from tests.fakes import MemoryBlobStore, MemoryQueue, MemoryTaskStore, NullPublisher

pytestmark = pytest.mark.unit

LAMBDA_LIMIT = 1024


@pytest.fixture
def router():
    return Router(
        Lifecycle(MemoryTaskStore(), NullPublisher()),
        MemoryQueue(),
        MemoryQueue(),
        analyze_lambda_limit_bytes=LAMBDA_LIMIT,
    )


def routed_to(router: Router, detail: dict) -> str:
    assert router.route_inserts([StoredTask.queued(TaskMessage.model_validate(detail), now_iso())]) == []
    queues = {"work": router.work_queue, "analyze": router.analyze_queue}
    holding = [name for name, queue in queues.items() if queue.depth().visible]
    assert len(holding) == 1
    return holding[0]


@pytest.mark.parametrize(
    ("detail", "destination"),
    [
        ({"task_type": "analyze", "payload": {"files": {"a.py": "x = 1\n"}}}, "analyze"),
        ({"task_type": "analyze", "payload": {"files": {"a.py": "x = 1\n" * 200}}}, "work"),
        ({"task_type": "analyze", "payload": {"files": {"a.py": "", "m.c": "int x;\n"}}}, "work"),
        ({"task_type": "analyze", "payload": {"files": {"lib/m.h": "int x;\n"}}}, "work"),
        ({"task_type": "analyze", "payload": {"source_uri": "s3://bucket-a/uploads/x"}}, "work"),
        (
            {
                "task_type": "analyze",
                "payload_ref": {"bucket": "bucket-a", "key": "payloads/t/p", "sha256": "0" * 64, "size": 9},
            },
            "work",
        ),
        ({"task_type": "compile", "payload": {"files": {"a.py": ""}}}, "work"),
        ({"task_type": "execute", "payload": {"command": ["python3", "-c", "pass"]}}, "work"),
    ],
    ids=[
        "small-analyze",
        "big-analyze",
        "small-analyze-with-c",
        "small-analyze-with-header",
        "archive-analyze",
        "claim-check-analyze",
        "compile",
        "execute",
    ],
)
def test_router_sends_small_inline_analyze_to_the_lambda_and_everything_else_to_the_worker(
    router, detail, destination
):
    # Given a task event / When it is routed / Then it lands on the queue its size and type call for
    assert routed_to(router, {"id": "t-1", **detail}) == destination


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


class CountingBlobs(MemoryBlobStore):
    def __init__(self) -> None:
        super().__init__("bucket-a")
        self.reads: list[str] = []

    def get(self, bucket: str, key: str) -> bytes:
        self.reads.append(key)
        return super().get(bucket, key)


def processed(blobs: CountingBlobs, source_uri: str, limits: WorkLimits | None = None):
    store = MemoryTaskStore()
    processor = TaskProcessor(
        Lifecycle(store, NullPublisher()),
        blobs,
        worker_id="w-1",
        lease_seconds=60,
        limits=limits or WorkLimits(execute_timeout_seconds=30),
    )
    processor.process(TaskMessage(id="t-1", task_type="analyze", payload={"source_uri": source_uri}))
    return store.get("t-1")


def test_worker_analyzes_an_archive_from_its_bucket():
    blobs = CountingBlobs()
    blobs.put("uploads/src", zip_of({"a.py": b"class A:\n    pass\n"}), content_type="application/zip")
    task = processed(blobs, "s3://bucket-a/uploads/src")
    assert task.status is TaskStatus.SUCCEEDED
    assert task.result["classes"] == 1


@pytest.mark.parametrize(
    ("uri", "error_type"),
    [
        ("s3://bucket-a/uploads/none", "SourceNotFound"),
        ("s3://bucket-b/uploads/src", "InvalidSource"),
        ("s3://bucket-a/uploads/src", "SourceTooLarge"),
    ],
    ids=["missing", "other-bucket", "too-large"],
)
def test_worker_fails_a_bad_archive_reference_without_reading_it(uri, error_type):
    # Given an archive of 5000 bytes and a worker whose limit is 4096
    blobs = CountingBlobs()
    blobs.put("uploads/src", zip_of({"a.py": b"#" * 5000}), content_type="application/zip")
    # When a task names a missing, a foreign or a too-big archive
    task = processed(blobs, uri, WorkLimits(source_archive_bytes=4096))
    # Then it ends FAILED with a reason, and nothing was downloaded
    assert task.status is TaskStatus.FAILED
    assert task.error.type == error_type
    assert uri in task.error.message
    assert blobs.reads == []


def test_intake_refuses_a_source_archive_over_the_limit_before_accepting_the_task():
    # Given an intake whose archive limit is 4096 bytes and an upload of 5000
    blobs = CountingBlobs()
    blobs.put("uploads/big", bytes(5000), content_type="application/zip")
    store = MemoryTaskStore()
    settings = IntakeSettings(
        task_table_name="-",
        event_bus_name="-",
        artifacts_bucket_name="bucket-a",
        source_archive_limit_bytes=4096,
    )
    intake = Intake(Lifecycle(store, NullPublisher()), blobs, settings)
    request = AnalyzeRequest(task_type="analyze", payload={"source_uri": "s3://bucket-a/uploads/big"})
    # When it is submitted / Then it is too large, nothing was read, and no task exists
    with pytest.raises(PayloadTooLarge, match="5000 bytes; the limit is 4096"):
        intake.submit(request, Caller("someone"))
    assert blobs.reads == []
    assert store.tasks == {}
