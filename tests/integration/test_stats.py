"""GET /stats on the local stack: queue and DLQ depths, the worker service, the autoscaler's
decisions (each kept as its own item with a TTL) and task counts by COUNT queries."""

from __future__ import annotations

import time
import uuid

import pytest

from mistersmith.adapters.scaling_state import control_id, history_partition

pytestmark = pytest.mark.integration


def fresh_stats(api) -> dict:
    """A report generated after this call began (the API caches it a few seconds)."""
    started = time.time()
    deadline = started + 30
    while time.time() < deadline:
        report = api.get("/stats").json()
        if report["generated_at"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)):
            return report
        time.sleep(0.5)
    raise AssertionError("no fresh stats within 30 s")


def test_stats_report_queues_workers_decisions_and_counts(stack, api, wait_terminal):
    # Given a task that has finished, and the autoscaler ticking every few seconds
    task_id = f"stats-{uuid.uuid4().hex[:8]}"
    api.post(
        "/tasks", json={"id": task_id, "task_type": "analyze", "payload": {"files": {"a.py": "x = 1\n"}}}
    )
    assert wait_terminal(task_id)["status"] == "SUCCEEDED"
    # When the stats are read
    report = fresh_stats(api)
    # Then each queue has its depths and its DLQ's, the workers their counts, and nothing is missing
    assert report["unavailable"] == []
    assert set(report["queues"]) == {"work", "analyze"}
    assert set(report["queues"]["work"]) == {"visible", "in_flight", "delayed", "dead_letters"}
    assert set(report["dead_letter_queues"]) == {"work", "analyze", "router"}
    assert report["workers"]["desired"] >= 1
    # And the last hour's decisions come with the readings they were made on, oldest first
    decisions = report["scaling_decisions"]
    assert decisions and decisions == sorted(decisions, key=lambda entry: entry["at"])
    assert {"desired", "previous", "reason", "visible", "in_flight", "running", "pending"} <= set(
        decisions[-1]
    )
    # And the counts come by status and type, the type counts within their status's
    counts = report["tasks"]
    assert counts["scope"] == "caller"  # the local stack's default caller is no admin
    assert counts["by_status_and_type"]["SUCCEEDED"]["analyze"] >= 1
    for status, by_type in counts["by_status_and_type"].items():
        assert sum(by_type.values()) <= counts["by_status"][status]


def test_stats_each_scaling_decision_is_its_own_item_with_a_ttl(stack):
    # Given the autoscaler has ticked / When its history partition is read from the table
    table = stack.template.refs["TaskTable"]
    service = stack.env["WORKER_SERVICE_NAME"]
    items = stack.client("dynamodb").query(
        TableName=table,
        IndexName="by-status",
        KeyConditionExpression="#status = :history",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":history": {"S": history_partition(control_id(service))}},
    )["Items"]
    # Then there is one item per decision, each expiring about two hours after it was made
    assert len({item["id"]["S"] for item in items}) == len(items) >= 1
    for item in items:
        assert 0 < int(item["expires_at"]["N"]) - time.time() <= 2 * 3600
