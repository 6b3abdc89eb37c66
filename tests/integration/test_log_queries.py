"""The three saved Logs Insights queries, applied as regular expressions to the JSON
lines our worker and autoscaler write, find what they look for."""

from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid

import pytest

from local_stack.lambda_runtime import invoke
from mistersmith.observability import logger
from tests.conftest import load_event, own_workers, stored_key

pytestmark = pytest.mark.integration

# `parse @message /.../` patterns of the seed, with Logs Insights' (?<name>) written as Python's (?P<name>).
SLOW_TASK_ID = re.compile(r'"task_id":"(?P<taskId>[^"]+)"')
SLOW_DURATION = re.compile(r'"duration_ms":(?P<duration>\d+)')
ERROR_TYPE = re.compile(r'"error_type":"(?P<errorType>[^"]+)"')
DESIRED = re.compile(r'"desired_count":(?P<desired>\d+)')
RUNNING = re.compile(r'"running_count":(?P<running>\d+)')


@pytest.fixture(scope="module")
def worker_lines(stack, api, wait_terminal) -> list[str]:
    """The log lines of a worker that ran one task that succeeds and one that fails."""
    log = stack.config.log_dir / "worker-77.log"
    log.unlink(missing_ok=True)
    ids = {
        f"logs-ok-{uuid.uuid4().hex[:6]}": ["python3", "-c", "print(1)"],
        f"logs-bad-{uuid.uuid4().hex[:6]}": ["python3", "-c", "raise SystemExit(2)"],
    }
    with own_workers(stack) as workers:
        workers.append(stack.start_worker(77, {"LOG_LEVEL": "INFO"}))
        for task_id, command in ids.items():
            api.post("/tasks", json={"id": task_id, "task_type": "execute", "payload": {"command": command}})
        for task_id in ids:
            wait_terminal(task_id)
        time.sleep(0.5)
    return log.read_text().splitlines()


def test_slow_tasks_query_parses_task_id_and_duration_from_task_duration_lines(worker_lines):
    # filter @message like /task_duration/ | parse task_id | parse duration_ms
    matches = [line for line in worker_lines if "task_duration" in line]
    assert len(matches) == 2
    for line in matches:
        # Lines name the task by its key, unique across callers (see callers.py).
        assert SLOW_TASK_ID.search(line).group("taskId").startswith(stored_key("logs-"))
        assert int(SLOW_DURATION.search(line).group("duration")) >= 0


def test_error_patterns_query_counts_error_types_on_error_lines(worker_lines):
    # filter @message like /ERROR/ | parse error_type | stats count() by errorType
    error_types = [
        ERROR_TYPE.search(line).group("errorType")
        for line in worker_lines
        if "ERROR" in line and ERROR_TYPE.search(line)
    ]
    assert error_types == ["CommandFailed"]


def test_every_worker_task_line_carries_the_schema_fields(worker_lines):
    records = [
        json.loads(line) for line in worker_lines if line.startswith("{") and '"task_duration"' in line
    ]
    for record in records:
        assert {
            "task_id",
            "task_type",
            "duration_ms",
            "attempt",
            "worker_id",
            "level",
            "timestamp",
            "service",
        } <= record.keys()
        assert record["service"] == "mistersmith-worker"


def test_scaling_events_query_parses_desired_and_running_counts(stack):
    # Given the autoscaler deciding once, its log lines captured as the function writes them
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    level = logger.log_level
    logger.addHandler(handler)
    logger.setLevel("INFO")
    try:
        invoke(stack.template, "AutoscalerFunction", load_event("autoscaler_schedule.json"))
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler)
    lines = [line for line in stream.getvalue().splitlines() if "scaling_event" in line]
    # filter @message like /scaling_event/ | parse desired_count | parse running_count
    assert lines
    assert int(DESIRED.search(lines[-1]).group("desired")) >= 0
    assert int(RUNNING.search(lines[-1]).group("running")) >= 0
