"""The comparison as tables (plain or Markdown): every run, and the goal per profile and seed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from simulator.compare import BOUND_GOAL, TASK_HOURS_GOAL, WAIT_GOAL, Comparison, Verdict
from simulator.model import RunResult

HEADERS = (
    "profile",
    "seed",
    "policy",
    "p50 wait",
    "p95 wait",
    "max wait",
    "time to drain",
    "task-hours",
    "x oracle",
    "reversals/h",
    "cost",
)
GOAL_HEADERS = (
    "profile",
    "seed",
    "task-hours x oracle",
    "p95 wait x step",
    "bound x oracle",
    "bound, decisions a minute",
    "reversals/h",
    "busy stopped",
    "unfinished",
    "goal",
)


def duration_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def row(run: RunResult, oracle: RunResult, seed: int) -> tuple[str, ...]:
    return (
        run.profile,
        str(seed),
        run.policy,
        duration_text(run.wait(0.5)),
        duration_text(run.wait(0.95)),
        duration_text(run.wait(1.0)),
        duration_text(run.longest_backlog),
        f"{run.task_hours:.1f}",
        f"{run.task_hours / oracle.busy_hours:.2f}" if oracle.busy_hours else "-",
        f"{run.reversals_per_hour:.1f}",
        f"${run.cost:.2f}",
    )


def render(headers: Sequence[str], rows: Sequence[tuple[str, ...]], *, markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(cells) + " |" for cells in rows]
        return "\n".join(lines)
    widths = [max(len(cells[i]) for cells in [tuple(headers), *rows]) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
        for cells in [tuple(headers), *rows]
    )


def table(comparisons: list[Comparison], *, markdown: bool = False) -> str:
    rows = [row(run, c.oracle, c.seed) for c in comparisons for run in c.all]
    return render(HEADERS, rows, markdown=markdown)


def goal_table(verdicts: list[Verdict], *, markdown: bool = False) -> str:
    rows = [
        (
            v.profile,
            str(v.seed),
            f"{v.hours_ratio:.2f}",
            f"{v.wait_ratio:.2f}",
            f"{v.bound_ratio:.2f}" if v.bound_ratio is not None else "-",
            f"{v.reactive_ratio:.2f}" if v.reactive_ratio is not None else "-",
            f"{v.reversals_per_hour:.1f}",
            str(v.stopped_busy),
            str(v.unfinished),
            "PASS" if v.passed else f"FAIL ({v.why})",
        )
        for v in verdicts
    ]
    return render(GOAL_HEADERS, rows, markdown=markdown)


def closing_note(verdicts: list[Verdict]) -> str:
    failing = [v for v in verdicts if not v.passed]
    goal = (
        f"goal: task-hours <= {TASK_HOURS_GOAL}x the oracle's (or, where that is out of reach, i.e. the "
        "clairvoyant bound or the bound held to decisions a minute costs more and the policy does not "
        f"beat it, <= {BOUND_GOAL}x the clairvoyant bound), p95 wait <= {WAIT_GOAL}x the step table's, at most 4 "
        "reversals/h on steady, no busy worker stopped, every task finished"
    )
    if not failing:
        return f"{goal}\n\nevery cell passes ({len(verdicts)} of {len(verdicts)})"
    lines = [goal, "", f"{len(failing)} of {len(verdicts)} cells fail:", ""]
    for v in failing:
        bound = (
            f"; clairvoyant bound {v.bound_ratio:.2f}x oracle ({BOUND_GOAL}x: {BOUND_GOAL * v.bound_ratio:.2f}x)"
            if v.bound_ratio is not None
            else ""
        )
        if v.reactive_ratio is not None:
            bound += f", held to decisions a minute {v.reactive_ratio:.2f}x"
        lines.append(f"- {v.profile} seed {v.seed}: {v.why}{bound}")
    return "\n".join(lines)


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
            f"{run.policy}: p95 wait {duration_text(run.wait(0.95))}, {run.task_hours:.0f} task-hours "
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


BEGIN_MARKER = "<!-- make simulate: goal table -->"
END_MARKER = "<!-- end of the goal table -->"


def write_between_markers(path: Path, block: str, begin: str = BEGIN_MARKER, end: str = END_MARKER) -> None:
    """Replaces what lies between the two markers in `path` with `block`."""
    text = path.read_text()
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"{path}: no {begin} ... {end} block to write into")
    path.write_text(f"{text[:start]}{begin}\n{block}\n{text[stop:]}")
