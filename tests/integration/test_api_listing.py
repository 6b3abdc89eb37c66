"""GET /tasks on the local stack: pages on DynamoDB's by-status index (moto)."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_api_listing_on_the_stack_without_status_pages_through_every_new_task_once(api, wait_terminal):
    # Given three finished tasks on the local stack (DynamoDB by-status index on moto)
    ids = [unique("stack-list") for _ in range(3)]
    for task_id in ids:
        api.post(
            "/tasks", json={"id": task_id, "task_type": "analyze", "payload": {"files": {"a.py": "x\n"}}}
        )
    for task_id in ids:
        wait_terminal(task_id)
    # When all tasks of the type are listed, 7 per page
    seen, token = [], None
    for _ in range(1000):
        params = {"task_type": "analyze", "limit": 7} | ({"next_token": token} if token else {})
        page = api.get("/tasks", params=params).json()
        seen += [item["id"] for item in page["items"]]
        if not (token := page.get("next_token")):
            break
    # Then each of them appears exactly once, and only analyze tasks were returned
    assert set(ids) <= set(seen)
    assert len(seen) == len(set(seen))
