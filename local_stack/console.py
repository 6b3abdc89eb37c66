"""One output for the whole local stack, as docker-compose gives: every line a component writes goes
out prefixed with its name (`router | {...}`), and listeners (the metrics collector) see each line.

The functions run in threads of this one process, so `component(name)` marks what runs inside it
(a context variable, which FastAPI's thread pool inherits) and a `ComponentStream` in place of
sys.stdout and of the Powertools handler's stream sends those lines to the console. The workers'
log files are followed into the same console. The lines themselves stay as the code wrote them."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

# A line longer than this goes out in pieces rather than growing a buffer without end.
MAX_LINE_LENGTH = 1 << 20
# The most read from one log file per poll, so that one busy worker cannot hold up the others.
READ_CHUNK_BYTES = 1 << 20

Listener = Callable[[str, str], None]

_component: ContextVar[str | None] = ContextVar("local_stack_component", default=None)
# The console of the running stack: sys.stdout is one per process, so this is too.
_active: Console | None = None


@contextlib.contextmanager
def component(name: str) -> Iterator[None]:
    """Lines written inside (in this thread and in what it hands work to) go out as `name`'s."""
    token = _component.set(name)
    if _active is not None:
        _active.claim_stdout()
    try:
        yield
    finally:
        _component.reset(token)


def current_component() -> str | None:
    """The component whose code runs in this context, if any."""
    return _component.get()


def compact_line(line: str) -> str | None:
    """`level | message | task id` of a JSON log line; an EMF line is left out (the stack sums its
    metrics when it stops); any other line stays as it is."""
    if not line.startswith("{"):
        return line
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    if "_aws" in record:
        return None
    task = record.get("correlation_id") or record.get("task_id") or ""
    return f"{record.get('level', '')!s:<7} | {record.get('message', '')} | {task}".rstrip(" |")


class Console:
    def __init__(self, out: TextIO, width: int = 0, *, compact: bool = False) -> None:
        # Another stack's console must not prefix these lines a second time.
        self.out = _unwrapped(out)
        self.width = width
        self.compact = compact
        self._lock = threading.Lock()
        self._listeners: tuple[Listener, ...] = ()
        self._handlers: list[logging.StreamHandler[Any]] = []

    def emit(self, name: str, line: str) -> None:
        shown = compact_line(line) if self.compact else line
        with self._lock:
            self.width = max(self.width, len(name))
            if shown is not None:
                self.out.write(f"{name:<{self.width}} | {shown}\n")
                self.out.flush()
        for listener in self._listeners:
            listener(name, line)

    def add_listener(self, listener: Listener) -> None:
        self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners = tuple(known for known in self._listeners if known is not listener)

    def attach(self, *handlers: logging.StreamHandler[Any]) -> None:
        """Takes sys.stdout (print, EMF) and these logging handlers' streams until `detach`."""
        global _active
        _active = self
        self.claim_stdout()
        for handler in handlers:
            handler.setStream(ComponentStream(self, _unwrapped(handler.stream)))
        self._handlers.extend(handlers)

    def detach(self) -> None:
        global _active
        if _active is self:
            _active = None
        if isinstance(sys.stdout, ComponentStream):
            sys.stdout = sys.stdout.target
        for handler in self._handlers:
            handler.setStream(_unwrapped(handler.stream))
        self._handlers.clear()

    def claim_stdout(self) -> None:
        # pytest (and anything else that captures output) puts its own sys.stdout back between tests.
        if not (isinstance(sys.stdout, ComponentStream) and sys.stdout.console is self):
            sys.stdout = ComponentStream(self, _unwrapped(sys.stdout))


class ComponentStream:
    """A text stream: lines written inside `component(name)` go to the console as `name`'s, whole;
    anything else passes through to `target` as it is."""

    def __init__(self, console: Console, target: TextIO) -> None:
        self.console = console
        self.target = target
        # print() writes a line and its newline apart, and threads interleave: one buffer per thread.
        self._pending = threading.local()

    def write(self, text: str) -> int:
        name = _component.get()
        if name is None:
            return self.target.write(text)
        *lines, rest = (getattr(self._pending, "text", "") + text).split("\n")
        if len(rest) > MAX_LINE_LENGTH:
            lines.append(rest)
            rest = ""
        self._pending.text = rest
        for line in lines:
            self.console.emit(name, line)
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def __getattr__(self, attribute: str) -> Any:
        # encoding, isatty, fileno, buffer ...: what the stream underneath says.
        return getattr(self.target, attribute)


def _unwrapped(stream: Any) -> Any:
    return stream.target if isinstance(stream, ComponentStream) else stream


class Process(Protocol):
    def poll(self) -> int | None: ...


@dataclass
class _Followed:
    name: str
    inode: int
    offset: int
    processes: list[Process] = field(default_factory=list)
    pending: bytes = b""


class LogFollower:
    """Follows log files (the workers') into the console, each line with its writer's name, while
    the files stay as they are. One thread polls them all; a file is let go once every process
    that writes it has exited and all it wrote has been read."""

    def __init__(self, console: Console, interval_seconds: float = 0.2) -> None:
        self.console = console
        self.interval_seconds = interval_seconds
        self._files: dict[Path, _Followed] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def follow(self, path: Path, name: str, process: Process, since: int) -> None:
        """`process` writes `path` from byte `since` on; its lines go out as `name`'s."""
        inode = path.stat().st_ino
        with self._lock:
            followed = self._files.get(path)
            # The same file still followed keeps its place, so what an earlier writer left is read too;
            # a file recreated since (even on the same inode) is shorter than that place.
            if followed is None or followed.inode != inode or followed.offset > since:
                followed = self._files[path] = _Followed(name, inode, since)
            followed.processes.append(process)

    def stop(self, timeout_seconds: float = 10) -> None:
        self._stopping.set()
        self._thread.join(timeout_seconds)
        # The last lines of workers that exited since the last poll.
        self.poll()

    def poll(self) -> None:
        with self._lock:
            for path, followed in list(self._files.items()):
                # Whether they had exited before the read: then that read saw everything they wrote.
                exited = all(process.poll() is not None for process in followed.processes)
                if self._read(path, followed) and exited:
                    if followed.pending:
                        self.console.emit(followed.name, followed.pending.decode(errors="replace"))
                    del self._files[path]

    def _run(self) -> None:
        while not self._stopping.wait(self.interval_seconds):
            self.poll()

    def _read(self, path: Path, followed: _Followed) -> bool:
        """Sends the new complete lines to the console; True when the end of the file was reached."""
        try:
            with path.open("rb") as file:
                status = os.fstat(file.fileno())
                if status.st_ino != followed.inode or status.st_size < followed.offset:
                    # Replaced or truncated (tests start some workers on a fresh file): read it from the top.
                    followed.inode, followed.offset, followed.pending = status.st_ino, 0, b""
                file.seek(followed.offset)
                data = file.read(READ_CHUNK_BYTES)
        except FileNotFoundError:
            return True
        followed.offset += len(data)
        *lines, followed.pending = (followed.pending + data).split(b"\n")
        if len(followed.pending) > MAX_LINE_LENGTH:
            lines.append(followed.pending)
            followed.pending = b""
        for line in lines:
            self.console.emit(followed.name, line.decode(errors="replace"))
        return len(data) < READ_CHUNK_BYTES


class FunctionsLog:
    """A console listener: the lines of the in-process functions, into one file beside the workers'
    own (`mistersmith logs` reads them all)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def feed(self, name: str, line: str) -> None:
        if name.startswith("worker-"):
            return  # followed from the worker's own file, which already holds it
        with self._lock:
            if not self._file.closed:
                self._file.write(f"{name} | {line}\n")
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
