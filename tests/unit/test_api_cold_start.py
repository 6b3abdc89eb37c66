"""The intake's cold start loads only what every request needs: boto3, the adapters, pydantic-settings
and the worker's sandbox wait for the first request that uses them (bench/cold_start.py has the
figures). And the rejected-submission metric, counted by a plain ASGI middleware, still counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest

from local_stack.lambda_runtime import fresh_module
from local_stack.template import ROOT
from mistersmith.callers import CALLER_HEADER
from mistersmith.intake import Intake
from mistersmith.lifecycle import Lifecycle
from mistersmith.settings import IntakeSettings
from tests.fakes import MemoryBlobStore, MemoryTaskStore, NullPublisher

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's testclient warns about its httpx dependency
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.unit

# Loaded on the first request that needs them, never by the import or by GET /health.
DEFERRED = (
    "boto3",
    "s3transfer",
    "pydantic_settings",
    "mistersmith.wiring",
    "mistersmith.intake",
    "mistersmith.stats",
    "mistersmith.settings",
    "mistersmith.adapters.dynamodb",
    "mistersmith.adapters.s3",
    "mistersmith.work",
    "mistersmith.processing",
)

# As Lambda does: the function's folder and the layer on the path, a fresh interpreter, one event.
COLD_START = f"""
import json, sys
sys.path[:0] = [{str(ROOT / "functions" / "intake")!r}, {str(ROOT / "layers" / "shared")!r}]
import app
class Context:
    function_name, memory_limit_in_mb, aws_request_id = "test", 512, "test-request"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test"
answer = app.handler(json.load(open({str(ROOT / "events" / "intake_health.json")!r})), Context())
print(json.dumps({{"status": answer["statusCode"], "loaded": sorted(sys.modules)}}))
"""


def test_api_cold_start_and_health_answer_load_no_aws_client_settings_or_sandbox():
    # Given a fresh interpreter with the intake's variables / When it imports the app and answers GET /health
    environment = os.environ | {
        "TASK_TABLE_NAME": "tasks",
        "EVENT_BUS_NAME": "bus",
        "ARTIFACTS_BUCKET_NAME": "bucket",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    done = subprocess.run(
        [sys.executable, "-c", COLD_START], env=environment, capture_output=True, text=True, check=True
    )
    outcome = json.loads(done.stdout.splitlines()[-1])
    # Then it answered, and none of what only other requests need was loaded
    assert outcome["status"] == 200
    loaded = set(outcome["loaded"])
    assert [name for name in DEFERRED if name in loaded] == []


@pytest.fixture
def client() -> TestClient:
    module = fresh_module("functions/intake", "app")
    settings = IntakeSettings(
        task_table_name="tasks",
        event_bus_name="bus",
        artifacts_bucket_name="bucket",
        local_caller_header=True,
        max_payload_bytes=4096,
    )
    intake = Intake(Lifecycle(MemoryTaskStore(), NullPublisher()), MemoryBlobStore("bucket"), settings)
    module.app.dependency_overrides[module.get_intake] = lambda: intake
    return TestClient(module.app, headers={CALLER_HEADER: "arn:aws:iam::123456789012:role/ci"})


def rejections(output: str) -> list[str]:
    """The `reason` of each TasksRejected EMF line written."""
    lines = [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]
    return [line["reason"] for line in lines if "TasksRejected" in line]


def test_api_rejected_submissions_are_counted_by_status(client, capsys):
    capsys.readouterr()
    # Given an invalid task, a body of an unsupported type, and a body over the request limit
    assert client.post("/tasks", json={"task_type": "nope"}).status_code == 422
    assert (
        client.post("/tasks", content=b"<a/>", headers={"Content-Type": "application/xml"}).status_code == 415
    )
    too_big = client.post(
        "/tasks", content=b"x" * (6 * 1024 * 1024 + 1), headers={"Content-Type": "application/json"}
    )
    assert too_big.status_code == 413
    # Then each is one TasksRejected, by status
    assert rejections(capsys.readouterr().out) == ["422", "415", "413"]


def test_api_accepted_submissions_and_other_routes_4xx_are_not_counted_as_rejected(client, capsys):
    capsys.readouterr()
    # Given an accepted task, and 4xx answers on other routes
    assert (
        client.post("/tasks", json={"task_type": "execute", "payload": {"command": ["true"]}}).status_code
        == 202
    )
    assert client.get("/tasks/no-such-task").status_code == 404
    assert client.post("/uploads", json={"size": -1}).status_code == 422
    # Then nothing is counted as rejected
    assert rejections(capsys.readouterr().out) == []
