"""The decision function at its boundaries (step table, cooldowns, bounds, busy workers, missing data),
the three policies, the task-time estimate and the record. The controller: test_scaling_controller.py."""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import replace

import pytest

from mistersmith.ports import LastAction, Observation, QueueDepth, ServiceCounts, TaskTimes
from mistersmith.scaling import (
    SEED_STEPS,
    Decision,
    PolicyKind,
    ScalingPolicy,
    StepTable,
    decide,
    estimate_task_seconds,
    next_record,
)

pytestmark = pytest.mark.unit

SEED = StepTable.parse(SEED_STEPS)
STEP = ScalingPolicy(SEED, min_tasks=2, max_tasks=1000)
BACKLOG = replace(STEP, kind=PolicyKind.BACKLOG, latency_seconds=600, task_seconds=60)
DRAIN = replace(STEP, kind=PolicyKind.DRAIN, latency_seconds=600, task_seconds=60, start_seconds=60)
NOW = 1_000_000.0


def counts(running: int, desired: int | None = None, *, pending: int = 0, deploying: bool = False):
    return ServiceCounts(
        desired=running if desired is None else desired,
        running=running,
        pending=pending,
        deployment_in_progress=deploying,
    )


def depth(visible: int, in_flight: int = 0, delayed: int = 0) -> QueueDepth:
    return QueueDepth(visible=visible, in_flight=in_flight, delayed=delayed)


def scaled(adjustment: int, *, ago: float, desired: int, base: int) -> LastAction:
    return LastAction(at=NOW - ago, desired=desired, base=base, adjustment=adjustment, version=3)


# ---------------------------------------------------------------- the step table


@pytest.mark.parametrize(
    ("visible", "change"),
    [
        (0, -1),
        (1, 0),
        (9, 0),
        (10, 1),
        (99, 1),
        (100, 5),
        (999, 5),
        (1000, 20),
        (4999, 20),
        (5000, 50),
        (10**6, 50),
    ],
)
def test_step_table_seed_boundaries_give_the_seed_change(visible, change):
    # Given the seed's table / When read at a boundary / Then it gives the seed's change
    assert SEED.adjustment(visible) == change


@pytest.mark.parametrize(
    "text",
    [
        "0:-1",
        ">=10:-1",
        "<=0:1",
        "<=0:-1",
        "<=20:-1,>=10:1",
        ">=10:1,>=10:2",
        ">=x:1",
        "",
        ">=10:5,>=100:1",
        "<=0:-1,<=5:-3,>=10:1",
    ],
)
def test_step_table_malformed_overlapping_or_shrinking_text_is_refused(text):
    # Given a table that is malformed, lacks a scale-out step, overlaps or shrinks with depth
    # When parsed / Then it is refused
    with pytest.raises(ValueError):
        StepTable.parse(text)


# ---------------------------------------------------------------- step policy, AAS semantics


@pytest.mark.parametrize(
    ("visible", "running", "expected"),
    [(0, 5, 4), (5, 5, 5), (10, 5, 6), (150, 5, 10), (1500, 5, 25), (6000, 5, 55)],
)
def test_decide_step_adds_the_table_step_to_the_desired_count(visible, running, expected):
    # Given a service at its desired count / When the queue has `visible` messages
    decision = decide(depth(visible), counts(running), STEP, now=NOW)
    # Then the desired count is the current count plus the table's step
    assert decision.desired == expected


def test_decide_step_starts_from_desired_not_running():
    # Given 4 running of 6 desired (2 starting) and 150 visible
    decision = decide(depth(150), counts(4, 6, pending=2), STEP, now=NOW)
    # Then +5 applies to the 6 desired: AAS's current capacity is ecs:service:DesiredCount
    assert (decision.desired, decision.adjustment) == (11, 5)


def test_decide_step_scale_out_adds_even_when_running_plus_step_is_lower():
    # Given 4 running of 10 desired (tasks starting) and a +1 step
    decision = decide(depth(10), counts(4, 10, pending=6), STEP, now=NOW)
    # Then the step adds to the 10 asked for (4 + 1 would have lowered it)
    assert decision.desired == 11


def test_decide_empty_queue_removes_one_but_not_below_min():
    # Given an empty queue / When 5 or 2 run / Then one goes, never below min 2
    assert decide(depth(0), counts(5), STEP, now=NOW).desired == 4
    assert decide(depth(0), counts(2), STEP, now=NOW).desired == 2


def test_decide_below_min_scale_out_goes_to_min_first():
    # Given nothing running and min 2 / When the queue asks for +1 / Then the count goes to min
    assert decide(depth(10), counts(0), STEP, now=NOW).desired == 2


def test_decide_below_min_without_a_step_is_brought_to_min():
    # Given 1 running after min was raised to 2 / When no step applies / Then the count goes to 2
    decision = decide(depth(5), counts(1), STEP, now=NOW)
    assert decision.desired == 2
    assert "into [min, max]" in decision.reason


def test_decide_never_exceeds_max():
    # Given 990 running of max 1000 / When +50 applies / Then the count stops at 1000
    assert decide(depth(6000), counts(990), STEP, now=NOW).desired == 1000


def test_decide_above_max_start_is_brought_down_to_max():
    # Given 1200 desired after max was lowered to 1000 / When no step applies / Then it goes to 1000
    assert decide(depth(5), counts(1200), STEP, now=NOW).desired == 1000


def test_decide_empty_visible_queue_with_work_in_flight_keeps_busy_workers():
    # Given 5 running, all 5 busy, nothing visible
    decision = decide(depth(0, in_flight=5), counts(5), STEP, now=NOW)
    # Then the -1 step does not stop a busy worker
    assert decision.desired == 5
    assert not decision.changed


def test_decide_scale_in_stops_at_the_busy_count():
    # Given 8 running, 6 busy, nothing visible, and a table that removes 5
    policy = replace(STEP, steps=StepTable.parse("<=0:-5,>=10:1"))
    # When decided / Then the count drops to the 6 busy workers, not to 3
    assert decide(depth(0, in_flight=6), counts(8), policy, now=NOW).desired == 6


def test_decide_in_flight_work_is_not_added_to_the_step_metric():
    # Given 9 visible and 50 in flight (all running busy)
    decision = decide(depth(9, in_flight=50), counts(50), STEP, now=NOW)
    # Then the step is read from the 9 visible: no change
    assert decision.adjustment == 0
    assert decision.desired == 50


def test_decide_deployment_in_progress_blocks_scale_in_only():
    # Given a deployment in progress
    service = counts(5, deploying=True)
    # When the queue is empty / Then nothing is removed; when it is deep / Then it still scales out
    assert decide(depth(0), service, STEP, now=NOW).desired == 5
    assert decide(depth(150), service, STEP, now=NOW).desired == 10


@pytest.mark.parametrize(
    ("queue", "service", "now"),
    [
        (None, counts(3), NOW),
        (depth(5), None, NOW),
        (QueueDepth(visible=math.nan, in_flight=0, delayed=0), counts(3), NOW),
        (depth(5), ServiceCounts(desired=3, running=math.nan, pending=0, deployment_in_progress=False), NOW),
        (QueueDepth(visible=-1, in_flight=0, delayed=0), counts(3), NOW),
        (depth(5), counts(3), math.nan),
    ],
)
def test_decide_missing_or_nan_data_changes_nothing(queue, service, now):
    # Given an input that is missing, NaN or negative / When decided / Then there is no decision
    assert decide(queue, service, STEP, now=now) is None


def test_decide_scale_out_in_cooldown_adds_only_the_difference():
    # Given a +1 from 4 running to 5, 30 s ago (cooldown 60 s), and 6 running now
    last = scaled(+1, ago=30, desired=5, base=4)
    # When the queue now calls for +5
    decision = decide(depth(150), counts(6, 5), STEP, now=NOW, last=last)
    # Then the +5 starts from the 4 the first scale-out started from: 9, not 11
    assert decision.desired == 9


def test_decide_smaller_scale_out_in_cooldown_changes_nothing():
    # Given a +5 from 4 to 9, 30 s ago / When the queue calls for +1 / Then 5 <= 9: nothing changes
    last = scaled(+5, ago=30, desired=9, base=4)
    assert not decide(depth(10), counts(9), STEP, now=NOW, last=last).changed


def test_decide_scale_out_after_cooldown_starts_from_desired():
    # Given a +5 from 4 to 9, 61 s ago, and 9 running / When +5 again / Then 14
    last = scaled(+5, ago=61, desired=9, base=4)
    assert decide(depth(150), counts(9), STEP, now=NOW, last=last).desired == 14


def test_decide_scale_in_waits_for_the_scale_in_cooldown():
    # Given a scale-in 30 s ago / When the queue is still empty / Then the next scale-in waits
    last = scaled(-1, ago=30, desired=5, base=6)
    decision = decide(depth(0), counts(5), STEP, now=NOW, last=last)
    assert decision.desired == 5
    assert "cooldown" in decision.reason


def test_decide_scale_in_exactly_a_cooldown_later_still_waits():
    # Given a scale-in 60 s ago and a 60 s cooldown (decisions every 60 s)
    last = scaled(-1, ago=60, desired=5, base=6)
    # When the queue is still empty / Then the cooldown is still running: nothing goes yet
    assert decide(depth(0), counts(5), STEP, now=NOW, last=last).desired == 5


def test_decide_scale_in_after_the_cooldown_proceeds():
    # Given a scale-in 61 s ago / When the queue is still empty / Then one more goes
    last = scaled(-1, ago=61, desired=5, base=6)
    assert decide(depth(0), counts(5), STEP, now=NOW, last=last).desired == 4


def test_decide_scale_out_during_scale_in_cooldown_acts_at_once():
    # Given a scale-in 10 s ago / When 150 messages arrive / Then +5 applies without waiting
    last = scaled(-1, ago=10, desired=5, base=6)
    assert decide(depth(150), counts(5), STEP, now=NOW, last=last).desired == 10


def test_decide_scale_in_waits_for_the_last_scale_outs_cooldown():
    # Given a scale-out 60 s ago (cooldown 60 s)
    last = scaled(+1, ago=60, desired=6, base=5)
    # When the queue empties / Then the scale-in waits for that activity's cooldown too
    decision = decide(depth(0), counts(6), STEP, now=NOW, last=last)
    assert decision.desired == 6
    assert "cooldown" in decision.reason


@pytest.mark.parametrize("policy", [STEP, BACKLOG, DRAIN], ids=lambda p: p.kind.value)
def test_decide_at_zero_first_message_starts_a_task(policy):
    # Given min 0 and nothing running / When one message waits / Then one task starts
    decision = decide(depth(1), counts(0), replace(policy, min_tasks=0), now=NOW)
    assert decision.desired == 1


@pytest.mark.parametrize("policy", [STEP, BACKLOG, DRAIN], ids=lambda p: p.kind.value)
def test_decide_at_zero_with_min_above_zero_starts_min_tasks(policy):
    # Given min 2 and a service at zero (set by hand) / When work waits / Then it goes to min
    assert decide(depth(3), counts(0), policy, now=NOW).desired == 2


# ---------------------------------------------------------------- backlog per task


@pytest.mark.parametrize(("visible", "expected"), [(0, 2), (95, 10), (100, 10), (101, 11), (12_000, 1000)])
def test_decide_backlog_holds_visible_per_task_at_latency_over_task_time(visible, expected):
    # Given a 600 s acceptable latency and 60 s tasks: 10 messages per task
    # When the queue holds `visible` / Then the count is ceil(visible / 10) within [2, 1000]
    assert decide(depth(visible), counts(5), BACKLOG, now=NOW).desired == expected


def test_decide_backlog_does_not_scale_in_while_work_waits():
    # Given 20 asked for, 10 busy and 95 waiting (the recipe wants 10)
    decision = decide(depth(95, in_flight=10), counts(20), BACKLOG, now=NOW)
    # Then nothing is taken back: the idle ones are about to take what waits
    assert decision.desired == 20


# ---------------------------------------------------------------- drain


def test_decide_drain_idle_surplus_goes_at_once_to_the_need_plus_its_noise():
    # Given 40 running, 16 busy, nothing waits, no history / When decided
    decision = decide(depth(0, in_flight=16), counts(40), DRAIN, now=NOW)
    # Then 16 busy + 0.5 x sqrt(16) spare = 18 wanted, kept with half its square root more: 21
    assert decision.desired == math.ceil(18 + math.sqrt(18) / 2)


def test_decide_drain_empty_queue_and_idle_service_releases_to_min():
    # Given 30 running, none busy / When nothing waits / Then the service drops to min at once
    assert decide(depth(0), counts(30), DRAIN, now=NOW).desired == 2


def test_decide_drain_sizes_to_clear_the_backlog_within_the_budget():
    # Given 2 running, 540 waiting, 60 s tasks, 600 s budget, 60 s start
    decision = decide(depth(540), counts(2), DRAIN, now=NOW)
    # Then every waiting task starts within the 540 s a new task has: 54 tasks run 10 each, the last
    # starting 9 x 60 = 540 s in (sized to finish them all in 540 s, 60 would start the last 60 s early)
    assert decision.desired == 54


def test_decide_drain_uses_the_observed_task_time():
    # Given tasks observed to take 120 s (the estimate says 60)
    decision = decide(depth(540), counts(2), DRAIN, now=NOW, task_seconds=120)
    # Then 540 x 120 s over the 540 s a new task has plus the last one's 120 s: 99, not 54
    assert decision.desired == math.ceil(540 * 120 / (540 + 120))


def test_decide_drain_adds_what_stops_a_growing_queue_within_the_growth_bound():
    # Given 10 busy of 10 and a load of 10, the queue grew from 60 to 120 in 60 s (1 task/s more)
    last = replace(scaled(+1, ago=60, desired=10, base=9), seen=Observation(NOW - 60, 60, 10, load=10))
    decision = decide(depth(120, in_flight=10), counts(10), DRAIN, now=NOW, last=last)
    # Then the load, 10 busy + 60 for the growth, is bounded to 10 + 20 = 30 slots; plus 120 x 60 / 540
    # draining (started within 540 s) and 0.5 x sqrt(30) spare
    assert decision.desired == math.ceil(30 + 120 * 60 / (540 + 60) + 0.5 * math.sqrt(30))


def test_decide_drain_a_one_minute_dip_of_a_small_load_after_a_scale_out_is_noise():
    # Given a load of 3 busy slots that drain has scaled out for a minute ago (4 running)
    last = replace(scaled(+2, ago=60, desired=4, base=2), seen=Observation(NOW - 60, 0, 3, load=3))
    # When one minute sees 1 busy, a dip of one standard deviation (Poisson: a fifth of all minutes)
    decision = decide(depth(0, in_flight=1), counts(4), DRAIN, now=NOW, last=last)
    # Then it is not a burst's end: no scale-in for the next minute's 3 busy to reverse
    assert decision.desired == 4


def test_decide_drain_counts_busy_in_workers_at_concurrency_two():
    # Given 2 tasks a worker, 30 running workers with 40 tasks in flight (20 workers' worth), nothing waits
    policy = replace(DRAIN, concurrency=2)
    decision = decide(depth(0, in_flight=40), counts(30), policy, now=NOW)
    # Then it does not grow: 40 messages counted as 40 busy workers would ask for 33
    assert decision.desired <= 30


def test_decide_scale_in_at_concurrency_two_keeps_a_worker_per_task_in_flight_when_nothing_waits():
    # Given 2 tasks a worker, 20 running workers and 10 tasks in flight, nothing waiting: after a
    # backlog drains each worker may hold one last task (the simulator finds 300 such workers on the
    # burst), so 10 in flight need not fill 5 workers
    policy = replace(DRAIN, concurrency=2)
    decision = decide(depth(0, in_flight=10), counts(20), policy, now=NOW)
    # When it scales in / Then it keeps 10 workers, not ceil(10 / 2) = 5
    assert decision.desired == 10


def test_decide_drain_sizes_a_backlog_in_workers_at_concurrency_two():
    # Given 2 tasks a worker, 2 running and 540 waiting / When decided
    decision = decide(depth(540), counts(2), replace(DRAIN, concurrency=2), now=NOW)
    # Then 540 x 60 s over 540 + 60 s is 54 slots: 27 workers
    assert decision.desired == 27


def test_decide_drain_keeps_a_worker_for_every_task_that_waits():
    # Given 300 asked for, 100 running and busy, 200 starting, and 90 waiting
    decision = decide(depth(90, in_flight=100), counts(100, 300, pending=200), DRAIN, now=NOW)
    # Then the surplus starts are cancelled, but not below the busy ones and one for each waiting task
    assert decision.desired == 190


def test_decide_drain_holds_a_small_scale_in_after_a_scale_out():
    # Given a scale-out to 30 five minutes ago and a load of 20 slots, nothing waits
    last = replace(scaled(+5, ago=300, desired=30, base=25), seen=Observation(NOW - 60, 0, 20, load=20))
    decision = decide(depth(0, in_flight=20), counts(30), DRAIN, now=NOW, last=last)
    # Then the scale-in that would reverse it waits for the hold
    assert decision.desired == 30
    assert "held" in decision.reason


def test_decide_drain_scales_in_at_once_when_the_load_halved():
    # Given a scale-out to 200 one minute ago, and busy slots down from 200 to 20 (a burst is over)
    last = replace(scaled(+50, ago=60, desired=200, base=150), seen=Observation(NOW - 60, 0, 200, load=200))
    decision = decide(depth(0, in_flight=20), counts(200), DRAIN, now=NOW, last=last)
    # Then the hold does not apply: the count drops to about the 20 that are busy
    assert 20 <= decision.desired <= 30


def test_decide_drain_growth_within_the_noise_changes_nothing():
    # Given 100 asked for and a need just above it (within half its square root)
    last = replace(scaled(0, ago=600, desired=100, base=100), seen=Observation(NOW - 60, 0, 95, load=95))
    decision = decide(depth(0, in_flight=95), counts(100), DRAIN, now=NOW, last=last)
    # Then nothing changes: the next tick's noise would undo it
    assert decision.desired == 100


# ---------------------------------------------------------------- the task-time estimate


def _times(finished, running):
    return TaskTimes(tuple(finished), tuple(running))


def test_estimate_nothing_finished_gives_the_prior():
    # Given only running tasks / When estimated / Then the configured task time stands
    assert estimate_task_seconds(_times([], [(0.0, 10.0)]), now=100.0, prior=60) == 60


def test_estimate_many_finished_and_none_running_is_their_mean():
    # Given 2000 tasks of 10 and 30 s / When estimated / Then about their mean (the prior weighs 20)
    finished = [(float(i), 10.0 + 20 * (i % 2)) for i in range(2000)]
    assert estimate_task_seconds(_times(finished, []), now=10_000.0, prior=20) == pytest.approx(20, abs=0.01)


def test_estimate_running_tasks_before_the_cohort_are_not_counted():
    # Given 100 finished tasks created from t=1000, and a task created before them, running for ages
    finished = [(1000.0 + i, 20.0) for i in range(100)]
    running = [(10.0, 20.0)]
    # When estimated / Then it says nothing about the cohort
    assert estimate_task_seconds(_times(finished, running), now=5000.0, prior=20) == pytest.approx(20)


def _backlog(seed: int, workers: int, now: float) -> tuple[TaskTimes, float, list[float]]:
    """A backlog: `workers` start at once on a long first-come-first-served queue of log-normal tasks
    (median 30 s, p95 120 s). What the adapter reads at `now` (the 1000 newest finished by creation,
    the running ones), the true mean, and the durations of the 50 newest finished by creation."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible sample, not a secret
    sigma = math.log(4) / 1.6448536269514722
    free = [(0.0, worker) for worker in range(workers)]
    finished: list[tuple[float, float]] = []
    running: list[tuple[float, float]] = []
    durations: list[float] = []
    while free[0][0] < now:
        started, worker = heapq.heappop(free)
        created, seconds = float(len(durations)), rng.lognormvariate(math.log(30), sigma)
        durations.append(seconds)
        if started + seconds <= now:
            finished.append((created, seconds))
        else:
            running.append((created, started))
        heapq.heappush(free, (started + seconds, worker))
    newest = sorted(finished, reverse=True)
    times = TaskTimes(tuple(newest[:1000]), tuple(running))
    return times, sum(durations) / len(durations), [seconds for _, seconds in newest[:50]]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_estimate_in_a_backlog_is_not_biased_low(seed):
    # Given 300 workers three minutes into a backlog (the first of a cohort to finish are its short ones)
    times, true_mean, newest_50 = _backlog(seed, 300, 180.0)
    # When estimated as the Lambda does
    estimate = estimate_task_seconds(times, now=180.0, prior=60)
    # Then it is within 15 % of the true mean, where the 50 newest finished ones read far below it
    assert sum(newest_50) / 50 < 0.6 * true_mean
    assert abs(estimate - true_mean) < 0.15 * true_mean


# ---------------------------------------------------------------- the record


def test_next_record_changed_decision_is_the_new_last_action():
    # Given a decision that changes 5 to 10
    decision = Decision(10, 5, +5, "why", base=5, seen=Observation(NOW, 150, 5))
    # When recorded over version 3 / Then it is the new action, version 4, with its observation
    record = next_record(decision, now=NOW, last=scaled(-1, ago=300, desired=5, base=6))
    assert (record.at, record.desired, record.adjustment, record.version) == (NOW, 10, 5, 4)
    assert record.seen == Observation(NOW, 150, 5)


def test_next_record_hold_keeps_the_last_action_and_updates_what_was_seen():
    # Given a hold after a scale-in 30 s ago / When recorded
    last = scaled(-1, ago=30, desired=5, base=6)
    record = next_record(Decision(5, 5, 0, "hold", seen=Observation(NOW, 0, 1)), now=NOW, last=last)
    # Then the cooldown still runs from the scale-in; only the observation and version move on
    assert (record.at, record.adjustment, record.version) == (last.at, -1, 4)
    assert record.seen == Observation(NOW, 0, 1)
