"""Big inputs through a presigned S3 PUT (claim check): POST /uploads, PUT the payload to S3 (moto),
then POST /tasks naming it with payload_uri."""

from __future__ import annotations

import io
import json
import uuid
import zipfile

import httpx
import pytest

from tests.conftest import stored_key

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def upload(api: httpx.Client, data: bytes) -> dict:
    ticket = api.post("/uploads", json={"content_type": "application/json"}).json()
    put = httpx.put(ticket["url"], content=data, headers=ticket["headers"], timeout=30)
    assert put.status_code == 200, put.text
    return ticket


def test_api_new_upload_answers_a_presigned_put_for_a_fresh_key_under_uploads(api, stack):
    # Given the artifacts bucket / When an upload is asked for
    response = api.post("/uploads")
    # Then it is a PUT URL signed for a new key under uploads/, with the URI a task will name
    assert response.status_code == 201
    ticket = response.json()
    bucket = stack.template.refs["ArtifactsBucket"]
    assert ticket["method"] == "PUT"
    assert ticket["source_uri"] == f"s3://{bucket}/uploads/{ticket['upload_id']}"
    assert f"uploads/{ticket['upload_id']}" in ticket["url"] and "X-Amz-Signature=" in ticket["url"]
    assert ticket["headers"] == {"Content-Type": "application/json"}
    assert api.post("/uploads").json()["upload_id"] != ticket["upload_id"]


def test_api_task_naming_an_uploaded_payload_runs_on_it(api, stack, wait_terminal):
    # Given an analyze payload bigger than the inline limit, uploaded straight to S3
    source = "x = 1\n" * 20_000
    ticket = upload(api, json.dumps({"files": {"big.py": source}}).encode())
    task_id = unique("uploaded")
    # When a task names it
    response = api.post(
        "/tasks", json={"id": task_id, "task_type": "analyze", "payload_uri": ticket["source_uri"]}
    )
    # Then it is accepted and runs on the uploaded payload (kept aside like any big payload)
    assert response.status_code == 202, response.text
    record = wait_terminal(task_id)
    assert record["status"] == "SUCCEEDED"
    assert record["result"]["lines"] == 20_000
    keys = stack.client("s3").list_objects_v2(
        Bucket=stack.template.refs["ArtifactsBucket"], Prefix=f"payloads/{stored_key(task_id)}/"
    )
    assert keys["KeyCount"] == 1


def test_api_same_id_same_uploaded_payload_twice_returns_the_same_task(api, wait_terminal):
    ticket = upload(api, json.dumps({"files": {"a.py": "x = 1\n"}}).encode())
    body = {"id": unique("uploaded-idem"), "task_type": "analyze", "payload_uri": ticket["source_uri"]}
    first, second = api.post("/tasks", json=body), api.post("/tasks", json=body)
    assert first.status_code == second.status_code == 202
    assert first.json()["created_at"] == second.json()["created_at"]


def test_api_upload_not_put_yet_is_a_422_and_records_nothing(api):
    # Given an upload URL that was never used
    ticket = api.post("/uploads").json()
    task_id = unique("not-uploaded")
    # When a task names it
    response = api.post(
        "/tasks", json={"id": task_id, "task_type": "analyze", "payload_uri": ticket["source_uri"]}
    )
    # Then it is refused on payload_uri and nothing is recorded
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["payload_uri"]
    assert "nothing has been uploaded" in response.json()["detail"]
    assert api.get(f"/tasks/{task_id}").status_code == 404


def test_api_uploaded_payload_invalid_for_its_type_is_a_422_naming_the_field(api):
    # Given an uploaded execute payload whose command is a string
    ticket = upload(api, json.dumps({"command": "ls -la"}).encode())
    task_id = unique("bad-upload")
    # When a task names it
    response = api.post(
        "/tasks", json={"id": task_id, "task_type": "execute", "payload_uri": ticket["source_uri"]}
    )
    # Then the field inside the upload is named and nothing is recorded
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["payload_uri.command"]
    assert api.get(f"/tasks/{task_id}").status_code == 404


def test_api_uploaded_bytes_not_json_is_a_422(api):
    ticket = upload(api, b"\xff\xfe not json")
    response = api.post("/tasks", json={"task_type": "analyze", "payload_uri": ticket["source_uri"]})
    assert response.status_code == 422
    assert "not JSON" in response.json()["detail"]


@pytest.mark.parametrize(
    "uri",
    ["s3://someone-elses-bucket/uploads/abc", "s3://{bucket}/payloads/abc/def.json", "https://example.com/x"],
)
def test_api_payload_uri_outside_this_apis_uploads_is_a_422(api, stack, uri):
    # Given a URI that is not an upload this API handed out (another bucket, another prefix, not S3)
    uri = uri.format(bucket=stack.template.refs["ArtifactsBucket"])
    # When a task names it / Then it is refused without reading anything
    response = api.post("/tasks", json={"task_type": "analyze", "payload_uri": uri})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"][-1] == "payload_uri"


def test_api_payload_and_payload_uri_together_is_a_422(api, stack):
    ticket = api.post("/uploads").json()
    body = {"task_type": "analyze", "payload": {"files": {"a.py": ""}}, "payload_uri": ticket["source_uri"]}
    assert api.post("/tasks", json=body).status_code == 422


def test_api_upload_with_odd_content_type_is_a_422(api):
    assert api.post("/uploads", json={"content_type": "not a media type"}).status_code == 422


def test_api_upload_over_the_payload_limit_is_a_413_and_records_nothing(api):
    # Given an upload above the 5 MB intake keeps aside
    ticket = upload(api, json.dumps({"files": {"a.py": "#" * 5_100_000}}).encode())
    task_id = unique("huge-upload")
    # When a task names it / Then it is refused as too large, by its size alone, and nothing is kept
    response = api.post(
        "/tasks", json={"id": task_id, "task_type": "analyze", "payload_uri": ticket["source_uri"]}
    )
    assert response.status_code == 413
    assert response.json()["type"] == "urn:mistersmith:problem:payload-too-large"
    assert api.get(f"/tasks/{task_id}").status_code == 404


def zip_upload(api: httpx.Client, files: dict[str, str]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    ticket = api.post("/uploads", json={"content_type": "application/zip"}).json()
    put = httpx.put(ticket["url"], content=buffer.getvalue(), headers=ticket["headers"], timeout=30)
    assert put.status_code == 200, put.text
    return ticket["source_uri"]


def test_api_tasks_run_on_an_uploaded_source_archive(api, wait_terminal):
    # Given a zip of a small package, uploaded straight to S3
    source_uri = zip_upload(api, {"pkg/__init__.py": "", "pkg/calc.py": "def double(x):\n    return 2 * x\n"})
    ids = {kind: unique(f"archive-{kind}") for kind in ("compile", "analyze", "execute")}
    command = ["python3", "-c", "from pkg.calc import double; print(double(21))"]
    payloads = {
        "compile": {"source_uri": source_uri},
        "analyze": {"source_uri": source_uri},
        "execute": {"command": command, "source_uri": source_uri},
    }
    # When each task type names it
    for kind, task_id in ids.items():
        response = api.post("/tasks", json={"id": task_id, "task_type": kind, "payload": payloads[kind]})
        assert response.status_code == 202, response.text
    records = {kind: wait_terminal(task_id) for kind, task_id in ids.items()}
    # Then each works on the archive's files
    assert {kind: record["status"] for kind, record in records.items()} == dict.fromkeys(ids, "SUCCEEDED")
    assert records["compile"]["result"]["artifact_uri"].endswith("python-build.zip")
    assert records["analyze"]["result"]["files"] == 2
    assert records["analyze"]["result"]["functions"] == 1
    assert records["execute"]["result"]["stdout"] == "42\n"


@pytest.mark.parametrize(
    ("source_uri", "error_type"),
    [("uploads/never-put", "source_missing"), ("s3://someone-elses-bucket/src.zip", "source_foreign")],
)
def test_api_refuses_a_source_archive_that_is_missing_or_elsewhere(api, stack, source_uri, error_type):
    # Given a source_uri that names nothing, or another bucket
    if not source_uri.startswith("s3://"):
        source_uri = f"s3://{stack.template.refs['ArtifactsBucket']}/{source_uri}"
    task_id = unique("bad-archive")
    # When a task names it
    response = api.post(
        "/tasks", json={"id": task_id, "task_type": "analyze", "payload": {"source_uri": source_uri}}
    )
    # Then it is refused at once, naming the field, and no task exists
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert errors[0]["loc"] == ["body", "payload", "source_uri"]
    assert errors[0]["type"] == error_type
    assert api.get(f"/tasks/{task_id}").status_code == 404
