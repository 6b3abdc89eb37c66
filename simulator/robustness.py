"""Robustness runs: the default policy and the seed's step table under faults (seed 1)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from mistersmith.scaling import DEFAULT_POLICY, PolicyKind, ScalingPolicy
from simulator.compare import compare
from simulator.model import Fleet
from simulator.pricing import Prices
from simulator.profiles import HOUR, JUDGE, MINUTE, Profile, sigma_for_p95
from simulator.report import duration_text, render

_IDLE_SPIKE = Profile(
    "idle-then-spike",
    "6 h idle, then about 2,000 tasks in 30 s",
    6 * HOUR + 30 * MINUTE,
    lambda t: 2_000 / 30 if 6 * HOUR <= t < 6 * HOUR + 30 else 0.0,
    2_000 / 30,
)


@dataclass(frozen=True)
class Scenario:
    name: str
    profiles: tuple[Profile, ...]
    fleet: dict[str, float]
    policy: dict[str, float]


SCENARIOS = (
    Scenario("stale depth, 1 tick", (JUDGE["steady"], JUDGE["burst"]), {"depth_lag_ticks": 1}, {}),
    Scenario("stale depth, 3 ticks", (JUDGE["steady"], JUDGE["burst"]), {"depth_lag_ticks": 3}, {}),
    Scenario(
        "missing metrics (30 % of ticks)", (JUDGE["steady"], JUDGE["burst"]), {"missing_metrics": 0.3}, {}
    ),
    Scenario("MaxTasks 100", (JUDGE["burst"], JUDGE["ramp"]), {}, {"max_tasks": 100}),
    Scenario("long idle, then a spike", (_IDLE_SPIKE,), {}, {}),
    Scenario(
        "Spot notices (2 per task-hour)",
        (JUDGE["steady"], JUDGE["burst"]),
        {"spot_interruptions_per_hour": 2},
        {},
    ),
    Scenario(
        "heavier tail (p95 300 s)",
        tuple(replace(JUDGE[name], task_sigma=sigma_for_p95(30, 300)) for name in ("steady", "burst")),
        {},
        {},
    ),
    Scenario("concurrency 2", (JUDGE["steady"], JUDGE["burst"]), {"concurrency": 2}, {"concurrency": 2}),
)
HEADERS = (
    "scenario",
    "profile",
    "policy",
    "p95 wait",
    "task-hours x oracle",
    "reversals/h",
    "busy stopped",
    "unfinished",
)


def robustness_report(base: ScalingPolicy, fleet: Fleet, prices: Prices, *, markdown: bool = False) -> str:
    rows: list[tuple[str, ...]] = []
    for scenario in SCENARIOS:
        policy = replace(base, **scenario.policy)  # type: ignore[arg-type]
        faulty = replace(fleet, **scenario.fleet)  # type: ignore[arg-type]
        for profile in scenario.profiles:
            comparison = compare(
                profile,
                base=policy,
                kinds=(PolicyKind.STEP, DEFAULT_POLICY),
                fleet=faulty,
                prices=prices,
                seed=1,
                bound=False,
            )
            for run in comparison.runs:
                rows.append(
                    (
                        scenario.name,
                        profile.name,
                        run.policy,
                        duration_text(run.wait(0.95)),
                        f"{run.task_hours / comparison.oracle.busy_hours:.2f}",
                        f"{run.reversals_per_hour:.1f}",
                        str(run.stopped_busy),
                        str(run.unfinished),
                    )
                )
    return render(HEADERS, rows, markdown=markdown)
