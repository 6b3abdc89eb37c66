"""`python -m simulator.idle_cost`: what the stack costs per day with no tasks at all, from the template's
defaults and the prices in simulator/pricing.py. docs/deploy.md shows its table (a test keeps it current).

Idle, the stack runs MinTasks workers (placed as the capacity strategy places them), one NAT gateway
when it creates its VPC without endpoints, each worker's long polls of the work queue, and the
autoscaler's tick with its queue read, its record read and write and its durations query."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cfnlint.decode import cfn_yaml

from mistersmith.settings import WorkerSettings
from simulator.pricing import NAT_GATEWAY_HOUR, PER_MILLION, Prices

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
DAY_SECONDS = 86_400
ARCHITECTURES = {"X86_64": "x86", "ARM64": "arm"}
NOT_COUNTED = (
    "data through the NAT gateway, logs ingested and stored, the KMS key (about 1 USD a month), "
    "dashboards, alarms and Container Insights metrics beyond the free tier, Lambda duration"
)


@dataclass(frozen=True)
class Line:
    item: str
    quantity: str
    usd_per_day: float


def template_defaults(path: Path = TEMPLATE) -> tuple[dict[str, str], dict]:
    body = cfn_yaml.load(str(path))
    return {name: str(spec.get("Default", "")) for name, spec in body["Parameters"].items()}, body


def schedule_per_day(body: dict, function: str) -> int:
    """Invocations a day of a function's `rate(N minute[s])` schedule."""
    for event in body["Resources"][function]["Properties"]["Events"].values():
        if event["Type"] == "Schedule":
            match = re.fullmatch(r"rate\((\d+) minutes?\)", event["Properties"]["Schedule"])
            if match is None:
                raise ValueError(f"{function}'s schedule is not a rate in minutes")
            return DAY_SECONDS // (60 * int(match[1]))
    raise ValueError(f"{function} has no schedule")


def idle_lines(path: Path = TEMPLATE) -> list[Line]:
    defaults, body = template_defaults(path)
    prices = Prices(
        architecture=ARCHITECTURES[defaults["WorkerCpuArchitecture"]],
        vcpu=int(defaults["WorkerCpu"]) / 1024,
        memory_gb=int(defaults["WorkerMemory"]) / 1024,
        on_demand_base=int(defaults["OnDemandBase"]),
        spot_weight=int(defaults["SpotWeight"]),
        on_demand_weight=int(defaults["OnDemandWeight"]),
    )
    workers = int(defaults["MinTasks"])
    spot = 0
    for placed in range(workers):
        spot += prices.place_on_spot(placed - spot, spot) if defaults["UseSpot"] == "true" else 0
    on_demand = workers - spot
    lines = [
        Line(
            f"workers on FARGATE ({prices.vcpu:g} vCPU, {prices.memory_gb:g} GB, {prices.architecture})",
            f"{on_demand} x 24 h",
            on_demand * 24 * prices.on_demand_hour,
        ),
    ]
    if spot:
        lines.append(Line("workers on FARGATE_SPOT", f"{spot} x 24 h", spot * 24 * prices.spot_hour))
    if defaults["VpcId"] == "" and defaults["UseVpcEndpoints"] != "true":
        lines.append(Line("NAT gateway (the created VPC's)", "24 h", 24 * NAT_GATEWAY_HOUR))
    polls = workers * DAY_SECONDS // WorkerSettings.model_fields["receive_wait_seconds"].default
    lines.append(
        Line(
            "workers' empty long polls (SQS)", f"{polls:,} requests", polls * PER_MILLION["sqs_request"] / 1e6
        )
    )
    ticks = schedule_per_day(body, "AutoscalerFunction")
    per_tick = (
        PER_MILLION["lambda_request"]
        + PER_MILLION["sqs_request"]  # queue depth
        + 2 * PER_MILLION["dynamodb_read_unit"]  # its record (consistent), the durations query
        + PER_MILLION["dynamodb_write_unit"]  # its record, written every tick
    )
    lines.append(Line("autoscaler ticks (Lambda, SQS, DynamoDB)", f"{ticks:,} ticks", ticks * per_tick / 1e6))
    return lines


def table(lines: list[Line]) -> str:
    rows = [f"| {line.item} | {line.quantity} | {line.usd_per_day:.4f} |" for line in lines]
    total = sum(line.usd_per_day for line in lines)
    return "\n".join(
        [
            "| what runs idle | per day | USD per day |",
            "|---|---|---|",
            *rows,
            f"| **total** | | **{total:.2f}** (about {total * 30:.0f} a month) |",
            "",
            f"Not counted: {NOT_COUNTED}.",
        ]
    )


if __name__ == "__main__":
    print(table(idle_lines()))
