"""Intake logic: accept a task once and keep big payloads aside. Writing the record is all that
hands the task on: the table's stream brings the insert to the router (one write, so nothing to
undo if a second one failed). Uploads (uploads.py) and listing (listing.py) sit beside it."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from mistersmith.callers import Caller, principal
from mistersmith.clock import now_iso
from mistersmith.errors import (
    PayloadTooLarge,
    TaskConflict,
    TaskNotFound,
    TransitionRejected,
)
from mistersmith.lifecycle import Lifecycle
from mistersmith.listing import list_tasks
from mistersmith.models import (
    FORMAT_VERSION,
    StoredTask,
    TaskPage,
    TaskRecord,
    TaskRequestModel,
    TaskStatus,
    UploadedTaskRequest,
    UploadRequest,
    UploadTicket,
    canonical_json,
    parse_s3_uri,
    request_fingerprint,
    task_key,
)
from mistersmith.observability import logger, task_context, trace_root, traced
from mistersmith.payloads import PayloadStore
from mistersmith.ports import BlobStore
from mistersmith.uploads import Uploads

if TYPE_CHECKING:
    # A type only: the API imports this module at cold start, settings (pydantic-settings) on first use.
    from mistersmith.settings import IntakeSettings

# Long enough to start a download from the console, short enough not to be worth sharing.
ARTIFACT_URL_SECONDS = 300


class Intake:
    """Submits, reads and lists tasks."""

    def __init__(self, lifecycle: Lifecycle, blobs: BlobStore, settings: IntakeSettings) -> None:
        self.lifecycle = lifecycle
        self.store = lifecycle.store
        self.payloads = PayloadStore(blobs)
        self.settings = settings
        self.uploads = Uploads(blobs, settings)

    @traced
    def submit(
        self,
        request: TaskRequestModel | UploadedTaskRequest,
        caller: Caller,
        *,
        trace_header: str | None = None,
    ) -> tuple[TaskRecord, bool]:
        """Records the task as QUEUED, owned by `caller`; returns (record, created).

        Ids are the caller's own: the task is stored under task_key(caller, id), so another caller's
        equal id is another task. The same id with the same body from the same caller returns the
        existing task (its insert is already on the stream). A payload named by `payload_uri` is
        read and checked here, then treated as if it came inline."""
        if isinstance(request, UploadedTaskRequest):
            request = self.uploads.read(request)
        if request.payload.source_uri:
            self.uploads.check_source(request.payload.source_uri)
        key = task_key(caller.principal, request.id or uuid.uuid4().hex)
        with task_context(key, trace_root(trace_header)):
            return self._accept(request, key, caller.principal, trace_header)

    def _accept(
        self, request: TaskRequestModel, key: str, owner: str, trace_header: str | None
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
            format_version=FORMAT_VERSION,
            id=key,
            owner=owner,
            task_type=request.task_type,
            status=TaskStatus.QUEUED,
            created_at=now,
            updated_at=now,
            fingerprint=fingerprint,
            trace_id=trace_root(trace_header),
            trace_header=trace_header,
            retry_of=getattr(request, "retry_of", None),
            region=self.settings.aws_region,
        )
        if len(body) > self.settings.inline_payload_limit_bytes:
            task.payload_ref = self.payloads.store_aside(key, body)
        else:
            task.payload = payload
        created = self.store.create(task)
        if not created:
            task = self._existing_with_same_body(task, fingerprint)
        logger.info("task accepted", extra={"task_id": key, "task_type": task.task_type, "new_task": created})
        return task.public(), created

    def new_upload(self, request: UploadRequest | None = None) -> UploadTicket:
        return self.uploads.new(request)

    @traced
    def cancel(self, task_id: str, caller: Caller, *, owner: str | None = None) -> TaskRecord:
        """QUEUED ends CANCELLED at once; RUNNING is asked to stop (its worker ends it CANCELLED)."""
        task = self._find(task_id, caller, owner)
        try:
            if task.status is TaskStatus.QUEUED:
                return self.lifecycle.move(task.id, TaskStatus.CANCELLED, finished_at=now_iso()).public()
            if task.status is TaskStatus.RUNNING:
                return self.store.transition(
                    task.id,
                    TaskStatus.RUNNING,
                    allowed_from={TaskStatus.RUNNING},
                    changes={"cancel_requested": True, "updated_at": now_iso()},
                ).public()
        except TransitionRejected:
            return self.cancel(task_id, caller, owner=owner)  # it moved meanwhile: decide again
        raise TaskConflict(f"task {task_id!r} is already {task.status.value}")

    def get(self, task_id: str, caller: Caller, *, owner: str | None = None) -> TaskRecord:
        return self._find(task_id, caller, owner).public()

    def payload(self, task_id: str, caller: Caller, *, owner: str | None = None) -> dict[str, Any]:
        """The payload as submitted (read back from the bucket when it was stored aside)."""
        task = self._find(task_id, caller, owner)
        if task.payload_ref is not None:
            payload: dict[str, Any] = json.loads(self.payloads.load(task.payload_ref))
            return payload
        return task.payload or {}

    def artifact_url(self, task_id: str, name: str, caller: Caller, *, owner: str | None = None) -> str:
        """A short-lived download URL of the artifact the task's result names `name` (`*_uri`)."""
        task = self._find(task_id, caller, owner)
        uri = (task.result or {}).get(name) if name.endswith("_uri") else None
        if not isinstance(uri, str):
            raise TaskNotFound(f"{task_id}/artifacts/{name}")
        bucket, key = parse_s3_uri(uri)
        if bucket != self.payloads.bucket:
            raise TaskNotFound(f"{task_id}/artifacts/{name}")
        return self.payloads.blobs.presign_get(key, expires_seconds=ARTIFACT_URL_SECONDS)

    def list(
        self,
        caller: Caller,
        *,
        status: TaskStatus | None,
        task_type: str | None,
        limit: int,
        next_token: str | None,
        owner: str | None = None,
    ) -> TaskPage:
        """The caller's own tasks; an admin's: everyone's, or `owner`'s."""
        owner = principal(owner) if owner else None
        if not caller.admin:
            if owner not in (None, caller.principal):
                return TaskPage(items=[])
            owner = caller.principal
        return list_tasks(
            self.store, status=status, task_type=task_type, limit=limit, next_token=next_token, owner=owner
        )

    def _find(self, task_id: str, caller: Caller, owner: str | None) -> StoredTask:
        """`owner`'s (by default the caller's) task `task_id` if the caller may see it, else an
        unowned task of that id (from before owners were kept, or from the bus)."""
        owner = principal(owner) if owner else caller.principal
        owned = self.store.get(task_key(owner, task_id))
        if owned is not None and owned.owner == owner and caller.may_see(owned):
            return owned
        unowned = self.store.get(task_id)
        if unowned is not None and unowned.owner is None:
            return unowned
        raise TaskNotFound(task_id)

    def _existing_with_same_body(self, task: StoredTask, fingerprint: str) -> StoredTask:
        existing = self.store.get(task.id)
        if existing is None:
            raise TaskConflict(f"task {task.public_id!r} was being created concurrently; retry")
        if existing.fingerprint != fingerprint or existing.owner != task.owner:
            raise TaskConflict(f"task {task.public_id!r} already exists with a different body")
        return existing
