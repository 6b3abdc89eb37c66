"""`run_in_sandbox`: a Python function called in a sandboxed child, its JSON value back."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mistersmith.errors import TaskFailure, TaskStopped
from mistersmith.work import run_in_sandbox, run_sandboxed, sandbox
from mistersmith.work.limits import Confinement

pytestmark = pytest.mark.unit

CONFINEMENT = Confinement(allowed_executables=("python3",))


def describe(argument: dict[str, Any], workdir: Path) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "uid": os.getuid(),
        "cwd": str(workdir),
        "files": sorted(path.name for path in workdir.iterdir()),
        "echo": argument,
    }


def fail(_argument: None, _workdir: Path) -> None:
    raise TaskFailure("InvalidSource", "the sources are no good", result={"why": "test"})


def hog(_argument: None, _workdir: Path) -> None:
    bytearray(64 << 30)  # far past any address-space limit


def sleep(_argument: None, _workdir: Path) -> None:
    time.sleep(60)


def crash(_argument: None, _workdir: Path) -> None:
    raise KeyError("a bug of ours")


def test_the_function_runs_in_a_child_in_its_own_directory_and_its_value_comes_back():
    # Given a function that describes where it runs / When it is called with files
    call = run_in_sandbox(
        describe, {"n": 1}, timeout_seconds=30, confinement=CONFINEMENT, files={"a.txt": "x"}
    )
    # Then it ran in another process, in the run's directory, which held the files
    assert call.value["pid"] != os.getpid()
    assert call.value["echo"] == {"n": 1}
    assert call.value["files"] == ["a.txt"]
    assert not Path(call.value["cwd"]).exists()
    if os.geteuid() == 0:
        assert call.value["uid"] != 0


def test_a_task_failure_raised_in_the_child_reaches_the_caller_whole():
    with pytest.raises(TaskFailure) as failed:
        run_in_sandbox(fail, None, timeout_seconds=30, confinement=CONFINEMENT)
    assert (failed.value.error_type, failed.value.message) == ("InvalidSource", "the sources are no good")
    assert failed.value.result == {"why": "test"}


def test_running_out_of_memory_in_the_child_is_the_memory_budget():
    with pytest.raises(TaskFailure) as failed:
        run_in_sandbox(hog, None, timeout_seconds=30, confinement=CONFINEMENT)
    assert failed.value.error_type == "MemoryLimitExceeded"


def test_a_child_past_its_time_is_killed_as_a_timeout():
    with pytest.raises(TaskFailure) as failed:
        run_in_sandbox(sleep, None, timeout_seconds=0.5, confinement=CONFINEMENT)
    assert failed.value.error_type == "Timeout"


def test_a_stopped_child_raises_task_stopped():
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(TaskStopped):
        run_in_sandbox(sleep, None, timeout_seconds=30, confinement=CONFINEMENT, stop=stop)


def test_any_other_error_in_the_child_is_a_worker_fault():
    with pytest.raises(RuntimeError, match="KeyError"):
        run_in_sandbox(crash, None, timeout_seconds=30, confinement=CONFINEMENT)


def test_run_directories_are_made_under_the_configured_scratch_root():
    # Given a scratch root of the deployment's choosing
    parent = Path(tempfile.mkdtemp(prefix="scratch-test-"))
    parent.chmod(0o711)
    try:
        scratch = parent / "runs"
        confinement = Confinement(allowed_executables=("python3",), scratch_root=str(scratch))
        # When a child runs, then its directory was made there, and is gone afterwards
        call = run_in_sandbox(describe, None, timeout_seconds=30, confinement=confinement)
        assert Path(call.value["cwd"]).parent == scratch
        assert list(scratch.iterdir()) == []
    finally:
        shutil.rmtree(parent)


def test_run_directories_are_made_in_a_directory_of_their_own_in_the_temporary_one(monkeypatch):
    # Given no scratch root configured (a runs directory of this test's own name)
    monkeypatch.setattr(sandbox, "_RUNS_DIR", f"mistersmith-runs-test-{os.getpid()}")
    runs = Path(tempfile.gettempdir(), sandbox._RUNS_DIR)
    try:
        # When a child runs
        call = run_in_sandbox(describe, None, timeout_seconds=30, confinement=CONFINEMENT)
        # Then its directory was made there, not at the top of the temporary directory (each run
        # would change that and make the scan at its end list it again), and is gone afterwards
        assert Path(call.value["cwd"]).parent == runs
        assert list(runs.iterdir()) == []
        # And children may pass through that directory but list nothing in it
        info = runs.lstat()
        assert (info.st_uid, info.st_mode & 0o777) == (os.geteuid(), 0o711)
    finally:
        shutil.rmtree(runs, ignore_errors=True)


@pytest.mark.parametrize("planted", ["another user's directory", "a link", "a directory others may write to"])
def test_a_runs_directory_that_is_not_safely_this_user_s_is_not_used(planted, monkeypatch):
    # Given something at the runs directory's path that others could change
    monkeypatch.setattr(sandbox, "_RUNS_DIR", f"mistersmith-runs-test-{os.getpid()}")
    runs = Path(tempfile.gettempdir(), sandbox._RUNS_DIR)
    elsewhere = Path(tempfile.mkdtemp(prefix="scratch-test-"))
    try:
        if planted == "a link":
            runs.symlink_to(elsewhere)
        else:
            runs.mkdir()
            runs.chmod(0o777 if planted == "a directory others may write to" else 0o711)
            if planted == "another user's directory":
                if os.geteuid() != 0:
                    pytest.skip("only root can give a directory to another user")
                os.chown(runs, 64998, 64998)
        # When the sandbox chooses where to make run directories, then it is the temporary directory itself
        assert sandbox.scratch_root(CONFINEMENT) == tempfile.gettempdir()
    finally:
        if runs.is_symlink():
            runs.unlink()
        shutil.rmtree(runs, ignore_errors=True)
        shutil.rmtree(elsewhere)


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root worker hands children to users of their own")
def test_what_a_run_leaves_in_another_run_s_open_directory_in_the_scratch_root_is_purged():
    # Given a scratch root holding a directory another run's child opened to everyone
    parent = Path(tempfile.mkdtemp(prefix="scratch-test-"))
    parent.chmod(0o711)
    try:
        scratch = parent / "runs"
        scratch.mkdir(mode=0o711)
        scratch.chmod(0o711)
        opened = scratch / "mistersmith-run-other"
        opened.mkdir()
        opened.chmod(0o777)
        confinement = Confinement(allowed_executables=("python3",), scratch_root=str(scratch))
        # When a run leaves a file there
        code = f"open({str(opened / 'left')!r}, 'w').write('for the next tenant of this uid')"
        run = run_sandboxed(
            ["python3", "-c", code], timeout_seconds=30, output_limit_bytes=1024, confinement=confinement
        )
        # Then it is gone once the run has ended, as from the shared temporary directories
        assert run.exit_code == 0, run.stderr
        assert list(opened.iterdir()) == []
    finally:
        shutil.rmtree(parent)
