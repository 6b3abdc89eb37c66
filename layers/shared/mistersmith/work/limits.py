"""The limits a worker applies to every task it performs."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

# Where the worker image installs the sandbox's exec helper (built from work/sandbox_exec.c).
EXEC_HELPER = "/usr/local/libexec/mistersmith-exec"


@dataclass(frozen=True)
class Confinement:
    """What a child process may run and use.

    `allowed_executables` are names looked up on the sandbox's PATH, or absolute paths; a command
    runs only if it resolves to one of them (the worker's own interpreter by default). When the
    worker runs as root, each run's child gets a uid of its own from `child_uid_base` on (no
    account entry is needed) and the process limit applies to it; otherwise the process limit is
    left alone (it would count the worker's and the developer's own processes).

    Budgets of one run: `memory_bytes` is the resident memory of all its processes together
    (polled), `address_space_bytes` each process's address space (a loose backstop, 4 x the
    memory budget when None), `disk_bytes` its work directory plus its files in the shared
    temporary directories (polled; no single file passes `max_file_bytes`). `allow_network`
    lets children make IPv4/IPv6 sockets; `scratch_root` is where work directories are made
    (a directory of the worker's own in the system's temporary one when None); `cpu_seconds` is each process's CPU time
    (past it the run fails `CpuTimeLimitExceeded`); `exec_helper` starts children that only exec
    (see sandbox_exec.c; when it is missing they are forked from the worker instead)."""

    allowed_executables: tuple[str, ...] = (sys.executable, "python3")
    memory_bytes: int = 1 << 30
    max_file_bytes: int = 64 << 20
    max_processes: int = 64
    child_uid_base: int = 61000
    disk_bytes: int = 1 << 30
    address_space_bytes: int | None = None
    allow_network: bool = False
    scratch_root: str | None = None
    # CPU seconds per process (None: the wall timeout's, rounded up, plus one).
    cpu_seconds: int | None = None
    # The static helper that starts children without copying the worker (None, or absent: fork).
    exec_helper: str | None = EXEC_HELPER

    @property
    def address_space_limit(self) -> int:
        return self.address_space_bytes or 4 * self.memory_bytes


@dataclass(frozen=True)
class WorkLimits:
    """Upper bounds for one task: the execute wall clock, the bytes kept per output stream, and
    the confinement of child processes."""

    execute_timeout_seconds: float = 600
    output_limit_bytes: int = 65536
    # Output beyond this stays out of the record (DynamoDB items stop at 400 KB) and goes to the bucket.
    inline_output_bytes: int = 32768
    # A `source_uri` archive: its size, checked before it is read, and what it may unpack to.
    source_archive_bytes: int = 50 << 20
    source_unpacked_bytes: int = 200 << 20
    confinement: Confinement = field(default_factory=Confinement)

    def __post_init__(self) -> None:
        if not self.execute_timeout_seconds > 0:
            raise ValueError("execute_timeout_seconds must be positive")
        if self.output_limit_bytes <= 0:
            raise ValueError("output_limit_bytes must be positive")
