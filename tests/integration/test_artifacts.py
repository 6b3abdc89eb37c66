"""Artifacts reach the bucket through the real worker on the local stack."""

from __future__ import annotations

import io
import uuid
import zipfile

import pytest

from tests.conftest import stored_key

pytestmark = pytest.mark.integration


def read_s3(stack, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return stack.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def test_compile_success_leaves_its_archive_in_the_artifacts_bucket(stack, api, wait_terminal):
    task_id = f"artifact-{uuid.uuid4().hex[:8]}"
    api.post(
        "/tasks", json={"id": task_id, "task_type": "compile", "payload": {"files": {"m.py": "X = 1\n"}}}
    )
    record = wait_terminal(task_id)
    assert record["status"] == "SUCCEEDED"
    assert record["result"]["artifact_uri"].startswith(
        f"s3://{stack.template.refs['ArtifactsBucket']}/artifacts/{stored_key(task_id)}/"
    )
    assert "m.py" in zipfile.ZipFile(io.BytesIO(read_s3(stack, record["result"]["artifact_uri"]))).namelist()


def test_long_execute_output_is_kept_whole_in_the_bucket(stack, api, wait_terminal):
    task_id = f"bigout-{uuid.uuid4().hex[:8]}"
    command = ["python3", "-c", "print('y' * 199_999)"]
    api.post("/tasks", json={"id": task_id, "task_type": "execute", "payload": {"command": command}})
    record = wait_terminal(task_id)
    assert record["status"] == "SUCCEEDED"
    assert len(record["result"]["stdout"]) < 200_000
    assert len(read_s3(stack, record["result"]["stdout_uri"])) == 200_000
