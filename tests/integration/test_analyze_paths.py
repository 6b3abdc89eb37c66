"""analyze on the local stack: the known problems found by the analyze function (Lambda path) and
by a worker (big payloads and C sources), a budget overrun recorded FAILED, bad options refused."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import uuid
from typing import Any

import pytest

from local_stack.lambda_runtime import invoke, module_of
from mistersmith import wiring
from mistersmith.settings import AnalyzeSettings, load
from tests.conftest import load_event
from tests.unit.test_work_analyze import EXPECTED, KNOWN_PROBLEMS, places

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def sqs_batch(task_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The sample SQS event of events/, carrying this task."""
    event = copy.deepcopy(load_event("analyze_sqs_batch.json"))
    event["Records"][0]["body"] = json.dumps({"id": task_id, "task_type": "analyze", "payload": payload})
    return event


def test_analyze_function_lambda_path_finds_the_known_problems(stack, wait_terminal):
    # Given the known problems as a message on the analyze queue
    task_id = unique("analyze-lambda")
    # When the analyze function's handler gets it
    response = invoke(stack.template, "AnalyzeFunction", sqs_batch(task_id, {"files": KNOWN_PROBLEMS}))
    # Then the task ends SUCCEEDED with every finding at its place
    assert response == {"batchItemFailures": []}
    record = wait_terminal(task_id)
    assert record["status"] == "SUCCEEDED", record.get("error")
    assert places(record["result"]) == EXPECTED
    assert record["result"]["max_complexity"] == 12


def test_analyze_over_the_lambda_limit_runs_on_a_worker_and_finds_the_known_problems(api, wait_terminal):
    # Given the known problems and enough text to pass the Lambda's 64 KiB, so a worker runs it
    task_id = unique("analyze-worker")
    files = KNOWN_PROBLEMS | {"notes.txt": "padding\n" * 10_000}
    # When it is submitted
    response = api.post("/tasks", json={"id": task_id, "task_type": "analyze", "payload": {"files": files}})
    # Then the worker's result has the same findings
    assert response.status_code == 202
    record = wait_terminal(task_id)
    assert record["status"] == "SUCCEEDED", record.get("error")
    assert places(record["result"]) == EXPECTED
    assert record["result"]["lines"] == 38 + 10_000


@pytest.mark.skipif(
    shutil.which("cppcheck") is None, reason="cppcheck is not installed (.ci/run installs it)"
)
def test_analyze_with_a_c_file_runs_on_a_worker_with_cppcheck(api, wait_terminal):
    # Given a small payload with a C file, which only the worker can analyze
    task_id = unique("analyze-c")
    files = {
        "main.c": "int main(void) {\n    int a[2];\n    a[2] = 1;\n    return a[0];\n}\n",
        "a.py": "import os\n",
    }
    # When it is submitted
    api.post("/tasks", json={"id": task_id, "task_type": "analyze", "payload": {"files": files}})
    # Then both analyzers report, each with its own rule code
    record = wait_terminal(task_id)
    assert record["status"] == "SUCCEEDED", record.get("error")
    found = {(f["tool"], f["code"], f["file"], f["line"]) for f in record["result"]["findings"]}
    assert {("cppcheck", "arrayIndexOutOfBounds", "main.c", 3), ("ruff", "F401", "a.py", 1)} <= found
    assert set(record["result"]["analyzers"]) == {"ruff", "cppcheck"}


def test_analyze_over_the_memory_budget_ends_failed_with_the_budget_error(stack, wait_terminal, monkeypatch):
    # Given the analyze function with the smallest memory budget, and a 25 MB module (ruff holds
    # about 0.8 GB for a second or two parsing it) stored
    # aside as intake stores a big payload (the message carries the claim check)
    module = module_of(stack.template, "AnalyzeFunction")
    settings = load(AnalyzeSettings).model_copy(update={"child_memory_bytes": 16 << 20})
    monkeypatch.setattr(module, "get_processor", lambda: wiring.processor(settings))
    source = "".join(
        f"def f{i}(a):\n    if a:\n        return {i}\n    return None\n\n\n" for i in range(400_000)
    )
    task_id = unique("analyze-memory")
    body = json.dumps({"files": {"big.py": source}}).encode()
    bucket, key = stack.template.refs["ArtifactsBucket"], f"payloads/{task_id}/payload.json"
    stack.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
    event = sqs_batch(task_id, {})
    ref = {"bucket": bucket, "key": key, "sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}
    event["Records"][0]["body"] = json.dumps({"id": task_id, "task_type": "analyze", "payload_ref": ref})
    # When the function gets it
    invoke(stack.template, "AnalyzeFunction", event)
    # Then the task ends FAILED with the budget's error type, once, not retried as a fault
    record = wait_terminal(task_id)
    assert (record["status"], record["error"]["type"], record["attempts"]) == (
        "FAILED",
        "MemoryLimitExceeded",
        1,
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"files": {"a.py": ""}, "select": ["F999"]},
        {"files": {"a.py": ""}, "ignore": ["NOT-A-RULE"]},
        {"files": {"a.py": ""}, "target_version": "2.7"},
    ],
    ids=["unknown-select", "unknown-ignore", "unknown-version"],
)
def test_analyze_with_unknown_rule_codes_is_answered_422_naming_the_field(api, payload):
    # Given an analyze payload whose options ruff does not know
    task_id = unique("analyze-bad")
    # When it is submitted
    response = api.post("/tasks", json={"id": task_id, "task_type": "analyze", "payload": payload})
    # Then it is refused with the field named, and nothing is recorded
    assert response.status_code == 422
    field = next(key for key in payload if key != "files")
    assert any(field in error["loc"] for error in response.json()["errors"])
    assert api.get(f"/tasks/{task_id}").status_code == 404
