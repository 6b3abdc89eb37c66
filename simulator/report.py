"""The comparison as a table (plain or Markdown), the bar the default policy must clear, and the plot."""

from __future__ import annotations

from pathlib import Path

from simulator.compare import Comparison
from simulator.model import RunResult

# Issue 8's bar for the default policy: task-hours within 1.3x the oracle's busy time, p95 wait no
# worse than the seed's step table.
TASK_HOURS_BAR = 1.3
HEADERS = (
    "profile",
    "policy",
    "p50 wait",
    "p95 wait",
    "max wait",
    "time to drain",
    "task-hours",
    "x oracle",
    "cost",
)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def row(run: RunResult, oracle: RunResult) -> tuple[str, ...]:
    return (
        run.profile,
        run.policy,
        _duration(run.wait(0.5)),
        _duration(run.wait(0.95)),
        _duration(run.wait(1.0)),
        _duration(run.longest_backlog),
        f"{run.task_hours:.1f}",
        f"{run.task_hours / oracle.busy_hours:.2f}" if oracle.busy_hours else "-",
        f"${run.cost:.2f}",
    )


def table(comparisons: list[Comparison], *, markdown: bool = False) -> str:
    rows = [row(run, comparison.oracle) for comparison in comparisons for run in comparison.all]
    if markdown:
        lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
        lines += ["| " + " | ".join(cells) + " |" for cells in rows]
        return "\n".join(lines)
    widths = [max(len(cells[i]) for cells in [HEADERS, *rows]) for i in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(HEADERS, widths, strict=True))]
    lines += [
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) for cells in rows
    ]
    return "\n".join(lines)


def verdicts(comparisons: list[Comparison], policy: str, reference: str) -> list[tuple[str, bool, str]]:
    """(profile, passed, why) for `policy` against the bar, with `reference` as the seed's table."""
    results = []
    for comparison in comparisons:
        runs = {run.policy: run for run in comparison.runs}
        if policy not in runs or reference not in runs or not comparison.oracle.busy_hours:
            continue
        run, seed = runs[policy], runs[reference]
        ratio = run.task_hours / comparison.oracle.busy_hours
        passed = ratio <= TASK_HOURS_BAR and run.wait(0.95) <= seed.wait(0.95)
        why = (
            f"task-hours {ratio:.2f}x oracle (bar {TASK_HOURS_BAR}x), "
            f"p95 wait {_duration(run.wait(0.95))} vs {reference} {_duration(seed.wait(0.95))}"
        )
        results.append((comparison.profile.name, passed, why))
    return results


def plot(comparison: Comparison, path: Path) -> Path:
    """Queue depth, desired and running tasks over time, one panel per policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = comparison.runs
    figure, axes = plt.subplots(len(runs), 1, figsize=(8, 2.1 * len(runs)), sharex=True, squeeze=False)
    for axis, run in zip(axes[:, 0], runs, strict=True):
        samples = run.samples
        axis.fill_between(samples["t"], samples["depth"], color="#c6dbef", label="queue depth (visible)")
        axis.set_ylabel("messages")
        tasks = axis.twinx()
        tasks.plot(samples["t"], samples["desired"], color="#d62728", linewidth=1.2, label="desired")
        tasks.plot(samples["t"], samples["running"], color="#2ca02c", linewidth=1.0, label="running")
        tasks.set_ylabel("tasks")
        ratio = run.task_hours / comparison.oracle.busy_hours
        axis.set_title(
            f"{run.policy}: p95 wait {_duration(run.wait(0.95))}, {run.task_hours:.0f} task-hours "
            f"({ratio:.2f}x oracle)",
            fontsize=9,
            loc="left",
        )
        handles = axis.get_legend_handles_labels()[0] + tasks.get_legend_handles_labels()[0]
        labels = axis.get_legend_handles_labels()[1] + tasks.get_legend_handles_labels()[1]
        tasks.legend(handles, labels, loc="upper right", fontsize=7, frameon=False)
    axes[-1, 0].set_xlabel("hours")
    figure.suptitle(f"{comparison.profile.name}: {comparison.profile.description}", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
