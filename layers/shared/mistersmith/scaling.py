"""Scaling maths: one pure function from what the autoscaler observes to a desired count, the three
policies behind it, and the task-time estimate. The controller that feeds it is `mistersmith.autoscaler`.

`step` is the seed's table read as Application Auto Scaling reads a step scaling policy on an ECS
service (each choice is written beside the code in `_step` and `_bounded`). A step is `<=UPPER:CHANGE`
(scale in while visible depth is at most UPPER) or `>=LOWER:CHANGE` (scale out from LOWER up).

`backlog` is the AWS recipe (and Copilot's worker service): keep visible messages per worker at
acceptable latency / average processing time.

`drain` is ours: the slots that keep up with arrivals (the offered load: a smoothed arrival rate x
task time), plus enough to start what waits within a latency budget (a new task helps only once
started), plus square-root headroom, divided by the tasks a worker runs at once. The load may grow
to at most max(2x, + `growth_tasks` workers) of the busy slots in one tick: a burst's first minutes
are cleared by the backlog term, not extrapolated. A change within the noise of the busy count is
not made, and a scale-in right after a scale-out waits `hold_seconds`, unless the load halved.

Every policy: the result stays in [min, max]; a scale-in keeps every worker that may be busy and a
slot for every task that waits; no scale-in during a deployment; a service at zero with work
waiting gets a task; missing or NaN inputs change nothing (`decide` returns None). The task time is
`estimate_task_seconds` over what `ports.TaskTimeSource` reads."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum

from mistersmith.ports import LastAction, Observation, QueueDepth, ServiceCounts, TaskTimes

SEED_STEPS = "<=0:-1,>=10:1,>=100:5,>=1000:20,>=5000:50"
# drain: the weight of a tick's offered-load measurement in the smoothed load.
LOAD_SMOOTHING = 0.2
# The configured task time weighs in the estimate as this many finished tasks.
PRIOR_TASKS = 20
# Finished tasks the task-time estimate reads each tick (about 2 MB of by-status index items).
TASK_TIME_SAMPLE = 1000


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
        scale_in: list[tuple[int, int]] = []
        scale_out: list[tuple[int, int]] = []
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
    # Expected processing time of one task: the backlog policy's divisor, the estimate's prior.
    task_seconds: float = 60
    # How long a new Fargate task takes to start taking work (image pull, boot): the drain policy's lead.
    start_seconds: float = 60
    # Spare slots over the serving ones, times the square root of the serving count (square-root staffing).
    headroom: float = 0.5
    # Tasks one worker runs at once: busy slots and capacity are counted in workers through it.
    concurrency: int = 1
    # drain: no scale-in this long after a scale-out unless the load halved (against reversals).
    hold_seconds: float = 600
    # drain: the arrival rate may grow by at most max(2x, + this many workers) of the busy ones a tick.
    growth_tasks: int = 20


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


def estimate_task_seconds(times: TaskTimes, *, now: float, prior: float) -> float:
    """Mean processing time of the cohort of the newest finished tasks (created no earlier than the
    oldest of them): the Kaplan-Meier mean, with the cohort's running tasks as censored at their
    elapsed time; `prior` when nothing has finished.

    Finished tasks alone are biased low in a backlog (the first of a cohort to finish are its short
    ones); dividing the time spent by the finished count is biased high while the cohort is young
    (its tasks have run too briefly to finish). Kaplan-Meier counts a running task only for as long
    as it has run. Beyond the longest finished task, the survivors are taken to need as long again.
    Until many have finished, `prior` (the configured task time) weighs as PRIOR_TASKS finished ones."""
    if not times.finished:
        return prior
    since = min(created for created, _ in times.finished)
    ends = sorted(
        [(seconds, True) for _, seconds in times.finished]
        + [(max(now - started, 0.0), False) for created, started in times.running if created >= since]
    )
    at_risk, surviving, mean, previous, last_event = len(ends), 1.0, 0.0, 0.0, 0.0
    index = 0
    while index < len(ends):
        moment, finished, gone = ends[index][0], 0, 0
        while index < len(ends) and ends[index][0] == moment:  # ties: every end at this moment at once
            finished += ends[index][1]
            gone += 1
            index += 1
        if finished:
            mean += surviving * (moment - previous)
            surviving *= 1 - finished / at_risk
            previous = last_event = moment
        at_risk -= gone
    observed = mean + surviving * last_event
    count = len(times.finished)
    return (count * observed + PRIOR_TASKS * prior) / (count + PRIOR_TASKS)


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

    `now` is epoch seconds; `last` is the autoscaler's last action; `task_seconds` is the estimated
    mean processing time (None: the policy's `task_seconds`)."""
    if depth is None or service is None:
        return None
    if _bad(depth.visible, depth.in_flight, depth.delayed, service.desired, service.running, service.pending):
        return None
    if _bad(now) or (last is not None and _bad(last.at, last.desired, last.base)):
        return None
    if task_seconds is not None and (_bad(task_seconds) or task_seconds == 0):
        task_seconds = None
    # Busy slots: messages in flight on running workers (drain sizes in slots, then in workers).
    busy_slots = min(depth.in_flight, service.running * policy.concurrency)
    waiting = depth.visible + depth.delayed
    # A scale-in keeps every worker that may be busy (each task in flight may hold a worker of its
    # own) and a slot for every task that waits: it never stops one that works, nor cancels one that
    # would take waiting work (billed its start for nothing).
    keep = min(depth.in_flight, service.running) + math.ceil(waiting / policy.concurrency)
    floor = min(max(policy.min_tasks, keep), policy.max_tasks)
    load = 0.0
    if policy.kind is PolicyKind.BACKLOG:
        proposal = _backlog(depth, service, policy)
    elif policy.kind is PolicyKind.DRAIN:
        proposal, load = _drain(
            depth, service, policy, busy_slots, task_seconds or policy.task_seconds, now, last
        )
    else:
        proposal = _step(depth, service, policy, now, last)
    proposal = replace(proposal, seen=Observation(now, waiting, busy_slots, load))
    return _bounded(proposal, depth, service, policy, now, last, floor)


def _clamp(count: int, policy: ScalingPolicy) -> int:
    return min(max(count, policy.min_tasks), policy.max_tasks)


def _in_cooldown(last: LastAction | None, policy: ScalingPolicy, now: float) -> bool:
    # AAS: the cooldown runs for its full length after the activity; a decision exactly `cooldown`
    # seconds later is still inside it (the activity completes after it is decided), hence <=.
    return last is not None and last.at > 0 and now - last.at <= policy.cooldown_seconds


def _step(
    depth: QueueDepth, service: ServiceCounts, policy: ScalingPolicy, now: float, last: LastAction | None
) -> Decision:
    # The step metric is visible depth only: adding in-flight work would ratchet capacity upward.
    step = policy.steps.adjustment(depth.visible)
    # AAS adjusts the scalable dimension ecs:service:DesiredCount, so "current capacity" is the desired
    # count, not the running one: a scale-out never lowers it.
    base = service.desired
    where = f"visible {depth.visible}: step {step:+d}"
    if step > 0 and last is not None and last.scaled_out and _in_cooldown(last, policy, now):
        # AAS: in a scale-out's cooldown the capacity it added counts toward the next one, so only a
        # larger step adds anything (the difference).
        base = last.base
        where += " in scale-out cooldown"
    if not step:
        return Decision(service.desired, service.desired, 0, where, base)
    # AAS never sets a capacity outside [min, max]: the adjusted count is clamped into it.
    target = _clamp(base + step, policy)
    return Decision(target, service.desired, step, f"{where} from {base}", base)


def _backlog(depth: QueueDepth, service: ServiceCounts, policy: ScalingPolicy) -> Decision:
    per_task = max(policy.latency_seconds / policy.task_seconds, 1.0) * policy.concurrency
    wanted = math.ceil(depth.visible / per_task)
    reason = f"backlog {depth.visible} at {per_task:g} per task wants {wanted}"
    return Decision(wanted, service.desired, wanted - service.desired, reason, service.desired)


def _offered_load(
    waiting: int, busy: int, task_seconds: float, policy: ScalingPolicy, now: float, last: LastAction | None
) -> float:
    """The slots arrivals keep busy (arrival rate x task time): the mean busy slots since the last
    look plus the growth of the work in the system (waiting and in flight) over a task time, smoothed
    (a tick's measurement weighs LOAD_SMOOTHING), its growth bounded."""
    seen = last.seen if last else None
    if seen is None or now <= seen.at:
        return float(busy)
    growth = (waiting + busy - seen.waiting - seen.busy) / (now - seen.at)
    measured = max((seen.busy + busy) / 2 + growth * task_seconds, 0.0)
    # A burst's first minutes look like a new arrival rate: grow the serving slots at most to
    # max(2x, + growth_tasks workers) of the busy ones; the backlog term clears the rest.
    most = max(seen.busy, busy)
    measured = min(measured, max(2 * most, most + policy.growth_tasks * policy.concurrency))
    # A doubling while the queue grows, or a halving that the busy slots confirm (below half the load,
    # or down to a third since the last look, and either beyond two standard deviations of the load's
    # Poisson noise: a one-minute dip of a small load is not a burst's end), is a change of load (a
    # start, a burst over), taken at once; anything less is smoothed as noise.
    if measured > 2 * seen.load and waiting > seen.waiting:
        return measured
    if (
        measured < seen.load / 2
        and (busy < seen.load / 2 or 3 * busy < seen.busy)
        and busy < seen.load - 2 * math.sqrt(seen.load)
    ):
        return measured
    return (1 - LOAD_SMOOTHING) * seen.load + LOAD_SMOOTHING * measured


def _drain(
    depth: QueueDepth,
    service: ServiceCounts,
    policy: ScalingPolicy,
    busy: int,
    task_seconds: float,
    now: float,
    last: LastAction | None,
) -> tuple[Decision, float]:
    waiting = depth.visible + depth.delayed
    serving = _offered_load(waiting, busy, task_seconds, policy, now, last)
    # Start what waits within the budget (a queue wait ends when a task starts, so the last of the
    # backlog may start one task time before it is done); a task launched now works once it has started.
    window = max(policy.latency_seconds - policy.start_seconds, task_seconds)
    draining = waiting * task_seconds / (window + task_seconds)
    spare = policy.headroom * math.sqrt(serving)
    wanted = (serving + draining + spare) / policy.concurrency
    current = service.desired
    reason = (
        f"{waiting} waiting, {busy} busy slots, {task_seconds:.0f} s a task: "
        f"{serving:.1f} serving + {draining:.1f} draining + {spare:.1f} spare slots"
    )
    target, held = _drain_target(wanted, current, policy, now, last)
    if held:
        return Decision(current, current, 0, f"{reason}; {held}", current), serving
    return Decision(target, current, target - current, reason, current), serving


def _drain_target(
    wanted: float, current: int, policy: ScalingPolicy, now: float, last: LastAction | None
) -> tuple[int, str]:
    """The count drain moves to, or why it keeps the current one. A change within the noise of the
    busy count (half its square root, Poisson) would be undone by the next: a reversal."""
    noise = max(math.sqrt(current) / 2, 1.0)
    if wanted > current:
        grow = wanted > current + noise
        return math.ceil(wanted - 1e-9), "" if grow else "growth within the noise"
    # Scale in to the need plus its noise, so that the next tick's noise does not call them back.
    target = math.ceil(wanted + math.sqrt(wanted) / 2 - 1e-9)
    if target >= current - noise:
        return current, "surplus within the noise"
    if wanted > current / 2 and last is not None and last.scaled_out and now - last.at < policy.hold_seconds:
        # A scale-in right after a scale-out is a reversal: it waits, unless the load halved (a burst
        # is over). After a scale-in, another one reverses nothing.
        return current, f"held {policy.hold_seconds:g} s after a scale-out"
    return target, ""


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
    waiting = depth.visible + depth.delayed
    # The proposal's sign is its intent: a scale-out never lowers the count, a scale-in never raises it.
    if proposal.adjustment > 0:
        target = _clamp(target, policy)
        if target <= current:
            return _settle(hold, policy, f"{proposal.reason}; {current} already asked for")
        return replace(proposal, desired=target)
    if proposal.adjustment < 0:
        if service.deployment_in_progress:
            return _settle(hold, policy, f"{proposal.reason}; no scale-in during a deployment")
        # AAS holds a scale-in for the cooldown of the last activity, a scale-out's included; a
        # scale-out during a scale-in's cooldown ends it (scale-outs are never held here).
        if policy.kind is not PolicyKind.DRAIN and _in_cooldown(last, policy, now):
            return _settle(hold, policy, f"{proposal.reason}; scale-in waits for the cooldown")
        target = _clamp(max(target, floor), policy)
        if target >= current:
            return _settle(hold, policy, f"{proposal.reason}; {floor} busy, waiting or minimum kept")
        return replace(proposal, desired=target)
    if current == 0 and waiting > 0:
        # No policy may strand work: with min 0 the first message starts a task.
        target = _clamp(1, policy)
        return replace(proposal, desired=target, adjustment=target, reason=f"{proposal.reason}; from zero")
    return _settle(hold, policy, proposal.reason)


def _settle(hold: Decision, policy: ScalingPolicy, reason: str) -> Decision:
    """A hold, unless the current count lies outside [min, max] (min or max changed since it was set):
    AAS, like RegisterScalableTarget, brings such a count into the bounds at once."""
    clamped = _clamp(hold.desired, policy)
    if clamped != hold.desired:
        return replace(
            hold,
            desired=clamped,
            adjustment=_sign(clamped - hold.desired),
            reason=f"{reason}; into [min, max]",
        )
    return replace(hold, reason=reason)
