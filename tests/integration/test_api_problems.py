"""One error format for every 4xx and 5xx: RFC 9457 problem details, through the local stack's API."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from local_stack.lambda_runtime import invoke
from local_stack.template import ROOT
from tests.conftest import load_event

pytestmark = pytest.mark.integration

PROBLEM = "application/problem+json"
MEMBERS = {"type", "title", "status", "detail", "instance"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def assert_problem(response: httpx.Response, status: int, problem_type: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert set(body) >= MEMBERS
    assert (body["status"], body["type"]) == (status, f"urn:mistersmith:problem:{problem_type}")
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def test_api_unknown_task_is_a_404_problem_naming_it(api):
    task_id = unique("missing")
    body = assert_problem(api.get(f"/tasks/{task_id}"), 404, "task-not-found")
    assert task_id in body["detail"]
    assert body["instance"] == f"/tasks/{task_id}"


def test_api_same_id_other_body_is_a_409_problem(api):
    task_id = unique("conflict")
    api.post("/tasks", json={"id": task_id, "task_type": "compile", "payload": {"files": {"a.py": "pass\n"}}})
    response = api.post(
        "/tasks", json={"id": task_id, "task_type": "compile", "payload": {"files": {"b.py": "1\n"}}}
    )
    assert "different body" in assert_problem(response, 409, "task-conflict")["detail"]


def test_api_bad_body_is_a_422_problem_with_each_field_error(api):
    # Given a body with two faults
    body = {"task_type": "execute", "payload": {"command": [], "timeout_seconds": -1}}
    # When it is submitted
    problem = assert_problem(api.post("/tasks", json=body), 422, "validation-error")
    # Then each fault is listed by field, and the detail summarises them
    assert {error["field"] for error in problem["errors"]} == {"payload.command", "payload.timeout_seconds"}
    assert all({"loc", "msg", "type", "field"} <= set(error) for error in problem["errors"])
    assert problem["detail"].startswith("2 invalid fields:")


def test_api_unknown_task_type_names_the_task_type_field(api):
    problem = assert_problem(
        api.post("/tasks", json={"task_type": "deploy", "payload": {}}), 422, "validation-error"
    )
    assert [error["field"] for error in problem["errors"]] == ["task_type"]


def test_api_body_that_is_not_json_is_a_422_problem(api):
    response = api.post("/tasks", content=b"{not json", headers={"content-type": "application/json"})
    problem = assert_problem(response, 422, "validation-error")
    assert "JSON decode error" in problem["errors"][0]["msg"]


def test_api_unknown_route_is_a_404_problem(api):
    assert_problem(api.get("/nowhere"), 404, "not-found")


def test_api_wrong_method_is_a_405_problem_with_allow(api):
    response = api.put("/tasks")
    assert_problem(response, 405, "method-not-allowed")
    assert "POST" in response.headers["allow"]


def test_api_body_over_the_request_limit_is_a_413_problem_and_nothing_is_recorded(api):
    # Given a body over 6 MiB (Lambda's request limit) with an id to look for
    task_id = unique("oversize")
    filler = "#" * (6 * 1024 * 1024 + 1)
    body = f'{{"id": "{task_id}", "task_type": "analyze", "payload": {{"files": {{"a.py": "{filler}"}}}}}}'
    # When it is sent / Then it is refused before it is read, and nothing was kept
    response = api.post("/tasks", content=body.encode(), headers={"content-type": "application/json"})
    assert "POST /uploads" in assert_problem(response, 413, "request-too-large")["detail"]
    assert api.get(f"/tasks/{task_id}").status_code == 404


def test_api_payload_over_the_storable_limit_is_a_413_problem(api):
    body = {"task_type": "analyze", "payload": {"files": {"a.py": "#" * 5_100_000}}}
    assert_problem(api.post("/tasks", json=body), 413, "payload-too-large")


def test_api_forged_next_token_is_a_400_problem(api):
    assert_problem(api.get("/tasks", params={"next_token": "not-a-token"}), 400, "invalid-request")


def test_api_limit_out_of_range_is_a_422_problem_naming_the_parameter(api):
    problem = assert_problem(api.get("/tasks", params={"limit": 1000}), 422, "validation-error")
    assert [error["field"] for error in problem["errors"]] == ["limit"]


def test_api_cancel_of_finished_task_is_a_409_problem(api, wait_terminal):
    task_id = unique("done")
    api.post(
        "/tasks", json={"id": task_id, "task_type": "compile", "payload": {"files": {"a.py": "x = 1\n"}}}
    )
    wait_terminal(task_id)
    assert (
        "already SUCCEEDED" in assert_problem(api.delete(f"/tasks/{task_id}"), 409, "task-conflict")["detail"]
    )


def test_api_problem_through_lambda_proxy_is_json_text_not_base64(stack):
    # Given a read of a missing task as API Gateway hands it to the function
    task_id = unique("missing-proxy")
    event = load_event("intake_get_task.json")
    event |= {"path": f"/tasks/{task_id}", "pathParameters": {"id": task_id}}
    # When the handler (Mangum) answers it
    response = invoke(stack.template, "IntakeFunction", event)
    # Then the problem document is plain JSON text, which API Gateway passes through unchanged
    assert response["statusCode"] == 404
    assert response["isBase64Encoded"] is False
    assert response["headers"]["content-type"] == PROBLEM
    assert json.loads(response["body"])["type"] == "urn:mistersmith:problem:task-not-found"


def test_api_405_allows_every_method_of_that_path(api):
    # Given a path served for GET and DELETE / When it is PUT / Then the 405 names both methods
    answer = api.put("/tasks/some-task")
    assert answer.status_code == 405
    assert answer.headers["allow"] == "DELETE, GET"
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_api_document_says_files_and_source_uri_exclude_each_other():
    # Given the OpenAPI document the API publishes
    schemas = json.loads((ROOT / "docs" / "openapi.json").read_text())["components"]["schemas"]
    # Then compile and analyze take one of the two, execute at most one, and neither may be null
    either = [{"required": ["files"]}, {"required": ["source_uri"]}]
    assert schemas["CompilePayload"]["oneOf"] == either
    assert schemas["AnalyzePayload"]["oneOf"] == either
    assert schemas["ExecutePayload"]["not"] == {"required": ["files", "source_uri"]}
    assert schemas["CompilePayload"]["properties"]["files"]["type"] == "object"
    assert schemas["ExecutePayload"]["properties"]["timeout_seconds"]["anyOf"][0]["minimum"] == 0.1


@pytest.mark.parametrize(
    "payload",
    [
        {"command": ["python3"], "timeout_seconds": 5e-324},
        {"command": ["python3"], "timeout_seconds": True},
        {"command": ["python3"], "files": None},
        {"command": ["python3"], "files": {"a.py": ""}, "source_uri": "s3://bucket/uploads/a.zip"},
    ],
    ids=["tiny timeout", "boolean timeout", "null files", "files and source_uri"],
)
def test_api_refuses_what_the_document_does_not_allow(api, payload):
    answer = api.post("/tasks", json={"task_type": "execute", "payload": payload})
    assert answer.status_code == 422, answer.text
