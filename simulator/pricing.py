"""What a worker task costs per hour.

Defaults: AWS Fargate on-demand prices, us-east-1, Linux, per hour (aws.amazon.com/fargate/pricing,
as recorded in shared/PLATFORM.md, 2026): x86 $0.04048 per vCPU and $0.004445 per GB, ARM $0.03238
per vCPU and $0.00356 per GB; Fargate Spot "up to about 70 % off" (taken here as exactly 70 %). The
worker size is the template's default (WorkerCpu 1024 = 1 vCPU, WorkerMemory 2048 MiB = 2 GB), and
the Spot share follows the template's capacity strategy: two tasks on FARGATE (OnDemandBase), then
FARGATE_SPOT weight 2 to FARGATE weight 1. Billing is per second with a one-minute minimum."""

from __future__ import annotations

from dataclasses import dataclass

PER_HOUR = {
    "x86": {"vcpu": 0.04048, "gb": 0.004445},
    "arm": {"vcpu": 0.03238, "gb": 0.00356},
}

# Request prices, us-east-1, USD per million (shared/PLATFORM.md): EventBridge custom events and SQS
# requests per 64 KB chunk, DynamoDB on-demand per read / write unit, Lambda and API Gateway REST per request.
PER_MILLION = {
    "eventbridge_event": 1.00,
    "sqs_request": 0.40,
    "dynamodb_write_unit": 0.625,
    "dynamodb_read_unit": 0.125,
    "lambda_request": 0.20,
    "api_gateway_rest_request": 3.50,
}
# One NAT gateway per hour, us-east-1, before data (docs/deploy.md's figure; aws.amazon.com/vpc/pricing).
NAT_GATEWAY_HOUR = 0.045


@dataclass(frozen=True)
class Prices:
    architecture: str = "x86"
    vcpu: float = 1.0
    memory_gb: float = 2.0
    spot_discount: float = 0.70
    on_demand_base: int = 2  # template OnDemandBase
    spot_weight: int = 2  # template SpotWeight
    on_demand_weight: int = 1  # template OnDemandWeight
    billing_minimum_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.architecture not in PER_HOUR:
            raise ValueError(f"architecture must be one of {sorted(PER_HOUR)}")
        if not 0 <= self.spot_discount < 1:
            raise ValueError("spot_discount is a fraction in [0, 1)")

    @property
    def on_demand_hour(self) -> float:
        rates = PER_HOUR[self.architecture]
        return self.vcpu * rates["vcpu"] + self.memory_gb * rates["gb"]

    @property
    def spot_hour(self) -> float:
        return self.on_demand_hour * (1 - self.spot_discount)

    @property
    def spot_share(self) -> float:
        """The share of tasks above the on-demand base that run on Spot."""
        total = self.spot_weight + self.on_demand_weight
        return self.spot_weight / total if total else 0.0

    def place_on_spot(self, on_demand_alive: int, spot_alive: int) -> bool:
        """Where ECS puts one more task: FARGATE up to the base, then Spot by the weights."""
        if on_demand_alive < self.on_demand_base:
            return False
        above_base = on_demand_alive - self.on_demand_base + spot_alive + 1
        return spot_alive < above_base * self.spot_share

    def cost(self, on_demand_hours: float, spot_hours: float) -> float:
        return on_demand_hours * self.on_demand_hour + spot_hours * self.spot_hour

    def blended_hour(self) -> float:
        """Price of a task-hour at the strategy's mix far above the base (for the oracle)."""
        return self.spot_share * self.spot_hour + (1 - self.spot_share) * self.on_demand_hour
