"""Intake: the HTTP API (FastAPI) behind API Gateway through Mangum, and behind uvicorn locally.

Every 4xx and 5xx answer is an RFC 9457 problem document (`application/problem+json`): `type`,
`title`, `status`, `detail`, `instance`, and `errors` (the fields at fault) on a 422."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from mangum import Mangum
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mistersmith import wiring
from mistersmith.errors import InvalidRequest, PayloadTooLarge, PublishFailed, TaskConflict, TaskNotFound
from mistersmith.intake import Intake, TaskSubmission, UploadRejected, UploadRequest, UploadTicket
from mistersmith.models import TaskId, TaskPage, TaskRecord, TaskStatus, TaskType
from mistersmith.observability import XRAY_HEADER, count, logger, trace_header_for, tracer
from mistersmith.settings import IntakeSettings, load

API_VERSION = "1.1.0"
PROBLEM_TYPE = "urn:mistersmith:problem:"
PROBLEM_MEDIA_TYPE = "application/problem+json"
# Lambda's synchronous request limit: uvicorn refuses the same bodies that API Gateway + Lambda would.
MAX_REQUEST_BYTES = 6 * 1024 * 1024
# Union tags that pydantic puts into an error's location; clients want the field, not the tag.
_SUBMISSION_TAGS = frozenset({"execute", "compile", "analyze", "uploaded"})

app = FastAPI(
    title="MisterSmith intake",
    version=API_VERSION,
    description=(
        "Submit compile / analyze / execute tasks, follow them to a result, list and cancel them. "
        "In AWS every route but /health needs a SigV4-signed request (or an API key in API-key mode)."
    ),
)


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    field: str


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = None
    checks: dict[str, str] | None = None


# Domain error -> (status, problem type, title); the one place where errors become HTTP.
_DOMAIN_PROBLEMS: dict[type[Exception], tuple[int, str, str]] = {
    TaskNotFound: (404, "task-not-found", "Task not found"),
    TaskConflict: (409, "task-conflict", "Task conflict"),
    PayloadTooLarge: (413, "payload-too-large", "Payload too large"),
    UploadRejected: (422, "invalid-upload", "Uploaded payload rejected"),
    InvalidRequest: (400, "invalid-request", "Invalid request"),
    PublishFailed: (503, "unavailable", "Service unavailable"),
}
_HTTP_PROBLEMS = {404: "not-found", 405: "method-not-allowed", 413: "request-too-large"}


def problem(
    instance: str | None,
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body = Problem(
        type=PROBLEM_TYPE + slug,
        title=title,
        status=status,
        detail=detail,
        instance=instance,
        **extensions,
    )
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


for _error_class, (_status, _slug, _title) in _DOMAIN_PROBLEMS.items():

    @app.exception_handler(_error_class)
    async def _domain_error(
        request: Request, error: Exception, status: int = _status, slug: str = _slug, title: str = _title
    ) -> JSONResponse:
        errors = getattr(error, "errors", None)
        return problem(
            request.url.path,
            status,
            slug,
            title,
            str(error),
            errors=[_field_error(item) for item in errors or []] or None,
        )


@app.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    errors = [_field_error(item) for item in error.errors()]
    shown = "; ".join(f"{item.field}: {item.msg}" for item in errors[:3])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    detail = f"{len(errors)} invalid field{'s' if len(errors) != 1 else ''}: {shown}{more}"
    return problem(request.url.path, 422, "validation-error", "Invalid request", detail, errors=errors)


@app.exception_handler(HTTPException)
async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    phrase = HTTPStatus(error.status_code).phrase
    slug = _HTTP_PROBLEMS.get(error.status_code, phrase.lower().replace(" ", "-"))
    return problem(
        request.url.path, error.status_code, slug, phrase, str(error.detail), headers=error.headers
    )


@app.exception_handler(Exception)
async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error", extra={"path": request.url.path})
    detail = "an unexpected error occurred; it has been logged"
    return problem(request.url.path, 500, "internal-error", "Internal server error", detail)


def _field_error(item: dict[str, Any]) -> FieldError:
    loc = [part if isinstance(part, int) else str(part) for part in item.get("loc", ())]
    parts = list(loc)
    if parts[:1] == ["body"]:
        parts = parts[1:]
        if parts and parts[0] in _SUBMISSION_TAGS:
            parts = parts[1:]
    elif parts[:1] in (["query"], ["path"], ["header"]):
        parts = parts[1:]
    message = str(item.get("msg", "invalid"))
    if item.get("type") == "json_invalid":
        # The position pydantic reports is an offset into the body, not a field.
        parts, message = [], f"{message}: {item.get('ctx', {}).get('error', 'not JSON')}"
    elif item.get("type") == "invalid_task_type":
        # The union's tag: name the field that picks it, or say that the body is not an object at all.
        if isinstance(item.get("input"), dict):
            loc, parts = ["body", "task_type"], ["task_type"]
        else:
            message = "the body must be a JSON object with task_type and payload (or payload_uri)"
    return FieldError(
        loc=loc,
        msg=message,
        type=str(item.get("type", "invalid")),
        field=".".join(str(part) for part in parts) or "body",
    )


class RequestSizeLimit:
    """Refuses a body over `max_bytes` with 413 before it is read whole, by its Content-Length or,
    without one, as soon as the bytes received pass the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response = problem(scope["path"], 413, "request-too-large", "Content Too Large", self._detail())
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # FastAPI passes HTTPException from a body read through to the handler above.
                raise HTTPException(413, detail=self._detail())
            return message

        await self.app(scope, counted, send)

    def _detail(self) -> str:
        return f"the request body is over {self.max_bytes} bytes; upload big payloads (POST /uploads)"


app.add_middleware(RequestSizeLimit, max_bytes=MAX_REQUEST_BYTES)


# Added last, so outermost: it also sees the size limit's 413.
@app.middleware("http")
async def count_rejected_tasks(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    response = await call_next(request)
    if request.method == "POST" and request.url.path == "/tasks" and 400 <= response.status_code < 500:
        count("TasksRejected", stage="intake", reason=str(response.status_code))
    return response


@cache
def get_intake() -> Intake:
    return wiring.intake(load(IntakeSettings))


IntakeDep = Annotated[Intake, Depends(get_intake)]


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": Problem, "description": HTTPStatus(status).phrase} for status in statuses}


@app.post(
    "/tasks",
    status_code=202,
    response_model=TaskRecord,
    response_model_exclude_none=True,
    responses=_problems(409, 413, 422, 503),
    summary="Submit a task (inline payload, or payload_uri of an upload); idempotent on id",
)
def submit_task(task: Annotated[TaskSubmission, Body()], request: Request, intake: IntakeDep) -> Any:
    # API Gateway passes the trace it started; locally a new one begins here.
    record, created = intake.submit(task, trace_header=trace_header_for(request.headers.get(XRAY_HEADER)))
    if created:
        count("TasksSubmitted", task_type=record.task_type)
    return record


@app.get(
    "/tasks/{task_id}",
    response_model=TaskRecord,
    response_model_exclude_none=True,
    responses=_problems(404, 422),
    summary="Read a task's status and result",
)
def get_task(task_id: TaskId, intake: IntakeDep) -> Any:
    return intake.get(task_id)


@app.delete(
    "/tasks/{task_id}",
    status_code=202,
    response_model=TaskRecord,
    response_model_exclude_none=True,
    responses=_problems(404, 409, 422),
    summary="Cancel a task (at once when QUEUED; its worker stops it when RUNNING)",
)
def cancel_task(task_id: TaskId, intake: IntakeDep) -> Any:
    return intake.cancel(task_id)


@app.get(
    "/tasks",
    response_model=TaskPage,
    response_model_exclude_none=True,
    responses=_problems(400, 422),
    summary="List tasks, newest first within a status; follow next_token for more",
)
def list_tasks(
    intake: IntakeDep,
    status: TaskStatus | None = None,
    task_type: TaskType | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next_token: Annotated[str | None, Query(max_length=4096)] = None,
) -> Any:
    return intake.list(status=status, task_type=task_type, limit=limit, next_token=next_token)


@app.post(
    "/uploads",
    status_code=201,
    response_model=UploadTicket,
    responses=_problems(422),
    summary="A presigned S3 PUT for a payload too big to send inline; submit it with payload_uri",
)
def new_upload(intake: IntakeDep, upload: Annotated[UploadRequest | None, Body()] = None) -> Any:
    return intake.new_upload(upload)


@app.get("/health", summary="Liveness (open to anyone)")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/ready", summary="Readiness: 200 when the task table answers", responses=_problems(503))
def ready(request: Request) -> JSONResponse:
    try:
        get_intake().store.get("__readiness_probe__")
    except Exception as error:  # any failure to reach the table means not ready, with the reason
        detail = f"table: {error}"
        return problem(request.url.path, 503, "not-ready", "Not ready", detail, checks={"table": str(error)})
    return JSONResponse(status_code=200, content={"status": "ready", "table": "ok"})


def openapi() -> dict[str, Any]:
    """FastAPI's document, with problem+json as the media type of every error and the cloud's auth."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    problem_schema = {"$ref": "#/components/schemas/Problem"}
    for path, operations in document["paths"].items():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if int(status) >= 400:
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": problem_schema}}
                    response["description"] = HTTPStatus(int(status)).phrase
            if path != "/health":
                operation["security"] = [{"sigv4": []}, {"api_key": []}]
    schemas = document["components"]["schemas"]
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    document["components"]["securitySchemes"] = {
        "sigv4": {
            "type": "apiKey",
            "name": "Authorization",
            "in": "header",
            "description": "AWS SigV4 (service execute-api): the default, ApiAuth=AWS_IAM",
        },
        "api_key": {
            "type": "apiKey",
            "name": "x-api-key",
            "in": "header",
            "description": "An API key of the stack's usage plan: ApiAuth=API_KEY",
        },
    }
    app.openapi_schema = document
    return document


app.openapi = openapi  # type: ignore[method-assign]

# Mangum base64-encodes any body whose type it does not know as text; problem+json is text.
_asgi_handler = Mangum(app, lifespan="off", text_mime_types=[*DEFAULT_TEXT_MIME_TYPES, PROBLEM_MEDIA_TYPE])


# No correlation path: each task's lines carry its id (task_context), which a global key would outlive.
@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # A plain function around Mangum: Tracer needs a callable with a __name__.
    return _asgi_handler(event, context)
