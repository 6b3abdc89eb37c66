"""The boto3 operations the entry points really make on the local stack (recorded by a botocore hook,
tests/boto_calls) are all among those the static permission scan found: the scan, and so the
permission cross-check built on it, misses nothing the running code does."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.conftest import BOTO_CALLS
from tests.infrastructure.permissions import static_operations

pytestmark = pytest.mark.integration


def observed() -> dict[str, set[tuple[str, str]]]:
    calls: dict[str, set[tuple[str, str]]] = {}
    if BOTO_CALLS.exists():
        for line in BOTO_CALLS.read_text().splitlines():
            call = json.loads(line)
            calls.setdefault(call["entry"], set()).add((call["service"], call["operation"]))
    return calls


def test_operations_called_on_the_local_stack_are_all_found_by_the_static_scan(api, wait_terminal):
    # Given every kind of task run through the stack (and whatever other tests ran before in this session)
    run = uuid.uuid4().hex[:8]
    bodies = [
        {"task_type": "execute", "payload": {"command": ["python3", "-c", "print(1)"]}},
        {"task_type": "compile", "payload": {"language": "python", "files": {"a.py": "x = 1\n"}}},
        {"task_type": "analyze", "payload": {"files": {"a.py": "x = 1\n"}}},
        # Over the inline limit: stored aside by intake, loaded by the worker.
        {"task_type": "analyze", "payload": {"files": {"big.py": "x = 1\n" * 20_000}}},
    ]
    for index, body in enumerate(bodies):
        assert api.post("/tasks", json=body | {"id": f"perm-{index}-{run}"}).status_code == 202
    for index in range(len(bodies)):
        assert wait_terminal(f"perm-{index}-{run}")["status"] == "SUCCEEDED"
    api.get("/tasks", params={"status": "SUCCEEDED", "limit": 1})
    api.post("/uploads")
    # The autoscaler ticks every two seconds locally.
    deadline = time.monotonic() + 10
    while "autoscaler" not in observed() and time.monotonic() < deadline:
        time.sleep(0.2)
    # When the recorded calls are compared with the static scan
    calls = observed()
    static = static_operations()
    # Then each entry point's calls were found, and the run reached the main ones
    assert {"intake", "router", "analyze", "worker", "autoscaler"} <= set(calls)
    assert {entry: sorted(found - static.get(entry, set())) for entry, found in calls.items()} == {
        entry: [] for entry in calls
    }
