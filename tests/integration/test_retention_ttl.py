"""A finished task's item in the table carries `expires_at` (epoch seconds, what DynamoDB TTL reads),
TaskRetentionDays after it ended; a task still running carries none."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.conftest import stored_key

pytestmark = pytest.mark.integration

DAY = 86_400


def test_a_finished_task_item_expires_the_retention_after_it_ended(api, stack, wait_terminal):
    # Given a task that runs to its end
    task_id = f"ttl-{uuid.uuid4().hex[:10]}"
    body = {"id": task_id, "task_type": "execute", "payload": {"command": ["python3", "-c", "pass"]}}
    assert api.post("/tasks", json=body).status_code == 202
    assert wait_terminal(task_id)["status"] == "SUCCEEDED"
    # When its item is read straight from the table
    item = stack.client("dynamodb").get_item(
        TableName=stack.template.refs["TaskTable"], Key={"id": {"S": stored_key(task_id)}}
    )["Item"]
    # Then it expires TaskRetentionDays (30 by default) after now, give or take the run, and is not exposed
    retention = int(stack.template.parameters["TaskRetentionDays"]) * DAY
    assert time.time() + retention - 120 <= int(item["expires_at"]["N"]) <= time.time() + retention
    assert "expires_at" not in api.get(f"/tasks/{task_id}").json()
