"""Scaling maths: the seed's step table over queue depth, with Application Auto Scaling's reading.

A step is `<=UPPER:CHANGE` (scale in while depth is at most UPPER) or `>=LOWER:CHANGE` (scale out
from LOWER up). Depths between the highest scale-in bound and the lowest scale-out bound change
nothing, as in AAS, where the intervals around the alarm threshold carry no adjustment."""

from __future__ import annotations

import math
from dataclasses import dataclass

from aws_lambda_powertools.metrics import MetricUnit

from mistersmith.observability import logger, metrics
from mistersmith.ports import QueueDepth, ServiceCounts, WorkerService, WorkQueue

SEED_STEPS = "<=0:-1,>=10:1,>=100:5,>=1000:20,>=5000:50"


@dataclass(frozen=True)
class StepTable:
    scale_in: tuple[tuple[int, int], ...]  # (upper bound, negative change), tightest bound first
    scale_out: tuple[tuple[int, int], ...]  # (lower bound, positive change), highest bound first

    @classmethod
    def parse(cls, text: str) -> StepTable:
        scale_in, scale_out = [], []
        for item in text.split(","):
            bound, sep, change_text = item.strip().partition(":")
            if not sep or bound[:2] not in ("<=", ">="):
                raise ValueError(f"step {item.strip()!r} must look like <=UPPER:CHANGE or >=LOWER:CHANGE")
            limit, change = int(bound[2:]), int(change_text)
            if bound.startswith("<=") and change < 0:
                scale_in.append((limit, change))
            elif bound.startswith(">=") and change > 0:
                scale_out.append((limit, change))
            else:
                raise ValueError(f"step {item.strip()!r}: <= steps remove tasks, >= steps add them")
        table = cls(tuple(sorted(scale_in)), tuple(sorted(scale_out, reverse=True)))
        if not scale_out:
            raise ValueError("the step table needs at least one >= step")
        bounds = [bound for bound, _ in scale_in + scale_out]
        if len(bounds) != len(set(bounds)):
            raise ValueError("each bound may appear in one step only")
        if scale_in and table.scale_in[-1][0] >= table.scale_out[-1][0]:
            raise ValueError("scale-in and scale-out steps overlap")
        return table

    def adjustment(self, depth: int) -> int:
        """The change in task count for this queue depth."""
        for lower, change in self.scale_out:
            if depth >= lower:
                return change
        for upper, change in self.scale_in:
            if depth <= upper:
                return change
        return 0


@dataclass(frozen=True)
class ScalingPolicy:
    steps: StepTable
    min_tasks: int
    max_tasks: int


@dataclass(frozen=True)
class Decision:
    desired: int
    adjustment: int
    reason: str


def decide(depth: QueueDepth | None, service: ServiceCounts | None, policy: ScalingPolicy) -> Decision | None:
    """The new desired count, or None to change nothing (missing data is never a reason to act)."""
    if depth is None or service is None or math.isnan(float(depth.visible)):
        return None
    adjustment = policy.steps.adjustment(depth.visible)
    if adjustment < 0 and depth.in_flight > 0:
        return Decision(service.desired, 0, f"hold: {depth.in_flight} tasks in flight")
    # AAS starts adjustments from the running count, then clamps to [min, max].
    target = min(max(service.running + adjustment, policy.min_tasks), policy.max_tasks)
    return Decision(
        target, adjustment, f"depth {depth.visible}: step {adjustment:+d} from {service.running} running"
    )


class Autoscaler:
    """The controller: reads the queue and the service, decides, applies. Reads that fail change nothing."""

    def __init__(self, queue: WorkQueue, service: WorkerService, policy: ScalingPolicy) -> None:
        self.queue = queue
        self.service = service
        self.policy = policy

    def run(self) -> Decision | None:
        try:
            depth = self.queue.depth()
            counts = self.service.counts()
        except Exception:  # a scaler that acts on missing data kills busy workers: do nothing instead
            logger.exception("scaling inputs unavailable; desired count left as it is")
            return None
        decision = decide(depth, counts, self.policy)
        if decision is None:
            return None
        if decision.desired != counts.desired:
            self.service.set_desired(decision.desired)
        logger.info(
            "scaling_event",
            extra={
                "scaling_event": decision.reason,
                "desired_count": decision.desired,
                "previous_desired_count": counts.desired,
                "running_count": counts.running,
                "queue_visible": depth.visible,
                "queue_in_flight": depth.in_flight,
            },
        )
        metrics.add_metric(name="DesiredCount", unit=MetricUnit.Count, value=decision.desired)
        metrics.add_metric(name="QueueDepth", unit=MetricUnit.Count, value=depth.visible)
        return decision
