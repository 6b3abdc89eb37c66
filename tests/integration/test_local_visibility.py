"""On the running local stack: a task's lines reach the one stream under each component's name
(in-process functions and a worker's log file alike), and the metrics of their EMF lines are kept."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable

import pytest

from local_stack.__main__ import main as local_stack_main
from local_stack.emf import SeriesKey, json_objects
from mistersmith.observability import logger
from tests.conftest import free_port, stored_key

pytestmark = pytest.mark.integration

WORKER = (("service", "mistersmith-worker"),)


def count(stack, name: str, dimensions: tuple[tuple[str, str], ...] | None = None) -> int:
    return sum(
        values.count
        for key, values in stack.metrics.series().items()
        if key.name == name and dimensions in (None, key.dimensions)
    )


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_a_task_s_lines_carry_each_component_s_name_and_its_metrics_are_kept(stack, api, wait_terminal):
    run = uuid.uuid4().hex[:6]
    failing, analyzed = f"visible-exit-{run}", f"visible-analyze-{run}"
    submitted_before = count(stack, "TasksSubmitted")
    failed_before = count(stack, "TasksFailed", WORKER)
    lines: list[tuple[str, str]] = []

    def listener(name: str, line: str) -> None:
        lines.append((name, line))

    def names(task_id: str) -> set[str]:
        return {name for name, line in list(lines) if task_id in line}

    previous_level = logger.log_level
    # The session stack logs at WARNING: INFO adds the intake's, router's and analyze's lines.
    logger.setLevel("INFO")
    stack.console.add_listener(listener)
    try:
        api.post(
            "/tasks",
            json={
                "id": failing,
                "task_type": "execute",
                "payload": {"command": ["python3", "-c", "raise SystemExit(4)"]},
            },
        ).raise_for_status()
        api.post(
            "/tasks",
            json={"id": analyzed, "task_type": "analyze", "payload": {"files": {"ok.py": "x = 1\n"}}},
        ).raise_for_status()
        assert wait_terminal(failing)["status"] == "FAILED"
        assert wait_terminal(analyzed)["status"] == "SUCCEEDED"
        # A worker's lines come through its log file, which is polled.
        wait_until(lambda: any(name.startswith("worker-") for name in names(failing)))
        # The record turns SUCCEEDED before the status event is published and the line written.
        wait_until(lambda: "analyze" in names(analyzed))
        wait_until(lambda: count(stack, "TasksFailed", WORKER) > failed_before)
    finally:
        stack.console.remove_listener(listener)
        logger.setLevel(previous_level)

    assert {"intake", "router"} <= names(failing)
    [worker] = {name for name in names(failing) if name.startswith("worker-")}
    assert {"intake", "router", "analyze"} <= names(analyzed)
    # After the prefix, the line is the worker's JSON as it wrote it (two may run together).
    [finished] = [
        document
        for name, line in lines
        if name == worker
        for document in json_objects(line)
        if document.get("task_id") == stored_key(failing) and document.get("message") == "task_duration"
    ]
    assert (finished["level"], finished["error_type"]) == ("ERROR", "CommandFailed")
    assert count(stack, "TasksSubmitted") - submitted_before >= 2
    assert count(stack, "TasksFailed", WORKER) > failed_before
    assert SeriesKey("TaskDuration", WORKER, "Milliseconds", "MisterSmith") in stack.metrics.series()


def test_local_lines_name_the_function_that_wrote_them_and_its_first_invocation_as_cold(
    stack, api, wait_terminal
):
    # Given every component's lines, logged at INFO
    lines: list[tuple[str, dict]] = []

    def listener(name: str, line: str) -> None:
        lines.extend((name, document) for document in json_objects(line) if "function_name" in document)

    previous_level = logger.log_level
    logger.setLevel("INFO")
    stack.console.add_listener(listener)
    try:
        # When tasks go through intake, the router and the analyze function, with the autoscaler beside
        task_ids = [f"named-{uuid.uuid4().hex[:6]}-{index}" for index in range(2)]
        for task_id in task_ids:
            body = {"id": task_id, "task_type": "analyze", "payload": {"files": {"a.py": "x = 1\n"}}}
            api.post("/tasks", json=body).raise_for_status()
        for task_id in task_ids:
            wait_terminal(task_id)
    finally:
        stack.console.remove_listener(listener)
        logger.setLevel(previous_level)
    # Then each line names the function of its component, never another's
    expected = {
        stack.template.function(name)["CodeUri"].rstrip("/").rsplit("/", 1)[-1]: name
        for name, _ in stack.template.of_type("AWS::Serverless::Function")
    }
    seen = {(component, document["function_name"]) for component, document in lines}
    assert {"intake", "router"} <= {component for component, _ in seen}
    assert all(expected[component] == function for component, function in seen), seen
    # And cold_start is true on no more than one invocation per function (its first)
    cold = {
        (document["function_name"], document["function_request_id"])
        for _, document in lines
        if document["cold_start"]
    }
    functions = [function for function, _ in cold]
    assert len(functions) == len(set(functions)), cold


def test_local_stack_on_a_taken_port_is_a_one_line_error(capsys):
    # Given a port something else is listening on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # When the local stack is started on it
        code = local_stack_main(["local", "--moto-port", str(port), "--api-port", str(free_port())])
    # Then it stops at once with one line saying which port and which option
    # (the session's stack runs functions in threads of this process: their EMF lines are not its)
    out = "\n".join(line for line in capsys.readouterr().out.splitlines() if not line.startswith("{"))
    assert code == 2
    assert out.splitlines() == [
        f"python -m local_stack: error: 127.0.0.1:{port} is taken (Address already in use); choose another --moto-port"
    ]
