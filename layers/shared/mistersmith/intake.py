"""Intake logic: accept a task once, keep big payloads aside, hand the task to the bus; hand out
upload URLs for payloads that should not travel through the API."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, StringConstraints, Tag, ValidationError

from mistersmith.clock import iso_from_epoch, now_iso
from mistersmith.errors import (
    InvalidRequest,
    PayloadTooLarge,
    PublishFailed,
    TaskConflict,
    TaskNotFound,
    TransitionRejected,
)
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import (
    TASK_REQUEST_ADAPTER,
    AnalyzeRequest,
    CompileRequest,
    ExecuteRequest,
    PayloadRef,
    StoredTask,
    StrictModel,
    TaskId,
    TaskPage,
    TaskRecord,
    TaskStatus,
    canonical_json,
    parse_s3_uri,
    request_fingerprint,
)
from mistersmith.observability import logger, task_context, trace_root, traced
from mistersmith.ports import BlobNotFound, BlobStore
from mistersmith.settings import IntakeSettings

INTAKE_SOURCE = "mistersmith.intake"
WORKER_TASK = "Worker Task"
TaskRequestModel = ExecuteRequest | CompileRequest | AnalyzeRequest

UPLOAD_PREFIX = "uploads/"
# Long enough to start a big upload on a slow line; short enough that a leaked URL soon stops working.
UPLOAD_URL_SECONDS = 900
_UPLOAD_URI = re.compile(r"^s3://(?P<bucket>[^/]+)/(?P<key>uploads/[A-Za-z0-9._-]{1,200})$")
# GET /tasks without a status walks the by-status index in this order (work in progress first).
LISTING_ORDER = (
    TaskStatus.QUEUED,
    TaskStatus.RUNNING,
    TaskStatus.SUCCEEDED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
    TaskStatus.DEAD_LETTERED,
)
# A selective task_type filter can leave index pages empty: stop after this many reads and hand
# the client a token, so that one request stays short.
MAX_READS_PER_PAGE = 10


class UploadedTaskRequest(StrictModel):
    """A task whose payload was uploaded first (POST /uploads, then PUT to the URL it returned)."""

    id: TaskId | None = None
    task_type: Literal["execute", "compile", "analyze"]
    payload_uri: Annotated[
        str,
        StringConstraints(pattern=_UPLOAD_URI.pattern),
        Field(description="The `source_uri` that POST /uploads returned, after the PUT succeeded."),
    ]


def _submission_tag(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return "uploaded" if isinstance(value, UploadedTaskRequest) else getattr(value, "task_type", None)
    if not isinstance(value, dict):
        return None
    if "payload_uri" in value:
        return "uploaded"
    task_type = value.get("task_type")
    # Only a string can name a tag; anything else is reported as a missing tag, not a crash.
    return task_type if isinstance(task_type, str) else None


TaskSubmission = Annotated[
    Annotated[ExecuteRequest, Tag("execute")]
    | Annotated[CompileRequest, Tag("compile")]
    | Annotated[AnalyzeRequest, Tag("analyze")]
    | Annotated[UploadedTaskRequest, Tag("uploaded")],
    Discriminator(
        _submission_tag,
        custom_error_type="invalid_task_type",
        custom_error_message="task_type must be one of execute, compile, analyze",
    ),
]


class UploadRequest(StrictModel):
    content_type: Annotated[
        str, StringConstraints(pattern=r"^[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}$")
    ] = "application/json"


class UploadTicket(BaseModel):
    """Where and how to PUT an upload, and the URI that a task then names."""

    upload_id: str
    method: Literal["PUT"] = "PUT"
    url: str
    headers: dict[str, str]
    expires_at: str
    source_uri: str


class UploadRejected(InvalidRequest):
    """The uploaded payload a task names is missing or does not fit its task type."""

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


class Intake:
    """Submits, reads and lists tasks."""

    def __init__(self, lifecycle: Lifecycle, blobs: BlobStore, settings: IntakeSettings) -> None:
        self.lifecycle = lifecycle
        self.store = lifecycle.store
        self.blobs = blobs
        self.settings = settings

    @traced
    def submit(
        self, request: TaskRequestModel | UploadedTaskRequest, *, trace_header: str | None = None
    ) -> tuple[TaskRecord, bool]:
        """Records the task as QUEUED and publishes it; returns (record, created).

        The same id with the same body returns the existing task (and publishes it again while it
        is still QUEUED, so a client retrying after a failed publish gets its task delivered). A
        payload named by `payload_uri` is read and checked here, then treated as if it came inline."""
        if isinstance(request, UploadedTaskRequest):
            request = self._uploaded(request)
        if getattr(request.payload, "source_uri", None):
            self._check_source(request.payload.source_uri)
        task_id = request.id or uuid.uuid4().hex
        with task_context(task_id, trace_root(trace_header)):
            return self._accept(request, task_id, trace_header)

    def _accept(
        self, request: TaskRequestModel, task_id: str, trace_header: str | None
    ) -> tuple[TaskRecord, bool]:
        payload = request.payload.model_dump(mode="json", exclude_none=True)
        fingerprint = request_fingerprint(request.task_type, payload)
        body = canonical_json(payload).encode()
        if len(body) > self.settings.max_payload_bytes:
            raise PayloadTooLarge(
                f"payload is {len(body)} bytes; the limit is {self.settings.max_payload_bytes}"
            )
        now = now_iso()
        task = StoredTask(
            id=task_id,
            task_type=request.task_type,
            status=TaskStatus.QUEUED,
            created_at=now,
            updated_at=now,
            fingerprint=fingerprint,
            trace_id=trace_root(trace_header),
            trace_header=trace_header,
        )
        if len(body) > self.settings.inline_payload_limit_bytes:
            task.payload_ref = self._store_aside(task_id, body)
        else:
            task.payload = payload
        created = self.store.create(task)
        if not created:
            task = self._existing_with_same_body(task_id, fingerprint)
        if task.status is TaskStatus.QUEUED:
            self._hand_on(task, created)
        logger.info(
            "task accepted", extra={"task_id": task_id, "task_type": task.task_type, "new_task": created}
        )
        return task.public(), created

    def _uploaded(self, request: UploadedTaskRequest) -> TaskRequestModel:
        """The request with the payload uploaded to `payload_uri`, validated as its task type's."""
        key = self._upload_key(request.payload_uri)
        try:
            size = self.blobs.size(self.blobs.bucket, key)
            if size > self.settings.max_payload_bytes:
                raise PayloadTooLarge(
                    f"the upload is {size} bytes; the limit is {self.settings.max_payload_bytes}"
                )
            body = self.blobs.get(self.blobs.bucket, key)
        except BlobNotFound as error:
            raise _upload_error(
                f"nothing has been uploaded to {request.payload_uri}", "upload_missing"
            ) from error
        try:
            payload = json.loads(body)
        except ValueError as error:  # UnicodeDecodeError is one too
            raise _upload_error(f"the upload is not JSON: {error}", "upload_not_json") from error
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

    def _check_source(self, uri: str) -> None:
        """A `source_uri` must name an object in this API's bucket that fits the archive limit, so
        that a mistake is a 4xx now rather than a FAILED task later."""
        bucket, key = parse_s3_uri(uri)
        field = ("payload", "source_uri")
        if bucket != self.blobs.bucket:
            message = f"{uri} is outside this API's bucket (POST /uploads hands out s3://{self.blobs.bucket}/uploads/...)"
            raise _upload_error(message, "source_foreign", *field)
        try:
            size = self.blobs.size(bucket, key)
        except BlobNotFound as error:
            raise _upload_error(f"nothing has been uploaded to {uri}", "source_missing", *field) from error
        if size > self.settings.source_archive_limit_bytes:
            raise PayloadTooLarge(
                f"the source archive is {size} bytes; the limit is {self.settings.source_archive_limit_bytes}"
            )

    def new_upload(self, request: UploadRequest | None = None) -> UploadTicket:
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

    def _upload_key(self, uri: str) -> str:
        match = _UPLOAD_URI.match(uri)
        if match is None or match["bucket"] != self.blobs.bucket:
            raise _upload_error(
                f"{uri} is not an upload of this API (POST /uploads hands out s3://{self.blobs.bucket}/uploads/...)",
                "upload_foreign",
            )
        return match["key"]

    def _hand_on(self, task: StoredTask, created: bool) -> None:
        """Publishes the task; if the bus refuses, a task this call created is taken back, so the
        client's 5xx leaves nothing behind and a retry with the same id starts clean."""
        try:
            self.lifecycle.events.publish(
                source=INTAKE_SOURCE,
                detail_type=WORKER_TASK,
                detail=task.message().model_dump(mode="json", exclude_none=True),
            )
        except Exception as error:
            if created and task.fingerprint and not self.store.discard(task.id, fingerprint=task.fingerprint):
                logger.error("task not handed on and not taken back", extra={"task_id": task.id})
            raise PublishFailed(
                f"task {task.id!r} was not accepted: the event bus is unavailable ({error})"
            ) from error

    @traced
    def cancel(self, task_id: str) -> TaskRecord:
        """QUEUED ends CANCELLED at once; RUNNING is asked to stop (its worker ends it CANCELLED)."""
        task = self.store.get(task_id)
        if task is None:
            raise TaskNotFound(task_id)
        try:
            if task.status is TaskStatus.QUEUED:
                return self.lifecycle.move(task_id, TaskStatus.CANCELLED, finished_at=now_iso()).public()
            if task.status is TaskStatus.RUNNING:
                return self.store.transition(
                    task_id,
                    TaskStatus.RUNNING,
                    allowed_from={TaskStatus.RUNNING},
                    changes={"cancel_requested": True, "updated_at": now_iso()},
                ).public()
        except TransitionRejected:
            return self.cancel(task_id)  # it moved meanwhile: decide again on what it is now
        raise TaskConflict(f"task {task_id!r} is already {task.status.value}")

    def get(self, task_id: str) -> TaskRecord:
        task = self.store.get(task_id)
        if task is None:
            raise TaskNotFound(task_id)
        return task.public()

    def list(
        self, *, status: TaskStatus | None, task_type: str | None, limit: int, next_token: str | None
    ) -> TaskPage:
        """Newest first within each status. Without a status it walks the statuses in LISTING_ORDER
        on the by-status index, never scanning the table; pages are filled across statuses."""
        statuses = (status,) if status else LISTING_ORDER
        position, inner = _decode_position(next_token, len(statuses))
        items: list[TaskRecord] = []
        for _ in range(MAX_READS_PER_PAGE):
            if position >= len(statuses) or len(items) >= limit:
                break
            tasks, inner = self.store.list(
                status=statuses[position], task_type=task_type, limit=limit - len(items), next_token=inner
            )
            items += [task.public() for task in tasks]
            if inner is None:
                position += 1
        token = _encode_position(position, inner) if position < len(statuses) else None
        return TaskPage(items=items, next_token=token)

    def _existing_with_same_body(self, task_id: str, fingerprint: str) -> StoredTask:
        existing = self.store.get(task_id)
        if existing is None:
            raise TaskConflict(f"task {task_id!r} was being created concurrently; retry")
        if existing.fingerprint != fingerprint:
            raise TaskConflict(f"task {task_id!r} already exists with a different body")
        return existing

    def _store_aside(self, task_id: str, body: bytes) -> PayloadRef:
        digest = hashlib.sha256(body).hexdigest()
        # The digest in the key keeps a conflicting resubmission from overwriting the original.
        key = f"payloads/{task_id}/{digest}.json"
        self.blobs.put(key, body, content_type="application/json")
        return PayloadRef(bucket=self.blobs.bucket, key=key, sha256=digest, size=len(body))


def _upload_error(message: str, error_type: str, *field: str) -> UploadRejected:
    """Refuses the object a request names, at `field` in the body (by default payload_uri)."""
    loc = ["body", *(field or ("payload_uri",))]
    return UploadRejected(message, [{"loc": loc, "msg": message, "type": error_type}])


def _encode_position(position: int, inner: str | None) -> str:
    return base64.urlsafe_b64encode(json.dumps([position, inner]).encode()).decode()


def _decode_position(token: str | None, statuses: int) -> tuple[int, str | None]:
    """(index into the statuses walked, the store's own token there) from a token list() issued."""
    if not token:
        return 0, None
    try:
        position, inner = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, TypeError, binascii.Error) as error:
        raise InvalidRequest("next_token is not a token this API issued") from error
    if not (
        isinstance(position, int) and 0 <= position < statuses and (inner is None or isinstance(inner, str))
    ):
        raise InvalidRequest("next_token is not a token this API issued")
    return position, inner
