"""The `execute` task: one command in the sandbox, its exit decides the task's outcome."""

from __future__ import annotations

import signal
import threading

from mistersmith.errors import TaskFailure, TaskStopped
from mistersmith.models import ExecutePayload, ExecuteResult
from mistersmith.work.artifacts import ArtifactSink
from mistersmith.work.limits import WorkLimits
from mistersmith.work.sandbox import SourceArchive, budget_failure, run_sandboxed


def run_execute(
    payload: ExecutePayload,
    limits: WorkLimits,
    stop: threading.Event | None = None,
    artifacts: ArtifactSink | None = None,
    archive: SourceArchive | None = None,
) -> ExecuteResult:
    """Runs the payload's command (in a directory with its files, or `archive` unpacked) and
    returns its result when it exits with 0.

    The timeout is the payload's `timeout_seconds`, never more than the worker's limit.
    Raises TaskFailure `Timeout` (the process group was killed), one naming a budget the run
    went past (`MemoryLimitExceeded`, `DiskLimitExceeded`, `CpuTimeLimitExceeded`) or
    `CommandFailed` (non-zero exit), each carrying the result as `result`; and whatever
    `run_sandboxed` raises.
    """
    ceiling = limits.execute_timeout_seconds
    timeout = min(payload.timeout_seconds or ceiling, ceiling)
    run = run_sandboxed(
        payload.command,
        timeout_seconds=timeout,
        output_limit_bytes=limits.output_limit_bytes,
        stdin=payload.stdin,
        env=payload.env,
        files=payload.files,
        stop=stop,
        confinement=limits.confinement,
        archive=archive,
    )
    stdout, stdout_uri = _inline(run.stdout, "stdout.txt", limits.inline_output_bytes, artifacts)
    stderr, stderr_uri = _inline(run.stderr, "stderr.txt", limits.inline_output_bytes, artifacts)
    result = ExecuteResult(
        exit_code=run.exit_code,
        stdout=stdout,
        stderr=stderr,
        truncated=run.truncated,
        duration_ms=run.duration_ms,
        stdout_uri=stdout_uri,
        stderr_uri=stderr_uri,
    )
    if run.stopped:
        raise TaskStopped("the command was stopped before it finished")
    exceeded = budget_failure(run, "the command")
    if exceeded is not None:
        exceeded.result = result.model_dump()
        raise exceeded
    if run.timed_out:
        raise TaskFailure(
            "Timeout",
            f"command did not finish within {timeout:g} s; its process group was killed",
            result=result.model_dump(),
        )
    if run.exit_code != 0:
        raise TaskFailure("CommandFailed", _describe_exit(run.exit_code), result=result.model_dump())
    return result


def _inline(text: str, name: str, limit: int, artifacts: ArtifactSink | None) -> tuple[str, str | None]:
    """The output as the record keeps it: whole when small, else its start plus the whole in the bucket."""
    data = text.encode()
    if len(data) <= limit or artifacts is None:
        return text, None
    return data[:limit].decode(errors="ignore"), artifacts(name, data, "text/plain; charset=utf-8")


def _describe_exit(exit_code: int) -> str:
    if exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"command was killed by {name} (exit code {exit_code})"
    return f"command exited with code {exit_code}"
