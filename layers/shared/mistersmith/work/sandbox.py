"""Runs one untrusted child process: an argv list and never a shell, a fresh work directory, an
environment built from scratch, a wall-clock timeout that kills the whole process group, and
stdout / stderr capped at a byte limit.

Every child also gets resource limits (rlimits) and must be an allowed executable; when the
worker is root, each run's child gets an unprivileged uid of its own.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import math
import os
import resource
import select
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import IO, cast

from mistersmith.errors import TaskFailure
from mistersmith.observability import logger
from mistersmith.work.limits import Confinement

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
FORBIDDEN_ENV_PREFIXES = ("AWS_", "ECS_")

# exec failures that the same command would meet again on any worker.
_NOT_EXECUTABLE_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.ENOEXEC, errno.EISDIR, errno.ELOOP, errno.ENAMETOOLONG, errno.E2BIG}
)
_CHUNK_BYTES = 65536
# How often blocked pipe threads look up to see whether they have been told to stop.
_POLL_SECONDS = 0.1
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


def run_sandboxed(
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
) -> SandboxResult:
    """Runs `command` (an argv list, never through a shell) in a fresh temporary directory.

    `files` ({relative path: text}) are written into that directory first; a path that would
    resolve outside it is refused. The child gets `child_environment(workdir, env)`, `stdin`
    (or /dev/null) and its own session, so that on timeout the whole process group is killed
    with SIGKILL; whatever the group left running after a normal exit is killed the same way.
    stdout and stderr are read concurrently and each keeps its first `output_limit_bytes`
    bytes; the rest is read and discarded so that the child never blocks, and `truncated` is
    set. Setting `stop` kills the group early (the result says `stopped`). The directory is
    removed afterwards. `confinement` decides which executables may run and the child's CPU,
    memory, file-size and process limits; a worker running as root hands the child to an
    unprivileged user.

    `collect` names files (relative paths) to read back after the child has exited and before
    the directory goes: each that is a regular file (of the child's user, when there is one), no
    larger than the confinement's `max_file_bytes`, is in the result's `files`; links are never
    followed and anything else is left out.

    Raises ValueError for a `collect` path that is not a plain relative path.
    Raises TaskFailure: `ExecutableNotAllowed` for a command outside the allowlist,
    `CommandNotFound` when the executable does not exist,
    `CommandNotExecutable` when it cannot be executed, `InvalidPayload` for a file path, an
    argument or an environment variable that cannot be used.
    """
    argv = _checked_argv(command)
    wanted = [_collectable(relpath) for relpath in collect]
    stdin_bytes = None if stdin is None else _encoded(stdin, "stdin")
    confinement = confinement or Confinement()
    workdir = Path(tempfile.mkdtemp(prefix="mistersmith-run-")).resolve()
    try:
        _write_files(workdir, files or {})
        child_env = child_environment(workdir, env)
        executable = _allowed_executable(argv[0], child_env, workdir, confinement)
        # Leftovers of the run are killed when the account is given back, before the directory goes.
        with _leased_account(confinement) as account:
            if account is not None:
                _hand_over(workdir, account)
            jail = _Jail(executable, account, _rlimits(confinement, timeout_seconds, account is not None))
            result = _run(
                argv, workdir, child_env, stdin_bytes, timeout_seconds, output_limit_bytes, stop, jail
            )
        if not wanted:
            return result
        owner = account[0] if account else None
        collected = {
            relpath: data
            for relpath, parts in zip(collect, wanted, strict=True)
            if (data := _read_back(workdir, parts, confinement.max_file_bytes, owner)) is not None
        }
        return replace(result, files=collected)
    finally:
        _remove_tree(workdir)


def _run(
    argv: list[str],
    workdir: Path,
    child_env: dict[str, str],
    stdin_bytes: bytes | None,
    timeout_seconds: float,
    output_limit_bytes: int,
    stop: threading.Event | None,
    jail: _Jail,
) -> SandboxResult:
    started = time.monotonic()
    try:
        # The argv list goes to execve without a shell: running untrusted commands is the point.
        process = subprocess.Popen(  # noqa: S603
            argv,
            executable=jail.executable,
            user=jail.account[0] if jail.account else None,
            group=jail.account[1] if jail.account else None,
            extra_groups=[] if jail.account else None,
            # Only setrlimit runs here, after the uid change: nothing that could take a lock.
            preexec_fn=jail.apply_limits,
            cwd=workdir,
            env=child_env,
            stdin=subprocess.DEVNULL if stdin_bytes is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            shell=False,
            close_fds=True,
            start_new_session=True,
        )
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise TaskFailure(
            "CommandNotFound", f"executable {argv[0]!r} was not found (PATH={child_env['PATH']})"
        ) from exc
    except OSError as exc:
        if exc.errno not in _NOT_EXECUTABLE_ERRNOS:
            raise  # Out of processes, memory or descriptors: the worker's trouble, worth a retry.
        raise TaskFailure(
            "CommandNotExecutable", f"executable {argv[0]!r} cannot be run: {exc.strerror}"
        ) from exc

    # Popen was given PIPE for these, so they are never None.
    stdout, stderr = cast(IO[bytes], process.stdout), cast(IO[bytes], process.stderr)
    halt = threading.Event()
    outputs = [_Collector(stdout, output_limit_bytes), _Collector(stderr, output_limit_bytes)]
    threads = [threading.Thread(target=output.run, args=(halt,), daemon=True) for output in outputs]
    if stdin_bytes is not None:
        feed_args = (cast(IO[bytes], process.stdin), stdin_bytes, halt)
        threads.append(threading.Thread(target=_feed, args=feed_args, daemon=True))
    for thread in threads:
        thread.start()

    try:
        exited = _wait_for_exit(process, started + timeout_seconds, stop)
        stopped = not exited and stop is not None and stop.is_set()
        timed_out = not exited and not stopped
        duration_ms = round((time.monotonic() - started) * 1000)
    finally:
        # Before reaping, so the group id cannot have been reused: leftovers die with the run.
        _kill_group(process.pid)
        process.wait()
        _join(threads, halt)
        stdout.close()
        stderr.close()

    return SandboxResult(
        exit_code=process.returncode,
        stdout=outputs[0].text(),
        stderr=outputs[1].text(),
        truncated=any(output.truncated for output in outputs),
        duration_ms=duration_ms,
        timed_out=timed_out,
        stopped=stopped,
    )


def _wait_for_exit(process: subprocess.Popen[bytes], deadline: float, stop: threading.Event | None) -> bool:
    """True once the child has exited (left unreaped where possible), False at the deadline or on stop.

    Where Linux offers a pidfd the wait wakes the moment the child exits; elsewhere it polls with
    a growing step. `stop` is looked at every step either way."""
    pidfd = _open_pidfd(process.pid)
    delay = 0.0005
    try:
        while not _has_exited(process):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop is not None and stop.is_set()):
                return False
            if pidfd is None:
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, _MAX_WAIT_STEP_SECONDS)
            else:
                select.select([pidfd], [], [], min(_MAX_WAIT_STEP_SECONDS, remaining))
        return True
    finally:
        if pidfd is not None:
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


def _join(threads: list[threading.Thread], halt: threading.Event) -> None:
    deadline = time.monotonic() + _DRAIN_GRACE_SECONDS
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    # Only a process that escaped the group (setsid) can still hold a pipe: stop listening to it.
    halt.set()
    for thread in threads:
        thread.join()


class _Collector:
    """Reads one pipe to EOF, keeping the first `limit` bytes and discarding the rest."""

    def __init__(self, pipe: IO[bytes], limit: int) -> None:
        self._pipe = pipe
        self._limit = limit
        self._kept = bytearray()
        self.truncated = False

    def run(self, halt: threading.Event) -> None:
        fd = self._pipe.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while not halt.is_set():
                if not selector.select(_POLL_SECONDS):
                    continue
                try:
                    chunk = os.read(fd, _CHUNK_BYTES)
                except OSError:
                    return
                if not chunk:
                    return
                room = self._limit - len(self._kept)
                if room > 0:
                    self._kept += chunk[:room]
                if len(chunk) > room:
                    self.truncated = True

    def text(self) -> str:
        return self._kept.decode("utf-8", errors="replace")


def _feed(pipe: IO[bytes], data: bytes, halt: threading.Event) -> None:
    fd = pipe.fileno()
    # Non-blocking so that a child which never reads its stdin cannot pin this thread.
    os.set_blocking(fd, False)
    view = memoryview(data)
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_WRITE)
            while view and not halt.is_set():
                if not selector.select(_POLL_SECONDS):
                    continue
                try:
                    view = view[os.write(fd, view[:_CHUNK_BYTES]) :]
                except BlockingIOError:
                    continue
    except OSError:
        pass  # The child closed its stdin or exited: what it did not read is not needed.
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


@dataclass(frozen=True)
class _Jail:
    executable: str
    account: tuple[int, int] | None
    limits: tuple[tuple[int, int, int], ...]

    def apply_limits(self) -> None:
        for which, soft, hard in self.limits:
            resource.setrlimit(which, (soft, hard))


def _rlimits(
    confinement: Confinement, timeout_seconds: float, own_user: bool
) -> tuple[tuple[int, int, int], ...]:
    cpu = math.ceil(timeout_seconds) + 1
    limits = [
        # CPU time can only trail the wall clock; SIGXCPU first, SIGKILL a second later.
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, confinement.memory_bytes, confinement.memory_bytes),
        # A write past it raises SIGXFSZ: a runaway output file stops there.
        (resource.RLIMIT_FSIZE, confinement.max_file_bytes, confinement.max_file_bytes),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if own_user:
        # RLIMIT_NPROC counts every process of the user: meaningful only for a user of our own.
        limits.append((resource.RLIMIT_NPROC, confinement.max_processes, confinement.max_processes))
    return tuple(limits)


def _allowed_executable(name: str, env: Mapping[str, str], workdir: Path, confinement: Confinement) -> str:
    """The real path `name` runs as, if that is one of the allowed executables."""
    candidate: str | None
    if "/" in name:
        candidate = str(workdir / name) if not os.path.isabs(name) else name
        if not os.path.exists(candidate):
            candidate = None
    else:
        candidate = shutil.which(name, path=env.get("PATH", SAFE_PATH))
    if candidate is None:
        raise TaskFailure(
            "CommandNotFound", f"executable {name!r} was not found (PATH={env.get('PATH', SAFE_PATH)})"
        )
    resolved = os.path.realpath(candidate)
    allowed = {
        os.path.realpath(path)
        for entry in confinement.allowed_executables
        if (path := entry if os.path.isabs(entry) else shutil.which(entry, path=SAFE_PATH))
    }
    if resolved not in allowed:
        names = ", ".join(confinement.allowed_executables)
        raise TaskFailure(
            "ExecutableNotAllowed", f"{name!r} ({resolved}) is not an allowed executable; allowed: {names}"
        )
    return resolved


@contextlib.contextmanager
def _leased_account(confinement: Confinement) -> Iterator[tuple[int, int] | None]:
    """The (uid, gid) the child of this run gets when the worker is root (None when it is not):
    one no other run in flight on this host holds, so that runs cannot read each other's files
    or signal each other. Whatever still runs as it when the lease ends is killed, including
    processes that left the run's session."""
    if os.geteuid() != 0:
        yield None
        return
    locks = Path(tempfile.gettempdir()) / _ACCOUNT_LOCKS
    locks.mkdir(mode=0o700, exist_ok=True)
    base = confinement.child_uid_base
    for uid in range(base, base + _ACCOUNTS):
        descriptor = os.open(locks / str(uid), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            # One lock per open file: other threads and other workers on the host skip this uid.
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            continue
        try:
            # The lock file says "clean" once a lease ended with its sweep; else its holder died.
            if os.pread(descriptor, len(_CLEAN), 0) != _CLEAN:
                _kill_account_processes(uid)
            os.pwrite(descriptor, _IN_USE, 0)
            yield uid, uid
        finally:
            _kill_account_processes(uid)
            os.pwrite(descriptor, _CLEAN, 0)
            os.close(descriptor)
        return
    raise RuntimeError(f"all {_ACCOUNTS} accounts for sandboxed children from uid {base} are in use")


def _kill_account_processes(uid: int) -> None:
    """Kills every process of `uid`, pass after pass, until a pass finds none left: what they
    fork meanwhile is found by the next pass (the process limit bounds how many there can be)."""
    for _ in range(_SWEEP_PASSES):
        found = list(_live_processes_of(uid))
        if not found:
            return
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # Not silent: a process that outlives every pass could watch the next run of this uid.
    logger.warning("processes of a sandbox uid survived the sweep", extra={"uid": uid, "pids": found})


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
        alive = _status_field(head, b"State")[:1] not in (b"Z", b"X", b"")
        if alive and wanted in _status_field(head, b"Uid").split():
            yield int(entry.name)


def _status_field(head: bytes, name: bytes) -> bytes:
    start = head.find(b"\n" + name + b":")
    if start < 0:
        return b""
    start += len(name) + 2
    end = head.find(b"\n", start)
    return head[start : end if end >= 0 else len(head)].strip()


def _hand_over(workdir: Path, account: tuple[int, int]) -> None:
    """Gives the work directory and the files written into it to the child's user."""
    for path in [workdir, *workdir.rglob("*")]:
        os.chown(path, *account, follow_symlinks=False)


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
    for relpath, text in files.items():
        if "\0" in relpath:
            raise TaskFailure("InvalidPayload", f"file path {relpath!r} contains a NUL character")
        target = (workdir / relpath).resolve()
        if target == workdir or not target.is_relative_to(workdir):
            raise TaskFailure("InvalidPayload", f"file path {relpath!r} resolves outside the work directory")
        # Surrogate escapes are the undecodable bytes of an unpacked source archive.
        data = _encoded(text, f"file {relpath!r}", "surrogateescape")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
            raise TaskFailure(
                "InvalidPayload", f"file path {relpath!r} collides with another file: {exc.strerror}"
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


def _remove_tree(root: Path) -> None:
    # The child may have taken write or search permission away from directories it owns.
    _make_removable(str(root))
    for dirpath, dirnames, _ in os.walk(root, onerror=lambda _error: None):
        for name in dirnames:
            _make_removable(os.path.join(dirpath, name))
    shutil.rmtree(root, ignore_errors=True)


def _make_removable(path: str) -> None:
    if os.path.islink(path):
        return  # chmod would follow the link out of the work directory
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
