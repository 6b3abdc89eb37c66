"""Attacks a hostile task made on the sandbox (issue 14), each as a test that failed before the fix.

They need a root worker (per-run uids, purges of another uid's files) and open loopback sockets,
so they skip elsewhere and are not unit tests.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
import zipfile
from pathlib import Path

import pytest

from mistersmith.errors import TaskFailure
from mistersmith.models import CompilePayload, ExecutePayload
from mistersmith.work import WorkLimits, perform, run_compile, run_execute
from mistersmith.work.limits import Confinement
from mistersmith.work.sandbox import SandboxResult, _live_processes_of, run_sandboxed

pytestmark = [
    pytest.mark.attack,
    pytest.mark.skipif(os.geteuid() != 0, reason="attacks need a root worker: per-run uids exist only then"),
]

CONFINEMENT = Confinement(allowed_executables=("python3", "sh"), max_processes=32)
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
            Confinement(allowed_executables=("python3",), child_uid_base=base),
        )
        # Then it is never given that uid
        assert int(result.stdout) != base
        again = run(
            "import os; print(os.getuid())",
            Confinement(allowed_executables=("python3",), child_uid_base=base),
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
        confinement=Confinement(allowed_executables=("python3",), max_file_bytes=4 << 20, disk_bytes=8 << 20),
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
        confinement=Confinement(allowed_executables=("python3",), memory_bytes=256 << 20, max_processes=16),
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
        confinement=Confinement(allowed_executables=("python3",), memory_bytes=128 << 20),
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
        confinement=Confinement(allowed_executables=("python3",), disk_bytes=16 << 20),
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
        Confinement(allowed_executables=("python3",), allow_network=True),
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
