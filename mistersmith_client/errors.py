"""What can go wrong, with the CLI's exit code for each."""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_TASK_FAILED = 1  # a task ended FAILED, CANCELLED or DEAD_LETTERED
EXIT_REJECTED = 2  # bad usage, or the API refused the request (400, 409, 413, 422)
EXIT_NOT_FOUND = 3
EXIT_TIMEOUT = 4  # waited and the task is still not finished
EXIT_UNAVAILABLE = 5  # endpoint unreachable, throttled or failing (429, 5xx)
EXIT_AUTH = 6  # 401 / 403: credentials, signature or API key refused


class MisterSmithClientError(Exception):
    """Base of the client's errors; `exit_code` is what the CLI returns for it."""

    exit_code = EXIT_REJECTED


class ConfigurationError(MisterSmithClientError):
    """No endpoint, no region or credentials to sign with, an unknown stack: fix the invocation."""


class EndpointUnreachable(MisterSmithClientError):
    exit_code = EXIT_UNAVAILABLE


class AwsCallFailed(MisterSmithClientError):
    """A call to AWS itself (SQS, S3) failed."""

    exit_code = EXIT_UNAVAILABLE


class WaitTimeout(MisterSmithClientError):
    exit_code = EXIT_TIMEOUT

    def __init__(self, message: str, pending: dict[str, Any]) -> None:
        super().__init__(message)
        self.pending = pending


class ApiError(MisterSmithClientError):
    """A 4xx or 5xx answer; `problem` is its RFC 9457 body (or what the gateway sent instead)."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.title = str(problem.get("title") or f"HTTP {status}")
        # API Gateway's own refusals (403 on a bad signature, 429) carry {"message": ...}.
        self.detail = str(problem.get("detail") or problem.get("message") or "")
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        super().__init__(self.describe())

    def describe(self) -> str:
        lines = [f"{self.status} {self.title}" + (f": {self.detail}" if self.detail else "")]
        for error in self.errors:
            line = f"{error.get('field', '?')}: {error.get('msg', '')}"
            if line not in self.detail:  # the detail already names the first few
                lines.append(f"  - {line}")
        return "\n".join(lines)


class Rejected(ApiError):
    """400, 409, 413, 422: the request itself is wrong; retrying it will not help."""


class TaskNotFound(ApiError):
    exit_code = EXIT_NOT_FOUND


class AuthRejected(ApiError):
    exit_code = EXIT_AUTH


class Unavailable(ApiError):
    exit_code = EXIT_UNAVAILABLE


def api_error(status: int, problem: dict[str, Any]) -> ApiError:
    if status == 404:
        return TaskNotFound(status, problem)
    if status in (401, 403):
        return AuthRejected(status, problem)
    if status == 429 or status >= 500:
        return Unavailable(status, problem)
    return Rejected(status, problem)
