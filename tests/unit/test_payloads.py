"""PayloadStore: the one rule for stored payloads, sources and artifacts, and its one error; an S3 403
is a refusal the edges answer (a 4xx, a FAILED task), never a server error."""

from __future__ import annotations

import hashlib

import pytest
from botocore.stub import Stubber

from mistersmith.adapters.s3 import S3BlobStore
from mistersmith.errors import UploadRejected
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import PayloadRef, TaskMessage, TaskStatus
from mistersmith.payloads import PayloadProblem, PayloadStore, PayloadUnavailable
from mistersmith.ports import BlobForbidden
from mistersmith.processing import Disposition, TaskProcessor
from mistersmith.settings import IntakeSettings
from mistersmith.uploads import Uploads
from mistersmith.work import WorkLimits
from tests.fakes import MemoryBlobStore, MemoryTaskStore, NullPublisher

pytestmark = pytest.mark.unit

BUCKET = "artifacts"


class RefusingBlobs(MemoryBlobStore):
    """A bucket whose objects exist but may not be read (S3's 403 despite s3:ListBucket)."""

    def get(self, bucket: str, key: str) -> bytes:
        raise BlobForbidden(bucket, key)

    def size(self, bucket: str, key: str) -> int:
        raise BlobForbidden(bucket, key)


@pytest.fixture
def s3_refusing(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    store = S3BlobStore(BUCKET)
    import boto3

    store._s3 = boto3.session.Session().client("s3")
    with Stubber(store._s3) as stub:
        yield store, stub


def test_s3_blob_store_head_answered_403_raises_blob_forbidden_not_a_client_error(s3_refusing):
    # Given S3 answering 403 to a HEAD (what it does for a missing key without s3:ListBucket)
    store, stub = s3_refusing
    stub.add_client_error("head_object", service_error_code="403", http_status_code=403)
    # When the size is asked / Then it is a domain refusal
    with pytest.raises(BlobForbidden):
        store.size(BUCKET, "uploads/x")


def test_s3_blob_store_get_answered_access_denied_raises_blob_forbidden(s3_refusing):
    store, stub = s3_refusing
    stub.add_client_error("get_object", service_error_code="AccessDenied", http_status_code=403)
    with pytest.raises(BlobForbidden):
        store.get(BUCKET, "uploads/x")


def test_payload_store_source_refused_by_the_bucket_is_forbidden_with_a_clear_message():
    # Given a bucket that refuses reads / When a source is checked
    with pytest.raises(PayloadUnavailable) as refused:
        PayloadStore(RefusingBlobs(BUCKET)).check_source(f"s3://{BUCKET}/uploads/x", 100)
    # Then the reason is FORBIDDEN and the message says what happened
    assert refused.value.reason is PayloadProblem.FORBIDDEN
    assert "may not be read" in str(refused.value)


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("s3://elsewhere/uploads/x", PayloadProblem.FOREIGN),
        (f"s3://{BUCKET}/uploads/none", PayloadProblem.MISSING),
        (f"s3://{BUCKET}/uploads/big", PayloadProblem.TOO_LARGE),
    ],
)
def test_payload_store_check_source_refuses_foreign_missing_and_too_large(uri, reason):
    blobs = MemoryBlobStore(BUCKET)
    blobs.objects["uploads/big"] = b"x" * 101
    with pytest.raises(PayloadUnavailable) as refused:
        PayloadStore(blobs).check_source(uri, 100)
    assert refused.value.reason is reason


def test_payload_store_stores_aside_under_the_digest_and_loads_it_back_checked():
    # Given a payload stored aside
    payloads = PayloadStore(MemoryBlobStore(BUCKET))
    ref = payloads.store_aside("t-1", b'{"a": 1}')
    # Then its key carries the digest, and it loads back; altered bytes are refused as corrupt
    digest = hashlib.sha256(b'{"a": 1}').hexdigest()
    assert (ref.key, ref.size) == (f"payloads/t-1/{digest}.json", 8)
    assert payloads.load(ref) == b'{"a": 1}'
    payloads.blobs.put(ref.key, b'{"a": 2}', content_type="application/json")
    with pytest.raises(PayloadUnavailable) as corrupt:
        payloads.load(ref)
    assert corrupt.value.reason is PayloadProblem.CORRUPT


def test_payload_store_artifact_sink_writes_under_the_task_s_artifacts():
    payloads = PayloadStore(MemoryBlobStore(BUCKET))
    assert (
        payloads.artifact_sink("t-1")("out.zip", b"z", "application/zip")
        == f"s3://{BUCKET}/artifacts/t-1/out.zip"
    )


def test_a_task_whose_source_the_bucket_refuses_ends_failed_at_once_not_retried():
    # Given a worker on a bucket that refuses reads, and a task naming a source there
    store = MemoryTaskStore()
    processor = TaskProcessor(
        Lifecycle(store, NullPublisher()),
        RefusingBlobs(BUCKET),
        worker_id="w",
        lease_seconds=30,
        limits=WorkLimits(),
    )
    message = TaskMessage(id="t-1", task_type="analyze", payload={"source_uri": f"s3://{BUCKET}/uploads/x"})
    # When it is processed / Then it ends FAILED with the refusal named, and the message is deleted
    assert processor.process(message).disposition is Disposition.DELETE
    task = store.get("t-1")
    assert task.status is TaskStatus.FAILED
    assert task.error.type == "SourceForbidden"
    assert "may not be read" in task.error.message


def test_a_claim_checked_payload_the_bucket_refuses_is_retried_as_a_passing_fault():
    store = MemoryTaskStore()
    processor = TaskProcessor(
        Lifecycle(store, NullPublisher()),
        RefusingBlobs(BUCKET),
        worker_id="w",
        lease_seconds=30,
        limits=WorkLimits(),
    )
    ref = PayloadRef(bucket=BUCKET, key="payloads/t-1/x.json", sha256="0" * 64, size=1)
    assert (
        processor.process(TaskMessage(id="t-1", task_type="compile", payload_ref=ref)).disposition
        is Disposition.RETRY
    )
    assert store.get("t-1").status is TaskStatus.QUEUED


@pytest.mark.parametrize(
    ("uri", "error_type"),
    [(f"s3://{BUCKET}/uploads/x", "source_forbidden"), (f"s3://{BUCKET}/uploads/none", "source_missing")],
)
def test_intake_answers_a_source_it_may_not_read_with_a_field_error_not_a_server_error(uri, error_type):
    # Given intake on a bucket that refuses (or lacks) the object a source_uri names
    blobs = RefusingBlobs(BUCKET) if error_type == "source_forbidden" else MemoryBlobStore(BUCKET)
    uploads = Uploads(
        blobs, IntakeSettings(task_table_name="t", event_bus_name="b", artifacts_bucket_name=BUCKET)
    )
    # When the source is checked / Then it is refused at payload.source_uri (a 422), naming why
    with pytest.raises(UploadRejected) as refused:
        uploads.check_source(uri)
    (error,) = refused.value.errors
    assert (error["loc"], error["type"]) == (["body", "payload", "source_uri"], error_type)
    assert uri in error["msg"]
