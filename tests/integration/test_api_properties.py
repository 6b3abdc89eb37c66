"""Property: whatever near-valid JSON is POSTed to the local stack's /tasks, the answer is never a
5xx, and a refused body records nothing (tests/unit/test_api_properties.py checks many more bodies
in-process)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from tests.strategies import NEAR_VALID

pytestmark = pytest.mark.integration


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=NEAR_VALID)
def test_api_post_tasks_on_the_stack_never_5xx_and_refused_body_records_nothing(api, body: dict[str, Any]):
    # Given a body with a fresh id, so that its task can be looked for afterwards (never an execute
    # task: the stack's workers would run whatever command an accepted body names)
    if body.get("task_type") == "execute":
        body = body | {"task_type": "analyze"}
    task_id = f"prop-{uuid.uuid4().hex}"
    # When it is posted to the local stack's API
    response = api.post("/tasks", json=body | {"id": task_id})
    # Then it is never a 5xx, and a refused body left no task (so nothing was put on the bus)
    assert response.status_code < 500, response.text
    if response.status_code != 202:
        assert api.get(f"/tasks/{task_id}").status_code == 404
