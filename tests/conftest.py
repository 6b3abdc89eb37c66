"""Fixtures shared by the suites. The local stack is started once per session and always stopped."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import settings

from local_stack.emf import save_keys
from local_stack.stack import EVENTS_DIR, STATE_DIR, LocalConfig, LocalStack
from mistersmith.callers import LOCAL_CALLER
from mistersmith.models import task_key
from tests.boto_record import record_boto_calls

# CI gets the same examples on every run, so that its verdict is about the change, not the draw;
# locally the draw varies and keeps exploring.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

BOTO_CALLS = record_boto_calls()

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "DEAD_LETTERED"}
VISIBILITY_SECONDS = 10
# The series the integration tests' stack emitted, for the dashboard check when it runs on its own.
EMITTED_METRICS_FILE = STATE_DIR / "integration-metrics.json"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that read what the rest of the session emitted run last (a stable sort keeps the rest in order).
    items.sort(key=lambda item: item.get_closest_marker("after_integration") is not None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stored_key(task_id: str) -> str:
    """The table key (and artifacts prefix) of a task submitted to the local stack without a caller header."""
    return task_key(LOCAL_CALLER, task_id)


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS_DIR / name).read_text())


def event_files() -> list[Path]:
    return sorted(EVENTS_DIR.glob("*.json"))


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    # A 10 s visibility (and lease) makes redelivery after a crash quick enough to test.
    config = LocalConfig(
        moto_port=free_port(),
        api_port=free_port(),
        max_workers=2,
        log_level="WARNING",
        schedule_seconds=2.0,
        parameters={"QueueVisibilityTimeoutSeconds": str(VISIBILITY_SECONDS)},
        worker_environment={"MAX_RETRY_DELAY_SECONDS": "1", "CONCURRENCY": "2"},
    )
    with LocalStack(config) as running:
        yield running
    # Saved only from a session that ran every integration module: a part emits only part of the metrics.
    if runs_every_integration_module(request.session):
        save_keys(running.metrics.series(), EMITTED_METRICS_FILE)


def runs_every_integration_module(session: pytest.Session) -> bool:
    ran = {Path(str(item.path)).name for item in session.items}
    return {path.name for path in Path(__file__).with_name("integration").glob("test_*.py")} <= ran


@pytest.fixture(scope="session")
def api(stack: LocalStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.api_url, timeout=10) as client:
        yield client


def wait_for_status(
    api: httpx.Client, task_id: str, statuses: set[str], timeout: float = 30
) -> dict[str, Any]:
    """Polls GET /tasks/{id} until the task is in one of `statuses`; fails the test at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = api.get(f"/tasks/{task_id}").json()
        if record.get("status") in statuses:
            return record
        time.sleep(0.05)
    raise AssertionError(f"{task_id} never reached {statuses} within {timeout} s: {record}")


@pytest.fixture(scope="session")
def wait_terminal(api: httpx.Client) -> Callable[[str], dict[str, Any]]:
    def wait(task_id: str, timeout: float = 60) -> dict[str, Any]:
        return wait_for_status(api, task_id, TERMINAL, timeout)

    return wait


@contextlib.contextmanager
def marks_directory(prefix: str) -> Iterator[Path]:
    """A directory in /tmp that sandboxed children (other uids) note their runs in, removed whatever
    the test's outcome: world-writable and left in /tmp, every later sandboxed run's scan lists it."""
    marks = Path(tempfile.mkdtemp(prefix=prefix))
    marks.chmod(0o777)
    try:
        yield marks
    finally:
        shutil.rmtree(marks, ignore_errors=True)


@contextlib.contextmanager
def own_workers(stack) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Stops the stack's supervised workers, so that the test's own are the only ones polling."""
    stack.max_workers = 0
    deadline = time.monotonic() + 30
    while any(worker.poll() is None for worker in stack.workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    started: list[subprocess.Popen[bytes]] = []
    try:
        yield started
    finally:
        for worker in started:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
        stack.max_workers = stack.config.max_workers
