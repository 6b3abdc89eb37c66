"""Attacks a hostile task made on the sandbox (issue 14), each as a test that failed before the fix.

They need a root worker (per-run uids, purges of another uid's files) and open loopback sockets,
so they skip elsewhere and are not unit tests.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mistersmith.errors import TaskFailure
from mistersmith.models import CompilePayload, ExecutePayload
from mistersmith.work import WorkLimits, perform, run_compile, run_execute, sandbox
from mistersmith.work.limits import Confinement
from mistersmith.work.sandbox import SAFE_PATH, SandboxResult, _live_processes_of, run_sandboxed
from tests.exec_helper import exec_helper

pytestmark = [
    pytest.mark.attack,
    pytest.mark.skipif(os.geteuid() != 0, reason="attacks need a root worker: per-run uids exist only then"),
]

# Children start through the exec helper, as in the image (tests/unit cover the forked fallback).
HELPER = exec_helper()
CONFINEMENT = Confinement(allowed_executables=("python3", "sh"), max_processes=32, exec_helper=HELPER)
LIMITS = WorkLimits(execute_timeout_seconds=30, confinement=CONFINEMENT)


def run(code: str, confinement: Confinement = CONFINEMENT, timeout: float = 30, **options) -> SandboxResult:
    return run_sandboxed(
        ["python3", "-c", code],
        timeout_seconds=timeout,
        output_limit_bytes=1 << 16,
        confinement=confinement,
        **options,
    )


def execute(code: str, limits: WorkLimits = LIMITS, **payload) -> TaskFailure | dict:
    try:
        return run_execute(ExecutePayload(command=["python3", "-c", code], **payload), limits).model_dump()
    except TaskFailure as failure:
        return failure


def survivors(uid: int, marker: str, seconds: float = 1.0) -> set[int]:
    """Every live process of `uid` whose command line holds `marker`, seen while watching for
    `seconds` (the marker keeps other trees' runs on the same uid out of the count)."""
    seen: set[int] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for pid in _live_processes_of(uid):
            with contextlib.suppress(OSError):
                if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    seen.add(pid)
        time.sleep(0.02)
    return seen


# 1. Cleanup evasion: a process whose pid keeps changing used to survive the end-of-run sweep.
def test_attack_fork_churn_does_not_outlive_its_run():
    # Given a run that leaves behind a process which forks and exits over and over (for 10 s at most)
    marker = f"churn-{uuid.uuid4().hex}"
    code = (
        f"# {marker}\n"
        "import os, time\n"
        "deadline = time.monotonic() + 10\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    while time.monotonic() < deadline:\n"
        "        try:\n"
        "            child = os.fork()\n"
        "        except BlockingIOError:\n"  # at the process limit until init reaps: try again
        "            continue\n"
        "        if child != 0:\n"
        "            os._exit(0)\n"
        "    os._exit(0)\n"
        "print(os.getuid(), flush=True)\n"
        "time.sleep(0.5)\n"
    )
    result = run(code)
    uid = int(result.stdout.split()[0])
    # When the run has ended, then nothing it started is left running
    assert survivors(uid, marker) == set()


def test_attack_a_run_that_kills_its_exec_helper_after_forging_its_verdict_is_still_swept():
    # Given a run that leaves a process behind (in a session of its own, for 10 s), writes the exec
    # helper's "swept" verdict to every descriptor it has and every one of the helper's it can
    # open, then kills the helper, which would otherwise have swept the uid when the run ended
    marker = f"forger-{uuid.uuid4().hex}"
    forged = b'\n{"swept": true}\n'
    code = (
        f"# {marker}\n"
        "import os, signal, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    time.sleep(10)\n"
        "    os._exit(0)\n"
        "print(os.getuid(), flush=True)\n"
        "helper = os.getppid()\n"
        "for fd in range(3, 64):\n"
        "    try:\n"
        f"        os.write(fd, {forged!r})\n"
        "    except OSError:\n"
        "        pass\n"
        "for fd in range(64):\n"
        "    try:\n"
        "        with open(f'/proc/{helper}/fd/{fd}', 'wb', buffering=0) as channel:\n"
        f"            channel.write({forged!r})\n"
        "    except OSError:\n"
        "        pass\n"
        "os.kill(helper, signal.SIGKILL)\n"
        "time.sleep(0.5)\n"
    )
    result = run(code)
    uid = int(result.stdout.split()[0])
    # When the run has ended, then nothing it started is left running
    assert survivors(uid, marker) == set()


PR_SET_CHILD_SUBREAPER = 36
CHURN_C = r"""
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
/* churn CHAINS SECONDS MARKER: CHAINS processes that each fork and exit at once, over and over */
int main(int argc, char **argv) {
    int chains = atoi(argv[1]);
    time_t deadline = time(NULL) + atoi(argv[2]);
    for (int i = 0; i < chains; i++)
        if (fork() == 0) {
            setsid();
            while (time(NULL) < deadline)
                if (fork() > 0) _exit(0);
            _exit(0);
        }
    return 0;
}
"""


def compiled(tmp_path: Path, source: str) -> str:
    """A C program built here, as file text a run's `files` can carry (the bytes kept as surrogates)."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler to build the attack program")
    (tmp_path / "program.c").write_text(source)
    subprocess.run(["cc", "-O2", "-o", str(tmp_path / "program"), str(tmp_path / "program.c")], check=True)
    return (tmp_path / "program").read_bytes().decode("utf-8", "surrogateescape")


# An interpreter any uid may run (this one may sit under /root).
PYTHON = shutil.which("python3", path=SAFE_PATH) or "python3"


def live_processes_of_uid(uid: int) -> list[int]:
    """The processes of `uid` that live (zombies left out), however fast their pids change: a probe
    of that uid first stops them all with kill(-1, SIGSTOP), which no fork can escape, then /proc
    is read, then they are killed. The uid's lock is held meanwhile, so no other run (another
    tree's tests) takes it and shows up instead."""
    lock = os.open(Path(tempfile.gettempdir()) / "mistersmith-accounts" / str(uid), os.O_RDWR | os.O_CLOEXEC)
    signal_all = "import os, signal\ntry:\n    os.kill(-1, signal.{})\nexcept ProcessLookupError:\n    pass\n"
    as_uid = {"user": uid, "group": uid, "extra_groups": [], "check": True}
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run([PYTHON, "-c", signal_all.format("SIGSTOP")], **as_uid)
        found = list(_live_processes_of(uid))
        subprocess.run([PYTHON, "-c", signal_all.format("SIGKILL")], **as_uid)  # nothing for the next tenant
        return found
    finally:
        os.close(lock)


@contextlib.contextmanager
def reaping_orphans(name: str) -> Iterator[None]:
    """Makes this process the reaper of its orphaned descendants and reaps those called `name` at
    once, as the container's init does (initProcessEnabled). This host's PID 1 reaps about once a
    second, and zombies count against the process limit: a churn would stall on it there, with a
    pid that holds still long enough for any scan to find."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    done = threading.Event()

    def reap() -> None:
        while not done.is_set():
            try:
                found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                found = None  # no child at all yet
            if found is None:
                time.sleep(0.0005)
                continue
            with contextlib.suppress(OSError):
                if Path(f"/proc/{found.si_pid}/comm").read_text().strip() == name:
                    os.waitpid(found.si_pid, os.WNOHANG)
                    continue
            time.sleep(0.0005)  # a child of ours that its owner reaps (the sandbox's own)

    reaper = threading.Thread(target=reap, daemon=True)
    reaper.start()
    try:
        yield
    finally:
        done.set()
        reaper.join()
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def test_attack_fast_fork_churn_in_several_chains_does_not_outlive_its_run(tmp_path):
    # Given a run that leaves behind four chains of a C program, each forking and exiting at once
    # for 10 s at most (where fork is fast, pids change faster than /proc can be scanned)
    churn = compiled(tmp_path, CHURN_C)
    code = "import os\nprint(os.getuid(), flush=True)\nos.chmod('churn', 0o755)\nos.execv('churn', ['churn', '4', '10'])\n"
    with reaping_orphans("churn"):
        result = run(code, files={"churn": churn})
        uid = int(result.stdout.split()[0])
        # When the run has ended, then nothing of its uid lives
        assert live_processes_of_uid(uid) == []


def live_threads(pid: int) -> list[str]:
    states = []
    for stat_file in Path(f"/proc/{pid}/task").glob("*/stat"):
        with contextlib.suppress(OSError):
            states.append(stat_file.read_text().rsplit(")", 1)[1].split()[0])
    return [state for state in states if state not in ("Z", "X")]


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="SYS_exit is 60 on x86_64")
def test_attack_a_process_whose_main_thread_exited_does_not_outlive_its_run():
    # Given a run that leaves behind a process whose main thread has exited (so that /proc shows it
    # as a zombie) while another of its threads runs on for 10 s
    code = (
        "import ctypes, os, threading, time\n"
        "ready, told = os.pipe()\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    threading.Thread(target=time.sleep, args=(10,)).start()\n"
        "    print(os.getpid(), flush=True)\n"
        "    os.write(told, b'x')\n"
        "    ctypes.CDLL(None).syscall(60, 0)\n"  # SYS_exit: this thread only, not the process
        "os.read(ready, 1)\n"  # the run ends only once the process is set up, however loaded the host
        "time.sleep(0.2)\n"
    )
    result = run(code)
    pid = int(result.stdout.split()[0])
    # When the run has ended, then none of that process's threads is running
    deadline = time.monotonic() + 1
    while live_threads(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert live_threads(pid) == []


def test_attack_a_uid_that_cannot_be_emptied_is_quarantined():
    # Given a process that shows a sandbox uid but that uid cannot kill (its real and saved uid are root)
    base = 63700
    stubborn = subprocess.Popen(
        ["python3", "-c", f"import os, time; os.setresuid(0, {base}, 0); time.sleep(60)"]
    )
    try:
        deadline = time.monotonic() + 10
        while not list(_live_processes_of(base)) and time.monotonic() < deadline:
            time.sleep(0.05)
        # When a run asks for a uid from that one on
        result = run(
            "import os; print(os.getuid())",
            Confinement(allowed_executables=("python3",), exec_helper=HELPER, child_uid_base=base),
        )
        # Then it is never given that uid
        assert int(result.stdout) != base
        again = run(
            "import os; print(os.getuid())",
            Confinement(allowed_executables=("python3",), exec_helper=HELPER, child_uid_base=base),
        )
        assert int(again.stdout) != base
    finally:
        stubborn.kill()
        stubborn.wait()


def test_attack_uids_are_handed_out_in_rotation():
    # Given two runs one after the other / When each prints its uid
    first = run("import os; print(os.getuid())")
    second = run("import os; print(os.getuid())")
    # Then the second did not get the uid the first just gave back
    assert first.stdout != second.stdout


# 2. State that outlives the run.
def test_attack_files_in_shared_temp_dirs_and_ipc_do_not_survive_the_run():
    # Given a run that leaves a file in /tmp and in /dev/shm and a System V shared memory segment
    code = (
        "import ctypes, os\n"
        "uid = os.getuid()\n"
        "open(f'/tmp/ms-attack-{uid}', 'w').write('left')\n"
        "open(f'/dev/shm/ms-attack-{uid}', 'w').write('left')\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(uid, libc.shmget(0, 4096, 0o1000 | 0o600))\n"  # IPC_PRIVATE, IPC_CREAT
    )
    result = run(code)
    uid, shmid = (int(word) for word in result.stdout.split())
    try:
        # When the run has ended, then none of them is left
        assert shmid >= 0
        assert not Path(f"/tmp/ms-attack-{uid}").exists()
        assert not Path(f"/dev/shm/ms-attack-{uid}").exists()
        segments = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
        assert [line for line in segments if int(line.split()[1]) == shmid] == []
    finally:
        for path in (f"/tmp/ms-attack-{uid}", f"/dev/shm/ms-attack-{uid}"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        subprocess.run(["ipcrm", "-m", str(shmid)], check=False, capture_output=True)


@pytest.fixture
def settled_shared_dirs() -> Iterator[Path]:
    """A world-writable directory in /tmp holding another and a closed one, all unchanged for an
    hour (so that the purge's listings of them are kept and reused)."""
    outer = Path(tempfile.mkdtemp(prefix="ms-attack-settled-", dir="/tmp"))
    try:
        (outer / "inner").mkdir()
        (outer / "closed").mkdir()
        for path, mode in ((outer / "inner", 0o777), (outer / "closed", 0o755), (outer, 0o777)):
            path.chmod(mode)
            an_hour_ago = time.time() - 3600
            os.utime(path, (an_hour_ago, an_hour_ago))
        yield outer
    finally:
        shutil.rmtree(outer, ignore_errors=True)


def test_attack_files_in_shared_directories_listed_before_are_purged(settled_shared_dirs):
    # Given shared directories the purge has listed after a run (and keeps listings of), the
    # closed one then opened to everyone (its parent's listing stays as it was)
    outer = settled_shared_dirs
    assert run("pass").exit_code == 0
    (outer / "closed").chmod(0o777)
    # When a run leaves a file in each of the inner ones (the outer one stays as it was listed)
    places = [outer / "inner", outer / "closed"]
    code = "import os\nuid = os.getuid()\nprint(uid)\n"
    code += "".join(f"open(f'{place}/left-{{uid}}', 'w').write('x')\n" for place in places)
    result = run(code)
    assert result.exit_code == 0, result.stderr
    uid = int(result.stdout)
    # Then none of them is left
    assert sorted(outer.rglob(f"left-{uid}")) == []


STRANGER = 64999  # a uid no run here is given


@pytest.mark.parametrize("settled", [False, True], ids=["changed-just-before", "clock-set-back"])
def test_attack_a_change_that_leaves_a_directory_s_mtime_as_it_was_is_not_missed(
    settled, tmp_path, monkeypatch
):
    # Given a world-writable shared directory listed by the purge: changed just before the
    # listing, or long before it and the wall clock then set back by 10 s
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    if settled:
        an_hour_ago = time.time() - 3600
        os.utime(shared, (an_hour_ago, an_hour_ago))
    monkeypatch.setattr(sandbox, "SHARED_TEMP_DIRS", (str(shared),))
    assert list(sandbox._shared_temp_entries_of(STRANGER)) == []
    if settled:
        real_time_ns = time.time_ns
        monkeypatch.setattr(sandbox.time, "time_ns", lambda: real_time_ns() - 10**10)
    # When a file of another uid appears in it and the directory's mtime reads as before (as a
    # change within the file system clock's granularity, or after the clock went back, leaves it)
    before = shared.stat().st_mtime_ns
    (shared / "left").write_text("x")
    os.chown(shared / "left", STRANGER, STRANGER)
    os.utime(shared, ns=(before, before))
    # Then the next purge still finds it
    assert list(sandbox._shared_temp_entries_of(STRANGER)) == [str(shared / "left")]


def test_attack_a_directory_swapped_in_after_its_stat_is_not_listed_as_the_one_stat_ed(tmp_path):
    # Given a shared directory stat'ed by the purge, then moved away by the owner of the directory it
    # is in and another (empty, settled) put at its path before it is listed
    stated, swapped_in = tmp_path / "stated", tmp_path / "swapped-in"
    stated.mkdir()
    swapped_in.mkdir()
    (stated / "left").write_text("x")
    os.chown(stated / "left", STRANGER, STRANGER)
    (swapped_in / "decoy").write_text("x")
    an_hour_ago = time.time() - 3600
    for path in (stated, swapped_in):
        os.utime(path, (an_hour_ago, an_hour_ago))
    info = os.lstat(stated)
    # When the purge lists what is at the path now
    started = time.time_ns()
    listing, _ = sandbox._listing(str(swapped_in), info, started, started - time.monotonic_ns())
    # Then that listing is not taken for the stat'ed directory's, now or at the next purge
    assert listing.owners == {}
    assert str(swapped_in) not in sandbox._listings


def test_attack_a_very_deep_directory_tree_is_removed_without_a_worker_fault():
    # Given a run that builds a tree 3000 directories deep
    code = (
        "import os\n"
        "print(os.getcwd(), flush=True)\n"
        "for _ in range(3000):\n"
        "    os.mkdir('d'); os.chdir('d')\n"
        "open('f', 'wb').write(b'0' * 4096)\n"
    )
    # When it ends (normally, or killed at its disk budget if a poll came while the tree was too
    # deep to measure: the sandbox counts that as over budget), then its directory is gone and
    # nothing was raised at the worker
    result = run(code)
    assert result.exit_code == 0 or result.exceeded == "disk", result.stderr
    assert not Path(result.stdout.strip()).exists()


def test_attack_writing_past_the_disk_budget_fails_the_run_with_disk_limit_exceeded():
    # Given a disk budget of 8 MiB and a command that writes 16 files of 1 MiB
    limits = WorkLimits(
        execute_timeout_seconds=30,
        confinement=Confinement(
            allowed_executables=("python3",), exec_helper=HELPER, max_file_bytes=4 << 20, disk_bytes=8 << 20
        ),
    )
    code = "for i in range(16):\n    open(f'f{i}', 'wb').write(b'0' * (1 << 20))\n"
    # When it runs, then it fails naming the disk budget
    failure = execute(code, limits)
    assert isinstance(failure, TaskFailure)
    assert failure.error_type == "DiskLimitExceeded"


# 3. Memory limited per run, not per process.
def test_attack_memory_summed_over_children_is_held_to_the_run_s_budget():
    # Given a budget of 256 MiB and four children that each hold 100 MiB for a few seconds
    limits = WorkLimits(
        execute_timeout_seconds=30,
        confinement=Confinement(
            allowed_executables=("python3",), exec_helper=HELPER, memory_bytes=256 << 20, max_processes=16
        ),
    )
    code = (
        "import os, time\n"
        "for _ in range(4):\n"
        "    if os.fork() == 0:\n"
        "        block = b'x' * (100 << 20)\n"
        "        time.sleep(5)\n"
        "        os._exit(0)\n"
        "for _ in range(4):\n"
        "    os.wait()\n"
    )
    # When it runs, then it is killed for the memory budget
    failure = execute(code, limits)
    assert isinstance(failure, TaskFailure)
    assert failure.error_type == "MemoryLimitExceeded"


# 4. compile in the worker process.
def test_attack_compiling_a_huge_source_is_held_to_the_run_s_memory_budget():
    # Given a memory budget of 128 MiB and a source whose compilation needs far more
    limits = WorkLimits(
        execute_timeout_seconds=60,
        confinement=Confinement(allowed_executables=("python3",), exec_helper=HELPER, memory_bytes=128 << 20),
    )
    source = "x = [" + "1," * 1_500_000 + "]\n"
    # When it is compiled, then the compile is stopped by the budget (outside the worker's process)
    with pytest.raises(TaskFailure) as failed:
        run_compile(CompilePayload(files={"big.py": source}), limits=limits)
    assert failed.value.error_type == "MemoryLimitExceeded"


def test_attack_an_archive_that_unpacks_past_the_disk_budget_is_stopped_in_the_child():
    # Given a 40 MiB member compressed to a few KiB, and a disk budget of 16 MiB
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("big.py", b"#" * (40 << 20))
    limits = WorkLimits(
        execute_timeout_seconds=60,
        confinement=Confinement(allowed_executables=("python3",), exec_helper=HELPER, disk_bytes=16 << 20),
    )
    # When a compile names it, then the child unpacking it is held to the run's disk budget
    with pytest.raises(TaskFailure) as failed:
        perform(
            "compile",
            {"source_uri": "s3://bucket/uploads/bomb.zip"},
            limits,
            sources=lambda _uri, _limit: buffer.getvalue(),
        )
    assert failed.value.error_type == "DiskLimitExceeded"


# 5. The network.
@pytest.fixture
def listener():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.settimeout(0.2)
        accepted: list[object] = []
        done = threading.Event()

        def accept() -> None:
            while not done.is_set():
                with contextlib.suppress(OSError):
                    connection, _ = server.accept()
                    accepted.append(connection)

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        yield server.getsockname()[1], accepted
        done.set()
        thread.join()


CONNECT = (
    "import socket, sys\n"
    "for family, address in ((socket.AF_INET, ('127.0.0.1', {port})), (socket.AF_INET6, ('::1', {port})),"
    " (socket.AF_INET, ('169.254.170.2', 80))):\n"
    "    try:\n"
    "        s = socket.socket(family); s.settimeout(1); s.connect(address); print('connected')\n"
    "    except PermissionError:\n"
    "        print('refused')\n"
    "    except OSError as error:\n"
    "        print('error', error.errno)\n"
)


def test_attack_a_child_cannot_open_a_network_socket(listener):
    port, accepted = listener
    # Given a listening loopback port / When a child tries to reach it, and the task metadata address
    result = run(CONNECT.format(port=port))
    # Then no socket of the internet families can even be made
    assert result.stdout.split() == ["refused", "refused", "refused"], result.stderr
    assert accepted == []


def test_network_can_be_allowed_for_a_deployment(listener):
    port, _accepted = listener
    # Given a confinement that allows the network / When a child connects to loopback, then it does
    result = run(
        CONNECT.format(port=port).split("for family")[0]
        + (f"s = socket.socket(); s.settimeout(5); s.connect(('127.0.0.1', {port})); print('connected')\n"),
        Confinement(allowed_executables=("python3",), exec_helper=HELPER, allow_network=True),
    )
    assert result.stdout.split() == ["connected"], result.stderr


# Arguments under which each call fails, unfiltered, with an errno other than EPERM (or succeeds).
SYSCALL = (
    "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nlibc.syscall({call})\nprint(ctypes.get_errno())"
)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param("101, 0, 0, 0, 0", id="ptrace-traceme"),
        pytest.param("272, 0x10000000", id="unshare-user"),
        pytest.param("56, 0x10000000 | 17, 0, 0, 0, 0", id="clone-newuser"),
        pytest.param("250, 0, -3, 1", id="keyctl"),
        pytest.param("425, 1, 0", id="io_uring"),
        pytest.param("298, 0, 0, -1, -1, 0", id="perf_event_open"),
        pytest.param("165, 0, 0, 0, 0, 0", id="mount"),
    ],
)
@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the syscall numbers here are x86_64's")
def test_attack_system_calls_a_build_never_needs_are_refused(call):
    # When a child makes the call, then it fails with EPERM
    result = run(SYSCALL.format(call=call))
    assert result.stdout.strip() == str(errno.EPERM), result.stderr


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the x32 ABI exists on x86_64 only")
def test_attack_the_x32_system_call_numbers_cannot_bypass_the_filter():
    # When a child makes socket(AF_INET) with the x32 bit set, then it is killed rather than served
    result = run("import ctypes\nprint(ctypes.CDLL(None, use_errno=True).syscall(0x40000000 | 41, 2, 1, 0))")
    assert result.exit_code == -signal.SIGSYS


# 6. The allowlist is a convenience: whatever a child execs stays inside the same boundary.
CONFINED = "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t ' ' '"


def test_attack_exec_of_a_shell_stays_confined():
    result = run(f"import os; os.execv('/bin/sh', ['sh', '-c', {CONFINED!r}])")
    assert result.stdout.split("\n")[:2] == ["NoNewPrivs: 1", "Seccomp: 2"], result.stderr


def test_attack_an_uploaded_script_stays_confined():
    result = run("import subprocess; subprocess.run(['/bin/sh', 'x.sh'])", files={"x.sh": CONFINED + "\n"})
    assert result.stdout.split("\n")[:2] == ["NoNewPrivs: 1", "Seccomp: 2"], result.stderr


def test_attack_a_sitecustomize_on_pythonpath_has_no_network():
    hook = "import socket\ntry:\n    socket.socket()\n    print('socket')\nexcept PermissionError:\n    print('refused')\n"
    result = run("pass", files={"hook/sitecustomize.py": hook}, env={"PYTHONPATH": "hook"})
    assert result.stdout.strip() == "refused", result.stderr


def test_attack_ld_preload_code_has_no_network(tmp_path):
    if subprocess.run(["sh", "-c", "command -v cc"], capture_output=True).returncode:
        pytest.skip("no C compiler to build the preloaded library")
    source = tmp_path / "hook.c"
    source.write_text(
        "#include <stdio.h>\n#include <sys/socket.h>\n"
        "__attribute__((constructor)) static void hook(void) {\n"
        '  puts(socket(AF_INET, SOCK_STREAM, 0) < 0 ? "refused" : "socket"); fflush(stdout); }\n'
    )
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "hook.so"), str(source)], check=True)
    library = (tmp_path / "hook.so").read_bytes().decode("latin-1")
    result = run(
        "import os; os.execv('/bin/true', ['true'])",
        files={"hook.so": library.encode("latin-1").decode("utf-8", "surrogateescape")},
        env={"LD_PRELOAD": "./hook.so"},
    )
    assert "socket" not in result.stdout
    assert "refused" in result.stdout, result.stderr


# 7. Inputs that always fail end FAILED InvalidPayload at once, never as a worker fault.
@pytest.mark.parametrize(
    "files",
    [
        pytest.param({"n" * 300 + ".py": "pass\n"}, id="file-name-too-long"),
        pytest.param({"/".join(["d" * 200] * 25) + ".py": "pass\n"}, id="path-of-5000-characters"),
        pytest.param({"bad\ud800.py": "pass\n"}, id="path-not-encodable"),
    ],
)
@pytest.mark.parametrize("task_type", ["execute", "compile"])
def test_attack_inputs_that_always_fail_are_invalid_payloads(task_type, files):
    payload = {"files": files, **({"command": ["python3", "-c", "pass"]} if task_type == "execute" else {})}
    with pytest.raises(TaskFailure) as failed:
        perform(task_type, payload, LIMITS)
    assert failed.value.error_type == "InvalidPayload"


def test_attack_a_source_that_cannot_be_encoded_is_an_invalid_payload():
    # Given a source with a lone surrogate, which compiles but cannot be written as UTF-8
    def sink(name: str, data: bytes, content_type: str) -> str:
        return f"s3://bucket/{name}"

    # When it is compiled into an archive, then the payload is refused, not retried as a worker fault
    with pytest.raises(TaskFailure) as failed:
        perform("compile", {"files": {"a.py": "x = '\ud800'\n"}}, LIMITS, artifacts=sink)
    assert failed.value.error_type == "InvalidPayload"


def test_attack_paths_equal_after_normalisation_are_refused():
    with pytest.raises(TaskFailure) as failed:
        perform("execute", {"command": ["python3", "-c", "pass"], "files": {"a": "1", "./a": "2"}}, LIMITS)
    assert failed.value.error_type == "InvalidPayload"


INT80_C = r"""
#include <stdio.h>
int main(void) {
    /* socket(AF_INET, SOCK_STREAM) through the i386 ABI: socketcall is 102, SYS_SOCKET 1 */
    long args[3] = {2, 1, 0}, result;
    __asm__ volatile("int $0x80" : "=a"(result) : "a"(102), "b"(1), "c"((int)(long)args) : "memory");
    printf("served %ld\n", result);
    return 0;
}
"""


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="int 0x80 is the i386 ABI on x86_64")
def test_attack_the_i386_abi_cannot_bypass_the_filter(tmp_path):
    # Given a 64-bit program that makes socket(AF_INET) through int 0x80 (the i386 table)
    program = compiled(tmp_path, INT80_C)
    # When a child runs it, then the filter kills it rather than serve the call
    result = run("import os\nos.chmod('p', 0o755)\nos.execv('p', ['p'])\n", files={"p": program})
    assert result.exit_code == -signal.SIGSYS, result
    assert "served" not in result.stdout


def test_attack_burning_cpu_past_the_cpu_budget_fails_the_run_before_the_wall_clock():
    # Given a CPU budget of 1 s and a wall clock of 60 s / When a child spins
    failure = execute(
        "while True: pass",
        WorkLimits(execute_timeout_seconds=60, confinement=replace(CONFINEMENT, cpu_seconds=1)),
    )
    # Then the run fails for its CPU budget, not for the wall clock
    assert isinstance(failure, TaskFailure), failure
    assert failure.error_type == "CpuTimeLimitExceeded"


MULTIPROCESSING_LOCK = "import multiprocessing\nwith multiprocessing.Lock():\n    print('locked')\n"
IN_A_SEALED_CONTAINER = """
import subprocess, sys
from fargate_worker.worker import seal_in_ecs
from mistersmith.work.limits import Confinement
from mistersmith.work.sandbox import run_sandboxed
for path in ("/tmp", "/var/tmp", "/dev/shm"):
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", path], check=True)
print("sealed", seal_in_ecs("http://169.254.170.2/v3/task"))
result = run_sandboxed(
    ["python3", "-c", sys.argv[1]], timeout_seconds=30, output_limit_bytes=4096,
    confinement=Confinement(allowed_executables=("python3",), child_uid_base=64300, exec_helper=None),
)
print(result.stdout.strip() or result.stderr.strip().splitlines()[-1])
"""


def test_a_sealed_container_still_gives_children_multiprocessing_locks():
    # Given a worker in an ECS task that sealed the shared temporary directories at start (in a
    # mount namespace of its own, each a fresh tmpfs: this host's are not touched)
    if shutil.which("unshare") is None:
        pytest.skip("no unshare to make a mount namespace")
    done = subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            sys.executable,
            "-c",
            IN_A_SEALED_CONTAINER,
            MULTIPROCESSING_LOCK,
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    # When a child takes a multiprocessing lock (a POSIX semaphore in /dev/shm), then it gets it
    lines = [line for line in done.stdout.splitlines() if not line.startswith("{")]  # the log lines left out
    assert lines == ["sealed ['/tmp', '/var/tmp']", "locked"], done.stderr
