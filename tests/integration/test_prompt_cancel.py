"""Cancel of a RUNNING task takes effect within seconds, whatever the lease's length: each worker
reads the cancel flags of its running tasks in one batch every couple of seconds."""

from __future__ import annotations

import io
import uuid

import pytest

from mistersmith.adapters.dynamodb import DynamoTaskStore
from mistersmith.clock import now_iso
from mistersmith.models import StoredTask, TaskMessage, canonical_json
from mistersmith_client.cli import main
from tests.conftest import wait_for_status
from tests.faults import Recorder
from tests.integration.protocol import private_queue, running, worker_for

pytestmark = pytest.mark.integration

# The template's default visibility timeout: a heartbeat only every 90 s.
DEFAULT_LEASE = 300
# A few seconds: two watch periods and the sandbox's stop, with room for a slow machine.
CANCEL_BOUND_SECONDS = 10


def long_task(stack, url: str) -> str:
    task_id = f"cancel-{uuid.uuid4().hex[:10]}"
    body = canonical_json(
        {
            "id": task_id,
            "task_type": "execute",
            "payload": {"command": ["python3", "-c", "import time; time.sleep(120)"]},
        }
    )
    DynamoTaskStore(stack.template.refs["TaskTable"]).create(
        StoredTask.queued(TaskMessage.model_validate_json(body), now_iso())
    )
    stack.client("sqs").send_message(QueueUrl=url, MessageBody=body)
    return task_id


def test_cancel_of_a_running_task_with_the_default_lease_ends_it_within_seconds(stack, api):
    with private_queue(stack, DEFAULT_LEASE) as url:
        worker, _ = worker_for(stack, url, Recorder(), lease_seconds=DEFAULT_LEASE)
        with running(worker):
            # Given a long task running under a 300 s lease
            task_id = long_task(stack, url)
            wait_for_status(api, task_id, {"RUNNING"})
            # When it is cancelled
            assert api.delete(f"/tasks/{task_id}").status_code == 202
            # Then it ends CANCELLED within seconds, not at the next heartbeat 90 s on
            record = wait_for_status(api, task_id, {"CANCELLED", "SUCCEEDED", "FAILED"}, CANCEL_BOUND_SECONDS)
    assert record["status"] == "CANCELLED"


def test_cli_cancel_wait_returns_once_the_task_is_cancelled(stack, api, monkeypatch):
    monkeypatch.setenv("MISTERSMITH_API_URL", stack.api_url)
    monkeypatch.delenv("MISTERSMITH_STACK_NAME", raising=False)
    with private_queue(stack, DEFAULT_LEASE) as url:
        worker, _ = worker_for(stack, url, Recorder(), lease_seconds=DEFAULT_LEASE)
        with running(worker):
            task_id = long_task(stack, url)
            wait_for_status(api, task_id, {"RUNNING"})
            out, err = io.StringIO(), io.StringIO()
            code = main(["cancel", task_id, "--wait", "--quiet", "--timeout", "30"], stdout=out, stderr=err)
            status_when_returned = api.get(f"/tasks/{task_id}").json()["status"]
    assert (code, status_when_returned) == (0, "CANCELLED"), err.getvalue()
    assert out.getvalue().startswith(f"{task_id}\tCANCELLED")
