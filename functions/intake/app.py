"""Intake: the HTTP API (FastAPI) behind API Gateway through Mangum, and behind uvicorn locally.

Every 4xx and 5xx answer is an RFC 9457 problem document (problems.py)."""

# ruff: noqa: E402 - the imports follow gc.disable() on purpose (see there)

from __future__ import annotations

import gc

# A cold start creates some 160k objects the collector tracks, nearly all living as long as the
# process: collecting while they load frees next to nothing and costs about 50 ms. Re-enabled below.
gc.disable()

from functools import cache
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Body, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse
from mangum import Mangum
from mangum.adapter import DEFAULT_TEXT_MIME_TYPES
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from body_decoding import JsonBodies
from mistersmith.callers import CALLER_HEADER, Caller, identify
from mistersmith.models import (
    StatsReport,
    TaskPage,
    TaskRecord,
    TaskRef,
    TaskStatus,
    TaskSubmission,
    TaskType,
    UploadRequest,
    UploadTicket,
)
from mistersmith.observability import XRAY_HEADER, count, logger, trace_header_for, tracer
from openapi_document import problem_openapi
from problems import PROBLEM_MEDIA_TYPE, add_problem_handlers, problem, problem_responses
from size_limit import MAX_REQUEST_BYTES, RequestSizeLimit

if TYPE_CHECKING:
    # Types only (FastAPI does not read a dependency's type): the logic loads with its first request.
    from mistersmith.intake import Intake
    from mistersmith.stats import Stats

API_VERSION = "1.2.0"


class CountRejectedTasks:
    """Counts each POST /tasks answered with a 4xx (TasksRejected, by status). A plain ASGI
    middleware: Starlette's BaseHTTPMiddleware would load anyio's task groups on the first request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/tasks":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                count("TasksRejected", stage="intake", reason=str(message["status"]))
            await send(message)

        await self.app(scope, receive, counting_send)


app = FastAPI(
    title="MisterSmith intake",
    version=API_VERSION,
    description=(
        "Submit compile / analyze / execute tasks, follow them to a result, list and cancel them. "
        "In AWS every route but /health needs a SigV4-signed request (or an API key in API-key mode)."
    ),
)
add_problem_handlers(app)
# Inside the size limit, which sees the bytes first.
app.add_middleware(JsonBodies)
app.add_middleware(RequestSizeLimit, max_bytes=MAX_REQUEST_BYTES)
# Added last, so outermost: it also sees the size limit's 413.
app.add_middleware(CountRejectedTasks)


@cache
def get_intake() -> Intake:
    # Imported on the first request that needs them: boto3, the adapters and pydantic-settings are
    # a good part of a cold start that /health and /openapi.json do not need.
    from mistersmith import wiring
    from mistersmith.settings import IntakeSettings, load

    return wiring.intake(load(IntakeSettings))


IntakeDep = Annotated["Intake", Depends(get_intake)]


def get_caller(request: Request, intake: IntakeDep) -> Caller:
    # Mangum puts API Gateway's event in the scope; uvicorn (the local stack) has none.
    event = request.scope.get("aws.event") or {}
    return identify(
        event.get("requestContext"),
        request.headers.get(CALLER_HEADER),
        admins=intake.settings.api_admin_principals,
        trust_caller_header=intake.settings.local_caller_header,
    )


CallerDep = Annotated[Caller, Depends(get_caller)]
OwnerQuery = Annotated[
    str | None,
    Query(
        max_length=2048,
        description="Admins only: the caller whose task this is (by default one's own). Others get 404.",
    ),
]


@app.post(
    "/tasks",
    status_code=202,
    response_model=TaskRecord,
    response_model_exclude_none=True,
    responses=problem_responses(400, 403, 409, 413, 415, 422, 503),
    summary="Submit a task (inline payload, or payload_uri of an upload); idempotent on the caller's id",
)
def submit_task(
    task: Annotated[TaskSubmission, Body()], request: Request, intake: IntakeDep, caller: CallerDep
) -> Any:
    # API Gateway passes the trace it started; locally a new one begins here.
    trace_header = trace_header_for(request.headers.get(XRAY_HEADER))
    record, created = intake.submit(task, caller, trace_header=trace_header)
    if created:
        count("TasksSubmitted", task_type=record.task_type)
    return record


@app.get(
    "/tasks/{task_id}",
    response_model=TaskRecord,
    response_model_exclude_none=True,
    responses=problem_responses(403, 404, 422, 503),
    summary="Read a task's status and result (one's own; an admin's: anyone's, naming the owner)",
)
def get_task(task_id: TaskRef, intake: IntakeDep, caller: CallerDep, owner: OwnerQuery = None) -> Any:
    return intake.get(task_id, caller, owner=owner)


@app.get(
    "/tasks/{task_id}/payload",
    responses=problem_responses(403, 404, 422, 503),
    summary="Read a task's payload as submitted (for a retry, or to see what ran)",
)
def get_task_payload(
    task_id: TaskRef, intake: IntakeDep, caller: CallerDep, owner: OwnerQuery = None
) -> dict[str, Any]:
    return intake.payload(task_id, caller, owner=owner)


@app.get(
    "/tasks/{task_id}/artifacts/{name}",
    status_code=307,
    response_class=RedirectResponse,
    responses=problem_responses(403, 404, 422, 503),
    summary="Download an artifact of a task's result (`name`: its *_uri field) through a presigned URL",
)
def get_task_artifact(
    task_id: TaskRef,
    name: Annotated[str, Path(pattern=r"^[a-z_]{1,64}_uri$")],
    intake: IntakeDep,
    caller: CallerDep,
    owner: OwnerQuery = None,
) -> RedirectResponse:
    return RedirectResponse(intake.artifact_url(task_id, name, caller, owner=owner), status_code=307)


@app.delete(
    "/tasks/{task_id}",
    status_code=202,
    response_model=TaskRecord,
    response_model_exclude_none=True,
    responses=problem_responses(403, 404, 409, 422, 503),
    summary="Cancel a task (at once when QUEUED; its worker stops it when RUNNING)",
)
def cancel_task(task_id: TaskRef, intake: IntakeDep, caller: CallerDep, owner: OwnerQuery = None) -> Any:
    return intake.cancel(task_id, caller, owner=owner)


@app.get(
    "/tasks",
    response_model=TaskPage,
    response_model_exclude_none=True,
    responses=problem_responses(400, 403, 422, 503),
    summary="List one's own tasks, newest first (an admin's: everyone's, newest first within a status); "
    "follow next_token for more",
)
def list_tasks(
    intake: IntakeDep,
    caller: CallerDep,
    status: TaskStatus | None = None,
    task_type: TaskType | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next_token: Annotated[str | None, Query(max_length=4096)] = None,
    owner: OwnerQuery = None,
) -> Any:
    return intake.list(
        caller, status=status, task_type=task_type, limit=limit, next_token=next_token, owner=owner
    )


@app.post(
    "/uploads",
    status_code=201,
    response_model=UploadTicket,
    responses=problem_responses(400, 413, 415, 422, 503),
    summary="A presigned S3 PUT for a payload too big to send inline; submit it with payload_uri",
)
def new_upload(intake: IntakeDep, upload: Annotated[UploadRequest | None, Body()] = None) -> Any:
    return intake.new_upload(upload)


@cache
def get_stats() -> Stats:
    from mistersmith import wiring  # on first use, as in get_intake
    from mistersmith.settings import StatsSettings, load

    return wiring.stats(load(StatsSettings))


StatsDep = Annotated["Stats", Depends(get_stats)]


@app.get(
    "/stats",
    response_model=StatsReport,
    response_model_exclude_none=True,
    responses=problem_responses(403, 503),
    summary="Queue depths and dead letters, workers, the last hour's scaling decisions, the caller's "
    "task counts (cached a few seconds)",
)
def stats(statistics: StatsDep, caller: CallerDep) -> Any:
    # Task counts are the caller's own; an admin's are everyone's.
    return statistics.report(None if caller.admin else caller.principal)


# async: answered on the event loop, without starting the thread pool that blocking routes run in.
@app.get("/health", summary="Liveness (open to anyone)")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/ready", summary="Readiness: 200 when the task table answers", responses=problem_responses(503))
def ready(request: Request) -> JSONResponse:
    try:
        get_intake().store.get("__readiness_probe__")
    except Exception as error:  # any failure to reach the table means not ready, with the reason
        detail = f"table: {error}"
        return problem(request.url.path, 503, "not-ready", "Not ready", detail, checks={"table": str(error)})
    return JSONResponse(status_code=200, content={"status": "ready", "table": "ok"})


# FastAPI's documented way to replace the schema is to assign app.openapi; mypy sees a method.
app.openapi = problem_openapi(app)  # type: ignore[method-assign]

# Mangum base64-encodes any body whose type it does not know as text; problem+json is text.
_asgi_handler = Mangum(app, lifespan="off", text_mime_types=[*DEFAULT_TEXT_MIME_TYPES, PROBLEM_MEDIA_TYPE])


# What the cold start made stays out of every later collection (they would scan it to free nothing).
gc.freeze()
gc.enable()


# No correlation path: each task's lines carry its id (task_context), which a global key would outlive.
@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # A plain function around Mangum: Tracer needs a callable with a __name__.
    return _asgi_handler(event, context)
