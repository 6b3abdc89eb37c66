"""One comparison: every profile against the seed's step table, backlog per task, drain and the oracle,
with the autoscaler's defaults (the same defaults as template.yaml, through AutoscalerSettings)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from mistersmith.scaling import PolicyKind, ScalingPolicy
from mistersmith.settings import AutoscalerSettings
from simulator.model import Fleet, RunResult, oracle, simulate
from simulator.pricing import Prices
from simulator.profiles import Profile

LABELS = {PolicyKind.STEP: "step (seed)", PolicyKind.BACKLOG: "backlog", PolicyKind.DRAIN: "drain"}


def default_policy(**overrides: Any) -> ScalingPolicy:
    """The policy a deployment with default parameters runs (overrides by AutoscalerSettings field)."""
    fields = AutoscalerSettings.model_fields
    values = {name: fields[name].default for name in fields if not fields[name].is_required()}
    values |= overrides
    return ScalingPolicy(
        values["scaling_steps"],
        values["min_tasks"],
        values["max_tasks"],
        cooldown_seconds=values["cooldown_seconds"],
        kind=PolicyKind(values["scaling_policy"]),
        latency_seconds=values["scaling_latency_seconds"],
        task_seconds=values["scaling_task_seconds"],
        start_seconds=values["worker_start_seconds"],
        headroom=values["scaling_headroom"],
    )


@dataclass(frozen=True)
class Comparison:
    profile: Profile
    oracle: RunResult
    runs: list[RunResult]

    @property
    def all(self) -> list[RunResult]:
        return [*self.runs, self.oracle]


def compare(
    profile: Profile,
    *,
    base: ScalingPolicy | None = None,
    kinds: tuple[PolicyKind, ...] = (PolicyKind.STEP, PolicyKind.BACKLOG, PolicyKind.DRAIN),
    fleet: Fleet | None = None,
    prices: Prices | None = None,
    seed: int = 1,
) -> Comparison:
    base = base or default_policy()
    prices = prices or Prices()
    arrivals = profile.arrivals(seed)
    runs = [
        simulate(
            profile.name,
            arrivals,
            replace(base, kind=kind),
            label=LABELS[kind],
            duration=profile.duration,
            fleet=fleet,
            prices=prices,
            seed=seed,
        )
        for kind in kinds
    ]
    return Comparison(profile, oracle(profile.name, arrivals, prices), runs)
