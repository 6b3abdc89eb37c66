"""RFC 9457 problem documents (`application/problem+json`) for every 4xx and 5xx the intake API
answers: `type`, `title`, `status`, `detail`, `instance`, and `errors` (the fields at fault) on a 422.
The one place where domain errors become HTTP."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Route

from mistersmith.errors import (
    CallerUnknown,
    InvalidRequest,
    PayloadTooLarge,
    TaskConflict,
    TaskNotFound,
    UploadRejected,
)
from mistersmith.observability import logger

PROBLEM_TYPE = "urn:mistersmith:problem:"
PROBLEM_MEDIA_TYPE = "application/problem+json"
# Union tags that pydantic puts into an error's location; clients want the field, not the tag.
_SUBMISSION_TAGS = frozenset({"execute", "compile", "analyze", "uploaded"})


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
    CallerUnknown: (403, "caller-unknown", "Forbidden"),
    TaskConflict: (409, "task-conflict", "Task conflict"),
    PayloadTooLarge: (413, "payload-too-large", "Payload too large"),
    UploadRejected: (422, "invalid-upload", "Uploaded payload rejected"),
    InvalidRequest: (400, "invalid-request", "Invalid request"),
}
_HTTP_PROBLEMS = {404: "not-found", 405: "method-not-allowed", 413: "request-too-large"}


def problem(
    instance: str | None,
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
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


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """A route's documented error answers, each a problem document."""
    return {status: {"model": Problem, "description": HTTPStatus(status).phrase} for status in statuses}


def add_problem_handlers(app: FastAPI) -> None:
    """Every error the app can meet answers as a problem document."""
    for error_class, (status, slug, title) in _DOMAIN_PROBLEMS.items():

        async def _domain_error(
            request: Request, error: Exception, status: int = status, slug: str = slug, title: str = title
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

        app.exception_handler(error_class)(_domain_error)
    app.exception_handler(RequestValidationError)(_invalid_request)
    app.exception_handler(HTTPException)(_http_error)
    app.exception_handler(Exception)(_unexpected)


async def _invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
    errors = [_field_error(item) for item in error.errors()]
    shown = "; ".join(f"{item.field}: {item.msg}" for item in errors[:3])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    detail = f"{len(errors)} invalid field{'s' if len(errors) != 1 else ''}: {shown}{more}"
    return problem(request.url.path, 422, "validation-error", "Invalid request", detail, errors=errors)


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    phrase = HTTPStatus(error.status_code).phrase
    slug = _HTTP_PROBLEMS.get(error.status_code, phrase.lower().replace(" ", "-"))
    headers = dict(error.headers or {})
    if error.status_code == 405:
        # Starlette names the methods of the first route that matched; a path has one route per method.
        headers["Allow"] = _allowed_methods(request)
    return problem(request.url.path, error.status_code, slug, phrase, str(error.detail), headers=headers)


def _allowed_methods(request: Request) -> str:
    methods = {
        method
        for route in request.app.routes
        if isinstance(route, Route) and route.path_regex.match(request.scope["path"])
        for method in route.methods or ()
    }
    return ", ".join(sorted(methods))


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    if _aws_unavailable(error):
        logger.warning("an AWS service did not answer", extra={"path": request.url.path, "error": str(error)})
        detail = f"a service this call needs did not answer ({type(error).__name__}); retry with the same id"
        return problem(
            request.url.path, 503, "unavailable", "Service unavailable", detail, {"Retry-After": "1"}
        )
    logger.exception("unhandled error", extra={"path": request.url.path})
    detail = "an unexpected error occurred; it has been logged"
    return problem(request.url.path, 500, "internal-error", "Internal server error", detail)


def _aws_unavailable(error: Exception) -> bool:
    """A table or bucket that did not answer is the caller's to retry (503), not our fault (500)."""
    if "botocore" not in sys.modules:  # no AWS call was made yet; /health's cold start stays without boto3
        return False
    from mistersmith.adapters.aws import is_unavailable  # with boto3, as wiring is on first use

    return is_unavailable(error)


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
