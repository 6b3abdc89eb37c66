"""The `mistersmith` CLI against the local stack: run in-process through `main(argv)` (one test runs
the installed console script), with the endpoint from MISTERSMITH_API_URL as .local/env gives it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from mistersmith_client.cli import main
from tests.conftest import free_port

pytestmark = pytest.mark.integration

CONSOLE_SCRIPT = Path(sys.executable).with_name("mistersmith")


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


@pytest.fixture
def cli(stack, monkeypatch):
    """cli(*argv) -> Run, against the session's local stack."""
    monkeypatch.setenv("MISTERSMITH_API_URL", stack.api_url)
    monkeypatch.delenv("MISTERSMITH_STACK_NAME", raising=False)

    def run(*argv: str) -> Run:
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), stdout=out, stderr=err)
        return Run(code, out.getvalue(), err.getvalue())

    return run


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_cli_execute_submit_wait_result_prints_the_commands_output(cli):
    # Given an execute task submitted with its command after --
    submitted = cli("submit", "execute", "--", "python3", "-c", "print(6 * 7)")
    task_id = submitted.out.strip()
    # When it is waited for and its result asked for
    waited = cli("wait", task_id, "--timeout", "60")
    result = cli("result", task_id)
    # Then each step succeeds and the result is the command's output
    assert submitted.code == 0 and len(submitted.lines) == 1
    assert (waited.code, waited.lines) == (0, [f"{task_id}\tSUCCEEDED"])
    assert "1 SUCCEEDED" in waited.err  # the progress display
    assert result.code == 0
    assert json.loads(result.out)["stdout"] == "42\n"


def test_cli_compile_dir_submit_wait_result_succeeds(cli, tmp_path):
    # Given a Python package on disk
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "main.py").write_text("def main():\n    return 1\n")
    # When it is submitted for compilation with its files read from the folder, and waited for
    task_id = cli("submit", "compile", "--dir", str(tmp_path), "--language", "python").out.strip()
    waited = cli("wait", task_id, "--timeout", "60", "--quiet")
    result = cli("result", task_id)
    # Then it compiled
    assert waited.code == 0
    assert json.loads(result.out)["ok"] is True


def test_cli_analyze_payload_file_submit_wait_result_counts_the_code(cli, tmp_path):
    # Given an analyze payload in a JSON file
    source = "class A:\n    def f(self, x):\n        if x:\n            return 1\n        return 2\n"
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"files": {"a.py": source}}))
    # When it is submitted, waited for and read
    task_id = cli("submit", "analyze", "--payload-file", str(payload)).out.strip()
    waited = cli("wait", task_id, "--timeout", "60")
    result = cli("result", task_id)
    # Then the analysis is the result
    assert waited.code == 0
    analysis = json.loads(result.out)
    assert (analysis["classes"], analysis["functions"], analysis["max_complexity"]) == (1, 1, 2)


def test_cli_submit_wait_failing_command_exits_1_with_the_error(cli):
    # Given a command that exits 3
    run = cli(
        "submit", "execute", "--wait", "--timeout", "60", "--", "python3", "-c", "import sys; sys.exit(3)"
    )
    # When it ran / Then the CLI exits 1 and says why
    assert run.code == 1
    (task_id,) = run.lines  # the id alone on stdout, so that ID=$(mistersmith submit ... --wait) works
    assert f"{task_id}\tFAILED\tCommandFailed" in run.err
    result = cli("result", task_id)
    assert result.code == 1
    assert json.loads(result.out)["exit_code"] == 3


def test_cli_submit_with_upload_runs_the_task_from_the_presigned_upload(cli, stack):
    # Given a payload sent through a presigned S3 upload instead of the request body
    task_id = unique("cli-upload")
    run = cli(
        "submit", "analyze", "--id", task_id, "--upload", "--wait", "--timeout", "60",
        "--payload", json.dumps({"files": {"a.py": "x = 1\n"}}),
    )  # fmt: skip
    # When it has run / Then it succeeded, and the upload is in the bucket under uploads/
    assert run.code == 0, run.err
    s3 = stack.client("s3")
    uploads = s3.list_objects_v2(Bucket=stack.template.refs["ArtifactsBucket"], Prefix="uploads/")
    assert uploads["KeyCount"] >= 1


def test_cli_cancel_running_task_ends_cancelled_and_wait_exits_1(cli):
    # Given a long-running task
    task_id = cli("submit", "execute", "--", "python3", "-c", "import time; time.sleep(60)").out.strip()
    # When it is cancelled
    cancelled = cli("cancel", task_id)
    waited = cli("wait", task_id, "--timeout", "60", "--quiet")
    # Then the cancellation is accepted and the task ends CANCELLED (not a success)
    assert cancelled.code == 0
    assert cancelled.out.startswith(f"{task_id}\t")
    assert waited.code == 1
    assert waited.lines[0].startswith(f"{task_id}\tCANCELLED")


def test_cli_cancel_finished_task_exits_2_saying_it_is_terminal(cli):
    task_id = cli(
        "submit", "compile", "--wait", "--quiet", "--payload", '{"files": {"a.py": "x = 1"}}'
    ).lines[0]
    run = cli("cancel", task_id)
    assert run.code == 2
    assert "409" in run.err and "already SUCCEEDED" in run.err


def test_cli_list_pages_through_more_than_one_page(cli):
    # Given five finished compile tasks
    ids = [unique("cli-list") for _ in range(5)]
    for task_id in ids:
        cli("submit", "compile", "--id", task_id, "--payload", '{"files": {"a.py": "x = 1"}}')
    assert cli("wait", *ids, "--timeout", "90", "--quiet").code == 0
    # When they are listed two per request, first only the first four, then on from the token
    first = cli(
        "list", "--status", "SUCCEEDED", "--type", "compile", "--page-size", "2", "--max", "4", "--json"
    )
    token = first.err.split("--next-token ", 1)[1].strip()
    rest = cli("list", "--status", "SUCCEEDED", "--type", "compile", "--page-size", "2", "--max", "10000",
               "--next-token", token, "--json")  # fmt: skip
    # Then the first call stopped at four with a token, and together they show every task once
    seen = [json.loads(line)["id"] for line in first.lines + rest.lines]
    assert (first.code, rest.code) == (0, 0)
    assert len(first.lines) == 4
    assert set(ids) <= set(seen)
    assert len(seen) == len(set(seen))


def test_cli_list_table_shows_ids_types_and_statuses(cli):
    task_id = cli(
        "submit", "compile", "--wait", "--quiet", "--payload", '{"files": {"a.py": "x = 1"}}'
    ).lines[0]
    run = cli("list", "--status", "SUCCEEDED", "--max", "10000")
    assert run.lines[0].split() == ["ID", "TYPE", "STATUS", "DURATION", "CREATED", "ERROR"]
    assert any(line.split()[:3] == [task_id, "compile", "SUCCEEDED"] for line in run.lines[1:])


def test_cli_submit_bad_payload_exits_2_naming_the_field(cli):
    # Given an execute payload whose command is a string, not an argv list
    run = cli("submit", "execute", "--payload", '{"command": "ls -la"}')
    # When it is submitted / Then the API's refusal is shown with the field, and nothing is printed on stdout
    assert (run.code, run.out) == (2, "")
    assert "422" in run.err and "payload.command" in run.err and "valid list" in run.err


def test_cli_status_unknown_id_exits_3(cli):
    task_id = unique("cli-missing")
    run = cli("status", task_id)
    assert (run.code, run.out) == (3, "")
    assert f"task '{task_id}' does not exist" in run.err


def test_cli_unreachable_endpoint_exits_5_naming_it(cli):
    # Given an endpoint where nothing listens
    url = f"http://127.0.0.1:{free_port()}"
    # When any command runs against it
    run = cli("status", "x", "--api-url", url, "--retries", "1")
    # Then it fails fast with the endpoint and the variable to check
    assert run.code == 5
    assert f"cannot reach the MisterSmith API at {url}" in run.err
    assert "MISTERSMITH_API_URL" in run.err


def test_cli_stack_name_reads_the_api_url_from_the_stacks_outputs(cli, stack, monkeypatch):
    # Given a CloudFormation stack (on moto) whose ApiUrl output is the local API, and no URL in the environment
    name = unique("cli-stack")
    stack.client("cloudformation").create_stack(
        StackName=name,
        TemplateBody=json.dumps(
            {
                "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {"ApiUrl": {"Value": stack.api_url}},
            }
        ),
    )
    monkeypatch.delenv("MISTERSMITH_API_URL")
    task_id = cli(
        "submit", "compile", "--api-url", stack.api_url, "--payload", '{"files": {"a.py": "x = 1"}}'
    ).out.strip()
    # When a task is read naming only the stack
    run = cli("status", task_id, "--stack-name", name)
    # Then the API was found through the stack's output
    assert run.code == 0, run.err
    assert json.loads(run.out)["id"] == task_id


def test_cli_unknown_stack_exits_2_naming_it(cli):
    run = cli("status", "x", "--stack-name", "no-such-stack")
    assert run.code == 2
    assert "no-such-stack" in run.err


def test_cli_console_script_reads_the_endpoint_from_the_environment(stack, api):
    # Given a task, and the installed `mistersmith` script with MISTERSMITH_API_URL as .local/env sets it
    task_id = unique("cli-script")
    api.post(
        "/tasks", json={"id": task_id, "task_type": "compile", "payload": {"files": {"a.py": "x = 1\n"}}}
    )
    env = os.environ | {"MISTERSMITH_API_URL": stack.api_url}
    # When it is run as a program
    done = subprocess.run(
        [str(CONSOLE_SCRIPT), "wait", task_id, "--timeout", "60"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    # Then it found the API and reported the outcome through its exit code
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{task_id}\tSUCCEEDED\n"


def test_cli_result_download_copies_the_compile_archive_into_the_folder(cli, tmp_path):
    # Given a compiled package, whose result names its archive in the artifacts bucket
    task_id = cli(
        "submit", "compile", "--wait", "--quiet", "--payload", '{"files": {"m.py": "X = 1\\n"}}'
    ).lines[0]
    # When its result is asked for with --download
    run = cli("result", task_id, "--download", str(tmp_path / "out"))
    # Then the archive is in the folder and stderr says where it came from
    assert run.code == 0, run.err
    archive = Path(json.loads(run.out)["artifact_uri"].rsplit("/", 1)[1])
    assert (tmp_path / "out" / archive).stat().st_size > 0
    assert f"to {tmp_path / 'out' / archive}" in run.err


def test_cli_retry_runs_the_same_payload_again_naming_the_original(cli):
    # Given an execute task that failed
    failed = cli("submit", "execute", "--wait", "--quiet", "--", "python3", "-c", "import sys; sys.exit(4)")
    original = failed.out.strip()
    # When it is retried and waited for
    retried = cli("retry", original, "--wait", "--quiet")
    again = retried.out.strip()
    # Then a new task ran the same command (same exit code) and names the one it retries
    record = json.loads(cli("status", again).out)
    assert (failed.code, retried.code) == (1, 1)
    assert again != original
    assert record["retry_of"] == original
    assert record["result"]["exit_code"] == 4
    assert record["worker"]
