"""How long `analyze` takes on 5 MB of Python source and how much the analyzing process's peak
memory rises meanwhile: today's analyzer (ruff and the counting scan in a sandboxed child) beside
the frozen in-process one it replaced (bench/analyze_old.py), in the same run.

The source: the running interpreter's standard library, `.py` files in path order (test suites
and lib2to3 left out) until 5 MB, 336 files with Python 3.11, as an inline payload. Each measurement runs in a
fresh process (`-m bench.analyze measure new|old`) that first builds and validates the payload, as a
worker holds it before it runs the task; then its peak resident memory is reset
(/proc/self/clear_refs) and the analyzer runs. The figures: wall time, and the rise of that
process's peak resident memory (VmHWM) over its resident memory before the run, and the CPU time
of the process and its children (ruff and the sandboxed child included): on a shared machine the
wall time also measures the wait for a core and for the disk, the CPU time less so. The new analyzer
runs with the worker's default settings (its work directories in the system's temporary
directory, or SANDBOX_SCRATCH_ROOT as the worker reads it) and exec helper (built as the image
builds it) and an in-memory artifact sink. The children of the new analyzer are not the worker
process: their memory is bounded by the sandbox's budgets instead.

An old run (2 to 6 s) comes before every second new one, so that both meet the same load; the
load average and the CPU cost of creating a file in the scratch root are printed with the
figures (the new analyzer writes every file for ruff; a filesystem that reuses freed inodes
slowly, as this machine's shared /tmp does, makes that a third of its CPU time). Goals (issue
17): the new analyzer at least 10x faster by median wall time, and the worker's peak rising by
at most 20 MiB.

Run: make bench   (or: .venv/bin/python -m bench.analyze; SANDBOX_SCRATCH_ROOT=/dev/shm/x for tmpfs)
"""

from __future__ import annotations

import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

SOURCE_BYTES = 5_000_000
NEW_RUNS = 6
OLD_RUNS = 3
SPEEDUP_GOAL = 10
MEMORY_GOAL_MIB = 20
TIMEOUT_SECONDS = 300


def corpus() -> dict[str, str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files: dict[str, str] = {}
    total = 0
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if any(part in {"test", "tests", "idle_test", "lib2to3", "site-packages"} for part in parts):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        files["/".join(parts)] = text
        total += len(text.encode())
        if total >= SOURCE_BYTES:
            return files
    raise SystemExit(f"the standard library at {root} holds less than {SOURCE_BYTES} bytes of Python")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _cpu_seconds() -> float:
    """User and system time of this process and of every child it has waited for (and theirs)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(which: str) -> dict[str, Any]:
    """Runs one analyzer once in this process; its time and this process's peak memory rise."""
    files = corpus()
    if which == "new":
        from bench.execute_overhead import worker_limits
        from mistersmith.models import AnalyzePayload
        from mistersmith.work import run_analyze
        from tests.exec_helper import exec_helper

        limits = worker_limits(exec_helper())
        payload = AnalyzePayload(files=files)

        def sink(name: str, data: bytes, content_type: str) -> str:
            return f"memory://{name}"  # the bucket's upload is not what is measured

        def analyze() -> Any:
            return run_analyze(payload, limits, None, sink)
    else:
        from bench.analyze_old import run_analyze as run_old

        def analyze() -> Any:
            return run_old(files)

    gc.collect()
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    cpu_before = _cpu_seconds()
    started = time.perf_counter()
    result = analyze()
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu_before
    peak = _status_kib("VmHWM")
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rise_mib": (peak - before) / 1024,
        "files": result.files,
        "lines": result.lines,
        "functions": result.functions,
        "findings": len(result.findings),
    }


def _child(which: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.analyze", "measure", which],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the {which} analyzer's run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])  # the figures are the last line; logs come before


def file_creation_seconds(count: int) -> float:
    """CPU time to create (and remove) one empty file in the sandbox's scratch root, as the new
    analyzer's child does for every file: on a filesystem that reuses freed inodes slowly it is a
    large part of the child's system time."""
    from bench.execute_overhead import worker_limits

    root = worker_limits(None).confinement.scratch_root or tempfile.gettempdir()
    os.makedirs(root, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root) as directory:
        before = _cpu_seconds()
        for index in range(count):
            Path(directory, str(index)).touch()
        return (_cpu_seconds() - before) / count


def main() -> int:
    runs: dict[str, list[dict[str, Any]]] = {"old": [], "new": []}
    load = os.getloadavg()[0]
    # An old run before every NEW_RUNS / OLD_RUNS new ones: both meet the same changes of load.
    for index in range(NEW_RUNS):
        if index % (NEW_RUNS // OLD_RUNS) == 0:
            runs["old"].append(_child("old"))
        runs["new"].append(_child("new"))
    sample = runs["new"][0]
    print(f"analyze: {sample['files']} files, {sample['lines']} lines, {SOURCE_BYTES / 1e6:g} MB of Python")
    cores = os.cpu_count()
    print(f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after, on {cores} cores")
    creation = file_creation_seconds(sample["files"])
    print(
        f"creating a file in the scratch root: {creation * 1e6:.0f} us of CPU "
        f"({creation * sample['files']:.3f} s for the {sample['files']} files; SANDBOX_SCRATCH_ROOT moves it)"
    )
    print(f"{'analyzer':<28}{'runs':>6}{'median s':>10}{'max s':>8}{'median CPU s':>14}{'peak rise MiB':>15}")
    medians, cpu = {}, {}
    for which, label in (("old", "old (in-process ast walk)"), ("new", "new (ruff, sandboxed child)")):
        seconds = [run["seconds"] for run in runs[which]]
        medians[which] = statistics.median(seconds)
        cpu[which] = statistics.median(run["cpu_seconds"] for run in runs[which])
        rise = max(run["rise_mib"] for run in runs[which])
        print(
            f"{label:<28}{len(seconds):>6}{medians[which]:>10.3f}{max(seconds):>8.3f}{cpu[which]:>14.3f}{rise:>15.1f}"
        )
    # CPU time (the child and its tools included) depends less than wall time on how busy the machine is.
    print(f"CPU time: the new analyzer uses {cpu['old'] / cpu['new']:.1f}x less")
    speedup = medians["old"] / medians["new"]
    rise = max(run["rise_mib"] for run in runs["new"])
    fast = speedup >= SPEEDUP_GOAL
    lean = rise <= MEMORY_GOAL_MIB
    print(f"speedup {speedup:.1f}x (goal >= {SPEEDUP_GOAL}x): {'met' if fast else 'MISSED'}")
    print(f"worker peak rise {rise:.1f} MiB (goal <= {MEMORY_GOAL_MIB} MiB): {'met' if lean else 'MISSED'}")
    return 0 if fast and lean else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["measure"]:
        print(json.dumps(measure(sys.argv[2])))
        sys.exit(0)
    sys.exit(main())
