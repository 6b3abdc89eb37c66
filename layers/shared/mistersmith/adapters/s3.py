"""Blobs (claim-checked payloads, uploads, artifacts) in the artifacts bucket."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from mistersmith.adapters.aws import client
from mistersmith.ports import BlobForbidden, BlobNotFound, BlobStore

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
# With s3:ListBucket granted a missing key is a 404; a 403 is a refusal (a bucket policy, a KMS key).
_FORBIDDEN = frozenset({"AccessDenied", "403", "Forbidden"})
# SigV4 query signing: boto3 may still presign S3 URLs with SigV2, which newer regions refuse.
_PRESIGNING = Config(signature_version="s3v4")


class S3BlobStore(BlobStore):
    """Implements `ports.BlobStore` for one bucket."""

    def __init__(self, bucket_name: str) -> None:
        self._bucket = bucket_name

    @cached_property
    def _s3(self) -> Any:
        # Made on first use: S3's is the biggest client to build, and most intake requests never need it.
        return client("s3")

    @property
    def bucket(self) -> str:
        return self._bucket

    def put(self, key: str, data: bytes, *, content_type: str) -> str:
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=content_type)
        return f"s3://{self._bucket}/{key}"

    def get(self, bucket: str, key: str) -> bytes:
        try:
            body: bytes = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            return body
        except ClientError as error:
            raise _not_found_or(error, bucket, key) from error

    def size(self, bucket: str, key: str) -> int:
        try:
            return int(self._s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except ClientError as error:
            raise _not_found_or(error, bucket, key) from error

    def presign_get(self, key: str, *, expires_seconds: int) -> str:
        url: str = client("s3", _PRESIGNING).generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=expires_seconds
        )
        return url

    def presign_put(self, key: str, *, content_type: str, expires_seconds: int) -> str:
        # Signed locally with the process's credentials: no call to S3, so it cannot fail on the network.
        url: str = client("s3", _PRESIGNING).generate_presigned_url(
            "put_object",
            Params={"Bucket": self._bucket, "Key": key, "ContentType": content_type},
            ExpiresIn=expires_seconds,
            HttpMethod="PUT",
        )
        return url


def _not_found_or(error: ClientError, bucket: str, key: str) -> Exception:
    code = error.response["Error"]["Code"]
    if code in _MISSING:
        return BlobNotFound(bucket, key)
    return BlobForbidden(bucket, key) if code in _FORBIDDEN else error
