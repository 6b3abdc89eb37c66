"""Rules that hold for every input of the decision function, checked with hypothesis."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mistersmith.ports import LastAction, Observation, QueueDepth, ServiceCounts
from mistersmith.scaling import (
    SEED_STEPS,
    PolicyKind,
    ScalingPolicy,
    StepTable,
    decide,
    next_record,
)

pytestmark = pytest.mark.unit

NOW = 1_000_000.0
counts_ = st.integers(min_value=0, max_value=3000)
depths = st.integers(min_value=0, max_value=20_000)


@st.composite
def step_tables(draw) -> StepTable:
    """Valid tables: scale-in bounds below every scale-out bound, each bound once, steps growing with depth."""
    outs = draw(st.lists(st.integers(1, 10_000), min_size=1, max_size=5, unique=True))
    ins = draw(st.lists(st.integers(0, min(outs) - 1), max_size=3, unique=True))
    out_steps = sorted(outs)
    changes = sorted(draw(st.lists(st.integers(1, 100), min_size=len(outs), max_size=len(outs))))
    in_changes = draw(st.lists(st.integers(-100, -1), min_size=len(ins), max_size=len(ins)))
    text = ",".join(
        [f">={bound}:{change}" for bound, change in zip(out_steps, changes, strict=True)]
        + [f"<={bound}:{change}" for bound, change in zip(sorted(ins), sorted(in_changes), strict=True)]
    )
    return StepTable.parse(text)


@st.composite
def policies(draw) -> ScalingPolicy:
    low = draw(st.integers(0, 50))
    return ScalingPolicy(
        draw(st.one_of(st.just(StepTable.parse(SEED_STEPS)), step_tables())),
        min_tasks=low,
        max_tasks=draw(st.integers(max(low, 1), 2000)),
        cooldown_seconds=draw(st.sampled_from([1, 60, 300])),
        kind=draw(st.sampled_from(PolicyKind)),
        latency_seconds=draw(st.floats(30, 3600)),
        task_seconds=draw(st.floats(1, 1800)),
        start_seconds=draw(st.floats(0, 300)),
        headroom=draw(st.floats(0, 3)),
        concurrency=draw(st.sampled_from([1, 1, 2, 4])),
    )


@st.composite
def situations(draw):
    running = draw(counts_)
    queue = QueueDepth(
        visible=draw(depths), in_flight=draw(st.integers(0, 5000)), delayed=draw(st.integers(0, 100))
    )
    service = ServiceCounts(
        desired=draw(counts_),
        running=running,
        pending=draw(st.integers(0, 500)),
        deployment_in_progress=draw(st.booleans()),
    )
    last = draw(
        st.none()
        | st.builds(
            LastAction,
            at=st.floats(NOW - 3600, NOW),
            desired=counts_,
            base=counts_,
            adjustment=st.integers(-50, 50),
            seen=st.none()
            | st.builds(
                Observation,
                at=st.floats(NOW - 3600, NOW),
                waiting=depths,
                busy=counts_,
                load=st.floats(0, 5000),
            ),
        )
    )
    observed = draw(st.none() | st.floats(0.1, 3600))
    return queue, service, last, observed


def within_bounds(service: ServiceCounts, policy: ScalingPolicy) -> ServiceCounts:
    return replace(service, desired=min(max(service.desired, policy.min_tasks), policy.max_tasks))


def run(policy, situation):
    queue, service, last, observed = situation
    return decide(queue, service, policy, now=NOW, last=last, task_seconds=observed)


@given(step_tables(), depths, depths)
def test_step_table_adjustment_is_monotone_in_depth(table, first, second):
    # Given any valid table and two depths / When both are read / Then the deeper one never changes less
    low, high = sorted((first, second))
    assert table.adjustment(low) <= table.adjustment(high)


@given(policies(), situations(), depths)
def test_decide_step_policy_is_monotone_in_visible_depth(policy, situation, extra):
    # Given the step policy and any situation / When the visible depth grows
    policy = ScalingPolicy(policy.steps, policy.min_tasks, policy.max_tasks, policy.cooldown_seconds)
    queue, service, last, observed = situation
    deeper = QueueDepth(queue.visible + extra, queue.in_flight, queue.delayed)
    # Then the desired count never gets smaller
    assert run(policy, situation).desired <= run(policy, (deeper, service, last, observed)).desired


@given(policies(), situations())
def test_decide_result_never_leaves_min_max(policy, situation):
    # Given any policy and any situation / When decided / Then the count lies in [min, max]
    decision = run(policy, situation)
    assert policy.min_tasks <= decision.desired <= policy.max_tasks


@given(policies(), situations())
def test_decide_never_scales_in_below_busy_workers(policy, situation):
    # Given any policy and situation
    queue, service, *_ = situation
    decision = run(policy, situation)
    # When the decision lowers the count / Then not below the workers that may be busy, nor below one
    # for every task that waits (unless max says so)
    if decision.desired < service.desired:
        waiting = queue.visible + queue.delayed
        keep = min(queue.in_flight, service.running) + -(-waiting // policy.concurrency)
        assert decision.desired >= min(keep, policy.max_tasks)


@given(policies(), situations())
def test_decide_step_and_backlog_no_scale_in_during_the_cooldown(policy, situation):
    # Given step or backlog (AAS's cooldown; drain holds after a scale-out only, so that it can follow
    # a burst down a tick at a time), a scale-in inside the cooldown and a count in [min, max]
    policy = replace(policy, kind=PolicyKind.STEP if policy.kind is PolicyKind.DRAIN else policy.kind)
    queue, service, last, observed = situation
    service = within_bounds(service, policy)
    last = LastAction(
        at=NOW - policy.cooldown_seconds / 2, desired=service.desired, base=service.running, adjustment=-1
    )
    # When decided / Then nothing is removed
    assert run(policy, (queue, service, last, observed)).desired >= service.desired


@given(policies(), situations())
def test_decide_no_scale_in_during_a_deployment(policy, situation):
    # Given a deployment in progress and a count in [min, max]
    queue, service, last, observed = situation
    service = within_bounds(service, policy)
    deploying = ServiceCounts(service.desired, service.running, service.pending, deployment_in_progress=True)
    # When decided / Then nothing is removed
    assert run(policy, (queue, deploying, last, observed)).desired >= service.desired


@given(policies(), situations())
def test_decide_nothing_to_do_never_scales_out(policy, situation):
    # Given nothing visible, delayed or in flight, and a count in [min, max]
    _, service, last, observed = situation
    service = within_bounds(service, policy)
    idle = QueueDepth(0, 0, 0)
    # When decided / Then the count does not grow: there is nothing to grow for
    assert run(policy, (idle, service, last, observed)).desired <= service.desired


DRAIN = ScalingPolicy(StepTable.parse(SEED_STEPS), 2, 1000, kind=PolicyKind.DRAIN, task_seconds=43)


def _reversals(counts: list[int]) -> int:
    changes = [b - a for a, b in itertools.pairwise(counts) if b != a]
    return sum(1 for a, b in itertools.pairwise(changes) if (a > 0) != (b > 0))


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 400),
    st.lists(st.floats(-1.0, 1.0), min_size=120, max_size=120),
    st.integers(2, 400),
)
def test_drain_under_constant_load_reverses_at_most_four_times_an_hour(load, noise, start):
    # Given a constant load of `load` busy slots, seen each minute with Poisson-sized noise (within
    # one standard deviation), nothing waiting, for two hours from any starting count
    desired, last, history = start, None, [start]
    for minute, wobble in enumerate(noise):
        busy = max(0, round(load + wobble * load**0.5))
        now = NOW + 60 * minute
        service = ServiceCounts(desired, max(desired, busy), 0, False)
        decision = decide(QueueDepth(0, busy, 0), service, DRAIN, now=now, last=last)
        last = next_record(decision, now=now, last=last)
        desired = decision.desired
        history.append(desired)
    # When the counts it set are read / Then their direction changes at most 4 times an hour
    assert _reversals(history) <= 8


@given(st.integers(0, 30), st.integers(0, 100_000), st.floats(0, 60))
def test_drain_growth_from_a_small_fleet_is_bounded(busy, waiting, load):
    # Given a small fleet with `busy` busy slots a minute ago and now, a smoothed load, any queue
    seen = Observation(NOW - 60, waiting, busy, load=load)
    last = LastAction(at=0, desired=max(busy, 2), base=0, adjustment=0, seen=seen)
    service = ServiceCounts(max(busy, 2), max(busy, 2), 0, False)
    decision = decide(QueueDepth(waiting, busy, 0), service, DRAIN, now=NOW, last=last)
    # When decided / Then the serving part grew to at most max(2x, + growth_tasks) of the busy slots
    # (or kept the load it had); what waits is cleared by the backlog term, never extrapolated
    serving = max(load, 2 * busy, busy + DRAIN.growth_tasks)
    window = DRAIN.latency_seconds - DRAIN.start_seconds
    bound = serving + waiting * DRAIN.task_seconds / window + DRAIN.headroom * serving**0.5
    assert decision.desired <= max(service.desired, -(-bound // 1))


@given(st.integers(1, 500), st.integers(0, 1000), st.integers(0, 50))
def test_drain_counts_busy_in_workers_at_concurrency_two(running, in_flight, waiting):
    # Given workers that run 2 tasks at once and no history
    policy = replace(DRAIN, concurrency=2)
    in_flight = min(in_flight, 2 * running)
    service = ServiceCounts(running, running, 0, False)
    decision = decide(QueueDepth(waiting, in_flight, 0), service, policy, now=NOW)
    # When decided / Then it asks for no more workers than the busy slots, the backlog and the spare
    # need at 2 slots each (counting messages as workers would ask for twice that)
    slots = in_flight + waiting * policy.task_seconds / (policy.latency_seconds - policy.start_seconds)
    slots += policy.headroom * in_flight**0.5
    assert decision.desired <= max(running, policy.min_tasks, -(-slots // 2))
