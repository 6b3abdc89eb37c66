"""Intake: the HTTP API (FastAPI) behind API Gateway through Mangum, and behind uvicorn locally."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.metrics import MetricUnit
from fastapi import Body, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from mangum import Mangum

from mistersmith import wiring
from mistersmith.errors import InvalidRequest, PayloadTooLarge, PublishFailed, TaskConflict, TaskNotFound
from mistersmith.intake import Intake, TaskRequestModel
from mistersmith.models import TaskId, TaskPage, TaskRecord, TaskStatus, TaskType
from mistersmith.observability import logger, metrics, tracer
from mistersmith.settings import IntakeSettings, load

app = FastAPI(title="MisterSmith intake", version="1.0.0")

_ERROR_STATUS = {
    TaskNotFound: 404,
    TaskConflict: 409,
    PayloadTooLarge: 413,
    InvalidRequest: 400,
    PublishFailed: 503,
}


@cache
def get_intake() -> Intake:
    return wiring.intake(load(IntakeSettings))


IntakeDep = Annotated[Intake, Depends(get_intake)]


for _error_class, _status in _ERROR_STATUS.items():

    @app.exception_handler(_error_class)
    async def _domain_error(request: Request, error: Exception, status: int = _status) -> JSONResponse:
        return JSONResponse(status_code=status, content={"detail": str(error), "type": type(error).__name__})


@app.post("/tasks", status_code=202, response_model=TaskRecord, response_model_exclude_none=True)
def submit_task(
    task: Annotated[TaskRequestModel, Body(discriminator="task_type")], request: Request, intake: IntakeDep
) -> Any:
    record, created = intake.submit(task, trace_id=request.headers.get("x-amzn-trace-id"))
    if created:
        metrics.add_metric(name="TasksSubmitted", unit=MetricUnit.Count, value=1)
    return record


@app.get("/tasks/{task_id}", response_model=TaskRecord, response_model_exclude_none=True)
def get_task(task_id: TaskId, intake: IntakeDep) -> Any:
    return intake.get(task_id)


@app.delete("/tasks/{task_id}", status_code=202, response_model=TaskRecord, response_model_exclude_none=True)
def cancel_task(task_id: TaskId, intake: IntakeDep) -> Any:
    return intake.cancel(task_id)


@app.get("/tasks", response_model=TaskPage, response_model_exclude_none=True)
def list_tasks(
    intake: IntakeDep,
    status: TaskStatus | None = None,
    task_type: TaskType | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next_token: str | None = None,
) -> Any:
    return intake.list(status=status, task_type=task_type, limit=limit, next_token=next_token)


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/ready")
def ready() -> JSONResponse:
    try:
        get_intake().store.get("__readiness_probe__")
    except Exception as error:  # any failure to reach the table means not ready, with the reason
        return JSONResponse(status_code=503, content={"status": "not ready", "table": str(error)})
    return JSONResponse(status_code=200, content={"status": "ready", "table": "ok"})


_asgi_handler = Mangum(app, lifespan="off")


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    # A plain function around Mangum: Tracer needs a callable with a __name__.
    return _asgi_handler(event, context)
