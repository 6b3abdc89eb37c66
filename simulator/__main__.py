"""`python -m simulator` (`make simulate`): the scaling policies on the standard load profiles.

Prints, per profile and seed, the default policy against the seed's step table, the oracle and the
clairvoyant bound, the goal's PASS/FAIL per cell, and a closing note naming any failing cell;
`--robustness` runs the default policy and the step table under faults instead."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from mistersmith.scaling import DEFAULT_POLICY, PolicyKind, StepTable
from simulator.compare import DEFAULT_MODEL, MODELS, Comparison, compare, default_policy, verdict
from simulator.pricing import Prices
from simulator.profiles import load_profile, median_for_mean
from simulator.report import closing_note, goal_table, plot, table, write_between_markers
from simulator.robustness import robustness_report

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PLOT = ROOT / "docs" / "scaling-burst.png"


def parser() -> argparse.ArgumentParser:
    prices = Prices()
    fleet = MODELS[DEFAULT_MODEL].fleet
    cli = argparse.ArgumentParser(prog="python -m simulator", description=(__doc__ or "").split("\n\n")[0])
    cli.add_argument("--model", choices=list(MODELS), default=DEFAULT_MODEL, help="profiles and fleet")
    cli.add_argument(
        "--profile", action="append", help="profile to run (repeat; default: the model's standard ones)"
    )
    cli.add_argument(
        "--profile-file",
        type=Path,
        action="append",
        default=[],
        help="CSV: seconds,rate_per_second[,burst_tasks]",
    )
    cli.add_argument(
        "--policy",
        action="append",
        choices=[kind.value for kind in PolicyKind],
        help="policy (repeat; default: step and drain; the step table is always run, as the reference)",
    )
    cli.add_argument("--seed", type=int, action="append", help="seed (repeat; default 1, 2 and 3)")
    cli.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    cli.add_argument("--runs", action="store_true", help="also print every run's waits and task-hours")
    cli.add_argument("--robustness", action="store_true", help="the fault runs instead of the goal table")
    cli.add_argument(
        "--plot",
        type=Path,
        default=DEFAULT_PLOT,
        help=f"PNG of --plot-profile ({DEFAULT_PLOT.relative_to(ROOT)})",
    )
    cli.add_argument("--plot-profile", default="burst", help="profile to plot, first seed (default burst)")
    cli.add_argument("--no-plot", action="store_true")
    cli.add_argument(
        "--write-tables",
        action="store_true",
        help="also write the goal table into README.md and docs/scaling.md (between their markers)",
    )
    scaling = cli.add_argument_group("scaling (defaults: template.yaml's)")
    scaling.add_argument("--steps", type=StepTable.parse, help="step table, e.g. '<=0:-1,>=10:1'")
    scaling.add_argument("--min-tasks", type=int)
    scaling.add_argument("--max-tasks", type=int)
    scaling.add_argument("--cooldown", type=int, dest="cooldown_seconds")
    scaling.add_argument(
        "--latency", type=float, dest="scaling_latency_seconds", help="backlog target / drain budget, s"
    )
    scaling.add_argument(
        "--task-seconds", type=float, dest="scaling_task_seconds", help="expected processing time, s"
    )
    scaling.add_argument("--headroom", type=float, dest="scaling_headroom")
    model = cli.add_argument_group("load and fleet (defaults: the model's)")
    model.add_argument("--processing-mean", type=float, help="mean processing seconds per task")
    model.add_argument("--processing-sigma", type=float, help="log-normal shape of processing times")
    model.add_argument(
        "--start-seconds", type=float, help=f"Fargate start latency, s ({fleet.start_seconds:g})"
    )
    model.add_argument("--launches-per-second", type=float)
    model.add_argument("--launch-burst", type=int)
    model.add_argument("--spot-interruptions-per-hour", type=float)
    model.add_argument("--concurrency", type=int, help="tasks per worker at once (the policy is told too)")
    cost = cli.add_argument_group(
        "cost (defaults: us-east-1 Fargate prices, template's worker size and Spot mix)"
    )
    cost.add_argument("--architecture", choices=["x86", "arm"], default=prices.architecture)
    cost.add_argument("--vcpu", type=float, default=prices.vcpu)
    cost.add_argument("--memory-gb", type=float, default=prices.memory_gb)
    cost.add_argument("--spot-discount", type=float, default=prices.spot_discount)
    cost.add_argument("--on-demand-base", type=int, default=prices.on_demand_base)
    cost.add_argument("--spot-weight", type=int, default=prices.spot_weight)
    cost.add_argument("--on-demand-weight", type=int, default=prices.on_demand_weight)
    return cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    chosen = MODELS[args.model]
    unknown = set(args.profile or []) - set(chosen.profiles)
    if unknown:
        parser().error(
            f"unknown profile(s) {sorted(unknown)} for model {args.model}: {sorted(chosen.profiles)}"
        )
    names = args.profile or [name for name, profile in chosen.profiles.items() if profile.standard]
    profiles = [chosen.profiles[name] for name in dict.fromkeys(names)]
    profiles += [
        replace(load_profile(path), task_median=chosen.profiles["steady"].task_median)
        for path in args.profile_file
    ]
    if args.processing_sigma is not None:
        profiles = [replace(p, task_sigma=args.processing_sigma) for p in profiles]
    if args.processing_mean is not None:
        profiles = [
            replace(p, task_median=median_for_mean(args.processing_mean, p.task_sigma)) for p in profiles
        ]
    fleet = replace(
        chosen.fleet,
        **{
            name: value
            for name, value in {
                "start_seconds": args.start_seconds,
                "launches_per_second": args.launches_per_second,
                "launch_burst": args.launch_burst,
                "spot_interruptions_per_hour": args.spot_interruptions_per_hour,
                "concurrency": args.concurrency,
            }.items()
            if value is not None
        },
    )
    overrides = {
        name: value
        for name, value in {
            "scaling_steps": args.steps,
            "min_tasks": args.min_tasks,
            "max_tasks": args.max_tasks,
            "cooldown_seconds": args.cooldown_seconds,
            "scaling_latency_seconds": args.scaling_latency_seconds,
            "scaling_task_seconds": args.scaling_task_seconds,
            "scaling_headroom": args.scaling_headroom,
            "worker_start_seconds": args.start_seconds,
            "worker_concurrency": args.concurrency,
        }.items()
        if value is not None
    }
    base = default_policy(**overrides)
    prices = Prices(
        architecture=args.architecture,
        vcpu=args.vcpu,
        memory_gb=args.memory_gb,
        spot_discount=args.spot_discount,
        on_demand_base=args.on_demand_base,
        spot_weight=args.spot_weight,
        on_demand_weight=args.on_demand_weight,
    )
    print(
        f"model {chosen.name} ({chosen.description}); min {base.min_tasks}, max {base.max_tasks}, latency budget "
        f"{base.latency_seconds:g} s; launches {fleet.launches_per_second:g}/s, burst {fleet.launch_burst}; "
        f"{prices.architecture} {prices.vcpu:g} vCPU / {prices.memory_gb:g} GB at ${prices.on_demand_hour:.4f}/h"
    )
    if args.robustness:
        print(robustness_report(base, fleet, prices, markdown=args.markdown))
        return 0
    kinds = tuple(
        dict.fromkeys([PolicyKind.STEP, *(PolicyKind(v) for v in args.policy or [DEFAULT_POLICY.value])])
    )
    seeds = args.seed or [1, 2, 3]
    comparisons: list[Comparison] = []
    for profile in profiles:
        print(f"  {profile.name}: {profile.description}")
        comparisons += [
            compare(profile, base=base, kinds=kinds, fleet=fleet, prices=prices, seed=seed) for seed in seeds
        ]
    if args.runs:
        print()
        print(table(comparisons, markdown=args.markdown))
    verdicts = [v for v in map(verdict, comparisons) if v is not None]
    print()
    print(goal_table(verdicts, markdown=args.markdown))
    print()
    print(closing_note(verdicts))
    plotted = next(
        (c for c in comparisons if c.profile.name == args.plot_profile and c.seed == seeds[0]), None
    )
    if plotted and not args.no_plot:
        print(f"\nplot: {plot(plotted, args.plot)}")
    if args.write_tables:
        block = f"{goal_table(verdicts, markdown=True)}\n\n{closing_note(verdicts)}"
        for path in (ROOT / "README.md", ROOT / "docs" / "scaling.md"):
            write_between_markers(path, block)
            print(f"wrote the goal table into {path.relative_to(ROOT)}")
    return 0 if all(v.passed for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
