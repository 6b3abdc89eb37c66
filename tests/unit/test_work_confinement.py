"""Escapes a sandboxed command might try, each stopped by its own limit."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from mistersmith.errors import TaskFailure
from mistersmith.models import ExecutePayload
from mistersmith.work import WorkLimits, run_execute
from mistersmith.work.limits import Confinement

pytestmark = pytest.mark.unit

TIGHT = Confinement(
    allowed_executables=("python3",), memory_bytes=256 << 20, max_file_bytes=1 << 20, max_processes=20
)
LIMITS = WorkLimits(execute_timeout_seconds=20, confinement=TIGHT)


def run(code: str, **payload) -> TaskFailure | dict:
    try:
        return run_execute(ExecutePayload(command=["python3", "-c", code], **payload), LIMITS).model_dump()
    except TaskFailure as failure:
        return failure


@pytest.mark.skipif(
    os.geteuid() != 0,
    reason="the process limit binds a user of the sandbox's own, set up only when the worker is root",
)
def test_fork_bomb_stays_within_the_process_limit():
    # Given a command that forks until it cannot
    code = (
        "import os, time\n"
        "n = 0\n"
        "try:\n"
        "    while n < 1000:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30); os._exit(0)\n"
        "        n += 1\n"
        "except OSError:\n"
        "    pass\n"
        "print(n)\n"
    )
    # When it runs
    result = run(code)
    # Then the kernel refused forks well before a thousand, and the run still ended
    assert isinstance(result, dict)
    assert int(result["stdout"]) < TIGHT.max_processes


def test_executable_outside_the_allowlist_is_refused_clearly():
    with pytest.raises(TaskFailure) as refused:
        run_execute(ExecutePayload(command=["sh", "-c", "echo hi"]), LIMITS)
    assert refused.value.error_type == "ExecutableNotAllowed"
    assert "python3" in refused.value.message


def test_a_payload_file_named_like_an_allowed_executable_is_refused():
    # Given a script of the payload's own called python3, put first on the PATH
    payload = ExecutePayload(
        command=["python3"], files={"python3": "#!/bin/sh\necho owned\n"}, env={"PATH": "."}
    )
    # When it is run, then it is not the allowed interpreter and is refused
    with pytest.raises(TaskFailure) as refused:
        run_execute(payload, LIMITS)
    assert refused.value.error_type in {"ExecutableNotAllowed", "CommandNotFound"}


def test_an_allowed_executable_installed_after_a_run_is_allowed():
    # Given an allowlist naming a program that is not there yet (where a child's uid may reach it),
    # and a run of another allowed one
    place = Path(tempfile.mkdtemp())
    place.chmod(0o755)
    program = place / "tool"
    confinement = Confinement(allowed_executables=("python3", str(program)))
    limits = WorkLimits(execute_timeout_seconds=20, confinement=confinement)
    assert run_execute(ExecutePayload(command=["python3", "-c", "pass"]), limits).exit_code == 0
    # When the program is installed (a link to its versioned file, as alternatives do) and a task
    # runs it, then it runs: the allowlist is not the one found before
    versioned = place / "tool-1"
    versioned.write_text("#!/bin/sh\necho installed\n")
    versioned.chmod(0o755)
    program.symlink_to(versioned)
    try:
        assert run_execute(ExecutePayload(command=[str(program)]), limits).stdout == "installed\n"
    finally:
        shutil.rmtree(place)


def test_writing_a_two_gigabyte_file_stops_at_the_file_size_limit():
    # Given a command that tries to write 2 GB
    code = "f = open('big', 'wb')\nfor _ in range(2048):\n    f.write(b'0' * (1 << 20))\n"
    # When it runs, then the write past the limit fails (Python ignores SIGXFSZ and sees EFBIG)
    failure = run(code)
    assert isinstance(failure, TaskFailure)
    stopped_by_signal = failure.result["exit_code"] == -signal.SIGXFSZ
    assert stopped_by_signal or "File too large" in failure.result["stderr"]


def test_allocating_past_the_memory_limit_fails_inside_the_child():
    failure = run("b = bytearray(1 << 30)")
    assert isinstance(failure, TaskFailure)
    assert failure.error_type == "CommandFailed"
    assert "MemoryError" in failure.result["stderr"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root worker hands children to another user")
def test_a_root_worker_runs_children_as_the_unprivileged_user():
    result = run("import os; print(os.getuid())")
    assert int(result["stdout"]) != 0
