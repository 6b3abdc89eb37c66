"""A root worker gives each run's child a uid of its own: runs cannot see or signal each other or the
worker, and nothing a run starts outlives it, not even what left its session."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from mistersmith.work import sandbox
from mistersmith.work.limits import Confinement
from mistersmith.work.sandbox import SandboxResult, run_sandboxed

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(os.geteuid() != 0, reason="only a root worker hands children to users of their own"),
]

CONFINEMENT = Confinement(allowed_executables=("python3",), max_processes=32)


def run(code: str, timeout: float = 20) -> SandboxResult:
    return run_sandboxed(
        ["python3", "-c", code], timeout_seconds=timeout, output_limit_bytes=65536, confinement=CONFINEMENT
    )


def state_of(pid: int) -> str | None:
    """The process's state letter, or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return None
    return next(line.split()[1] for line in status.splitlines() if line.startswith("State:"))


def test_runs_in_flight_get_different_uids_and_cannot_read_each_other():
    # Given a run that waits with a secret in its directory and says where that is, and a second
    # run at the same time
    told = Path(tempfile.mkdtemp(prefix="sandbox-test-")) / "where"
    told.parent.chmod(0o755)
    told.touch(mode=0o666)
    told.chmod(0o666)
    first: dict[str, SandboxResult] = {}
    holder = threading.Thread(
        target=lambda: first.setdefault(
            "run",
            run(
                "import os, time; open('secret', 'w').write('s3cr3t');"
                f" open({str(told)!r}, 'w').write(os.getcwd()); print(os.getuid(), flush=True); time.sleep(3)"
            ),
        )
    )
    holder.start()
    time.sleep(1)
    # When the second looks for the first's directory beside its own, and tries to read the secret
    # where the first said it is
    second = run(
        "import glob, os\n"
        "print(os.getuid())\n"
        "paths = glob.glob(os.path.join(os.path.dirname(os.getcwd()), 'mistersmith-run-*', 'secret'))\n"
        f"paths.append(os.path.join(open({str(told)!r}).read(), 'secret'))\n"
        "for path in paths:\n"
        "    try:\n"
        "        print(open(path).read())\n"
        "    except OSError as error:\n"
        "        print(type(error).__name__)\n"
    )
    holder.join()
    shutil.rmtree(told.parent)
    # Then each ran as a non-root uid of its own, and the secret stayed unread
    first_uid = int(first["run"].stdout.split()[0])
    second_uid, *attempts = second.stdout.split()
    assert 0 not in (first_uid, int(second_uid))
    assert first_uid != int(second_uid)
    assert "s3cr3t" not in second.stdout
    assert attempts
    assert set(attempts) <= {"PermissionError"}


def test_a_child_cannot_signal_the_worker_or_read_its_environment():
    # Given the worker's pid / When a child tries to signal it and to read its environment
    result = run(
        f"import os\n"
        f"try:\n    os.kill({os.getpid()}, 0); print('signalled')\nexcept PermissionError:\n    print('refused')\n"
        f"try:\n    open('/proc/{os.getpid()}/environ', 'rb').read(); print('read')\n"
        f"except PermissionError:\n    print('refused')\n"
    )
    # Then both are refused
    assert result.stdout.split() == ["refused", "refused"]


def test_a_process_that_leaves_the_run_s_session_is_killed_when_the_run_ends():
    # Given a child that starts a grandchild in a session of its own, which would sleep for a minute
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(60); os._exit(0)\n"
        "    os._exit(0)\n"
        "time.sleep(0.5)\n"
        "print([p for p in os.listdir('/proc') if p.isdigit() and os.stat('/proc/' + p).st_uid == os.getuid()"
        " and p != str(os.getpid())])\n"
    )
    # When the run ends
    result = run(code)
    escaped = [int(pid) for pid in result.stdout.strip("[]'\n").replace("'", "").split(", ") if pid]
    # Then the process that escaped the group existed, and is gone (or a zombie) now
    assert escaped, result
    for pid in escaped:
        assert state_of(pid) in (None, "Z")


def test_a_uid_whose_last_holder_died_is_swept_before_it_is_used_again(monkeypatch):
    # Given a uid whose lease was never ended (its worker died) and a process it left running,
    # and the rotation of uids at its start
    monkeypatch.setattr(sandbox, "_rotation", itertools.count())
    confinement = Confinement(allowed_executables=("python3",), child_uid_base=62000)
    locks = Path(tempfile.gettempdir()) / "mistersmith-accounts"
    locks.mkdir(mode=0o700, exist_ok=True)
    (locks / "62000").write_bytes(b"inuse")
    leftover = subprocess.Popen(["sleep", "60"], user=62000, group=62000)
    try:
        # When a run leases it
        result = run_sandboxed(
            ["python3", "-c", "import os; print(os.getuid())"],
            timeout_seconds=20,
            output_limit_bytes=1024,
            confinement=confinement,
        )
        # Then it ran as that uid, and the leftover was killed first
        assert result.stdout.strip() == "62000"
        assert leftover.wait(timeout=5) == -signal.SIGKILL
    finally:
        leftover.kill()
        leftover.wait()
    # And a lease that ended cleanly leaves the uid marked clean
    assert (locks / "62000").read_bytes() == b"clean"


def test_sealing_takes_the_shared_temporary_directories_from_everyone_but_their_owner(tmp_path):
    # Given a world-writable shared directory of the worker's
    shared = tmp_path / "shm"
    shared.mkdir()
    shared.chmod(0o1777)
    # When the worker seals the shared directories at start
    sealed = sandbox.seal_shared_temp([str(shared)])
    # Then children can still pass through to their own directories, and write nothing there
    assert sealed == [str(shared)]
    assert shared.stat().st_mode & 0o7777 == 0o711
