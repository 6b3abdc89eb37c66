"""Stored payloads: the one home of the rule "the object is ours, under the limit, exists and is what
was stored", for claim-checked payloads, `source_uri` archives, uploads and artifacts.

Every refusal is one domain error, `PayloadUnavailable`, whose `reason` each edge maps to its own
answer: intake to a 413 or a 422 naming the field, a worker to the task's FAILED error type."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import TYPE_CHECKING

from mistersmith.errors import MisterSmithError
from mistersmith.models import PayloadRef, parse_s3_uri
from mistersmith.ports import BlobForbidden, BlobNotFound, BlobStore

if TYPE_CHECKING:
    # A type only: importing mistersmith.work loads the sandbox, which the API never runs.
    from mistersmith.work.artifacts import ArtifactSink

PAYLOAD_PREFIX = "payloads/"
ARTIFACT_PREFIX = "artifacts/"


class PayloadProblem(StrEnum):
    FOREIGN = "foreign"  # outside this store's bucket
    MISSING = "missing"  # no object at the key
    FORBIDDEN = "forbidden"  # the bucket refused to read it (403 despite s3:ListBucket)
    TOO_LARGE = "too_large"  # over the limit for its use
    CORRUPT = "corrupt"  # not the bytes that were stored (sha256)


class PayloadUnavailable(MisterSmithError):
    """A stored payload or archive that a task names cannot be used, and why."""

    def __init__(self, reason: PayloadProblem, uri: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.uri = uri


class PayloadStore:
    """Payloads, sources and artifacts in one bucket (a BlobStore)."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    @property
    def bucket(self) -> str:
        return self.blobs.bucket

    def store_aside(self, task_id: str, body: bytes) -> PayloadRef:
        """Keeps a payload too big to travel inline; the reference carries its sha256 and size."""
        digest = hashlib.sha256(body).hexdigest()
        # The digest in the key keeps a conflicting resubmission from overwriting the original.
        key = f"{PAYLOAD_PREFIX}{task_id}/{digest}.json"
        self.blobs.put(key, body, content_type="application/json")
        return PayloadRef(bucket=self.bucket, key=key, sha256=digest, size=len(body))

    def load(self, ref: PayloadRef) -> bytes:
        """A stored-aside payload, checked against its sha256."""
        uri = f"s3://{ref.bucket}/{ref.key}"
        body = self._read(uri, ref.bucket, ref.key)
        if hashlib.sha256(body).hexdigest() != ref.sha256:
            raise PayloadUnavailable(PayloadProblem.CORRUPT, uri, f"{uri} does not match its sha256")
        return body

    def check_source(self, uri: str, limit_bytes: int) -> int:
        """The size of the object at `uri`, which must be in this bucket and at most `limit_bytes`."""
        bucket, key = parse_s3_uri(uri)
        if bucket != self.bucket:
            raise PayloadUnavailable(
                PayloadProblem.FOREIGN,
                uri,
                f"{uri} is outside this API's bucket (POST /uploads hands out s3://{self.bucket}/uploads/...)",
            )
        try:
            size = self.blobs.size(bucket, key)
        except (BlobNotFound, BlobForbidden) as error:
            raise _unavailable(error, uri) from error
        if size > limit_bytes:
            raise PayloadUnavailable(
                PayloadProblem.TOO_LARGE, uri, f"{uri} is {size} bytes; the limit is {limit_bytes}"
            )
        return size

    def read_source(self, uri: str, limit_bytes: int) -> bytes:
        """The object at `uri`, checked as `check_source` does before a byte is read."""
        self.check_source(uri, limit_bytes)
        bucket, key = parse_s3_uri(uri)
        return self._read(uri, bucket, key)

    def artifact_sink(self, task_id: str) -> ArtifactSink:
        """Where a task's artifacts go: artifacts/<task id>/<name>."""

        def put(name: str, data: bytes, content_type: str) -> str:
            return self.blobs.put(f"{ARTIFACT_PREFIX}{task_id}/{name}", data, content_type=content_type)

        return put

    def _read(self, uri: str, bucket: str, key: str) -> bytes:
        try:
            return self.blobs.get(bucket, key)
        except (BlobNotFound, BlobForbidden) as error:
            raise _unavailable(error, uri) from error


def _unavailable(error: BlobNotFound | BlobForbidden, uri: str) -> PayloadUnavailable:
    if isinstance(error, BlobForbidden):
        return PayloadUnavailable(
            PayloadProblem.FORBIDDEN,
            uri,
            f"{uri} may not be read: the bucket refused access (an object this API did not write, or one "
            "its role may not read)",
        )
    return PayloadUnavailable(PayloadProblem.MISSING, uri, f"nothing has been uploaded to {uri}")
