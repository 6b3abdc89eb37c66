"""Tasks of each type from POST /tasks to a terminal state, through the real intake, bus, router,
queues, analyze function and worker processes on the local stack."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.conftest import stored_key

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def queue_depths(stack) -> dict[str, int]:
    sqs = stack.client("sqs")
    depths = {}
    for logical_id in ("WorkQueue", "AnalyzeQueue"):
        attributes = sqs.get_queue_attributes(
            QueueUrl=stack.template.refs[logical_id],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        depths[logical_id] = sum(int(value) for value in attributes.values())
    return depths


def test_execute_task_with_zero_exit_ends_succeeded_with_its_output(api, wait_terminal):
    # Given an execute task that prints
    task_id = unique("exec")
    body = {"id": task_id, "task_type": "execute", "payload": {"command": ["python3", "-c", "print(6 * 7)"]}}
    # When it is submitted over HTTP
    response = api.post("/tasks", json=body)
    # Then it is accepted as QUEUED and ends SUCCEEDED with the command's output
    assert response.status_code == 202
    assert response.json()["status"] == "QUEUED"
    record = wait_terminal(task_id)
    assert record["status"] == "SUCCEEDED"
    assert record["result"]["stdout"] == "42\n"
    assert record["result"]["exit_code"] == 0
    assert record["attempts"] == 1
    assert record["duration_ms"] >= 0


def test_execute_task_with_nonzero_exit_ends_failed_with_command_failed_and_result(api, wait_terminal):
    # Given a command that exits 3
    task_id = unique("exec-fail")
    payload = {"command": ["python3", "-c", "import sys; print('bad'); sys.exit(3)"]}
    # When it runs
    api.post("/tasks", json={"id": task_id, "task_type": "execute", "payload": payload})
    record = wait_terminal(task_id)
    # Then it fails once, not retried, with the result kept
    assert record["status"] == "FAILED"
    assert record["error"]["type"] == "CommandFailed"
    assert record["result"]["exit_code"] == 3
    assert record["attempts"] == 1


def test_compile_task_with_valid_source_ends_succeeded(api, wait_terminal):
    task_id = unique("compile")
    payload = {"language": "python", "files": {"pkg/main.py": "def main():\n    return 1\n"}}
    api.post("/tasks", json={"id": task_id, "task_type": "compile", "payload": payload})
    record = wait_terminal(task_id)
    assert record["status"] == "SUCCEEDED"
    assert record["result"]["ok"] is True


def test_compile_task_with_syntax_error_ends_failed_with_its_line(api, wait_terminal):
    task_id = unique("compile-bad")
    payload = {"files": {"ok.py": "x = 1\n", "bad.py": "x = 1\ny = (\n"}}
    api.post("/tasks", json={"id": task_id, "task_type": "compile", "payload": payload})
    record = wait_terminal(task_id)
    assert record["status"] == "FAILED"
    assert record["error"]["type"] == "CompileError"
    assert [(d["file"], d["line"]) for d in record["result"]["diagnostics"]] == [("bad.py", 2)]


def test_analyze_task_runs_in_the_analyze_function_and_ends_succeeded_with_metrics(api, wait_terminal):
    task_id = unique("analyze")
    source = "class A:\n    def f(self, x):\n        if x:\n            return 1\n        return 2\n"
    api.post("/tasks", json={"id": task_id, "task_type": "analyze", "payload": {"files": {"a.py": source}}})
    record = wait_terminal(task_id)
    assert record["status"] == "SUCCEEDED"
    assert record["result"]["classes"] == 1
    assert record["result"]["functions"] == 1
    assert record["result"]["max_complexity"] == 2


def test_payload_over_the_inline_limit_is_claim_checked_to_s3_and_still_runs(api, wait_terminal, stack):
    # Given an analyze payload larger than the inline limit of the template (64 KiB)
    task_id = unique("big")
    source = "x = 1\n" * 20_000
    # When it is submitted
    response = api.post(
        "/tasks", json={"id": task_id, "task_type": "analyze", "payload": {"files": {"big.py": source}}}
    )
    # Then the payload is stored aside and the task still completes on it
    assert response.status_code == 202
    record = wait_terminal(task_id)
    assert record["status"] == "SUCCEEDED"
    assert record["result"]["lines"] == 20_000
    s3 = stack.client("s3")
    keys = s3.list_objects_v2(
        Bucket=stack.template.refs["ArtifactsBucket"], Prefix=f"payloads/{stored_key(task_id)}/"
    )
    assert keys["KeyCount"] == 1


def test_same_id_and_body_submitted_twice_returns_the_same_task(api, wait_terminal):
    task_id = unique("idem")
    body = {"id": task_id, "task_type": "compile", "payload": {"files": {"a.py": "pass\n"}}}
    first = api.post("/tasks", json=body)
    second = api.post("/tasks", json=body)
    assert first.status_code == second.status_code == 202
    assert second.json()["created_at"] == first.json()["created_at"]
    assert wait_terminal(task_id)["attempts"] == 1


def test_same_id_with_a_different_body_is_answered_409(api):
    task_id = unique("conflict")
    api.post("/tasks", json={"id": task_id, "task_type": "compile", "payload": {"files": {"a.py": "pass\n"}}})
    response = api.post(
        "/tasks", json={"id": task_id, "task_type": "compile", "payload": {"files": {"b.py": "pass\n"}}}
    )
    assert response.status_code == 409
    assert task_id in response.json()["detail"]


BAD_BODIES = {
    "missing task_type": {"payload": {"files": {"a.py": ""}}},
    "missing payload": {"task_type": "compile"},
    "unknown task_type": {"task_type": "deploy", "payload": {}},
    "wrong type of command": {"task_type": "execute", "payload": {"command": "ls -la"}},
    "empty command": {"task_type": "execute", "payload": {"command": []}},
    "unknown payload field": {"task_type": "analyze", "payload": {"files": {"a.py": ""}, "shell": True}},
    "path escaping the work dir": {"task_type": "analyze", "payload": {"files": {"../../etc/passwd": "x"}}},
    "negative timeout": {"task_type": "execute", "payload": {"command": ["true"], "timeout_seconds": -1}},
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_body_is_answered_422_with_field_errors_and_nothing_is_recorded_or_queued(api, stack, case):
    # Given a body that breaks the contract, with an id we can look for afterwards
    task_id = unique("bad")
    body = BAD_BODIES[case] | {"id": task_id}
    # When it is submitted
    response = api.post("/tasks", json=body)
    # Then it is refused with field-level errors, and no task or message results from it
    assert response.status_code == 422
    assert all("loc" in error and "msg" in error for error in response.json()["errors"])
    time.sleep(0.5)
    assert api.get(f"/tasks/{task_id}").status_code == 404


def test_bad_task_id_is_answered_422(api):
    response = api.post(
        "/tasks",
        json={"id": "has spaces/and slashes", "task_type": "compile", "payload": {"files": {"a.py": ""}}},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"][-1] == "id"


def test_payload_over_the_storable_limit_is_answered_413_and_nothing_is_recorded(api, stack):
    # Given a payload above the 5 MB that intake will store aside
    task_id = unique("huge")
    body = {"id": task_id, "task_type": "analyze", "payload": {"files": {"a.py": "#" * 5_100_000}}}
    # When it is submitted
    response = api.post("/tasks", json=body)
    # Then it is refused as too large and nothing was kept
    assert response.status_code == 413
    assert api.get(f"/tasks/{task_id}").status_code == 404


def test_unknown_task_id_is_answered_404(api):
    assert api.get(f"/tasks/{unique('missing')}").status_code == 404


def test_listing_by_status_pages_through_tasks_with_next_token(api, wait_terminal):
    # Given three finished tasks
    ids = [unique("list") for _ in range(3)]
    for task_id in ids:
        api.post(
            "/tasks", json={"id": task_id, "task_type": "compile", "payload": {"files": {"a.py": "x = 1\n"}}}
        )
    for task_id in ids:
        wait_terminal(task_id)
    # When SUCCEEDED tasks are listed one per page
    seen, token = [], None
    for _ in range(200):
        params = {"status": "SUCCEEDED", "limit": 1} | ({"next_token": token} if token else {})
        page = api.get("/tasks", params=params).json()
        seen += [item["id"] for item in page["items"]]
        token = page.get("next_token")
        if not token:
            break
    # Then every one of them appears, each once
    assert set(ids) <= set(seen)
    assert len(seen) == len(set(seen))


def test_listing_with_a_forged_token_is_answered_400(api):
    assert api.get("/tasks", params={"next_token": "not-a-token"}).status_code == 400


def test_orchestrator_event_with_unknown_type_ends_failed_visibly(stack, wait_terminal):
    # Given a Worker Task event from the orchestrator with a type nobody handles
    task_id = unique("orch-unknown")
    events = stack.client("events")
    # When it is put on the bus
    events.put_events(
        Entries=[
            {
                "EventBusName": stack.template.refs["EventBus"],
                "Source": "mistersmith.orchestrator",
                "DetailType": "Worker Task",
                "Detail": f'{{"id": "{task_id}", "task_type": "deploy", "payload": {{}}}}',
            }
        ]
    )
    # Then the router records it FAILED with a readable reason instead of dropping it
    record = wait_terminal(task_id)
    assert record["status"] == "FAILED"
    assert record["error"]["type"] == "UnknownTaskType"
    assert "deploy" in record["error"]["message"]


def test_orchestrator_event_with_valid_task_runs_without_going_through_intake(stack, wait_terminal):
    task_id = unique("orch")
    stack.client("events").put_events(
        Entries=[
            {
                "EventBusName": stack.template.refs["EventBus"],
                "Source": "mistersmith.orchestrator",
                "DetailType": "Worker Task",
                "Detail": f'{{"id": "{task_id}", "task_type": "compile", "payload": {{"files": {{"a.py": "pass"}}}}}}',
            }
        ]
    )
    assert wait_terminal(task_id)["status"] == "SUCCEEDED"


def test_health_is_ok_and_ready_reports_the_table(api):
    assert api.get("/health").json() == {"status": "ok"}
    ready = api.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["table"] == "ok"
