"""The client library and CLI without a network: requests answered by an in-process fake API."""

from __future__ import annotations

import io
import json
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mistersmith_client import cli
from mistersmith_client.auth import ApiKey, SigV4, auth_for
from mistersmith_client.client import MisterSmithClient
from mistersmith_client.errors import (
    AuthRejected,
    ConfigurationError,
    EndpointUnreachable,
    Rejected,
    TaskNotFound,
    WaitTimeout,
)
from mistersmith_client.models import Task
from mistersmith_client.settings import ClientSettings

pytestmark = pytest.mark.unit

API = "http://api.test"
PROBLEM = "application/problem+json"


def record(task_id: str, status: str = "QUEUED", **fields: Any) -> dict[str, Any]:
    return {
        "id": task_id,
        "task_type": "execute",
        "status": status,
        "created_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-01T00:00:00.000Z",
        "attempts": 0,
        **fields,
    }


def problem(status: int, detail: str, **fields: Any) -> httpx.Response:
    body = {
        "type": "urn:mistersmith:problem:x",
        "title": "Problem",
        "status": status,
        "detail": detail,
        **fields,
    }
    return httpx.Response(status, json=body, headers={"content-type": PROBLEM})


class FakeApi:
    """Answers requests with `handler` and keeps them for the assertions."""

    def __init__(self, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)

    def client(self, **options: Any) -> MisterSmithClient:
        return MisterSmithClient(API, transport=httpx.MockTransport(self), sleep=lambda _: None, **options)


def run_cli(monkeypatch: pytest.MonkeyPatch, fake: FakeApi | None, *argv: str) -> tuple[int, str, str]:
    if fake is not None:
        monkeypatch.setattr(cli, "_client", lambda args: fake.client())
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------- library


def test_client_submit_without_id_sends_a_generated_id():
    # Given an API that accepts any submission
    fake = FakeApi(lambda request: httpx.Response(202, json=record(json.loads(request.content)["id"])))
    # When a task is submitted without an id
    task = fake.client().submit("execute", {"command": ["true"]})
    # Then the request carried an id (so that a retry is idempotent) and the record comes back
    sent = json.loads(fake.requests[0].content)
    assert sent == {"id": task.id, "task_type": "execute", "payload": {"command": ["true"]}}
    assert len(task.id) == 32


def test_client_submit_answered_503_then_202_retries_with_the_same_id():
    # Given an API whose bus is down for the first attempt
    answers = iter([problem(503, "the event bus is unavailable"), None])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers) or httpx.Response(202, json=record(json.loads(request.content)["id"]))

    fake = FakeApi(handler)
    # When a task is submitted
    task = fake.client().submit("execute", {"command": ["true"]})
    # Then the second attempt sent the same body, id included
    first, second = (json.loads(request.content) for request in fake.requests)
    assert first == second
    assert task.id == json.loads(fake.requests[0].content)["id"]


def test_client_owner_is_sent_as_a_query_parameter_and_read_back():
    # Given an API that answers with a task of another caller
    owner = "arn:aws:iam::123456789012:role/ci-runner"
    fake = FakeApi(lambda request: httpx.Response(200, json=record("t-1", owner=owner)))
    # When an admin reads and cancels that caller's task, and lists that caller's tasks
    task = fake.client().get("t-1", owner=owner)
    fake.client().cancel("t-1", owner=owner)
    fake.handler = lambda request: httpx.Response(200, json={"items": []})
    fake.client().list(owner=owner)
    # Then each request named the owner, and the record says whose task it is
    assert [request.url.params.get("owner") for request in fake.requests] == [owner] * 3
    assert task.owner == owner


def test_client_without_owner_sends_none():
    fake = FakeApi(lambda request: httpx.Response(200, json=record("t-1")))
    fake.client().get("t-1")
    assert "owner" not in fake.requests[0].url.params


def test_client_422_problem_raises_rejected_with_field_errors():
    # Given an API that refuses the body
    errors = [
        {
            "loc": ["body", "execute", "payload", "command"],
            "msg": "Input should be a valid list",
            "field": "payload.command",
            "type": "list_type",
        }
    ]
    fake = FakeApi(lambda request: problem(422, "1 invalid field", errors=errors))
    # When a task is submitted
    with pytest.raises(Rejected) as raised:
        fake.client().submit("execute", {"command": "ls"})
    # Then the error names the field, is not retried, and maps to exit code 2
    assert "payload.command: Input should be a valid list" in str(raised.value)
    assert raised.value.exit_code == 2
    assert len(fake.requests) == 1


def test_client_unknown_task_raises_task_not_found_with_exit_code_3():
    fake = FakeApi(lambda request: problem(404, "task 'x' does not exist"))
    with pytest.raises(TaskNotFound) as raised:
        fake.client().get("x")
    assert raised.value.exit_code == 3
    assert "task 'x' does not exist" in str(raised.value)


def test_client_gateway_403_without_problem_body_raises_auth_rejected_with_its_message():
    # Given API Gateway refusing a signature (its own JSON shape, not a problem document)
    fake = FakeApi(
        lambda request: httpx.Response(
            403, json={"message": "The request signature we calculated does not match"}
        )
    )
    # When a task is read / Then the gateway's message is shown, with exit code 6
    with pytest.raises(AuthRejected) as raised:
        fake.client().get("x")
    assert "signature we calculated" in str(raised.value)
    assert raised.value.exit_code == 6


def test_client_connection_refused_after_retries_raises_endpoint_unreachable():
    # Given an endpoint that refuses every connection
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    fake = FakeApi(refuse)
    # When a task is read
    with pytest.raises(EndpointUnreachable) as raised:
        fake.client(retries=2).get("x")
    # Then it was tried three times and the message names the endpoint and the variable to check
    assert len(fake.requests) == 3
    assert API in str(raised.value) and "MISTERSMITH_API_URL" in str(raised.value)
    assert raised.value.exit_code == 5


def test_client_task_id_with_colon_is_percent_encoded_in_the_path():
    # Given an id with a colon (allowed by the contract)
    fake = FakeApi(lambda request: httpx.Response(200, json=record("ns:1")))
    # When it is read / Then the path segment is encoded as botocore encodes labels for SigV4
    fake.client().get("ns:1")
    assert fake.requests[0].url.raw_path == b"/tasks/ns%3A1"


def test_client_iter_tasks_two_pages_follows_next_token():
    # Given a listing of three tasks served two per page
    pages = {None: ([record("a"), record("b")], "t1"), "t1": ([record("c")], None)}

    def handler(request: httpx.Request) -> httpx.Response:
        items, token = pages[request.url.params.get("next_token")]
        return httpx.Response(200, json={"items": items, "next_token": token})

    fake = FakeApi(handler)
    # When every task is iterated
    ids = [task.id for task in fake.client().iter_tasks(status="QUEUED", page_size=2)]
    # Then both pages were read, with the filters on each request
    assert ids == ["a", "b", "c"]
    assert [request.url.params.get("status") for request in fake.requests] == ["QUEUED", "QUEUED"]


def test_client_wait_task_never_finishes_raises_wait_timeout_with_last_record():
    fake = FakeApi(lambda request: httpx.Response(200, json=record("slow", "RUNNING")))
    with pytest.raises(WaitTimeout) as raised:
        fake.client().wait(["slow"], timeout_seconds=0, interval_seconds=0)
    assert raised.value.pending["slow"].status == "RUNNING"
    assert raised.value.exit_code == 4


def test_client_from_settings_without_endpoint_raises_configuration_error_naming_the_variable():
    with pytest.raises(ConfigurationError, match="MISTERSMITH_API_URL"):
        MisterSmithClient.from_settings(ClientSettings(api_url=None, stack_name=None))


# ---------------------------------------------------------------- settings and auth


def test_settings_environment_variables_are_read(monkeypatch):
    monkeypatch.setenv("MISTERSMITH_API_URL", "http://127.0.0.1:3000")
    monkeypatch.setenv("MISTERSMITH_RETRIES", "0")
    settings = ClientSettings()
    assert (settings.api_url, settings.retries) == ("http://127.0.0.1:3000", 0)


def test_cli_settings_stack_name_flag_overrides_api_url_from_environment(monkeypatch):
    # Given an API URL in the environment
    monkeypatch.setenv("MISTERSMITH_API_URL", "http://127.0.0.1:3000")
    # When the command line names a stack
    args = cli._parser().parse_args(["status", "x", "--stack-name", "prod-stack"])
    settings = cli._settings(args)
    # Then the stack's output is what will be used
    assert (settings.api_url, settings.stack_name) == (None, "prod-stack")


def test_auth_auto_for_local_url_is_none():
    assert auth_for(ClientSettings(), "http://127.0.0.1:3000", lambda profile: None) is None


def test_auth_auto_for_execute_api_url_is_sigv4_in_the_url_region():
    auth = auth_for(
        ClientSettings(region=None), "https://abc123.execute-api.eu-west-1.amazonaws.com/dev", lambda p: None
    )
    assert isinstance(auth, SigV4) and auth.region == "eu-west-1"


def test_auth_auto_with_api_key_sends_the_key_header():
    auth = auth_for(ClientSettings(api_key="k-123"), "https://api.example.com/dev", lambda p: None)
    assert isinstance(auth, ApiKey)
    request = next(auth.auth_flow(httpx.Request("GET", "https://api.example.com/dev/tasks")))
    assert request.headers["x-api-key"] == "k-123"


def test_auth_iam_for_custom_domain_without_region_raises_configuration_error(monkeypatch):
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "MISTERSMITH_REGION"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="--region"):
        auth_for(ClientSettings(), "https://api.mistersmith.example.com", lambda p: None)


# ---------------------------------------------------------------- CLI


def test_cli_submit_execute_flags_build_the_payload_and_print_the_id(monkeypatch):
    # Given an API that accepts submissions
    fake = FakeApi(lambda request: httpx.Response(202, json=record(json.loads(request.content)["id"])))
    # When an execute task is submitted with flags
    code, out, _ = run_cli(
        monkeypatch,
        fake,
        "submit",
        "execute",
        "--id",
        "job-1",
        "--env",
        "A=1",
        "--timeout-seconds",
        "5",
        "--",
        "python3",
        "-c",
        "print(1)",
    )
    # Then the payload was built from them and only the id is printed
    assert code == 0 and out == "job-1\n"
    assert json.loads(fake.requests[0].content)["payload"] == {
        "command": ["python3", "-c", "print(1)"],
        "env": {"A": "1"},
        "timeout_seconds": 5.0,
    }


def test_cli_submit_payload_json_and_flags_together_exits_2_before_any_request(monkeypatch):
    fake = FakeApi(lambda request: httpx.Response(500))
    code, _, err = run_cli(monkeypatch, fake, "submit", "execute", "--payload", "{}", "--", "true")
    assert code == 2 and "not both" in err
    assert fake.requests == []


def test_cli_submit_payload_not_json_exits_2_with_the_parse_error(monkeypatch):
    code, _, err = run_cli(monkeypatch, None, "submit", "analyze", "--payload", "{files:")
    assert code == 2
    assert "is not JSON" in err


def test_cli_submit_analyze_dir_adds_files_relative_to_it_skipping_hidden(monkeypatch, tmp_path):
    # Given a source tree with a hidden folder
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("secret")
    fake = FakeApi(lambda request: httpx.Response(202, json=record("t")))
    # When it is submitted for analysis
    code, _, _ = run_cli(monkeypatch, fake, "submit", "analyze", "--dir", str(tmp_path))
    # Then the files are keyed relative to the folder and hidden ones are left out
    assert code == 0
    assert json.loads(fake.requests[0].content)["payload"] == {"files": {"pkg/a.py": "x = 1\n"}}


def test_cli_result_of_failed_task_prints_result_and_error_and_exits_1(monkeypatch):
    failed = record(
        "f",
        "FAILED",
        result={"exit_code": 3, "stdout": "bad\n"},
        error={"type": "CommandFailed", "message": "exit 3"},
    )
    fake = FakeApi(lambda request: httpx.Response(200, json=failed))
    code, out, err = run_cli(monkeypatch, fake, "result", "f")
    assert code == 1
    assert json.loads(out)["exit_code"] == 3
    assert "CommandFailed: exit 3" in err


def test_cli_result_of_running_task_without_wait_exits_4(monkeypatch):
    fake = FakeApi(lambda request: httpx.Response(200, json=record("r", "RUNNING")))
    code, out, err = run_cli(monkeypatch, fake, "result", "r")
    assert code == 4 and out == ""
    assert "--wait" in err


def test_cli_wait_one_failed_of_two_exits_1_and_lists_both(monkeypatch):
    outcomes = {
        "ok": record("ok", "SUCCEEDED"),
        "bad": record("bad", "FAILED", error={"type": "Timeout", "message": "t"}),
    }
    fake = FakeApi(lambda request: httpx.Response(200, json=outcomes[request.url.path.rsplit("/", 1)[1]]))
    code, out, _ = run_cli(monkeypatch, fake, "wait", "ok", "bad", "--quiet")
    assert code == 1
    assert out.splitlines() == ["ok\tSUCCEEDED", "bad\tFAILED\tTimeout: t"]


def test_cli_list_stopped_by_max_prints_the_token_to_continue(monkeypatch):
    # Given more tasks than asked for
    fake = FakeApi(
        lambda request: httpx.Response(200, json={"items": [record("a"), record("b")], "next_token": "more"})
    )
    # When two are listed
    code, out, err = run_cli(monkeypatch, fake, "list", "--max", "2", "--json")
    # Then two are printed and stderr says how to go on
    assert code == 0
    assert [json.loads(line)["id"] for line in out.splitlines()] == ["a", "b"]
    assert "--next-token more" in err


def test_cli_list_page_size_over_100_is_a_usage_error(monkeypatch, capsys):
    code, _, _ = run_cli(monkeypatch, None, "list", "--page-size", "500")
    assert code == 2


def test_cli_error_from_api_goes_to_stderr_with_the_exit_code_of_its_kind(monkeypatch):
    fake = FakeApi(lambda request: problem(409, "task 'x' is already SUCCEEDED"))
    code, out, err = run_cli(monkeypatch, fake, "cancel", "x")
    assert (code, out) == (2, "")
    assert err.startswith("mistersmith: error: 409") and "already SUCCEEDED" in err


def test_progress_off_terminal_writes_a_line_only_when_counts_change():
    # Given a progress display on a pipe
    stream = io.StringIO()
    progress = cli.Progress(stream)
    queued = {"a": Task.model_validate(record("a"))}
    # When the same state is reported twice, then a new one
    progress.update(queued)
    progress.update(queued)
    progress.update({"a": Task.model_validate(record("a", "SUCCEEDED"))})
    # Then two lines were written
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].endswith("1 QUEUED") and lines[1].endswith("1 SUCCEEDED")


# ---------------------------------------------------------------- scripting: --output json, ids, columns


def test_cli_submit_wait_prints_only_the_id_on_stdout_and_the_outcome_on_stderr(monkeypatch):
    # Given a task that has finished by the first poll
    fake = FakeApi(
        lambda request: httpx.Response(
            202 if request.method == "POST" else 200,
            json=record("t1", "SUCCEEDED" if request.method == "GET" else "QUEUED"),
        )
    )
    # When it is submitted with --wait
    code, out, err = run_cli(monkeypatch, fake, "submit", "execute", "--id", "t1", "--wait", "--", "true")
    # Then stdout holds the id alone, and stderr the outcome
    assert (code, out) == (0, "t1\n")
    assert "t1\tSUCCEEDED" in err


def test_cli_submit_wait_show_output_prints_the_commands_stdout_and_stderr(monkeypatch):
    done = record("t2", "SUCCEEDED", result={"exit_code": 0, "stdout": "hello\n", "stderr": "warn\n"})
    fake = FakeApi(lambda request: httpx.Response(202 if request.method == "POST" else 200, json=done))
    code, out, err = run_cli(
        monkeypatch, fake, "submit", "execute", "--wait", "--quiet", "--show-output", "--", "echo"
    )
    assert code == 0
    assert out == "t2\nhello\n"
    assert err.endswith("warn\n")


def test_cli_list_is_newest_first_across_statuses_with_duration_and_error(monkeypatch):
    # Given tasks in two statuses, the older one first in the answer
    items = [
        record("old", "FAILED", created_at="2026-01-01T00:00:00.000Z", duration_ms=1500,
               error={"type": "CommandFailed", "message": "exit 3"}),
        record("new", "SUCCEEDED", created_at="2026-01-02T00:00:00.000Z", duration_ms=250),
    ]  # fmt: skip
    fake = FakeApi(lambda request: httpx.Response(200, json={"items": items}))
    # When they are listed
    _, out, _ = run_cli(monkeypatch, fake, "list")
    # Then the newest comes first, with its duration, and the failure shows its error
    header, first, second = out.splitlines()
    assert header.split() == ["ID", "TYPE", "STATUS", "DURATION", "CREATED", "ERROR"]
    assert first.split()[:4] == ["new", "execute", "SUCCEEDED", "0.2s"]
    assert second.split()[:4] == ["old", "execute", "FAILED", "1.5s"]
    assert second.endswith("CommandFailed: exit 3")


def test_cli_retry_submits_the_same_payload_naming_the_original(monkeypatch):
    # Given a failed task and its payload
    payload = {"command": ["python3", "-c", "print(1)"]}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/payload"):
            return httpx.Response(200, json=payload)
        if request.method == "POST":
            body = json.loads(request.content)
            return httpx.Response(202, json=record(body["id"], retry_of=body["retry_of"]))
        return httpx.Response(200, json=record("orig", "FAILED"))

    fake = FakeApi(answer)
    # When it is retried
    code, out, _ = run_cli(monkeypatch, fake, "retry", "orig", "--id", "again")
    # Then a new task with the same type and payload is submitted, with retry_of
    sent = json.loads(fake.requests[-1].content)
    assert (code, out) == (0, "again\n")
    assert sent == {"id": "again", "task_type": "execute", "payload": payload, "retry_of": "orig"}


@pytest.mark.parametrize(
    "argv",
    [
        ("submit", "bogus"),
        ("list", "--page-size", "500"),
        ("--output", "json", "frobnicate"),
        ("status",),
    ],
)
def test_cli_usage_error_with_output_json_is_one_json_document(monkeypatch, argv):
    # Given a command line that cannot be parsed, asking for JSON (before or after the command)
    code, out, _ = run_cli(monkeypatch, None, *argv, "-o", "json")
    # When it fails / Then stdout holds one JSON document with the error and its exit code
    assert code == 2
    assert json.loads(out)["error"]["exit_code"] == 2


def test_cli_api_error_with_output_json_carries_the_problem_document(monkeypatch):
    fake = FakeApi(lambda request: problem(409, "task 'x' is already SUCCEEDED"))
    code, out, err = run_cli(monkeypatch, fake, "cancel", "x", "--output", "json")
    error = json.loads(out)["error"]
    assert (code, err) == (2, "")
    assert (error["type"], error["status"], error["problem"]["detail"]) == (
        "Rejected",
        409,
        "task 'x' is already SUCCEEDED",
    )


def test_cli_version_as_text_and_as_json(monkeypatch):
    code, out, _ = run_cli(monkeypatch, None, "--version")
    assert code == 0 and out.startswith("mistersmith ")
    code, out, _ = run_cli(monkeypatch, None, "--version", "--output", "json")
    assert json.loads(out)["version"]


def test_cli_logs_reads_the_local_stacks_files_for_that_task_only(monkeypatch, tmp_path):
    # Given a worker's log and the functions' log, with lines of two tasks
    line = '{{"level": "INFO", "message": "{message}", "correlation_id": "{task}", "timestamp": "{at}"}}'
    (tmp_path / "worker-0.log").write_text(
        line.format(message="running", task="t", at="2026-01-01 00:00:02") + "\nnot json\n"
        + line.format(message="other", task="u", at="2026-01-01 00:00:03") + "\n"
    )  # fmt: skip
    (tmp_path / "functions.log").write_text(
        "intake | " + line.format(message="task accepted", task="t", at="2026-01-01 00:00:01") + "\n"
    )
    fake = FakeApi(lambda request: httpx.Response(200, json=record("t", "SUCCEEDED")))
    # When its logs are asked for, as JSON
    code, out, _ = run_cli(monkeypatch, fake, "logs", "t", "--log-dir", str(tmp_path), "-o", "json")
    # Then only its lines come, oldest first, each with the component that wrote it
    lines = json.loads(out)["lines"]
    assert code == 0
    assert [(item["component"], item["record"]["message"]) for item in lines] == [
        ("intake", "task accepted"),
        ("worker-0", "running"),
    ]


def test_cli_bash_completion_completes_commands_and_their_options(tmp_path):
    # Given the generated bash completion script
    script = tmp_path / "complete.bash"
    script.write_text(cli.completion_script(cli._parser(), "bash"))

    def complete(*words: str) -> list[str]:
        program = (
            f"source {script}; COMP_WORDS=(mistersmith {' '.join(words)}); "
            f"COMP_CWORD={len(words)}; _mistersmith; echo ${{COMPREPLY[@]}}"
        )
        done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
        return done.stdout.split()

    # When words are completed / Then commands, subcommands and options are offered
    assert complete("su") == ["submit"]
    assert complete("submit", "ex") == ["execute"]
    assert "--show-output" in complete("submit", "execute", "--sh")
    assert complete("dlq", "re") == ["redrive"]
