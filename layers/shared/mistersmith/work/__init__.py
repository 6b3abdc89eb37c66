"""The work a worker performs: compile, analyze and execute tasks, from payload dict to result dict.

`perform` is the single entry point; the `run_*` functions take validated payload models.
Every deterministic failure is a `mistersmith.errors.TaskFailure` (never retried); anything
else is an infrastructure error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from mistersmith.errors import TaskFailure
from mistersmith.models import PAYLOAD_MODELS, TaskType
from mistersmith.work.analyze import run_analyze
from mistersmith.work.artifacts import ArtifactSink
from mistersmith.work.compile import TOOLCHAINS, Toolchain, run_compile
from mistersmith.work.execute import run_execute
from mistersmith.work.limits import WorkLimits
from mistersmith.work.sandbox import SandboxCall, SandboxResult, SourceArchive, run_in_sandbox, run_sandboxed
from mistersmith.work.sources import SourceFetcher, source_files

__all__ = [
    "TOOLCHAINS",
    "SandboxCall",
    "SandboxResult",
    "SourceArchive",
    "SourceFetcher",
    "Toolchain",
    "WorkLimits",
    "perform",
    "run_analyze",
    "run_compile",
    "run_execute",
    "run_in_sandbox",
    "run_sandboxed",
]

# The validation errors spelled out in an InvalidPayload message.
_REPORTED_ERRORS = 10

# Each runs its tools in sandboxed children, which `stop` ends; execute's and compile's also unpack
# a source archive (analyze's archive is unpacked by the worker before the child gets the files).
_RUNNERS: dict[
    TaskType,
    Callable[[Any, WorkLimits, threading.Event | None, ArtifactSink | None, SourceArchive | None], BaseModel],
] = {
    TaskType.EXECUTE: run_execute,
    TaskType.COMPILE: lambda payload, limits, stop, artifacts, archive: run_compile(
        payload, artifacts, limits=limits, stop=stop, archive=archive
    ),
    TaskType.ANALYZE: lambda payload, limits, stop, artifacts, _archive: run_analyze(
        payload, limits, stop, artifacts
    ),
}


def perform(
    task_type: str,
    payload: dict[str, Any],
    limits: WorkLimits,
    stop: threading.Event | None = None,
    artifacts: ArtifactSink | None = None,
    sources: SourceFetcher | None = None,
) -> dict[str, Any]:
    """Validates `payload` for `task_type`, fetches and unpacks its `source_uri` archive if it
    names one, performs the task and returns its result as a dict.

    Raises TaskFailure: `UnknownTaskType`, `InvalidPayload`, `InvalidSource`, `SourceNotFound`,
    `SourceTooLarge`, or the task's own failure (`CommandFailed`, `Timeout`, `CommandNotFound`,
    `CompileError`, `UnsupportedLanguage`, ...).
    """
    try:
        kind = TaskType(task_type)
    except (ValueError, TypeError):
        valid = ", ".join(sorted(member.value for member in TaskType))
        message = f"unknown task type {task_type!r}; valid types: {valid}"
        raise TaskFailure("UnknownTaskType", message) from None
    try:
        parsed: Any = PAYLOAD_MODELS[kind].model_validate(payload)
    except ValidationError as exc:
        raise TaskFailure("InvalidPayload", f"invalid {kind.value} payload: {_describe(exc)}") from None
    archive = None
    if parsed.source_uri is not None:
        if sources is None:
            raise TaskFailure("InvalidPayload", "source_uri cannot be read where this task runs")
        if kind is TaskType.ANALYZE:
            parsed = _with_sources(parsed, limits, sources)
        else:
            # The worker only fetches it: the sandboxed child unpacks it, streaming, under its budgets.
            data = sources(parsed.source_uri, limits.source_archive_bytes)
            archive = SourceArchive(data, limits.source_unpacked_bytes, text_only=kind is TaskType.COMPILE)
            parsed = parsed.model_copy(update={"source_uri": None})
    return _RUNNERS[kind](parsed, limits, stop, artifacts, archive).model_dump(exclude_none=True)


def _with_sources(parsed: Any, limits: WorkLimits, sources: SourceFetcher) -> Any:
    files = source_files(
        parsed.source_uri,
        sources,
        archive_limit_bytes=limits.source_archive_bytes,
        unpacked_limit_bytes=limits.source_unpacked_bytes,
        text_only=True,
    )
    return parsed.model_copy(update={"files": files, "source_uri": None})


def _describe(error: ValidationError) -> str:
    # Locations and messages only: the offending input may be large or secret.
    problems = [
        f"{'.'.join(str(part) for part in item['loc']) or 'payload'}: {item['msg']}"
        for item in error.errors()
    ]
    more = len(problems) - _REPORTED_ERRORS
    return "; ".join(problems[:_REPORTED_ERRORS]) + (f"; and {more} more" if more > 0 else "")
