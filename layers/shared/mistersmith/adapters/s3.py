"""Blobs (claim-checked payloads, artifacts) in the artifacts bucket."""

from __future__ import annotations

from mistersmith.adapters.aws import client


class S3BlobStore:
    """Implements `ports.BlobStore` for one bucket."""

    def __init__(self, bucket_name: str) -> None:
        self._bucket = bucket_name
        self._s3 = client("s3")

    @property
    def bucket(self) -> str:
        return self._bucket

    def put(self, key: str, data: bytes, *, content_type: str) -> str:
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=content_type)
        return f"s3://{self._bucket}/{key}"

    def get(self, bucket: str, key: str) -> bytes:
        return self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
