"""The execute task and the sandbox under it: real child processes, no network."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from mistersmith.errors import TaskFailure
from mistersmith.models import ExecutePayload
from mistersmith.work import WorkLimits, run_execute, run_sandboxed
from mistersmith.work.sandbox import SAFE_PATH

pytestmark = pytest.mark.unit


@pytest.fixture
def child_writable_dir():
    """A directory the sandboxed child can write to, even when it runs as an unprivileged user."""
    path = Path(tempfile.mkdtemp(prefix="sandbox-test-"))
    path.chmod(0o777)
    # Made here, so the test owns it: what the child's own user leaves in a shared directory is purged.
    (path / "grandchild.pid").touch(mode=0o666)
    (path / "grandchild.pid").chmod(0o666)
    yield path
    shutil.rmtree(path)


LIMITS = WorkLimits(execute_timeout_seconds=30, output_limit_bytes=65536)

# Starts a grandchild in the same process group, records its pid, then sleeps or exits.
SPAWN_GRANDCHILD = """
import subprocess, sys, time
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open(sys.argv[1], "w") as pid_file:
    pid_file.write(str(grandchild.pid))
if sys.argv[2] == "sleep":
    time.sleep(60)
"""


def python(code: str, *args: str) -> list[str]:
    return ["python3", "-c", code, *args]


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A killed orphan may stay a zombie when PID 1 does not reap: dead all the same.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in {"Z", "X"}


def wait_until_gone(pid: int, within_seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        if not is_running(pid):
            return True
        time.sleep(0.01)
    return False


def test_run_execute_successful_command_returns_stdout_and_exit_zero():
    # Given a command that prints a line
    payload = ExecutePayload(command=python("print('hello')"))

    # When it runs
    result = run_execute(payload, LIMITS)

    # Then its output comes back with exit code 0
    assert result.exit_code == 0
    assert result.stdout == "hello\n"
    assert result.stderr == ""
    assert result.truncated is False
    assert result.duration_ms >= 0


def test_run_execute_nonzero_exit_raises_command_failed_with_result():
    # Given a command that writes to stderr and exits with 3
    code = "import sys; print('partial'); sys.stderr.write('boom'); sys.exit(3)"
    payload = ExecutePayload(command=python(code))

    # When it runs
    with pytest.raises(TaskFailure) as raised:
        run_execute(payload, LIMITS)

    # Then the task fails as CommandFailed, naming the code and keeping the result
    assert raised.value.error_type == "CommandFailed"
    assert "3" in raised.value.message
    assert raised.value.result is not None
    assert raised.value.result["exit_code"] == 3
    assert raised.value.result["stdout"] == "partial\n"
    assert raised.value.result["stderr"] == "boom"


def test_run_execute_timeout_kills_child_and_grandchild(child_writable_dir):
    # Given a child that starts a grandchild and then sleeps past the timeout
    pid_file = child_writable_dir / "grandchild.pid"
    payload = ExecutePayload(command=python(SPAWN_GRANDCHILD, str(pid_file), "sleep"), timeout_seconds=1.5)

    # When it runs
    started = time.monotonic()
    with pytest.raises(TaskFailure) as raised:
        run_execute(payload, LIMITS)

    # Then the task fails as Timeout after about the timeout, with the result kept
    assert raised.value.error_type == "Timeout"
    assert time.monotonic() - started < 10
    assert raised.value.result is not None
    assert raised.value.result["exit_code"] < 0
    # And the grandchild was killed with the whole process group
    grandchild = int(pid_file.read_text())
    assert wait_until_gone(grandchild)


def test_run_execute_payload_timeout_above_limit_is_capped():
    # Given a payload that allows 60 s and a worker limit of half a second
    payload = ExecutePayload(command=python("import time; time.sleep(60)"), timeout_seconds=60)
    limits = WorkLimits(execute_timeout_seconds=0.5)

    # When it runs
    started = time.monotonic()
    with pytest.raises(TaskFailure) as raised:
        run_execute(payload, limits)

    # Then the worker limit wins
    assert raised.value.error_type == "Timeout"
    assert time.monotonic() - started < 10


def test_run_execute_background_grandchild_is_killed_after_normal_exit(child_writable_dir):
    # Given a child that leaves a sleeping grandchild holding its stdout and exits at once
    pid_file = child_writable_dir / "grandchild.pid"
    payload = ExecutePayload(command=python(SPAWN_GRANDCHILD, str(pid_file), "exit"))

    # When it runs
    started = time.monotonic()
    result = run_execute(payload, LIMITS)

    # Then the run does not wait for the grandchild, and the grandchild is gone
    assert result.exit_code == 0
    assert time.monotonic() - started < 10
    assert wait_until_gone(int(pid_file.read_text()))


def test_run_execute_output_over_cap_is_truncated_promptly():
    # Given a command that writes 5 MB to each stream and a 1000-byte cap
    payload = ExecutePayload(
        command=python("import sys; sys.stdout.write('x' * 5_000_000); sys.stderr.write('y' * 5_000_000)")
    )
    limits = WorkLimits(execute_timeout_seconds=30, output_limit_bytes=1000)

    # When it runs
    started = time.monotonic()
    result = run_execute(payload, limits)

    # Then each stream keeps its first 1000 bytes, truncated is set and the child never blocked
    assert result.stdout == "x" * 1000
    assert result.stderr == "y" * 1000
    assert result.truncated is True
    assert time.monotonic() - started < 10


def test_run_execute_aws_and_ecs_variables_never_reach_child(monkeypatch):
    # Given credentials in the worker's environment and in the payload's env
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "worker-secret")
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/x")
    monkeypatch.setenv("ECS_CONTAINER_METADATA_URI_V4", "http://169.254.170.2/v4/x")
    payload = ExecutePayload(
        command=python("import json, os; print(json.dumps(dict(os.environ)))"),
        env={"AWS_REGION": "eu-west-1", "aws_profile": "admin", "ECS_AGENT_URI": "x", "GREETING": "hi"},
    )

    # When it runs
    child_env = json.loads(run_execute(payload, LIMITS).stdout)

    # Then no AWS_ or ECS_ variable is there, while the ordinary one is
    assert [name for name in child_env if name.upper().startswith(("AWS_", "ECS_"))] == []
    assert child_env["GREETING"] == "hi"


def test_run_execute_environment_is_built_from_scratch(monkeypatch):
    # Given a variable only the worker has
    monkeypatch.setenv("MISTERSMITH_WORKER_ONLY", "1")
    code = "import json, os; print(json.dumps([dict(os.environ), os.getcwd()]))"
    payload = ExecutePayload(command=python(code))

    # When it runs
    child_env, cwd = json.loads(run_execute(payload, LIMITS).stdout)

    # Then the child sees only the safe defaults
    assert "MISTERSMITH_WORKER_ONLY" not in child_env
    assert child_env["PATH"] == SAFE_PATH
    assert child_env["HOME"] == cwd
    assert child_env["LANG"] == "C.UTF-8"


def test_run_execute_shell_metacharacters_arrive_literally():
    # Given arguments that a shell would interpret
    arguments = ["; rm -rf /", "$(id)", "`id`", "a | b && c", "*"]
    payload = ExecutePayload(command=python("import json, sys; print(json.dumps(sys.argv[1:]))", *arguments))

    # When it runs
    result = run_execute(payload, LIMITS)

    # Then the child receives them unchanged
    assert json.loads(result.stdout) == arguments


def test_run_execute_files_are_written_into_workdir_which_is_removed():
    # Given a script and a data file in the payload
    script = "import json, os; print(json.dumps([os.getcwd(), open('data/input.txt').read()]))"
    payload = ExecutePayload(
        command=["python3", "main.py"], files={"main.py": script, "data/input.txt": "payload data"}
    )

    # When the script runs
    workdir, data = json.loads(run_execute(payload, LIMITS).stdout)

    # Then it ran in its own directory holding the files, which is gone afterwards
    assert data == "payload data"
    assert Path(workdir) != Path.cwd()
    assert not Path(workdir).exists()


def test_run_sandboxed_path_outside_workdir_is_refused():
    # Given a file path that climbs out of the work directory
    files = {"../escape.txt": "x"}

    # When the sandbox is asked to write it
    with pytest.raises(TaskFailure) as raised:
        run_sandboxed(python("pass"), files=files, timeout_seconds=5, output_limit_bytes=100)

    # Then it is refused before anything runs
    assert raised.value.error_type == "InvalidPayload"


@pytest.mark.parametrize("executable", ["mistersmith-no-such-executable", "/nonexistent/bin/tool"])
def test_run_execute_missing_executable_raises_command_not_found(executable):
    # Given a command whose executable does not exist
    payload = ExecutePayload(command=[executable, "--version"])

    # When it runs
    with pytest.raises(TaskFailure) as raised:
        run_execute(payload, LIMITS)

    # Then the failure names the executable
    assert raised.value.error_type == "CommandNotFound"
    assert executable in raised.value.message


def test_run_execute_stdin_is_passed_to_child():
    # Given text for the child's stdin
    code = "import sys; sys.stdout.write(sys.stdin.read().upper())"
    payload = ExecutePayload(command=python(code), stdin="hello\nworld\n")

    # When it runs
    result = run_execute(payload, LIMITS)

    # Then the child read exactly that text
    assert result.stdout == "HELLO\nWORLD\n"


def test_run_execute_without_stdin_child_reads_end_of_file():
    # Given no stdin in the payload
    payload = ExecutePayload(command=python("import sys; print(repr(sys.stdin.read()))"))

    # When the child reads its stdin
    result = run_execute(payload, LIMITS)

    # Then it gets end of file at once
    assert result.stdout == "''\n"


def test_run_execute_feeds_large_stdin_while_it_reads_the_output():
    # Given 2 MB of stdin that the child copies to stdout as it reads (past the output limit)
    code = (
        "import sys\nn = 0\nwhile chunk := sys.stdin.buffer.read(65536):\n"
        "    n += len(chunk)\n    sys.stdout.buffer.write(chunk)\nsys.stderr.write(str(n))"
    )
    payload = ExecutePayload(command=python(code), stdin="y" * 2_000_000)

    # When it runs (one thread writes its stdin and reads its output: neither may wait on the other)
    result = run_execute(payload, LIMITS)

    # Then the child read all of it, and the output kept is its first bytes
    assert result.stderr == "2000000"
    assert result.truncated
    assert result.stdout == "y" * LIMITS.output_limit_bytes


def test_run_sandboxed_serves_the_pipes_from_the_calling_thread(monkeypatch):
    # Given threads that cannot be started (a reader thread per run was a fixed cost of each)
    def refuse(self):
        raise AssertionError("the sandbox started a thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)

    # When a child with stdin, stdout and stderr runs
    code = "import sys; print(sys.stdin.read()); print('err', file=sys.stderr)"
    run = run_sandboxed(python(code), timeout_seconds=30, output_limit_bytes=1024, stdin="in")

    # Then its output came back all the same
    assert (run.exit_code, run.stdout, run.stderr) == (0, "in\n", "err\n")


def test_run_execute_unread_large_stdin_does_not_block():
    # Given 4 MB of stdin and a child that never reads it
    payload = ExecutePayload(command=python("print('done')"), stdin="z" * 4_000_000)

    # When it runs
    started = time.monotonic()
    result = run_execute(payload, LIMITS)

    # Then it finishes promptly
    assert result.stdout == "done\n"
    assert time.monotonic() - started < 10
