"""The autoscaler's controller (the scheduled Lambda's logic): reads the queue, the service, its own
record and the worker tasks' times, calls `scaling.decide`, records, applies. The maths is in
`mistersmith.scaling`; the ports are in `mistersmith.ports`."""

from __future__ import annotations

import time
from collections.abc import Callable

from aws_lambda_powertools.metrics import MetricUnit

from mistersmith.observability import logger, record_metrics, traced
from mistersmith.ports import (
    QueueDepth,
    ScalingState,
    ServiceCounts,
    TaskTimeSource,
    WorkerService,
    WorkQueue,
)
from mistersmith.scaling import (
    TASK_TIME_SAMPLE,
    Decision,
    ScalingPolicy,
    decide,
    estimate_task_seconds,
    next_record,
)

RACE_RETRIES = 1


class _LostRace(Exception):
    """Another invocation wrote the record between this one's read and write."""


class Autoscaler:
    """Any read that fails changes nothing; of two racing invocations only one acts."""

    def __init__(
        self,
        queue: WorkQueue,
        service: WorkerService,
        policy: ScalingPolicy,
        state: ScalingState,
        task_times: TaskTimeSource | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.service = service
        self.policy = policy
        self.state = state
        self.task_times = task_times
        self.clock = clock

    @traced
    def run(self) -> Decision | None:
        """One tick: the decision applied, or None when nothing was (inputs missing, or another
        invocation kept writing first)."""
        for _ in range(RACE_RETRIES + 1):
            try:
                return self._once()
            except _LostRace:
                logger.info("another autoscaler invocation wrote first; reading again")
        logger.warning("other autoscaler invocations kept writing first; nothing applied")
        return None

    def _once(self) -> Decision | None:
        try:
            depth = self.queue.depth()
            counts = self.service.counts()
            last = self.state.last_action()
            times = self.task_times.task_times(sample=TASK_TIME_SAMPLE) if self.task_times else None
        except Exception:  # a scaler that acts on missing data kills busy workers: do nothing instead
            logger.exception("scaling inputs unavailable; desired count left as it is")
            return None
        now = self.clock()
        task_seconds = (
            estimate_task_seconds(times, now=now, prior=self.policy.task_seconds) if times else None
        )
        decision = decide(depth, counts, self.policy, now=now, last=last, task_seconds=task_seconds)
        if decision is None:
            logger.warning(
                "scaling inputs incomplete; desired count left as it is",
                extra={"queue_depth": repr(depth), "service_counts": repr(counts)},
            )
            return None
        # The record goes first, and only if no other invocation wrote since this one read: two
        # racing invocations never both act, and the loser decides again on fresh readings.
        if not self.state.record(next_record(decision, now=now, last=last), previous=last):
            raise _LostRace
        if decision.changed:
            self.service.set_desired(decision.desired)
        self.state.record_decision(decision, now=now, depth=depth, counts=counts)
        self._report(decision, depth, counts, task_seconds)
        return decision

    def _report(
        self, decision: Decision, depth: QueueDepth, counts: ServiceCounts, task_seconds: float | None
    ) -> None:
        # The scaling-events Logs Insights query parses "desired_count":N and "running_count":N from this line.
        logger.info(
            "scaling_event",
            extra={
                "scaling_event": decision.reason,
                "policy": self.policy.kind.value,
                "desired_count": decision.desired,
                "previous_desired_count": decision.previous,
                "running_count": counts.running,
                "pending_count": counts.pending,
                "queue_visible": depth.visible,
                "queue_in_flight": depth.in_flight,
                "queue_delayed": depth.delayed,
                "task_seconds_observed": task_seconds,
                "changed": decision.changed,
            },
        )
        direction = (
            "out"
            if decision.desired > decision.previous
            else "in"
            if decision.desired < decision.previous
            else "hold"
        )
        record_metrics(
            {
                "ScalingDecisions": (MetricUnit.Count, 1),
                "QueueDepth": (MetricUnit.Count, depth.visible),
                "BacklogPerTask": (MetricUnit.Count, depth.visible / max(counts.running, 1)),
                "DesiredCount": (MetricUnit.Count, decision.desired),
            },
            direction=direction,
        )
