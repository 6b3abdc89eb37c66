"""How long an `execute` task takes from RUNNING to SUCCEEDED, beside the same command run with a
plain subprocess.run in the same run.

The command is `[python, "-c", "pass"]` with the same interpreter path on both sides: this
interpreter when the sandbox can run it, else python3 on the sandbox's PATH (a worker running as
root hands children to an unprivileged uid, which cannot reach an interpreter under /root).

- baseline: `subprocess.run(command, capture_output=True)` (the sandbox captures output too).
- processor: the real TaskProcessor (claim -> sandboxed execute -> terminal record, status
  events, logs, EMF) on the in-memory store, blob store and publisher, with the worker's default
  limits. Two figures per task: the record's `duration_ms`, and the wall time of
  `processor.process` (only that call: the record it starts from is made before it, and checked
  after it, outside the time taken). The ratio uses the wall time: it is taken with the same clock as the
  baseline, to the microsecond, where `duration_ms` is truncated to whole milliseconds, and it can
  only overstate RUNNING -> SUCCEEDED (it adds the claim, the status events and the closing log
  and metric lines; the table prints both figures, so the gap shows). The in-memory store does
  not set `started_at` (only DynamoDB's claim does), so the record's timestamps are not used.
- work: the task's work alone, `perform` as the processor calls it (payload validation, the
  sandboxed run, the result): the span the record's `duration_ms` measures (RUNNING ->
  SUCCEEDED), timed with the baseline's clock. The goal's figure is the processor's, which also
  counts the claim and the records that subprocess.run has no counterpart of; this one is the
  execute path alone, beside it.
- processor_forked: the same, with no exec helper (the route a worker without the image's helper
  takes, and every run took before it): the before/after of the helper in one run.
- where the time goes, measured in the same run: subprocess.run with a no-op preexec_fn (CPython
  then forks the child instead of vforking it); subprocess.run with the sandbox's spawn options
  (a fresh directory, the environment from scratch, its own session, through the exec helper that
  sets the rlimits, the child's user when root and the filter, and with a user of its own stays
  as the program's parent to sweep that user when it ends; the fallback's preexec_fn without a
  helper), waited on as subprocess.run waits; the same in one directory made beforehand (the
  difference is what making and removing a run directory costs on this host's file system);
  `run_sandboxed` alone (which waits on a pidfd, so it wakes at the exit); and, when root, the
  scan of the shared temporary directories (and the scratch root) that each run's end makes (for
  its purge and disk budget), whose cost grows with what those directories hold. The note prints differences of medians; they do not add up exactly. The helper is built
  with cc as the image builds it (tests/exec_helper.py).

Every variant runs REPEATS times after WARMUPS, interleaved (one of each per round, the order
rotating) so that drift on the machine hits them all alike: about ten seconds in all. Median and
p90 in milliseconds, and the median CPU time of a call (this process's and its children's, which
the machine's load barely changes, unlike the wall time). The last lines say whether the goal
(RATIO_GOAL) was met; the exit status is 1 when it was not.

Run: make bench   (or: .venv/bin/python -m bench.execute_overhead)
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mistersmith.clock import now_iso
from mistersmith.errors import TaskFailure
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask, TaskMessage, TaskStatus
from mistersmith.processing import Disposition, TaskProcessor
from mistersmith.work import SandboxResult, WorkLimits, perform, run_sandboxed
from mistersmith.work.limits import Confinement
from mistersmith.work.sandbox import (
    SAFE_PATH,
    _shared_temp_entries_of,
    child_environment,
    leased_account,
    scratch_root,
    temp_roots,
)
from mistersmith.work.seccomp import build_filter
from tests.exec_helper import exec_helper
from tests.fakes import MemoryBlobStore, MemoryTaskStore, NullPublisher, worker_settings

REPEATS = 100
RATIO_GOAL = 1.3  # issue 16: an execute task at most 1.3x a bare subprocess.run
WARMUPS = 2
TIMEOUT_SECONDS = 30  # per child; `pass` takes milliseconds
WATCHDOG_SECONDS = 240  # the whole bench takes seconds: past this something hangs, so it exits


def worker_limits(helper: str | None) -> WorkLimits:
    """The limits a worker with default settings applies (as mistersmith.wiring builds them), its
    exec helper at `helper` (None: the forked route, as where the image's helper is missing)."""
    return worker_settings(sandbox_exec_helper=helper).limits


def choose_command(limits: WorkLimits) -> list[str]:
    """The first interpreter the sandbox runs successfully, as an absolute path."""
    candidates = [sys.executable, shutil.which("python3", path=SAFE_PATH)]
    for interpreter in dict.fromkeys(path for path in candidates if path):
        command = [interpreter, "-c", "pass"]
        try:
            run = sandboxed(command, limits)
        except TaskFailure:
            continue
        if run.exit_code == 0:
            return command
    raise SystemExit(f"the sandbox runs none of {candidates}")


def sandboxed(command: list[str], limits: WorkLimits) -> SandboxResult:
    return run_sandboxed(
        command,
        timeout_seconds=TIMEOUT_SECONDS,
        output_limit_bytes=limits.output_limit_bytes,
        confinement=limits.confinement,
    )


class SandboxSpawn:
    """subprocess with the sandbox's spawn options, without the rest of run_sandboxed: through the
    exec helper (vfork; the helper sets the limits, the uid and the filter) when there is one, else
    with the fallback's preexec_fn (fork)."""

    def __init__(
        self, command: list[str], confinement: Confinement, account: tuple[int, int] | None, *, fresh: bool
    ) -> None:
        self.command = command
        self.executable = os.path.realpath(command[0])
        self.account = account
        self.helper = confinement.exec_helper
        self.scratch_root = scratch_root(confinement)
        # fresh: a directory made and removed per run, as the sandbox does; else one made here, kept.
        self.kept = None if fresh else self.directory()
        cpu = math.ceil(TIMEOUT_SECONDS) + 1
        self.limits = [
            (resource.RLIMIT_CPU, cpu, cpu + 1),
            (resource.RLIMIT_AS, confinement.address_space_limit, confinement.address_space_limit),
            (resource.RLIMIT_FSIZE, confinement.max_file_bytes, confinement.max_file_bytes),
            (resource.RLIMIT_CORE, 0, 0),
        ]
        if self.account is not None:
            self.limits.append((resource.RLIMIT_NPROC, confinement.max_processes, confinement.max_processes))
        self.filter = build_filter(confinement.allow_network)

    def apply_limits(self) -> None:
        for which, soft, hard in self.limits:
            resource.setrlimit(which, (soft, hard))
        self.filter.install()

    def options(self, report_fd: int) -> dict[str, Any]:
        if self.helper is None:
            return {
                "args": self.command,
                "executable": self.executable,
                "user": self.account[0] if self.account else None,
                "group": self.account[1] if self.account else None,
                "extra_groups": [] if self.account else None,
                "preexec_fn": self.apply_limits,
            }
        uid = str(self.account[0]) if self.account else "-1"
        numbers = [str(number) for limit in self.limits for number in limit]
        limits = [str(len(self.limits)), *numbers]
        return {
            "args": [
                *(self.helper, "exec", uid, str(report_fd), self.filter.program.hex()),
                *(*limits, self.executable, *self.command),
            ],
            "pass_fds": (report_fd,),
        }

    def directory(self) -> Path:
        workdir = Path(tempfile.mkdtemp(prefix="bench-execute-", dir=self.scratch_root)).resolve()
        if self.account is not None:
            os.chown(workdir, *self.account)
        return workdir

    def run(self) -> None:
        workdir = self.kept or self.directory()
        report_read, report_write = os.pipe()
        try:
            process = subprocess.Popen(
                **self.options(report_write),
                cwd=workdir,
                env=child_environment(workdir),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                close_fds=True,
                start_new_session=True,
            )
            os.close(report_write)
            with process:
                try:
                    process.communicate(timeout=TIMEOUT_SECONDS)
                except BaseException:
                    process.kill()
                    raise
            assert process.returncode == 0, f"the child exited with {process.returncode}"
        finally:
            os.close(report_read)
            with contextlib.suppress(OSError):
                os.close(report_write)
            if self.kept is None:
                shutil.rmtree(workdir, ignore_errors=True)

    def close(self) -> None:
        if self.kept is not None:
            shutil.rmtree(self.kept, ignore_errors=True)


class ProcessorRuns:
    """One execute task per call through the real TaskProcessor on in-memory adapters."""

    def __init__(self, command: list[str], limits: WorkLimits) -> None:
        self.store = MemoryTaskStore()
        self.processor = TaskProcessor(
            Lifecycle(self.store, NullPublisher()),
            blobs=MemoryBlobStore(),
            worker_id="bench",
            lease_seconds=300,
            limits=limits,
        )
        self.payload = {"command": command, "timeout_seconds": TIMEOUT_SECONDS}
        self.count = 0
        self.recorded_ms: list[float] = []

    def run(self) -> tuple[float, float]:
        """The wall and CPU milliseconds of process() alone: setting up the record and checking it
        after are the bench's, with no counterpart on subprocess.run's side."""
        self.count += 1
        message = TaskMessage(id=f"bench-execute-{self.count}", task_type="execute", payload=self.payload)
        self.store.create(StoredTask.queued(message, now_iso()))
        cpu_before = cpu_ms()
        started = time.perf_counter()
        disposition = self.processor.process(message)
        span = ((time.perf_counter() - started) * 1000, cpu_ms() - cpu_before)
        task = self.store.get(message.id)
        assert disposition.disposition is Disposition.DELETE and task is not None, disposition
        assert task.status is TaskStatus.SUCCEEDED, f"the bench task ended {task.status}: {task.error}"
        assert task.duration_ms is not None
        self.recorded_ms.append(float(task.duration_ms))
        return span


# What a variant returns: None, or the wall and CPU milliseconds of the part of its call that counts.
Span = tuple[float, float] | None


def measure(variants: dict[str, Callable[[], Span]]) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall milliseconds of each variant, REPEATS each after WARMUPS, interleaved; and the CPU
    milliseconds of each call (this process's and its children's: what load does not change).
    A variant that returns a span is recorded by it, not by its whole call."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(WARMUPS + REPEATS):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            cpu_before = cpu_ms()
            started = time.perf_counter()
            span = variants[name]()
            elapsed, used = (time.perf_counter() - started) * 1000, cpu_ms() - cpu_before
            if round_ >= WARMUPS:
                samples[name].append(span[0] if span else elapsed)
                cpu[name].append(span[1] if span else used)
    return samples, cpu


def cpu_cell(values: list[float] | None) -> str:
    return f"{median(values):>7.2f}" if values else f"{'':>7}"


def cpu_ms() -> float:
    """CPU milliseconds so far of this process and of its children that have been waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return (own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime) * 1000


def noop() -> None:
    pass


def shared_scan(uid: int, roots: tuple[str, ...]) -> None:
    list(_shared_temp_entries_of(uid, roots))


def shared_entries(roots: tuple[str, ...]) -> int:
    """How many entries the directories the scan starts from hold at their top."""
    return sum(len(os.listdir(path)) for path in roots if os.path.isdir(path))


def median(values: list[float]) -> float:
    return statistics.median(values)


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def measure_variants(
    command: list[str], limits: WorkLimits, processor: ProcessorRuns, processor_forked: ProcessorRuns
) -> tuple[dict[str, list[float]], dict[str, list[float]], SandboxSpawn]:
    """Every variant measured (see measure), and the spawn options' variant (for its description)."""

    def baseline() -> None:
        subprocess.run(command, capture_output=True, check=True, timeout=TIMEOUT_SECONDS)

    def forked() -> None:
        # Any preexec_fn (or a user switch) makes CPython fork rather than vfork the child.
        subprocess.run(command, capture_output=True, check=True, timeout=TIMEOUT_SECONDS, preexec_fn=noop)

    def sandbox_alone() -> None:
        run = sandboxed(command, limits)
        assert run.exit_code == 0 and not run.timed_out, run

    def work() -> None:
        result = perform("execute", {"command": command, "timeout_seconds": TIMEOUT_SECONDS}, limits)
        assert result["exit_code"] == 0, result

    # A uid leased as the sandbox leases them, for the whole bench: no other run on the host takes it.
    with leased_account(limits.confinement) as account:
        spawn = SandboxSpawn(command, limits.confinement, account, fresh=True)
        spawn_kept = SandboxSpawn(command, limits.confinement, account, fresh=False)
        try:
            samples, cpu = measure(
                {
                    "baseline": baseline,
                    "forked": forked,
                    "spawn": spawn.run,
                    "spawn_kept": spawn_kept.run,
                    "sandbox": sandbox_alone,
                    "processor": processor.run,
                    "work": work,
                    "processor_forked": processor_forked.run,
                    # Only a root worker, with a user per run, scans the shared temporary directories.
                    **(
                        {"scan": functools.partial(shared_scan, account[0], temp_roots(limits.confinement))}
                        if account
                        else {}
                    ),
                }
            )
        finally:
            spawn_kept.close()
    return samples, cpu, spawn


def main() -> int:
    faulthandler.dump_traceback_later(WATCHDOG_SECONDS, exit=True)
    # Logs and EMF lines are produced (their cost counts) but only the figures reach the terminal.
    report = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)

    def print(*parts: object) -> None:  # noqa: A001 - the report's own print
        report.write(" ".join(str(part) for part in parts) + "\n")

    # Built here as the image builds it; without a C compiler the bench measures the forked route.
    limits = worker_limits(exec_helper())
    forked_limits = worker_limits(None)
    command = choose_command(limits)
    processor = ProcessorRuns(command, limits)
    processor_forked = ProcessorRuns(command, forked_limits)

    samples, cpu, spawn = measure_variants(command, limits, processor, processor_forked)
    samples["recorded"] = processor.recorded_ms
    base = median(samples["baseline"])

    def row(label: str, name: str) -> None:
        if name not in samples:
            return
        values = samples[name]
        print(
            f"  {label:<58} {median(values):>7.2f} {p90(values):>7.2f}   x{median(values) / base:<5.2f}"
            f" {cpu_cell(cpu.get(name))}"
        )

    user = f"as uid {limits.confinement.child_uid_base}" if spawn.account else "as this user"
    route = f"exec helper {spawn.helper}" if spawn.helper else "no exec helper (no cc): forked route"
    # What a fork copies the page tables of.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"execute {json.dumps(command)}: {REPEATS} runs of each after {WARMUPS} warm-ups, interleaved")
    print(
        f"  (sandboxed children run {user}, subprocess.run's as this user; this process's peak RSS {rss:.0f} MiB;"
        f" {route}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    print(f"  {'':<58} {'median':>7} {'p90':>7}   {'ratio':<6} {'CPU':>7}   (ms; CPU: median, with children)")
    row("subprocess.run(command, capture_output=True)", "baseline")
    row("TaskProcessor: the record's duration_ms (whole ms)", "recorded")
    row("TaskProcessor: wall time of process() (claim to record)", "processor")
    row("its work alone: perform(), RUNNING -> SUCCEEDED", "work")
    row("the same without the exec helper (forked route, as before it)", "processor_forked")
    print(" where the time goes (same run):")
    row("subprocess.run with a no-op preexec_fn (fork, not vfork)", "forked")
    row("subprocess.run with the sandbox's spawn options", "spawn")
    row("the same in one directory made beforehand (none made, removed)", "spawn_kept")
    row("run_sandboxed alone", "sandbox")
    row(
        f"its scan of the shared temp dirs ({shared_entries(temp_roots(limits.confinement))} entries at their top)",
        "scan",
    )
    ratio = median(samples["processor"]) / base
    print(
        f" execute overhead, processor process() median / subprocess.run median: x{ratio:.2f}"
        f" (goal <= x{RATIO_GOAL}): {'met' if ratio <= RATIO_GOAL else 'MISSED'}"
    )
    print(
        f" the execute path alone (perform: no claim, no records), median / subprocess.run median:"
        f" x{median(samples['work']) / base:.2f}"
    )
    print(f" without the exec helper: x{median(samples['processor_forked']) / base:.2f}")
    medians = {name: median(values) for name, values in samples.items()}

    def delta(name: str, over: str) -> str:
        return f"{medians[name] - medians[over]:+.1f} ms"

    print(
        f" note: the processor's {delta('processor', 'baseline')} over subprocess.run:"
        f" spawn options {delta('spawn', 'baseline')}, of which the run directory made and removed"
        f" {delta('spawn', 'spawn_kept')} (a no-op preexec_fn alone {delta('forked', 'baseline')});"
    )
    print(
        f"   rest of run_sandboxed (shared temp scan, allowlist, lease, pipes) {delta('sandbox', 'spawn')};"
        f" claim, records, events, logs {delta('processor', 'work')} (differences of medians, not additive)"
    )
    print(json.dumps({f"{name}_median_ms": round(value, 3) for name, value in medians.items()}))
    faulthandler.cancel_dump_traceback_later()
    return 0 if ratio <= RATIO_GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
