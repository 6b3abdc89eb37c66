"""The MisterSmith API from Python: submit, follow, list and cancel tasks, upload big payloads.

with MisterSmithClient.from_settings() as api:      # MISTERSMITH_API_URL, or a stack's ApiUrl
    task = api.submit("execute", {"command": ["python3", "-c", "print(42)"]})
    done = api.wait([task.id])[task.id]
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from typing import Any
from urllib.parse import quote

import httpx

from mistersmith_client import auth as auth_module
from mistersmith_client.errors import ConfigurationError, EndpointUnreachable, WaitTimeout, api_error
from mistersmith_client.models import Task, TaskPage, UploadTicket
from mistersmith_client.settings import ClientSettings

_RETRIED_STATUSES = frozenset({429, 502, 503, 504})
_MAX_BACKOFF_SECONDS = 5.0


def version() -> str:
    try:
        return metadata.version("mistersmith-on-aws")
    except metadata.PackageNotFoundError:
        return "0"


class MisterSmithClient:
    """One API endpoint. Every submission carries an id (one is made up when none is given), so a
    retried POST after a lost answer returns the same task instead of creating a second one."""

    def __init__(
        self,
        api_url: str,
        *,
        auth: httpx.Auth | None = None,
        timeout_seconds: float = 30,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.retries = retries
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.api_url,
            auth=auth,
            timeout=timeout_seconds,
            transport=transport,
            headers={"user-agent": f"mistersmith-client/{version()}", "accept": "application/json"},
        )

    @classmethod
    def from_settings(cls, settings: ClientSettings | None = None, **options: Any) -> MisterSmithClient:
        """The endpoint and auth that `settings` (by default: the environment) name."""
        settings = settings or ClientSettings()
        api_url = settings.api_url
        if not api_url and settings.stack_name:
            from mistersmith_client import aws  # boto3 is loaded only when AWS itself is asked

            api_url = aws.stack_outputs(settings).get("ApiUrl")
        if not api_url:
            where = (
                f"stack {settings.stack_name!r} has no ApiUrl output"
                if settings.stack_name
                else "no endpoint"
            )
            raise ConfigurationError(
                f"{where}: pass --api-url or --stack-name, or set MISTERSMITH_API_URL "
                "(the local stack writes it to .local/env)"
            )
        return cls(
            api_url,
            auth=auth_module.auth_for(settings, api_url, _aws_credentials),
            timeout_seconds=settings.timeout_seconds,
            retries=settings.retries,
            **options,
        )

    def __enter__(self) -> MisterSmithClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---------------------------------------------------------------- tasks

    def submit(self, task_type: str, payload: dict[str, Any], *, task_id: str | None = None) -> Task:
        body = {"id": task_id or new_task_id(), "task_type": task_type, "payload": payload}
        return Task.model_validate(self._request("POST", "/tasks", json=body))

    def submit_uploaded(self, task_type: str, payload_uri: str, *, task_id: str | None = None) -> Task:
        """A task whose payload was uploaded first (see `upload`)."""
        body = {"id": task_id or new_task_id(), "task_type": task_type, "payload_uri": payload_uri}
        return Task.model_validate(self._request("POST", "/tasks", json=body))

    def submit_via_upload(
        self, task_type: str, payload: dict[str, Any], *, task_id: str | None = None
    ) -> Task:
        """Uploads the payload to S3 through a presigned URL, then submits the task naming it."""
        source_uri = self.upload(json.dumps(payload).encode(), content_type="application/json")
        return self.submit_uploaded(task_type, source_uri, task_id=task_id)

    def get(self, task_id: str, *, owner: str | None = None) -> Task:
        """`owner` (admins only) reads another caller's task; by default one's own."""
        return Task.model_validate(self._request("GET", f"/tasks/{_segment(task_id)}", params=_owner(owner)))

    def payload(self, task_id: str, *, owner: str | None = None) -> dict[str, Any]:
        """The task's payload as it was submitted."""
        payload: dict[str, Any] = self._request(
            "GET", f"/tasks/{_segment(task_id)}/payload", params=_owner(owner)
        )
        return payload

    def retry(self, task_id: str, *, new_id: str | None = None, owner: str | None = None) -> Task:
        """A new task (one's own) with the same type and payload, naming the one it retries in `retry_of`."""
        original = self.get(task_id, owner=owner)
        body = {
            "id": new_id or new_task_id(),
            "task_type": original.task_type,
            "payload": self.payload(task_id, owner=owner),
            "retry_of": original.id,
        }
        return Task.model_validate(self._request("POST", "/tasks", json=body))

    def stats(self) -> dict[str, Any]:
        """Queue depths, workers, the last hour's scaling decisions and the caller's task counts."""
        stats: dict[str, Any] = self._request("GET", "/stats")
        return stats

    def cancel(self, task_id: str, *, owner: str | None = None) -> Task:
        return Task.model_validate(
            self._request("DELETE", f"/tasks/{_segment(task_id)}", params=_owner(owner))
        )

    def list(
        self,
        *,
        status: str | None = None,
        task_type: str | None = None,
        limit: int = 50,
        next_token: str | None = None,
        owner: str | None = None,
    ) -> TaskPage:
        """One page of one's own tasks (an admin's: everyone's, or `owner`'s); `next_token` of the
        answer fetches the next (None when there is no more)."""
        params = {
            "status": status,
            "task_type": task_type,
            "limit": limit,
            "next_token": next_token,
            "owner": owner,
        }
        return TaskPage.model_validate(
            self._request("GET", "/tasks", params={k: v for k, v in params.items() if v is not None})
        )

    def iter_tasks(
        self,
        *,
        status: str | None = None,
        task_type: str | None = None,
        page_size: int = 50,
        next_token: str | None = None,
        owner: str | None = None,
    ) -> Iterator[Task]:
        """Every matching task, page after page."""
        while True:
            page = self.list(
                status=status, task_type=task_type, limit=page_size, next_token=next_token, owner=owner
            )
            yield from page.items
            if not page.next_token:
                return
            next_token = page.next_token

    def wait(
        self,
        task_ids: Iterable[str],
        *,
        timeout_seconds: float = 600,
        interval_seconds: float = 1.0,
        on_update: Callable[[dict[str, Task]], None] | None = None,
    ) -> dict[str, Task]:
        """Polls until every task is terminal; raises WaitTimeout (with the last records) if not in time."""
        pending = list(dict.fromkeys(task_ids))
        latest: dict[str, Task] = {}
        deadline = time.monotonic() + timeout_seconds
        while True:
            for task_id in pending:
                latest[task_id] = self.get(task_id)
            pending = [task_id for task_id in pending if not latest[task_id].terminal]
            if on_update:
                on_update(latest)
            if not pending:
                return latest
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"{len(pending)} task(s) not finished after {timeout_seconds:g} s: {', '.join(pending)}",
                    {task_id: latest[task_id] for task_id in pending},
                )
            self._sleep(min(interval_seconds, max(0.0, deadline - time.monotonic())))

    # ---------------------------------------------------------------- uploads and probes

    def new_upload(self, content_type: str = "application/json") -> UploadTicket:
        return UploadTicket.model_validate(
            self._request("POST", "/uploads", json={"content_type": content_type})
        )

    def upload(self, data: bytes, *, content_type: str = "application/json") -> str:
        """PUTs `data` to a fresh presigned URL (no API credentials travel to S3); returns its source_uri."""
        ticket = self.new_upload(content_type)
        try:
            response = httpx.put(ticket.url, content=data, headers=ticket.headers, timeout=self._http.timeout)
        except httpx.TransportError as error:
            raise EndpointUnreachable(f"cannot reach the upload URL: {error}") from error
        if response.status_code >= 300:
            raise api_error(
                response.status_code, {"title": "Upload refused by S3", "detail": response.text[:500]}
            )
        return ticket.source_uri

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/health")

    def ready(self) -> dict[str, Any]:
        return self._request("GET", "/ready")

    def forward(
        self, method: str, path: str, *, content: bytes | None, headers: dict[str, str]
    ) -> httpx.Response:
        """One request as it is (no retry, no error raised): the console's calls, signed."""
        try:
            return self._http.request(method, path, content=content, headers=headers)
        except httpx.TransportError as error:
            raise EndpointUnreachable(
                f"cannot reach the MisterSmith API at {self.api_url}: {error}"
            ) from error

    # ---------------------------------------------------------------- transport

    def _request(self, method: str, path: str, **options: Any) -> Any:
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **options)
            except httpx.TransportError as error:
                if attempt < self.retries:
                    attempt += 1
                    self._sleep(_backoff(attempt, None))
                    continue
                raise EndpointUnreachable(
                    f"cannot reach the MisterSmith API at {self.api_url}: {error or type(error).__name__} "
                    "(check --api-url / MISTERSMITH_API_URL, and that the stack is up)"
                ) from error
            if response.status_code in _RETRIED_STATUSES and attempt < self.retries:
                attempt += 1
                self._sleep(_backoff(attempt, response.headers.get("retry-after")))
                continue
            if response.status_code >= 400:
                raise api_error(response.status_code, _problem_of(response))
            return response.json()


def _aws_credentials(profile: str | None) -> auth_module.CredentialsProvider:
    from mistersmith_client import aws

    return aws.credentials_provider(profile)


def new_task_id() -> str:
    return uuid.uuid4().hex


def _segment(task_id: str) -> str:
    # Encoded like botocore encodes path labels, so that the SigV4 canonical path matches API Gateway's.
    return quote(task_id, safe="")


def _backoff(attempt: int, retry_after: str | None) -> float:
    if retry_after and retry_after.isdigit():
        return min(float(retry_after), _MAX_BACKOFF_SECONDS)
    return min(0.2 * 2 ** (attempt - 1), _MAX_BACKOFF_SECONDS)


def _problem_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        return body
    return {"title": response.reason_phrase or f"HTTP {response.status_code}", "detail": response.text[:500]}


def _owner(owner: str | None) -> dict[str, str]:
    return {"owner": owner} if owner else {}
