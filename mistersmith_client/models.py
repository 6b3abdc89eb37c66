"""What the API answers, as the client reads it: unknown fields are kept, so a newer server does not
break an older client."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "DEAD_LETTERED"})
TASK_TYPES = ("execute", "compile", "analyze")
STATUSES = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "DEAD_LETTERED")


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")

    def as_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class Task(_Answer):
    id: str
    task_type: str
    status: str
    created_at: str
    updated_at: str
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    trace_id: str | None = None
    cancel_requested: bool | None = None
    worker: str | None = None
    retry_of: str | None = None
    # The caller that submitted it (an IAM ARN or apikey:<id>); absent on tasks from before owners.
    owner: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


class TaskPage(_Answer):
    items: list[Task]
    next_token: str | None = None


class UploadTicket(_Answer):
    upload_id: str
    method: str = "PUT"
    url: str
    headers: dict[str, str] = {}
    expires_at: str
    source_uri: str
