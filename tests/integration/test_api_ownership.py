"""Callers of the local stack, named by the caller header, own their tasks (DynamoDB on moto)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from mistersmith.callers import CALLER_HEADER

pytestmark = pytest.mark.integration

ANALYZE = {"task_type": "analyze", "payload": {"files": {"a.py": "x = 1\n"}}}
EXECUTE = {"task_type": "execute", "payload": {"command": ["true"]}}


def test_local_stack_callers_named_by_the_header_own_their_tasks(stack):
    with httpx.Client(base_url=stack.api_url, timeout=10) as client:
        # Given two callers of the local stack using one id, each with its own body
        task_id = f"mine-{uuid.uuid4().hex[:8]}"
        for caller, body in (("alice", ANALYZE), ("bob", EXECUTE)):
            response = client.post("/tasks", json={"id": task_id} | body, headers={CALLER_HEADER: caller})
            assert response.status_code == 202, response.text
        # When each reads the id back and lists its analyze tasks (DynamoDB's by-owner index on moto)
        read = {
            caller: client.get(f"/tasks/{task_id}", headers={CALLER_HEADER: caller}).json()
            for caller in ("alice", "bob", "carol")
        }
        listing = client.get("/tasks", params={"task_type": "analyze"}, headers={CALLER_HEADER: "bob"}).json()
    # Then each sees its own task, a third caller none, and bob's listing none of alice's
    assert (read["alice"]["task_type"], read["alice"]["owner"]) == ("analyze", "alice")
    assert (read["bob"]["task_type"], read["bob"]["owner"]) == ("execute", "bob")
    assert read["carol"]["status"] == 404
    assert listing["items"] == []
