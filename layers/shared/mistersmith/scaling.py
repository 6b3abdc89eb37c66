"""Scaling decisions: one pure function from what the autoscaler observes to a desired count, three
policies behind it, and the controller (the scheduled Lambda's logic) that feeds and applies it.

`step` is the seed's table with Application Auto Scaling's reading. A step is `<=UPPER:CHANGE` (scale
in while visible depth is at most UPPER) or `>=LOWER:CHANGE` (scale out from LOWER up); depths between
the highest scale-in bound and the lowest scale-out bound change nothing. Adjustments start from the
running count; a scale-out inside a scale-out's cooldown starts from that scale-out's base, so a larger
step adds only the difference; a scale-in waits out the cooldown of the last scale-in, and a scale-out
ends that cooldown.

`backlog` is the AWS recipe (and Copilot's worker service): keep visible messages per task at
acceptable latency / average processing time.

`drain` is ours: the tasks that keep up with arrivals (the busy ones; while work waits, the observed
throughput plus the queue's growth), plus enough to clear what waits within a latency budget at the
observed processing time (a new task helps only once started), plus square-root headroom while nothing
waits. Idle tasks go as soon as nothing waits; while work waits nothing is taken back.

Every policy: the result stays in [min, max]; it never drops below the busy workers (an empty visible
queue with work in flight does not kill that work); no scale-in during a deployment; a service at
zero with work waiting gets a task; missing or NaN inputs change nothing (`decide` returns None)."""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from aws_lambda_powertools.metrics import MetricUnit

from mistersmith.clock import iso_from_epoch
from mistersmith.models import ScalingDecisionEntry
from mistersmith.observability import logger, record_metrics, traced
from mistersmith.ports import QueueDepth, ServiceCounts, WorkerService, WorkQueue

SEED_STEPS = "<=0:-1,>=10:1,>=100:5,>=1000:20,>=5000:50"


class PolicyKind(StrEnum):
    STEP = "step"
    BACKLOG = "backlog"
    DRAIN = "drain"


# The default policy, chosen on the simulator's evidence (docs/scaling.md): `make simulate`.
DEFAULT_POLICY = PolicyKind.DRAIN


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
        # A deeper queue never adds less or removes more: the step is monotone in depth.
        outs = [change for _, change in reversed(table.scale_out)]
        ins = [change for _, change in table.scale_in]
        if outs != sorted(outs) or ins != sorted(ins):
            raise ValueError("steps must not shrink as the depth grows (a deeper queue never adds less)")
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
    cooldown_seconds: float = 60
    kind: PolicyKind = PolicyKind.STEP
    # Acceptable queue wait: the backlog policy's latency target, the drain policy's budget.
    latency_seconds: float = 600
    # Expected processing time of one task: the backlog policy's divisor, the drain policy's fallback
    # while no task has finished recently.
    task_seconds: float = 60
    # How long a new Fargate task takes to start taking work (image pull, boot): the drain policy's lead.
    start_seconds: float = 60
    # Spare tasks over the busy ones, times the square root of the busy count (square-root staffing).
    headroom: float = 0.5


@dataclass(frozen=True)
class Observation:
    """What one invocation saw: the drain policy's reference for the next one's growth and throughput."""

    at: float  # epoch seconds
    waiting: int  # visible + delayed
    busy: int  # min(in flight, running)


@dataclass(frozen=True)
class LastAction:
    """The autoscaler's record between invocations, kept in the state table: its last change (for the
    cooldown) and what the last invocation saw."""

    at: float  # epoch seconds of the last change (0: none yet)
    desired: int  # the count it set
    base: int  # the running count it started from
    adjustment: int  # signed change it meant to make (for `step`, the table's step; 0: none)
    seen: Observation | None = None
    version: int = 0  # bumped on every write; writes are conditional on the version read

    @property
    def scaled_out(self) -> bool:
        return self.adjustment > 0

    @property
    def scaled_in(self) -> bool:
        return self.adjustment < 0


@dataclass(frozen=True)
class Decision:
    desired: int
    previous: int
    adjustment: int  # signed: > 0 scale-out, < 0 scale-in, 0 hold
    reason: str
    base: int = 0  # the count the adjustment started from (recorded for the next cooldown)
    seen: Observation | None = None

    @property
    def changed(self) -> bool:
        return self.desired != self.previous


def next_record(decision: Decision, *, now: float, last: LastAction | None) -> LastAction:
    """The record this invocation leaves: a changed decision is the new last action; either way the
    observation is the next invocation's reference."""
    if decision.changed or last is None:
        action = LastAction(
            at=now if decision.changed else 0.0,
            desired=decision.desired,
            base=decision.base,
            adjustment=decision.adjustment if decision.changed else 0,
        )
    else:
        action = last
    return replace(action, seen=decision.seen, version=(last.version if last else 0) + 1)


def _bad(*numbers: float) -> bool:
    return any(number is None or math.isnan(float(number)) or number < 0 for number in numbers)


def decide(
    depth: QueueDepth | None,
    service: ServiceCounts | None,
    policy: ScalingPolicy,
    *,
    now: float,
    last: LastAction | None = None,
    task_seconds: float | None = None,
) -> Decision | None:
    """The new desired count and why, or None to change nothing (missing data is never a reason to act).

    `now` is epoch seconds; `last` is the autoscaler's last action; `task_seconds` is the observed mean
    processing time of recently finished tasks (None: not known, the policy's estimate is used)."""
    if depth is None or service is None:
        return None
    if _bad(depth.visible, depth.in_flight, depth.delayed, service.desired, service.running, service.pending):
        return None
    if _bad(now) or (last is not None and _bad(last.at, last.desired, last.base)):
        return None
    if task_seconds is not None and (_bad(task_seconds) or task_seconds == 0):
        task_seconds = None
    busy = min(depth.in_flight, service.running)
    floor = min(max(policy.min_tasks, busy), policy.max_tasks)
    if policy.kind is PolicyKind.BACKLOG:
        proposal = _backlog(depth, service, policy)
    elif policy.kind is PolicyKind.DRAIN:
        proposal = _drain(depth, service, policy, busy, task_seconds or policy.task_seconds, now, last)
    else:
        proposal = _step(depth, service, policy, now, last)
    proposal = replace(proposal, seen=Observation(now, depth.visible + depth.delayed, busy))
    return _bounded(proposal, depth, service, policy, now, last, floor)


def _clamp(count: int, policy: ScalingPolicy) -> int:
    return min(max(count, policy.min_tasks), policy.max_tasks)


def _step(
    depth: QueueDepth, service: ServiceCounts, policy: ScalingPolicy, now: float, last: LastAction | None
) -> Decision:
    # The step metric is visible depth only: adding in-flight work would ratchet capacity upward.
    step = policy.steps.adjustment(depth.visible)
    base = service.running
    where = f"visible {depth.visible}: step {step:+d}"
    if step > 0 and last is not None and last.scaled_out and now - last.at < policy.cooldown_seconds:
        # AAS: the capacity a scale-out in cooldown added counts toward the next one.
        base = last.base
        where += " in scale-out cooldown"
    target = _clamp(base + step, policy) if step else service.desired
    return Decision(target, service.desired, step, f"{where} from {base}", base)


def _backlog(depth: QueueDepth, service: ServiceCounts, policy: ScalingPolicy) -> Decision:
    per_task = max(policy.latency_seconds / policy.task_seconds, 1.0)
    wanted = math.ceil(depth.visible / per_task)
    reason = f"backlog {depth.visible} at {per_task:g} per task wants {wanted}"
    return Decision(wanted, service.desired, wanted - service.desired, reason, service.running)


def _drain(
    depth: QueueDepth,
    service: ServiceCounts,
    policy: ScalingPolicy,
    busy: int,
    task_seconds: float,
    now: float,
    last: LastAction | None,
) -> Decision:
    waiting = depth.visible + depth.delayed
    # Clear what waits within the budget; a task started now only works once it has started.
    window = max(policy.latency_seconds - policy.start_seconds, task_seconds)
    drain = math.ceil(waiting * task_seconds / window)
    # Tasks that keep up with arrivals: the busy ones, while nothing waits.
    serving = float(busy)
    seen = last.seen if last else None
    if waiting and seen is not None and now > seen.at:
        # Work waits: arrivals = throughput (busy / task time) + the queue's growth. At most double
        # what was busy: a burst's first minutes look like a new arrival rate.
        growth = (waiting - seen.waiting) / (now - seen.at)
        serving = (seen.busy + busy) / 2 + growth * task_seconds
        serving = min(max(serving, 0.0), 2.0 * max(seen.busy, 1))
    # Nothing waits: square-root headroom over the busy tasks for what arrives before the next look.
    spare = round(policy.headroom * math.sqrt(busy)) if busy and not waiting else 0
    wanted = math.ceil(serving) + drain + spare
    if waiting:
        # While work waits every task is (or soon is) busy: keep what was asked for, since a task
        # cancelled while starting is billed its first minute for nothing.
        wanted = max(wanted, service.desired)
    reason = (
        f"{waiting} waiting, {busy} busy, {task_seconds:.0f} s a task: "
        f"{math.ceil(serving)} serving + {drain} draining + {spare} spare"
    )
    return Decision(wanted, service.desired, wanted - service.desired, reason, service.running)


def _sign(number: int) -> int:
    return (number > 0) - (number < 0)


def _bounded(
    proposal: Decision,
    depth: QueueDepth,
    service: ServiceCounts,
    policy: ScalingPolicy,
    now: float,
    last: LastAction | None,
    floor: int,
) -> Decision:
    """The rules every policy obeys, applied to its proposal."""
    current = service.desired
    hold = replace(proposal, desired=current, adjustment=0)
    target = proposal.desired
    # The proposal's sign is its intent: a scale-out never lowers the count, a scale-in never raises it.
    if proposal.adjustment > 0:
        target = _clamp(target, policy)
        if target <= current:
            return _settle(hold, policy, f"{proposal.reason}; {current} already asked for")
        return replace(proposal, desired=target)
    if proposal.adjustment < 0:
        if service.deployment_in_progress:
            return _settle(hold, policy, f"{proposal.reason}; no scale-in during a deployment")
        if last is not None and last.scaled_in and now - last.at < policy.cooldown_seconds:
            return _settle(hold, policy, f"{proposal.reason}; scale-in waits for the cooldown")
        target = _clamp(max(target, floor), policy)
        if target >= current:
            return _settle(hold, policy, f"{proposal.reason}; {floor} busy or minimum kept")
        return replace(proposal, desired=target)
    if current == 0 and depth.visible + depth.delayed > 0:
        # No policy may strand work: with min 0 the first message starts a task.
        target = _clamp(1, policy)
        return replace(proposal, desired=target, adjustment=target, reason=f"{proposal.reason}; from zero")
    return _settle(hold, policy, proposal.reason)


def _settle(hold: Decision, policy: ScalingPolicy, reason: str) -> Decision:
    """A hold, unless the current count lies outside [min, max] (min or max changed since it was set)."""
    clamped = _clamp(hold.desired, policy)
    if clamped != hold.desired:
        return replace(
            hold,
            desired=clamped,
            adjustment=_sign(clamped - hold.desired),
            reason=f"{reason}; into [min, max]",
        )
    return replace(hold, reason=reason)


class ScalingState(ABC):
    """Where the autoscaler keeps its last action between invocations."""

    @abstractmethod
    def last_action(self) -> LastAction | None: ...

    @abstractmethod
    def record(self, action: LastAction, *, previous: LastAction | None) -> bool:
        """Writes `action` if the stored record is still `previous` (by version); returns False when
        another invocation wrote first, in which case the caller must not act."""

    def record_decision(self, entry: ScalingDecisionEntry) -> None:
        """Keeps one decision with its inputs for the history GET /stats shows; a state without a
        history keeps none."""
        return None


class TaskDurations(ABC):
    """What the worker fleet has been taking per task lately."""

    @abstractmethod
    def recent_mean_seconds(self) -> float | None:
        """Mean processing time of recently finished worker tasks, or None when none finished."""


RACE_RETRIES = 1


class _LostRace(Exception):
    """Another invocation wrote the record between this one's read and write."""


class Autoscaler:
    """The controller: reads queue, service, last action and recent task durations, decides, records,
    applies. Any read that fails changes nothing."""

    def __init__(
        self,
        queue: WorkQueue,
        service: WorkerService,
        policy: ScalingPolicy,
        state: ScalingState,
        durations: TaskDurations | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.queue = queue
        self.service = service
        self.policy = policy
        self.state = state
        self.durations = durations
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
            task_seconds = self.durations.recent_mean_seconds() if self.durations else None
        except Exception:  # a scaler that acts on missing data kills busy workers: do nothing instead
            logger.exception("scaling inputs unavailable; desired count left as it is")
            return None
        now = self.clock()
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
        self._report(decision, depth, counts, task_seconds)
        return decision

    def _report(
        self, decision: Decision, depth: QueueDepth, counts: ServiceCounts, task_seconds: float | None
    ) -> None:
        # Seed 4.2's Logs Insights query parses "desired_count":N and "running_count":N from this line.
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
        self.state.record_decision(
            ScalingDecisionEntry(
                at=iso_from_epoch(self.clock()),
                desired=decision.desired,
                previous=decision.previous,
                reason=decision.reason,
                changed=decision.changed,
                policy=self.policy.kind.value,
                visible=depth.visible,
                in_flight=depth.in_flight,
                delayed=depth.delayed,
                running=counts.running,
                pending=counts.pending,
            )
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
