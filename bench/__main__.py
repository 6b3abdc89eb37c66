"""`make bench`: every benchmark in one run, each in its own process, its output shown as it comes;
with --write-readme the output of each goes verbatim into the README's performance section (one
marked block per benchmark), with the date and the machine's load, so the figures there are always
those of one run, and so does the list of goals: each benchmark prints one line per goal, holding
"goal" and "met" or "MISSED". A benchmark that fails or misses a goal does not stop the others;
the exit status says whether any did.

Run: make bench   (or: .venv/bin/python -m bench [--write-readme] [name ...])
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from simulator.report import write_between_markers

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# In the order they run; the cheapest first, so a broken set-up shows early.
BENCHES = (
    "cold_start",
    "execute_overhead",
    "analyze",
    "worker_throughput",
    "peer_throughput",
    "aws_calls",
    "cancel_latency",
)


GOAL_LINE = re.compile(r"\bgoal\b.*\b(met|MISSED)\b")


@dataclass(frozen=True)
class BenchRun:
    name: str
    output: str
    returncode: int

    def goals(self) -> list[str]:
        return [" ".join(line.split()) for line in self.output.splitlines() if GOAL_LINE.search(line)]

    def missed(self) -> bool:
        return self.returncode != 0 or any(" MISSED" in goal for goal in self.goals())

    def crashed(self) -> bool:
        """Ended in failure without a missed goal to say why."""
        return self.returncode != 0 and not any(" MISSED" in goal for goal in self.goals())


def run_bench(name: str, package: str = "bench") -> BenchRun:
    """Runs one benchmark module, echoing its output line by line, and keeps that output."""
    print(f"== {package}.{name}", flush=True)
    lines: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-m", f"{package}.{name}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line)
    return BenchRun(name, "".join(lines), process.returncode)


def readme_block(run: BenchRun, when: str, load: str) -> str:
    status = f" (failed: exit status {run.returncode})" if run.crashed() else ""
    return f"`python -m bench.{run.name}`, {when}, {load}{status}:\n\n```text\n{run.output.rstrip()}\n```"


def goals_block(runs: list[BenchRun], when: str) -> str:
    rows = [f"| `{run.name}` | {goal.replace('|', '/')} |" for run in runs for goal in run.goals()]
    failed = [f"| `{run.name}` | failed: exit status {run.returncode} |" for run in runs if run.crashed()]
    return "\n".join(
        [
            f"Goals, as `make bench` printed them on {when}:",
            "",
            "| benchmark | goal |",
            "|---|---|",
            *rows,
            *failed,
        ]
    )


def markers(name: str) -> tuple[str, str]:
    return f"<!-- make bench: {name} -->", f"<!-- end of make bench: {name} -->"


def machine_load() -> str:
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {one:.1f} (5 min {five:.1f})"


def main(
    argv: list[str] | None = None,
    package: str = "bench",
    benches: tuple[str, ...] = BENCHES,
    readme: Path = README,
) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(benches)})")
    parser.add_argument("--write-readme", action="store_true", help="write each output into README.md")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(benches))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    runs = []
    for name in args.names or benches:
        load = machine_load()  # before the run: the machine as the benchmark found it
        run = run_bench(name, package)
        runs.append(run)
        if args.write_readme:
            when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
            write_between_markers(readme, readme_block(run, when, load), *markers(name))
    failed = [run.name for run in runs if run.missed()]
    print("== goals")
    for run in runs:
        for goal in run.goals():
            print(f"  {run.name}: {goal}")
    print(f"== {len(runs) - len(failed)} of {len(runs)} benchmarks met their goals", end="")
    print(f"; missed or failed: {', '.join(failed)}" if failed else "")
    if args.write_readme and not args.names:
        when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        write_between_markers(readme, goals_block(runs, when), *markers("goals"))
    if args.write_readme:
        print(
            f"wrote {len(runs)} block(s) into {readme.relative_to(ROOT) if readme.is_relative_to(ROOT) else readme}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
