"""`python -m simulator` (`make simulate`): the scaling policies on the standard load profiles.

Prints, per profile and policy, queue waits, time to drain, task-hours against the oracle and cost;
checks the default policy against issue 8's bar; writes the burst profile's plot."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from mistersmith.scaling import DEFAULT_POLICY, PolicyKind, StepTable
from simulator.compare import LABELS, compare, default_policy
from simulator.model import Fleet
from simulator.pricing import Prices
from simulator.profiles import STANDARD, load_profile
from simulator.report import plot, table, verdicts

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PLOT = ROOT / "docs" / "scaling-burst.png"


def parser() -> argparse.ArgumentParser:
    fleet, prices = Fleet(), Prices()
    cli = argparse.ArgumentParser(prog="python -m simulator", description=__doc__.split("\n\n")[0])
    cli.add_argument(
        "--profile",
        action="append",
        choices=[*STANDARD, "all"],
        help="profile to run (repeat; default: the four standard ones; 'all' adds ramp)",
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
        help="policy (repeat; default: all)",
    )
    cli.add_argument("--seed", type=int, default=1)
    cli.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    cli.add_argument(
        "--plot",
        type=Path,
        default=DEFAULT_PLOT,
        help=f"PNG of the plot profile (default {DEFAULT_PLOT.relative_to(ROOT)})",
    )
    cli.add_argument("--plot-profile", default="burst", help="profile to plot (default burst)")
    cli.add_argument("--no-plot", action="store_true")
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
    model = cli.add_argument_group("load and fleet")
    model.add_argument("--processing-mean", type=float, help="mean processing seconds per task (profile: 60)")
    model.add_argument(
        "--processing-sigma", type=float, help="log-normal shape of processing times (profile: 0.5)"
    )
    model.add_argument(
        "--start-seconds", type=float, default=fleet.start_seconds, help="Fargate start latency, s"
    )
    model.add_argument("--launches-per-second", type=float, default=fleet.launches_per_second)
    model.add_argument("--launch-burst", type=int, default=fleet.launch_burst)
    model.add_argument("--spot-interruptions-per-hour", type=float, default=fleet.spot_interruptions_per_hour)
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
    names = args.profile or [name for name, profile in STANDARD.items() if profile.standard]
    if "all" in names:
        names = list(STANDARD)
    profiles = [STANDARD[name] for name in dict.fromkeys(names)]
    profiles += [load_profile(path) for path in args.profile_file]
    if args.processing_mean is not None:
        profiles = [replace(profile, task_seconds=args.processing_mean) for profile in profiles]
    if args.processing_sigma is not None:
        profiles = [replace(profile, task_sigma=args.processing_sigma) for profile in profiles]
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
        }.items()
        if value is not None
    }
    base = default_policy(worker_start_seconds=args.start_seconds, **overrides)
    kinds = tuple(PolicyKind(value) for value in args.policy) if args.policy else tuple(PolicyKind)
    fleet = Fleet(
        start_seconds=args.start_seconds,
        launches_per_second=args.launches_per_second,
        launch_burst=args.launch_burst,
        spot_interruptions_per_hour=args.spot_interruptions_per_hour,
    )
    prices = Prices(
        architecture=args.architecture,
        vcpu=args.vcpu,
        memory_gb=args.memory_gb,
        spot_discount=args.spot_discount,
        on_demand_base=args.on_demand_base,
        spot_weight=args.spot_weight,
        on_demand_weight=args.on_demand_weight,
    )
    comparisons = [
        compare(profile, base=base, kinds=kinds, fleet=fleet, prices=prices, seed=args.seed)
        for profile in profiles
    ]
    print(
        f"min {base.min_tasks}, max {base.max_tasks}, cooldown {base.cooldown_seconds:g} s, latency budget "
        f"{base.latency_seconds:g} s, start {fleet.start_seconds:g} s; {prices.architecture} "
        f"{prices.vcpu:g} vCPU / {prices.memory_gb:g} GB at ${prices.on_demand_hour:.4f}/h on demand, "
        f"${prices.spot_hour:.4f}/h Spot"
    )
    for comparison in comparisons:
        print(
            f"  {comparison.profile.name}: {comparison.profile.description} ({comparison.oracle.tasks} tasks)"
        )
    print()
    print(table(comparisons, markdown=args.markdown))
    print()
    missed = 0
    for name, passed, why in verdicts(comparisons, LABELS[DEFAULT_POLICY], LABELS[PolicyKind.STEP]):
        # The bar is set for the standard profiles; on a profile file the verdict is for information.
        missed += not passed and name in STANDARD and STANDARD[name].standard
        print(
            f"{'meets' if passed else 'MISSES'} the bar on {name} ({LABELS[DEFAULT_POLICY]}, the default): {why}"
        )
    plotted = next((c for c in comparisons if c.profile.name == args.plot_profile), None)
    if plotted and not args.no_plot:
        print(f"\nplot: {plot(plotted, args.plot)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
