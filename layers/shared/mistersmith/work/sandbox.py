"""Runs one untrusted child process: an argv list and never a shell, a fresh work directory, an
environment built from scratch, a wall-clock timeout that kills the whole process group, and
stdout / stderr capped at a byte limit.

Every child also gets resource limits (rlimits) and must be an allowed executable; when the
worker is root, each run's child gets an unprivileged uid of its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import itertools
import json
import math
import os
import resource
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

from mistersmith.errors import TaskFailure, TaskStopped
from mistersmith.observability import logger
from mistersmith.work.limits import Confinement
from mistersmith.work.seccomp import SeccompFilter, build_filter
from mistersmith.work.sources import unpack_into

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
FORBIDDEN_ENV_PREFIXES = ("AWS_", "ECS_")

# exec failures that the same command would meet again on any worker.
_NOT_EXECUTABLE_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG, errno.E2BIG}
)
_CHUNK_BYTES = 65536
# After the process group is killed, pipes reach EOF at once unless something escaped the group.
_DRAIN_GRACE_SECONDS = 2.0
_MAX_WAIT_STEP_SECONDS = 0.05
# Children get uids from child_uid_base on, one per run in flight; the locks that say which are taken.
_ACCOUNTS = 1000
_ACCOUNT_LOCKS = "mistersmith-accounts"
_SWEEP_PASSES = 50
_STATUS_HEAD_BYTES = 1024
_CLEAN = b"clean"
_IN_USE = b"inuse"
# Where a child could leave files for the next tenant of its uid: purged at every lease's end.
SHARED_TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/dev/mqueue")  # noqa: S108 - purged, never written
# Run directories are made in this directory of the temporary one, not at its top: runs then
# leave the top as it was, and the scan at each run's end reuses its listing (see _listing).
_RUNS_DIR = "mistersmith-runs"
# Those the worker seals in its container (see seal_shared_temp for why not /dev/shm).
SEALED_TEMP_DIRS = ("/tmp", "/var/tmp")  # noqa: S108 - sealed, never written
# How often a run's memory and disk are measured; what it writes in between is the disk overshoot.
_BUDGET_POLL_SECONDS = 0.25
# Each entry on disk counts at least this much, so that floods of empty files meet the budget too.
_MIN_ENTRY_BYTES = 4096
_UNMEASURABLE = 1 << 62
# Listings of the shared temporary directories kept for reuse (_listing), by path; how much older
# than its listing a directory's mtime must be for the listing to be kept (file system clocks are
# coarse: a second on some); how far back the wall clock may be read to have gone (two readings).
_listings: dict[str, _Listing] = {}
_SETTLED_NS = 2_000_000_000
_CLOCK_SLACK_NS = 1_000_000
# kill(-1) passes at most (the fallback without the exec helper): one already reaches every
# process and fork of the uid (a fork cannot complete with a kill pending); it stops early only
# when no other process at all is left to try. The scan after it says whether anything lives.
_KILL_PASSES = 20
_CLEANUP_ATTEMPTS = 2
# The exit code of a child that failed before it could exec or return (its report says why).
_CHILD_FAILED = 125
_MAX_FD = os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 65536
_UNPARSED_STDERR_CHARS = 2000
_IPC_RMID = 0
_LIBC = ctypes.CDLL(None, use_errno=True)
# File paths the file system refuses whatever the worker: the payload's fault.
_INVALID_PATH_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL, errno.ELOOP})
# Uids leave in rotation, so the one just given back is the last to be reused.
_rotation = itertools.count()
_quarantined: set[int] = set()
_quarantine_locks: list[int] = []
# Uids killed atomically since their last process could have started, and whether that kill saw
# none left (then the lease end needs no scan of /proc): their lease end does not kill again.
_killed: dict[int, bool] = {}
_NO_VALUE: Any = object()
# The allowed executables' real paths, by Confinement.allowed_executables (see _allowed_paths).
_allowed: dict[tuple[str, ...], frozenset[str]] = {}
# The supervising exec helper's last line: whether its sweep of the uid left nothing (sandbox_exec.c).
_VERDICTS = {b'{"swept": true}': True, b'{"swept": false}': False}


@dataclass(frozen=True)
class SandboxResult:
    """What one run produced. A negative exit_code is the signal that ended the process."""

    exit_code: int
    stdout: str
    stderr: str
    truncated: bool
    duration_ms: int
    timed_out: bool
    stopped: bool = False
    # The `collect` files that could be read back, by relative path.
    files: Mapping[str, bytes] = field(default_factory=dict)
    # The budget the run went past and was killed for: "memory", "disk" or "cpu".
    exceeded: str | None = None
    # What a `run_in_sandbox` function returned.
    value: Any = _NO_VALUE
    # The child's own channel, until it is read (internal).
    report: bytes | None = field(default=None, repr=False)
    # Whether the exec helper swept the run's uid when the program ended, leaving nothing (internal;
    # None: it did not, and the worker must).
    swept: bool | None = field(default=None, repr=False)


def child_environment(workdir: Path, requested: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's whole environment: nothing is inherited from the worker.

    Defaults are PATH (`SAFE_PATH`), HOME and TMPDIR (the work directory, so that the child's
    files are removed with it) and LANG=C.UTF-8; the requested variables are laid over them.
    Any variable whose name begins with `AWS_` or `ECS_` (in any case) is dropped, even when the
    payload asks for it: such variables would hand the worker's credentials, credential endpoint
    or task metadata to untrusted code.
    """
    env = {"PATH": SAFE_PATH, "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8"}
    for name, value in (requested or {}).items():
        if name.upper().startswith(FORBIDDEN_ENV_PREFIXES):
            continue
        if not name or "=" in name or "\0" in name:
            raise TaskFailure("InvalidPayload", f"environment variable name {name!r} is not valid")
        if "\0" in value:
            raise TaskFailure("InvalidPayload", f"environment variable {name!r} contains a NUL character")
        _encoded(name, "an environment variable name")
        _encoded(value, f"environment variable {name!r}")
        env[name] = value
    return env


@dataclass(frozen=True)
class SourceArchive:
    """A source archive the child unpacks into its work directory before anything else runs."""

    data: bytes
    unpacked_limit_bytes: int
    # Refuse members that are not UTF-8 (compile and analyze read text).
    text_only: bool


@dataclass(frozen=True)
class SandboxCall:
    """What `run_in_sandbox` returns: the function's JSON value and the `collect` files."""

    value: Any
    files: Mapping[str, bytes]
    stdout: str
    stderr: str
    duration_ms: int


# What a run that went past a budget failed with, by budget.
BUDGET_ERRORS = {
    "memory": "MemoryLimitExceeded",
    "disk": "DiskLimitExceeded",
    "cpu": "CpuTimeLimitExceeded",
}


def budget_failure(result: SandboxResult, what: str) -> TaskFailure | None:
    """The TaskFailure for a run that went past one of its budgets (None if it did not)."""
    if result.exceeded is None:
        return None
    return TaskFailure(
        BUDGET_ERRORS[result.exceeded], f"{what} went past its {result.exceeded} budget and was killed"
    )


def run_sandboxed(  # noqa: PLR0913 - a keyword-only API whose options are independent of each other
    command: Sequence[str],
    *,
    timeout_seconds: float,
    output_limit_bytes: int,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
    files: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
    confinement: Confinement | None = None,
    collect: Sequence[str] = (),
    archive: SourceArchive | None = None,
) -> SandboxResult:
    """Runs `command` (an argv list, never through a shell) in a fresh temporary directory.

    `files` ({relative path: text}) and `archive` are written into that directory by the child
    itself, before it runs the command, as its user and inside its filter; a path that would
    resolve outside it is refused. The child gets `child_environment(workdir, env)`, `stdin`
    (or /dev/null) and its own session, so that on timeout the whole process group is killed
    with SIGKILL; whatever the run left running after a normal exit is killed the same way.
    stdout and stderr are read concurrently and each keeps its first `output_limit_bytes`
    bytes; the rest is read and discarded so that the child never blocks, and `truncated` is
    set. Setting `stop` kills the group early (the result says `stopped`). The directory is
    removed afterwards. `confinement` decides which executables may run, the child's budgets
    (a run past its memory, disk or CPU budget is killed and its result says `exceeded`), and
    whether it may use the network; a worker running as root hands the child to an
    unprivileged user of its own.

    `collect` names files (relative paths) to read back after the child has exited and before
    the directory goes: each that is a regular file (of the child's user, when there is one), no
    larger than the confinement's `max_file_bytes`, is in the result's `files`; links are never
    followed and anything else is left out.

    Raises ValueError for a `collect` path that is not a plain relative path.
    Raises TaskFailure: `ExecutableNotAllowed` for a command outside the allowlist,
    `CommandNotFound` when the executable does not exist,
    `CommandNotExecutable` when it cannot be executed, `InvalidPayload` for a file path, an
    argument or an environment variable that cannot be used, and what unpacking `archive`
    raises (`InvalidSource`, `SourceTooLarge`).
    """
    argv = _checked_argv(command)
    confinement = confinement or Confinement()
    with _sandbox_dir(confinement) as workdir:
        child_env = child_environment(workdir, env)
        executable = _allowed_executable(argv[0], child_env, workdir, confinement)
        jail = _Jail(executable, confinement, timeout_seconds, files or {}, archive)
        return _spawn(
            jail, argv, workdir, child_env, stdin, timeout_seconds, output_limit_bytes, stop, collect
        )


def run_in_sandbox(
    function: Callable[[Any, Path], Any],
    argument: Any,
    *,
    timeout_seconds: float,
    confinement: Confinement,
    stop: threading.Event | None = None,
    files: Mapping[str, str] | None = None,
    archive: SourceArchive | None = None,
    collect: Sequence[str] = (),
    output_limit_bytes: int = 65536,
) -> SandboxCall:
    """Calls `function(argument, workdir)` in a sandboxed child: a fork of this process that takes
    the run's own uid, budgets, seccomp filter and work directory (with `files` and `archive`
    written into it) exactly as `run_sandboxed`'s children do, and never execs. What the function
    returns must be JSON; it comes back as `value`. The function may start programs of its own
    (they stay inside the same boundary); it must not take locks another thread of this process
    may hold at the fork (no logging, no imports).

    Raises TaskFailure: one the function raised (type, message and result kept); `Timeout`;
    one naming the budget the child went past (`MemoryLimitExceeded`, `DiskLimitExceeded`,
    `CpuTimeLimitExceeded`; a MemoryError in the function is the memory budget); what writing
    `files` or unpacking `archive` raises. Raises TaskStopped when `stop` was set, and
    RuntimeError when the function failed otherwise (a worker fault: the task is retried).
    """
    confinement = confinement or Confinement()
    with _sandbox_dir(confinement) as workdir:
        jail = _Jail(sys.executable, confinement, timeout_seconds, files or {}, archive, (function, argument))
        env = child_environment(workdir)
        run = _spawn(
            jail, [sys.executable], workdir, env, None, timeout_seconds, output_limit_bytes, stop, collect
        )
    if run.stopped:
        raise TaskStopped("the task was stopped before it finished")
    failure = budget_failure(run, "the task")
    if failure is not None:
        raise failure
    if run.timed_out:
        raise TaskFailure("Timeout", f"the task did not finish within {timeout_seconds:g} s and was killed")
    if run.exit_code != 0 or run.value is _NO_VALUE:
        said = run.stderr.strip()[-_UNPARSED_STDERR_CHARS:]
        raise RuntimeError(
            f"the sandboxed function ended with exit code {run.exit_code} and no result: {said}"
        )
    return SandboxCall(run.value, run.files, run.stdout, run.stderr, run.duration_ms)


@contextlib.contextmanager
def _sandbox_dir(confinement: Confinement) -> Iterator[Path]:
    root = scratch_root(confinement)
    if confinement.scratch_root is not None:
        os.makedirs(root, mode=0o711, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="mistersmith-run-", dir=root)).resolve()
    try:
        yield workdir
    finally:
        remove_tree(workdir)


def scratch_root(confinement: Confinement) -> str:
    """Where run directories are made: the configured root, else `_RUNS_DIR` in the system's
    temporary directory, made on first use (that directory itself when what is at the path is not
    a plain directory of this user's that only it may write to)."""
    if confinement.scratch_root is not None:
        return confinement.scratch_root
    temp = tempfile.gettempdir()
    root = os.path.join(temp, _RUNS_DIR)
    try:
        os.mkdir(root, 0o700)
        # Not the umask's: children pass through to their own directory, and list nothing here.
        os.chmod(root, 0o711)  # noqa: S103 - search only, for children
    except FileExistsError:
        pass
    except OSError:
        return temp
    with contextlib.suppress(OSError):
        info = os.lstat(root)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o022:
            return root
    return temp


def temp_roots(confinement: Confinement) -> tuple[str, ...]:
    """The directories a run's uid may have left entries in besides its own: the shared temporary
    ones and the scratch root (a child may open its directory there to others)."""
    # Its real path: entries are named from it, and the run's own directory is told apart by name.
    return _temp_roots_at(os.path.realpath(scratch_root(confinement)))


def _temp_roots_at(real_scratch_root: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*SHARED_TEMP_DIRS, real_scratch_root)))


def _spawn(
    jail: _Jail,
    argv: list[str],
    workdir: Path,
    child_env: dict[str, str],
    stdin: str | None,
    timeout_seconds: float,
    output_limit_bytes: int,
    stop: threading.Event | None,
    collect: Sequence[str],
) -> SandboxResult:
    wanted = [_collectable(relpath) for relpath in collect]
    stdin_bytes = None if stdin is None else _encoded(stdin, "stdin")
    confinement = jail.confinement
    # The run directory is resolved: its parent is the scratch root's real path, not looked up again.
    roots = _temp_roots_at(str(workdir.parent))
    with leased_account(confinement) as account:
        if account is not None:
            os.chown(workdir, *account)
        budget = _Budget(
            workdir, account[0] if account else None, confinement, jail.inline is not None, roots
        )
        result = _run(
            argv,
            workdir,
            child_env,
            stdin_bytes,
            output_limit_bytes,
            stop,
            replace(jail, account=account),
            budget,
        )
        shared_bytes = 0
        if account is not None:
            verified = result.swept if result.swept is not None else _kill_as(account[0], confinement)
            # One scan of the shared directories serves the disk budget and the purge.
            leftovers = [path for path in _shared_temp_entries_of(account[0], roots) if path != str(workdir)]
            shared_bytes = sum(_tree_bytes(path) for path in leftovers)
            for path in leftovers:
                remove_tree(path)
            _killed[account[0]] = verified
        if result.report is not None:
            result = _with_report(result, result.report, argv, child_env)
        if result.exceeded is None and budget.disk_exceeded(shared_bytes):
            result = replace(result, exceeded="disk")
        owner = account[0] if account else None
        collected = {
            relpath: data
            for relpath, parts in zip(collect, wanted, strict=True)
            if (data := _read_back(workdir, parts, confinement.max_file_bytes, owner)) is not None
        }
        # Removed while the lease is held, so that its end does not take the directory for a leftover.
        remove_tree(workdir)
    return replace(result, files=collected, report=None)


def _with_report(
    result: SandboxResult, report: bytes, argv: list[str], env: Mapping[str, str]
) -> SandboxResult:
    """The result with what the child reported on its own channel (a failure to prepare, or a value)."""
    try:
        message = json.loads(report)
    except ValueError:
        return result
    if "exec_errno" in message:
        raise _exec_failure(message["exec_errno"], argv[0], env)
    if "failure" in message:
        failure = message["failure"]
        raise TaskFailure(failure["type"], failure["message"], result=failure.get("result"))
    if "exceeded" in message:
        return replace(result, exceeded=message["exceeded"])
    if "value" in message:
        return replace(result, value=message["value"])
    if "error" in message:
        raise RuntimeError(f"the sandboxed child failed before it ran: {message['error']}")
    return result


def _run(
    argv: list[str],
    workdir: Path,
    child_env: dict[str, str],
    stdin_bytes: bytes | None,
    output_limit_bytes: int,
    stop: threading.Event | None,
    jail: _Jail,
    budget: _Budget,
) -> SandboxResult:
    started = time.monotonic()
    account = jail.account
    _seccomp_filter(jail.confinement.allow_network)  # built here, so the child only installs it
    report_read, report_write = os.pipe()
    jail = replace(jail, report_fd=report_write)
    helper = None if jail.inline or jail.files or jail.archive else _exec_helper(jail.confinement)
    try:
        # The argv list goes to execve without a shell: running untrusted commands is the point.
        process = subprocess.Popen(
            **_start_options(jail, argv, helper),
            cwd=workdir,
            env=child_env,
            stdin=subprocess.DEVNULL if stdin_bytes is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            shell=False,
            # Unbuffered: the pipes are read and written by descriptor (no isatty, no lseek per pipe).
            bufsize=0,
            close_fds=True,
            start_new_session=True,
        )
    except OSError as exc:
        os.close(report_read)
        failure = _exec_failure(exc.errno, argv[0], child_env)
        if isinstance(failure, TaskFailure):
            raise failure from exc
        raise
    finally:
        os.close(report_write)

    # Popen was given PIPE for these, so they are never None.
    stdout, stderr = cast(IO[bytes], process.stdout), cast(IO[bytes], process.stderr)
    report = os.fdopen(report_read, "rb", buffering=0)
    outputs = [
        _Collector(stdout, output_limit_bytes),
        _Collector(stderr, output_limit_bytes),
        _Collector(report, jail.confinement.max_file_bytes),
    ]
    # Served from this thread while it waits: a reader thread's start was a fixed cost of each run.
    pipes = _Pipes(outputs, None if stdin_bytes is None else cast(IO[bytes], process.stdin), stdin_bytes)
    ending: str | None = None
    try:
        ending = _wait_for_exit(process, started + jail.timeout_seconds, stop, budget, pipes)
        duration_ms = round((time.monotonic() - started) * 1000)
    finally:
        # Before reaping, so the group id cannot have been reused: leftovers die with the run.
        _kill_group(process.pid)
        if account is not None and ending not in ("exited", None):
            _kill_as(account[0], jail.confinement)  # a run past a budget stops now, not at its lease's end
        process.wait()
        pipes.drain(time.monotonic() + _DRAIN_GRACE_SECONDS)
        for pipe in (stdout, stderr, report):
            pipe.close()

    exceeded = ending if ending in BUDGET_ERRORS else None
    if exceeded is None and process.returncode == -signal.SIGXCPU:
        exceeded = "cpu"
    said, swept = bytes(outputs[2].kept), None
    if helper is not None and account is not None:
        said, swept = _split_verdict(said)
    return SandboxResult(
        exit_code=process.returncode,
        stdout=outputs[0].text(),
        stderr=outputs[1].text(),
        truncated=any(output.truncated for output in outputs[:2]),
        duration_ms=duration_ms,
        timed_out=ending == "deadline",
        stopped=ending == "stopped",
        exceeded=exceeded,
        report=said or None,
        swept=swept,
    )


def _split_verdict(report: bytes) -> tuple[bytes, bool | None]:
    """The report without the supervising exec helper's verdict line, and the verdict (None when
    there is none: the helper did not live to sweep)."""
    head, newline, last = report.rstrip(b"\n").rpartition(b"\n")
    if not newline or last not in _VERDICTS:
        return report, None
    return head, _VERDICTS[last]


def _start_options(jail: _Jail, argv: list[str], helper: str | None) -> dict[str, Any]:
    """How Popen starts the child: through the exec `helper` when there is one (the child only
    execs, and CPython then vforks: nothing of the worker is copied; with a uid of its own the
    helper stays as the program's parent, see sandbox_exec.c), else by a fork that runs
    `_Jail.enter` (it writes the payload's files or runs an inline function as the child's uid)."""
    account = jail.account
    if helper is None:
        return {
            "args": argv,
            "executable": jail.executable,
            "user": account[0] if account else None,
            "group": account[1] if account else None,
            "extra_groups": [] if account else None,
            # Runs after the uid change: limits, the filter, the files; see _Jail.enter.
            "preexec_fn": jail.enter,
        }
    seccomp = _seccomp_filter(jail.confinement.allow_network)
    # The supervising helper is one of the uid's processes: the program keeps its whole allowance.
    limits = _rlimits(jail.confinement, jail.timeout_seconds, account is not None, helpers=1)
    return {
        "args": [
            helper,
            "exec",
            str(account[0] if account else -1),
            str(jail.report_fd),
            seccomp.program.hex() if seccomp is not None else "-",
            str(len(limits)),
            *(str(number) for limit in limits for number in limit),
            jail.executable,
            *argv,
        ],
        "executable": helper,
        "pass_fds": (jail.report_fd,),
    }


def _exec_helper(confinement: Confinement) -> str | None:
    """The exec helper's path, if it is there (None: children are forked, as before it existed)."""
    path = confinement.exec_helper
    if not path or not sys.platform.startswith("linux"):
        return None
    if os.access(path, os.X_OK):
        return path
    _warn_once(path)
    return None


@functools.cache
def _warn_once(path: str) -> None:
    logger.warning(
        "sandbox exec helper not found: children are forked from the worker (same boundary, slower start)",
        extra={"exec_helper": path},
    )


def _exec_failure(number: int | None, name: str, env: Mapping[str, str]) -> Exception:
    """What a failed exec of the task's program means: the payload's fault, or the worker's."""
    if number in (errno.ENOENT, errno.ENOTDIR):
        return TaskFailure(
            "CommandNotFound", f"executable {name!r} was not found (PATH={env.get('PATH', SAFE_PATH)})"
        )
    if number in _NOT_EXECUTABLE_ERRNOS:
        return TaskFailure(
            "CommandNotExecutable", f"executable {name!r} cannot be run: {os.strerror(number)}"
        )
    # Out of processes, memory or descriptors: the worker's trouble, worth a retry.
    return OSError(number, f"starting {name!r} failed: {os.strerror(number or 0)}")


def _wait_for_exit(
    process: subprocess.Popen[bytes],
    deadline: float,
    stop: threading.Event | None,
    budget: _Budget,
    pipes: _Pipes,
) -> str:
    """How the wait ended: "exited" (the child is left unreaped where possible), "deadline",
    "stopped", or the name of the budget the run went past. `pipes` are served meanwhile.

    Where Linux offers a pidfd the wait wakes the moment the child exits; elsewhere it polls with
    a growing step. `stop` is looked at every step, the budgets every `_BUDGET_POLL_SECONDS`."""
    pidfd = _open_pidfd(process.pid)
    if pidfd is not None:
        pipes.wake_on(pidfd)
    delay = 0.0005
    next_poll = time.monotonic() + _BUDGET_POLL_SECONDS
    try:
        while not _has_exited(process):
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                return "deadline"
            if stop is not None and stop.is_set():
                return "stopped"
            if now >= next_poll:
                exceeded = budget.exceeded()
                if exceeded is not None:
                    return exceeded
                next_poll = time.monotonic() + _BUDGET_POLL_SECONDS
            if pidfd is None:
                pipes.serve(min(delay, remaining))
                delay = min(delay * 2, _MAX_WAIT_STEP_SECONDS)
            else:
                pipes.serve(min(_MAX_WAIT_STEP_SECONDS, remaining))
        return "exited"
    finally:
        if pidfd is not None:
            pipes.forget(pidfd)
            os.close(pidfd)


def _open_pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux, or a kernel before 5.3
        return None


def _has_exited(process: subprocess.Popen[bytes]) -> bool:
    if not hasattr(os, "waitid"):
        # Without waitid (macOS) poll() reaps, so the later killpg is best effort only.
        return process.poll() is not None
    try:
        # WNOWAIT keeps the zombie, and with it the process group id, until we have killed the group.
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class _Pipes:
    """The child's pipes, served by the thread that waits for it: each output read to its end
    (kept up to its limit, the rest discarded so the child never blocks), stdin written from
    `data` without blocking (a child that never reads it cannot hold the wait up)."""

    def __init__(self, outputs: list[_Collector], stdin: IO[bytes] | None, data: bytes | None) -> None:
        self._selector = selectors.DefaultSelector()
        for output in outputs:
            self._selector.register(output.fd, selectors.EVENT_READ, output)
        self._stdin = stdin
        self._pending = memoryview(data or b"")
        if stdin is not None:
            os.set_blocking(stdin.fileno(), False)
            self._selector.register(stdin.fileno(), selectors.EVENT_WRITE)

    def wake_on(self, fd: int) -> None:
        """Makes `serve` return as soon as `fd` is readable (a pidfd: at the child's exit)."""
        self._selector.register(fd, selectors.EVENT_READ)

    def forget(self, fd: int) -> None:
        self._selector.unregister(fd)

    def serve(self, timeout: float) -> None:
        """Waits up to `timeout` for a pipe (or the `wake_on` descriptor) to be ready, and serves
        the pipes that are."""
        for key, _events in self._selector.select(timeout):
            if isinstance(key.data, _Collector):
                if not key.data.take():
                    self._selector.unregister(key.fd)
            elif self._stdin is not None and key.fd == self._stdin.fileno():
                self._write()

    def drain(self, deadline: float) -> None:
        """Closes stdin and reads the outputs to their end, until `deadline` (only a process that
        escaped the group, by setsid, can still hold a pipe then: it is no longer listened to)."""
        self._close_stdin()
        try:
            while self._selector.get_map() and (remaining := deadline - time.monotonic()) > 0:
                self.serve(remaining)
        finally:
            self._selector.close()

    def _write(self) -> None:
        stdin = cast(IO[bytes], self._stdin)
        try:
            self._pending = self._pending[os.write(stdin.fileno(), self._pending[:_CHUNK_BYTES]) :]
        except BlockingIOError:
            return
        except OSError:
            self._pending = memoryview(b"")  # the child closed its stdin or exited: the rest is not needed
        if not self._pending:
            self._close_stdin()

    def _close_stdin(self) -> None:
        if self._stdin is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._stdin.fileno())
        with contextlib.suppress(OSError):
            self._stdin.close()
        self._stdin = None


class _Collector:
    """One pipe read to EOF, keeping the first `limit` bytes and discarding the rest."""

    def __init__(self, pipe: IO[bytes], limit: int) -> None:
        self.fd = pipe.fileno()
        self._limit = limit
        self.kept = bytearray()
        self.truncated = False

    def take(self) -> bool:
        """Reads what the pipe holds; False at its end (EOF or an error)."""
        try:
            chunk = os.read(self.fd, _CHUNK_BYTES)
        except OSError:
            return False
        if not chunk:
            return False
        room = self._limit - len(self.kept)
        if room > 0:
            self.kept += chunk[:room]
        if len(chunk) > room:
            self.truncated = True
        return True

    def text(self) -> str:
        return self.kept.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class _Jail:
    """What the child does between fork and exec, everything prepared in the parent."""

    executable: str
    confinement: Confinement
    timeout_seconds: float
    files: Mapping[str, str]
    archive: SourceArchive | None
    inline: tuple[Callable[[Any, Path], Any], Any] | None = None
    account: tuple[int, int] | None = None
    report_fd: int = -1

    def enter(self) -> None:
        """Runs in the child as its user (after Popen's setuid, before exec); never raises."""
        try:
            self._enter()
        except BaseException as error:
            self._report(_failure_message(error))
            os._exit(_CHILD_FAILED)

    def _enter(self) -> None:
        if self.inline is not None:
            # A child that never execs keeps nothing of the worker's open: its sockets, other runs' pipes.
            os.closerange(3, self.report_fd)
            os.closerange(self.report_fd + 1, _MAX_FD)
        limits = _rlimits(self.confinement, self.timeout_seconds, self.account is not None)
        # A fork still maps the worker: the address-space backstop is on top of that until exec.
        _set_limits(limits, _address_space_now() if self.inline or self.files or self.archive else 0)
        seccomp = _seccomp_filter(self.confinement.allow_network)
        if seccomp is not None:
            seccomp.install()
        # A file past the size limit is an error to report here, not a signal that kills silently.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        workdir = Path.cwd()
        _write_files(workdir, self.files)
        if self.archive is not None:
            unpack_into(
                self.archive.data,
                workdir,
                unpacked_limit_bytes=self.archive.unpacked_limit_bytes,
                text_only=self.archive.text_only,
            )
        if self.inline is not None:
            function, argument = self.inline
            self._report({"value": function(argument, workdir)})
            os._exit(0)
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        _set_limits(limits, 0)

    def _report(self, message: dict[str, Any]) -> None:
        view = memoryview(json.dumps(message).encode())
        with contextlib.suppress(OSError):
            while view:
                view = view[os.write(self.report_fd, view) :]


def _failure_message(error: BaseException) -> dict[str, Any]:
    if isinstance(error, TaskFailure):
        return {"failure": {"type": error.error_type, "message": error.message, "result": error.result}}
    if isinstance(error, MemoryError):
        return {"exceeded": "memory"}
    if isinstance(error, OSError) and error.errno in (errno.EFBIG, errno.ENOSPC, errno.EDQUOT):
        return {"exceeded": "disk"}
    return {"error": f"{type(error).__name__}: {error}"}


@functools.cache
def _seccomp_filter(allow_network: bool) -> SeccompFilter | None:
    # Only Linux has seccomp: elsewhere (a developer's Mac) the sandbox is no boundary at all.
    return build_filter(allow_network) if sys.platform.startswith("linux") else None


def _address_space_now() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()
    except OSError:  # no /proc (macOS): no address-space limit to make room in either
        return 0


def _set_limits(limits: tuple[tuple[int, int, int], ...], headroom: int) -> None:
    for which, soft, hard in limits:
        if which == resource.RLIMIT_AS and headroom:
            soft, hard = soft + headroom, hard + headroom
        resource.setrlimit(which, (soft, hard))


def _rlimits(
    confinement: Confinement, timeout_seconds: float, own_user: bool, helpers: int = 0
) -> tuple[tuple[int, int, int], ...]:
    cpu = confinement.cpu_seconds or math.ceil(timeout_seconds) + 1
    limits = [
        # By default CPU time only trails the wall clock; SIGXCPU first, SIGKILL a second later.
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        # A loose backstop: the budget is the run's resident memory, polled (see _Budget).
        (resource.RLIMIT_AS, confinement.address_space_limit, confinement.address_space_limit),
        # A write past it raises SIGXFSZ: a runaway output file stops there.
        (resource.RLIMIT_FSIZE, confinement.max_file_bytes, confinement.max_file_bytes),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if own_user:
        # RLIMIT_NPROC counts every process of the user: meaningful only for a user of our own.
        processes = confinement.max_processes + helpers
        limits.append((resource.RLIMIT_NPROC, processes, processes))
    return tuple(limits)


class _Budget:
    """Polls a run's resident memory (all processes of its uid, or of its session without one, and
    its System V segments) and its disk (the work directory and the uid's files in the shared
    temporary directories) against the confinement's budgets."""

    def __init__(
        self, workdir: Path, uid: int | None, confinement: Confinement, forked: bool, roots: tuple[str, ...]
    ) -> None:
        self._workdir = workdir
        self._uid = uid
        self._confinement = confinement
        # The run's temp_roots, found once: each poll would otherwise try to make the scratch root and resolve it.
        self._temp_roots = roots
        # A forked child starts out sharing the worker's pages, which are not the run's.
        self._memory_allowed = confinement.memory_bytes + (_resident_of(os.getpid()) if forked else 0)
        self._session: int | None = None

    def watch_session(self, sid: int) -> None:
        self._session = sid

    def exceeded(self) -> str | None:
        if self._memory() > self._memory_allowed:
            return "memory"
        return "disk" if self.disk_exceeded() else None

    def disk_exceeded(self, shared_bytes: int | None = None) -> bool:
        """Whether the run's disk is past its budget; `shared_bytes`, when given, is what it holds in
        the shared temporary directories (else they are measured here)."""
        used = _tree_bytes(self._workdir)
        if shared_bytes is None and self._uid is not None:
            workdir = str(self._workdir)
            shared_bytes = sum(
                _tree_bytes(path)
                for path in _shared_temp_entries_of(self._uid, self._temp_roots)
                if path != workdir
            )
        return used + (shared_bytes or 0) > self._confinement.disk_bytes

    def _memory(self) -> int:
        if self._uid is None:
            return 0  # without a user of its own the run's processes cannot be told apart cheaply
        total = sum(_resident_of(pid) for pid in _live_processes_of(self._uid))
        return total + _shm_bytes_of(self._uid)


def _resident_of(pid: int) -> int:
    """Anonymous and shared-memory resident bytes (RssAnon + RssShmem): what the process holds
    that the kernel cannot drop. /proc/<pid>/status needs no ptrace right, unlike smaps."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            text = status.read()
    except OSError:
        return 0
    total = 0
    for name in (b"RssAnon", b"RssShmem"):
        value = _status_field(text, name).split()
        if value:
            total += int(value[0]) * 1024
    return total


def _shm_bytes_of(uid: int) -> int:
    try:
        lines = Path("/proc/sysvipc/shm").read_text().splitlines()
    except OSError:
        return 0
    header = lines[0].split() if lines else []
    if "size" not in header or "uid" not in header:
        return 0
    size, owner = header.index("size"), header.index("uid")
    return sum(int(row[size]) for line in lines[1:] if (row := line.split()) and int(row[owner]) == uid)


def _tree_bytes(root: Path | str) -> int:
    """Bytes a tree holds on disk, links not followed; each entry counts at least a block, so that
    a flood of empty files or directories is held to the budget too."""
    total = 0
    pending = [str(root)]
    while pending:
        path = pending.pop()
        try:
            info = os.lstat(path)
        except OSError as error:
            if error.errno == errno.ENAMETOOLONG:
                return _UNMEASURABLE  # a tree too deep to walk by path is over any budget
            continue
        total += max(info.st_blocks * 512, _MIN_ENTRY_BYTES)
        if stat.S_ISDIR(info.st_mode):
            with contextlib.suppress(OSError), os.scandir(path) as entries:
                pending.extend(entry.path for entry in entries)
    return total


def _allowed_executable(name: str, env: Mapping[str, str], workdir: Path, confinement: Confinement) -> str:
    """The real path `name` runs as, if that is one of the allowed executables."""
    candidate: str | None
    if "/" in name:
        given = str(workdir / name) if not os.path.isabs(name) else name
        candidate = given if os.path.exists(given) else None
    else:
        candidate = shutil.which(name, path=env.get("PATH", SAFE_PATH))
    if candidate is None:
        raise TaskFailure(
            "CommandNotFound", f"executable {name!r} was not found (PATH={env.get('PATH', SAFE_PATH)})"
        )
    resolved = os.path.realpath(candidate)
    if resolved not in _allowed_paths(confinement.allowed_executables):
        names = ", ".join(confinement.allowed_executables)
        raise TaskFailure(
            "ExecutableNotAllowed", f"{name!r} ({resolved}) is not an allowed executable; allowed: {names}"
        )
    return resolved


def _allowed_paths(entries: tuple[str, ...]) -> frozenset[str]:
    """The real paths of the allowed executables. Kept once every entry is found (the image's root
    file system is read-only; resolving them took 0.1 ms of each run), found again at each run
    while one is missing, so that one installed later is allowed."""
    known = _allowed.get(entries)
    if known is not None:
        return known
    found = [entry if os.path.isabs(entry) else shutil.which(entry, path=SAFE_PATH) for entry in entries]
    paths = frozenset(os.path.realpath(path) for path in found if path)
    if all(path and os.path.exists(path) for path in found):
        _allowed[entries] = paths
    return paths


@contextlib.contextmanager
def leased_account(confinement: Confinement) -> Iterator[tuple[int, int] | None]:
    """The (uid, gid) the child of this run gets when the worker is root (None when it is not):
    one no other run in flight on this host holds, so that runs cannot read each other's files
    or signal each other. Uids are handed out in rotation. When the lease ends, everything of the
    uid is ended (`_end_tenancy`); a uid that cannot be emptied is quarantined."""
    if os.geteuid() != 0:
        yield None
        return
    uid, descriptor = _take_account(confinement)
    try:
        yield uid, uid
    finally:
        if _end_tenancy(uid, confinement):
            os.pwrite(descriptor, _CLEAN, 0)
            os.close(descriptor)
        else:
            _quarantine(uid, descriptor)


def _take_account(confinement: Confinement) -> tuple[int, int]:
    base = confinement.child_uid_base
    locks = Path(tempfile.gettempdir()) / _ACCOUNT_LOCKS
    locks.mkdir(mode=0o700, exist_ok=True)
    start = next(_rotation)
    for offset in range(_ACCOUNTS):
        uid = base + (start + offset) % _ACCOUNTS
        if uid in _quarantined:
            continue
        descriptor = os.open(locks / str(uid), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            # One lock per open file: other threads and other workers on the host skip this uid.
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue
        # The lock file says "clean" once a lease ended with its kill and purge; else its holder
        # died, or was of a release before the mark: what it left is not the new tenant's to find.
        if os.pread(descriptor, len(_CLEAN), 0) != _CLEAN and not _end_tenancy(uid, confinement):
            _quarantine(uid, descriptor)
            continue
        os.pwrite(descriptor, _IN_USE, 0)
        return uid, descriptor
    raise RuntimeError(f"all {_ACCOUNTS} accounts for sandboxed children from uid {base} are in use")


def _quarantine(uid: int, descriptor: int) -> None:
    """Never leases `uid` again in this process; its lock stays held, so no worker on the host does."""
    _quarantined.add(uid)
    _quarantine_locks.append(descriptor)
    logger.error("sandbox uid quarantined: its processes could not all be killed", extra={"uid": uid})


def _end_tenancy(uid: int, confinement: Confinement) -> bool:
    """Ends everything `uid` left: its processes, its System V IPC objects, its files in the shared
    temporary directories (POSIX shared memory and queues included). True when nothing of it runs."""
    for _ in range(_CLEANUP_ATTEMPTS):
        # The kill at a run's end that found nothing left needs no scan: the run's processes had no
        # privilege to become what kill(-1) cannot reach. Any other tenancy (a stale lock) is scanned.
        verified = _killed.pop(uid, None)
        if verified:
            return True  # killed and purged at the run's end, with nothing of it left to leave more
        if verified is None:
            _kill_as(uid, confinement)
        _purge_shared_temp(uid, temp_roots(confinement))
        if not any(True for _ in _live_processes_of(uid)):
            return True
    return False


def _kill_as(uid: int, confinement: Confinement) -> bool:
    """Kills every process of `uid` from a helper that becomes `uid` and repeats kill(-1, SIGKILL)
    until none is left: a fork cannot complete with a kill pending, so pid churn cannot evade it.
    The helper then removes the uid's System V IPC objects, which only their owner (or
    CAP_SYS_ADMIN, which the container lacks) may remove. True when the kill itself saw nothing
    of the uid left (kill(-1) found no process to signal); False when only a scan can tell."""
    helper = _exec_helper(confinement)
    if helper is not None:
        # Started by vfork (no preexec_fn, no user): a small static program, not a copy of the worker.
        done = subprocess.run(  # noqa: S603 - our own helper, fixed arguments
            [helper, "kill", str(uid)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=True,
            check=False,
        )
        return done.returncode == 0
    # The helper never execs: its work is all in _kill_everything, which ends with os._exit.
    helper_process = subprocess.Popen(
        [sys.executable],
        user=uid,
        group=uid,
        extra_groups=[],
        preexec_fn=_kill_everything,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
    )
    helper_process.wait()
    return False


def _kill_everything() -> None:
    try:
        for _ in range(_KILL_PASSES):
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                break
        _remove_ipc_objects(os.getuid())
    finally:
        os._exit(0)


def _remove_ipc_objects(uid: int) -> None:
    removers: dict[str, Callable[[int], object]] = {
        "shm": lambda ident: _LIBC.shmctl(ident, _IPC_RMID, None),
        "msg": lambda ident: _LIBC.msgctl(ident, _IPC_RMID, None),
        "sem": lambda ident: _LIBC.semctl(ident, 0, _IPC_RMID),
    }
    for kind, remove in removers.items():
        try:
            lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()
        except OSError:
            continue
        header = lines[0].split() if lines else []
        if "uid" not in header:
            continue
        ident, owner = 1, header.index("uid")
        for line in lines[1:]:
            row = line.split()
            if row and int(row[owner]) == uid:
                remove(int(row[ident]))


def _shared_temp_entries_of(uid: int, roots: Sequence[str] | None = None) -> Iterator[str]:
    """The uid's entries in the directories `roots` (the shared temporary directories when None):
    those it owns, at the top or inside any directory there that everyone may write to (only
    there could it have made them). A directory unchanged since its last listing is not listed
    again (see _listing)."""
    pending: list[tuple[str, os.stat_result]] = []
    for path in SHARED_TEMP_DIRS if roots is None else roots:
        with contextlib.suppress(OSError):
            info = os.stat(path)
            if stat.S_ISDIR(info.st_mode):
                pending.append((path.rstrip("/"), info))
    visited = set()
    started = time.time_ns()  # before every listing of this walk
    clock_offset = started - time.monotonic_ns()
    while pending:
        path, info = pending.pop()
        visited.add(path)
        listing, fresh = _listing(path, info, started, clock_offset)
        for name, owner in listing.owners.items():
            if owner == uid:
                yield f"{path}/{name}"
        # Each directory's stat is new (from this listing, or taken now): its mode may have changed.
        for name in listing.directories:
            inner_info = fresh.get(name)
            if inner_info is None:
                try:
                    inner_info = os.lstat(f"{path}/{name}")
                except OSError:
                    continue
            if (
                inner_info.st_mode & stat.S_IWOTH
                and inner_info.st_uid != uid
                and stat.S_ISDIR(inner_info.st_mode)
            ):
                pending.append((f"{path}/{name}", inner_info))
    for path in list(_listings):
        if path not in visited:
            _listings.pop(path, None)


@dataclass(frozen=True)
class _Listing:
    """What a directory held when it was listed: each entry's owner, and which were directories."""

    # The directory's (st_dev, st_ino, st_mtime_ns) before the listing: any entry made, removed or
    # renamed since moves the mtime (only a directory's owner can set it back).
    identity: tuple[int, int, int]
    # The wall clock less the monotonic one at the listing: it falls only when the wall clock is set back.
    clock_offset_ns: int
    owners: Mapping[str, int]
    directories: tuple[str, ...]


def _listing(
    path: str, info: os.stat_result, started: int, clock_offset: int
) -> tuple[_Listing, dict[str, os.stat_result]]:
    """The entries of the directory `path` (`info`: its stat, taken before this call; `started`:
    the wall clock before it, in ns, and `clock_offset` the monotonic clock's distance to it), and
    the stat of each directory among them when they were listed now (empty for a reused listing).

    A listing is reused while the directory's identity holds, if its mtime was older than the
    listing by _SETTLED_NS: a change after it then moves the mtime however coarse the file
    system's clock (the local kernel's), unless the wall clock was set back meanwhile."""
    identity = (info.st_dev, info.st_ino, info.st_mtime_ns)
    known = _listings.get(path)
    if (
        known is not None
        and known.identity == identity
        and clock_offset >= known.clock_offset_ns - _CLOCK_SLACK_NS
    ):
        return known, {}
    owners: dict[str, int] = {}
    fresh: dict[str, os.stat_result] = {}
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return _Listing(identity, clock_offset, {}, ()), {}
    try:
        opened = os.fstat(descriptor)
        # Another directory put at this path since its stat (the owner of the one it is in may move
        # it): its entries are not this one's, and a listing kept under this one's identity would hide them.
        if (opened.st_dev, opened.st_ino) != identity[:2]:
            return _Listing(identity, clock_offset, {}, ()), {}
        # Entries stat'ed by name in the open directory: no path to resolve again, nor to swap.
        for entry in list(os.scandir(descriptor)):
            try:
                entry_info = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # gone since the listing, which moved the mtime
            owners[entry.name] = entry_info.st_uid
            if stat.S_ISDIR(entry_info.st_mode):
                fresh[entry.name] = entry_info
    except OSError:
        return _Listing(identity, clock_offset, {}, ()), {}
    finally:
        os.close(descriptor)
    listing = _Listing((opened.st_dev, opened.st_ino, opened.st_mtime_ns), clock_offset, owners, tuple(fresh))
    if opened.st_mtime_ns < started - _SETTLED_NS:
        _listings[path] = listing
    else:
        _listings.pop(path, None)
    return listing, fresh


def _purge_shared_temp(uid: int, roots: Sequence[str]) -> None:
    for path in list(_shared_temp_entries_of(uid, roots)):
        remove_tree(path)


def seal_shared_temp(directories: Sequence[str] = SEALED_TEMP_DIRS) -> list[str]:
    """Takes write permission on `directories` from everyone but their owner (root), so that
    children can leave nothing there; the directories it changed. For the container, where the
    worker owns them; on a development machine the purge at the end of each lease does instead.
    /dev/shm and /dev/mqueue stay open by default: POSIX semaphores (Python's multiprocessing
    locks) live there and glibc ignores TMPDIR for them; what a run leaves there is counted in its
    disk budget and purged when it ends."""
    sealed = []
    for path in directories:
        with contextlib.suppress(OSError):
            info = os.stat(path)
            if info.st_uid == os.geteuid() and info.st_mode & stat.S_IWOTH:
                os.chmod(path, 0o711)  # noqa: S103 - narrower than it was: children may only pass through
                sealed.append(path)
    return sealed


def _live_processes_of(uid: int) -> Iterator[int]:
    # /proc/<pid>/status, not the directory's owner: a non-dumpable process's directory is root's.
    wanted = str(uid).encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            descriptor = os.open(f"{entry.path}/status", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            # State and Uid are among the first lines: the head of the file is enough.
            head = os.read(descriptor, _STATUS_HEAD_BYTES)
        except OSError:
            continue
        finally:
            os.close(descriptor)
        if wanted not in _status_field(head, b"Uid").split():
            continue
        state = _status_field(head, b"State")[:1]
        # A zombie leader whose other threads run on (its main thread called exit, not exit_group) lives.
        if state not in (b"Z", b"X", b"") or (state == b"Z" and _has_other_threads(entry.path)):
            yield int(entry.name)


def _has_other_threads(proc_path: str) -> bool:
    try:
        return len(os.listdir(f"{proc_path}/task")) > 1
    except OSError:
        return False


def _status_field(head: bytes, name: bytes) -> bytes:
    start = head.find(b"\n" + name + b":")
    if start < 0:
        return b""
    start += len(name) + 2
    end = head.find(b"\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


def _checked_argv(command: Sequence[str]) -> list[str]:
    argv = list(command)
    if not argv or not argv[0]:
        raise TaskFailure("InvalidPayload", "command must name an executable")
    for index, argument in enumerate(argv):
        if "\0" in argument:
            raise TaskFailure("InvalidPayload", f"command argument {index} contains a NUL character")
        _encoded(argument, f"command argument {index}")
    return argv


def _encoded(text: str, what: str, errors: str = "strict") -> bytes:
    try:
        return text.encode("utf-8", errors)
    except UnicodeEncodeError as exc:
        raise TaskFailure("InvalidPayload", f"{what} is not valid Unicode text: {exc.reason}") from None


def _write_files(workdir: Path, files: Mapping[str, str]) -> None:
    written: set[Path] = set()
    for relpath, text in files.items():
        if "\0" in relpath:
            raise TaskFailure("InvalidPayload", f"file path {relpath!r} contains a NUL character")
        _encoded(relpath, "a file path")
        try:
            target = (workdir / relpath).resolve()
        except OSError as exc:
            raise TaskFailure(
                "InvalidPayload", f"file path {relpath[:200]!r} cannot be used: {exc.strerror}"
            ) from None
        if target == workdir or not target.is_relative_to(workdir):
            raise TaskFailure("InvalidPayload", f"file path {relpath!r} resolves outside the work directory")
        # Surrogate escapes are the undecodable bytes of an unpacked source archive.
        data = _encoded(text, f"file {relpath!r}", "surrogateescape")
        if target in written:
            raise TaskFailure("InvalidPayload", f"file path {relpath!r} names a file given twice")
        written.add(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
            raise TaskFailure(
                "InvalidPayload", f"file path {relpath!r} collides with another file: {exc.strerror}"
            ) from None
        except OSError as exc:
            if exc.errno == errno.EFBIG:
                raise TaskFailure(
                    "InvalidPayload", f"file {relpath[:200]!r} is over the file size limit"
                ) from None
            if exc.errno not in _INVALID_PATH_ERRNOS:
                raise
            raise TaskFailure(
                "InvalidPayload", f"file path {relpath[:200]!r} cannot be made: {exc.strerror}"
            ) from None


def _collectable(relpath: str) -> tuple[str, ...]:
    parts = PurePosixPath(relpath).parts
    if not parts or "\0" in relpath or parts[0] == "/" or ".." in parts:
        raise ValueError(f"cannot collect {relpath!r}: not a relative path inside the work directory")
    return parts


def _read_back(workdir: Path, parts: tuple[str, ...], limit: int, owner: int | None) -> bytes | None:
    """The file's bytes, or None unless it is a regular file of `owner` within `limit` bytes."""
    # O_NOFOLLOW at every step: the child owns the directory and may have planted links out of it.
    nofollow = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    descriptors: list[int] = []
    try:
        descriptors.append(os.open(workdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        for part in parts[:-1]:
            descriptors.append(os.open(part, nofollow | os.O_DIRECTORY, dir_fd=descriptors[-1]))
        # O_NONBLOCK so that a FIFO in its place cannot hold the worker up.
        descriptors.append(os.open(parts[-1], nofollow | os.O_NONBLOCK, dir_fd=descriptors[-1]))
        info = os.fstat(descriptors[-1])
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        if owner is not None and info.st_uid != owner:
            return None  # a hard link the child made to a file of the worker's
        with open(descriptors[-1], "rb", closefd=False) as file:
            data = file.read(limit + 1)
        return data if len(data) <= limit else None
    except OSError:
        return None
    finally:
        for descriptor in descriptors:
            os.close(descriptor)


def remove_tree(root: Path | str) -> bool:
    """Removes a file or a directory tree without following links and without recursion (a tree
    thousands of levels deep cannot make it raise): the subdirectories of each directory are
    renamed up into the top one until it is flat. False, logged, when something stayed behind;
    never raises, so a failed removal never fails a task."""
    try:
        _remove(str(root))
    except OSError as error:
        if error.errno == errno.ENOENT:
            return True
        logger.warning(
            "a sandbox directory could not be removed", extra={"path": str(root), "error": str(error)}
        )
        return False
    return True


def _remove(root: str) -> None:
    if not stat.S_ISDIR(os.lstat(root).st_mode):
        os.unlink(root)
        return
    # The child may have taken write or search permission away from directories it owned.
    os.chmod(root, 0o700)
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    lifted = itertools.count()
    try:
        while names := os.listdir(top):
            for name in names:
                _empty_one_level(top, name, lifted)
    finally:
        os.close(top)
    os.rmdir(root)


def _empty_one_level(top: int, name: str, lifted: Iterator[int]) -> None:
    """Removes `name` from the directory `top` if it is not a directory or is empty; else moves
    its subdirectories up into `top` and removes its other entries, so the next pass goes on."""
    info = os.lstat(name, dir_fd=top)
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(name, dir_fd=top)
        return
    # A directory (checked without following links; the run's processes are dead, so it stays one).
    os.chmod(name, 0o700, dir_fd=top)
    inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=top)
    try:
        for entry in os.listdir(inner):
            if stat.S_ISDIR(os.lstat(entry, dir_fd=inner).st_mode):
                os.rename(entry, f".lifted-{next(lifted)}-{os.getpid()}", src_dir_fd=inner, dst_dir_fd=top)
            else:
                os.unlink(entry, dir_fd=inner)
    finally:
        os.close(inner)
    with contextlib.suppress(OSError):  # not empty yet: what was lifted into it comes back next pass
        os.rmdir(name, dir_fd=top)
