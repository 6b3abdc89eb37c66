"""Big payloads kept out of the API: presigned upload URLs, and the checks on an uploaded payload or
a `source_uri` before a task naming it is accepted."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING

from pydantic import ValidationError

from mistersmith.clock import iso_from_epoch
from mistersmith.errors import PayloadTooLarge, UploadRejected
from mistersmith.models import (
    TASK_REQUEST_ADAPTER,
    UPLOAD_URI,
    TaskRequestModel,
    UploadedTaskRequest,
    UploadRequest,
    UploadTicket,
)
from mistersmith.payloads import PayloadProblem, PayloadStore, PayloadUnavailable
from mistersmith.ports import BlobStore

if TYPE_CHECKING:
    # A type only: the API imports this module at cold start, settings (pydantic-settings) on first use.
    from mistersmith.settings import IntakeSettings

UPLOAD_PREFIX = "uploads/"
# Long enough to start a big upload on a slow line; short enough that a leaked URL soon stops working.
UPLOAD_URL_SECONDS = 900


class Uploads:
    """Hands out upload URLs and reads back what was uploaded."""

    def __init__(self, blobs: BlobStore, settings: IntakeSettings) -> None:
        self.blobs = blobs
        self.payloads = PayloadStore(blobs)
        self.settings = settings

    def new(self, request: UploadRequest | None = None) -> UploadTicket:
        """A presigned PUT for a new object under uploads/ (nothing is written until the client PUTs)."""
        request = request or UploadRequest()
        upload_id = uuid.uuid4().hex
        key = f"{UPLOAD_PREFIX}{upload_id}"
        url = self.blobs.presign_put(
            key, content_type=request.content_type, expires_seconds=UPLOAD_URL_SECONDS
        )
        return UploadTicket(
            upload_id=upload_id,
            url=url,
            headers={"Content-Type": request.content_type},
            expires_at=iso_from_epoch(time.time() + UPLOAD_URL_SECONDS),
            source_uri=f"s3://{self.blobs.bucket}/{key}",
        )

    def read(self, request: UploadedTaskRequest) -> TaskRequestModel:
        """The request with the payload uploaded to `payload_uri`, validated as its task type's."""
        self._upload_key(request.payload_uri)
        try:
            body = self.payloads.read_source(request.payload_uri, self.settings.max_payload_bytes)
        except PayloadUnavailable as error:
            raise refusal(error, "upload") from error
        try:
            payload = json.loads(body)
        except ValueError as error:  # UnicodeDecodeError is one too
            raise upload_error(f"the upload is not JSON: {error}", "upload_not_json") from error
        fields = {"task_type": request.task_type, "payload": payload}
        if request.id is not None:
            fields["id"] = request.id
        try:
            return TASK_REQUEST_ADAPTER.validate_python(fields)
        except ValidationError as error:
            raise UploadRejected(
                f"the upload is not a valid {request.task_type} payload",
                [
                    {
                        "loc": ["body", "payload_uri", *item["loc"][2:]],
                        "msg": item["msg"],
                        "type": item["type"],
                    }
                    for item in error.errors(include_url=False, include_input=False, include_context=False)
                ],
            ) from error

    def check_source(self, uri: str) -> None:
        """A `source_uri` must name an object in this API's bucket that fits the archive limit, so
        that a mistake is a 4xx now rather than a FAILED task later."""
        try:
            self.payloads.check_source(uri, self.settings.source_archive_limit_bytes)
        except PayloadUnavailable as error:
            raise refusal(error, "source", "payload", "source_uri") from error

    def _upload_key(self, uri: str) -> str:
        match = UPLOAD_URI.match(uri)
        if match is None or match["bucket"] != self.blobs.bucket:
            raise upload_error(
                f"{uri} is not an upload of this API (POST /uploads hands out s3://{self.blobs.bucket}/uploads/...)",
                "upload_foreign",
            )
        return match["key"]


def refusal(error: PayloadUnavailable, kind: str, *field: str) -> PayloadTooLarge | UploadRejected:
    """Intake's answer to a stored payload it cannot use: 413 when too big, else 422 at `field`
    (error type `<kind>_<reason>`: upload_missing, source_forbidden, ...)."""
    if error.reason is PayloadProblem.TOO_LARGE:
        return PayloadTooLarge(str(error))
    return upload_error(str(error), f"{kind}_{error.reason.value}", *field)


def upload_error(message: str, error_type: str, *field: str) -> UploadRejected:
    """Refuses the object a request names, at `field` in the body (by default payload_uri)."""
    loc = ["body", *(field or ("payload_uri",))]
    return UploadRejected(message, [{"loc": loc, "msg": message, "type": error_type}])
