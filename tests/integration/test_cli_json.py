"""`mistersmith --output json` against the local stack: every command, when it succeeds and when it
fails, writes one JSON document to stdout (errors as {"error": {...}})."""

from __future__ import annotations

import io
import json
import uuid

import pytest

from mistersmith_client.cli import main

pytestmark = pytest.mark.integration

MISSING = "no-such-task-0"


@pytest.fixture(scope="module")
def finished(stack) -> str:
    """A compile task that has succeeded."""
    out = io.StringIO()
    argv = ["submit", "compile", "--wait", "--quiet", "--payload", '{"files": {"a.py": "x = 1"}}']
    assert main([*argv, "--api-url", stack.api_url], stdout=out, stderr=io.StringIO()) == 0
    return out.getvalue().strip()


@pytest.fixture
def run_json(stack, finished, monkeypatch, tmp_path):
    """run_json(*argv) -> (exit code, the one JSON document on stdout), argv with {id} filled in."""
    monkeypatch.setenv("MISTERSMITH_API_URL", stack.api_url)
    monkeypatch.delenv("MISTERSMITH_STACK_NAME", raising=False)
    sqs = stack.client("sqs")
    suffix = uuid.uuid4().hex[:8]
    dlq = sqs.create_queue(QueueName=f"json-dlq-{suffix}")["QueueUrl"]
    monkeypatch.setenv("MISTERSMITH_WORK_DLQ_URL", dlq)

    def run(*argv: str) -> tuple[int, object]:
        out = io.StringIO()
        filled = [
            word.replace("{id}", finished).replace("{logs}", str(stack.config.log_dir)) for word in argv
        ]
        code = main(["--output", "json", *filled], stdout=out, stderr=io.StringIO())
        return code, json.loads(out.getvalue())

    yield run
    sqs.delete_queue(QueueUrl=dlq)


SUCCEEDING = [
    ("submit", "execute", "--", "python3", "-c", "pass"),
    ("submit", "execute", "--wait", "--quiet", "--", "python3", "-c", "pass"),
    ("status", "{id}"),
    ("wait", "{id}", "--quiet"),
    ("result", "{id}"),
    ("list", "--max", "3"),
    ("retry", "{id}"),
    ("stats",),
    ("logs", "{id}", "--log-dir", "{logs}"),
    ("completion", "bash"),
    ("dlq", "list", "--queue", "work", "--show", "1"),
    ("dlq", "redrive", "--queue", "work", "--max", "1"),
]
FAILING = [
    ("submit", "execute", "--payload", '{"command": "ls"}'),
    ("submit", "deploy"),
    ("status", MISSING),
    ("wait", MISSING, "--quiet"),
    ("result", MISSING),
    ("cancel", "{id}"),
    ("list", "--next-token", "not-a-token"),
    ("retry", MISSING),
    ("status", "{id}", "--api-url", "http://127.0.0.1:9", "--retries", "0"),
    ("logs", MISSING),
    ("completion", "fish"),
    ("dlq", "list", "--queue", "nowhere"),
    ("dlq", "redrive", "--queue", "router"),
]


@pytest.mark.parametrize("argv", SUCCEEDING, ids=" ".join)
def test_cli_output_json_of_a_succeeding_command_is_one_document(run_json, argv):
    # Given a command that succeeds / When run with --output json / Then stdout parses as JSON, no error in it
    code, document = run_json(*argv)
    assert code == 0
    assert not (isinstance(document, dict) and "error" in document), document


@pytest.mark.parametrize("argv", FAILING, ids=" ".join)
def test_cli_output_json_of_a_failing_command_is_one_error_document(run_json, argv):
    # Given a command that fails / When run with --output json / Then stdout is one JSON error with the exit code
    code, document = run_json(*argv)
    assert isinstance(document, dict)
    assert code != 0 and document["error"]["exit_code"] == code, document
