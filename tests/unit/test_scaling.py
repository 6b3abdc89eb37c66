"""The decision function at its boundaries (step table, cooldowns, bounds, busy workers, missing data),
the three policies, and the controller with fakes for the queue, the service and the record."""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import replace

import pytest
from pydantic import ValidationError

from mistersmith.observability import logger
from mistersmith.ports import QueueDepth, ServiceCounts
from mistersmith.scaling import (
    SEED_STEPS,
    Autoscaler,
    Decision,
    LastAction,
    Observation,
    PolicyKind,
    ScalingPolicy,
    ScalingState,
    StepTable,
    TaskDurations,
    decide,
    next_record,
)
from mistersmith.settings import AutoscalerSettings

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
def test_decide_step_adds_the_table_step_to_the_running_count(visible, running, expected):
    # Given a service at its desired count / When the queue has `visible` messages
    decision = decide(depth(visible), counts(running), STEP, now=NOW)
    # Then the desired count is the running count plus the table's step
    assert decision.desired == expected


def test_decide_step_starts_from_running_not_desired():
    # Given 4 running of 6 desired (2 starting) and 150 visible
    decision = decide(depth(150), counts(4, 6, pending=2), STEP, now=NOW)
    # Then +5 applies to the 4 running
    assert (decision.desired, decision.adjustment) == (9, 5)


def test_decide_step_scale_out_never_lowers_the_desired_count():
    # Given 4 running of 10 desired (tasks starting) and a +1 step
    decision = decide(depth(10), counts(4, 10, pending=6), STEP, now=NOW)
    # Then nothing changes: 5 is already asked for
    assert decision.desired == 10
    assert not decision.changed


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


def test_decide_scale_out_after_cooldown_starts_from_running():
    # Given a +5 from 4 to 9, 61 s ago, and 9 running / When +5 again / Then 14
    last = scaled(+5, ago=61, desired=9, base=4)
    assert decide(depth(150), counts(9), STEP, now=NOW, last=last).desired == 14


def test_decide_scale_in_waits_for_the_scale_in_cooldown():
    # Given a scale-in 30 s ago / When the queue is still empty / Then the next scale-in waits
    last = scaled(-1, ago=30, desired=5, base=6)
    decision = decide(depth(0), counts(5), STEP, now=NOW, last=last)
    assert decision.desired == 5
    assert "cooldown" in decision.reason


def test_decide_scale_in_after_the_cooldown_proceeds():
    # Given a scale-in 60 s ago / When the queue is still empty / Then one more goes
    last = scaled(-1, ago=60, desired=5, base=6)
    assert decide(depth(0), counts(5), STEP, now=NOW, last=last).desired == 4


def test_decide_scale_out_during_scale_in_cooldown_acts_at_once():
    # Given a scale-in 10 s ago / When 150 messages arrive / Then +5 applies without waiting
    last = scaled(-1, ago=10, desired=5, base=6)
    assert decide(depth(150), counts(5), STEP, now=NOW, last=last).desired == 10


def test_decide_scale_out_ends_the_scale_in_cooldown():
    # Given a scale-in 40 s ago, then a scale-out 20 s ago (the record now holds the scale-out)
    last = scaled(+1, ago=20, desired=6, base=5)
    # When the queue empties / Then the scale-in is not held back by the earlier scale-in's cooldown
    assert decide(depth(0), counts(6), STEP, now=NOW, last=last).desired == 5


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


# ---------------------------------------------------------------- drain


def test_decide_drain_nothing_waits_keeps_busy_plus_square_root_headroom():
    # Given 40 running, 16 busy, nothing waits / When decided
    decision = decide(depth(0, in_flight=16), counts(40), DRAIN, now=NOW)
    # Then the idle ones go at once down to 16 + round(0.5 * 4) = 18
    assert decision.desired == 18


def test_decide_drain_empty_queue_and_idle_service_releases_to_min():
    # Given 30 running, none busy / When nothing waits / Then the service drops to min at once
    assert decide(depth(0), counts(30), DRAIN, now=NOW).desired == 2


def test_decide_drain_sizes_to_clear_the_backlog_within_the_budget():
    # Given 2 running, 540 waiting, 60 s tasks, 600 s budget, 60 s start
    decision = decide(depth(540), counts(2), DRAIN, now=NOW)
    # Then 540 x 60 s of work over the 540 s a new task has: 60 tasks
    assert decision.desired == 60


def test_decide_drain_uses_the_observed_task_time():
    # Given tasks observed to take 120 s (the estimate says 60)
    decision = decide(depth(540), counts(2), DRAIN, now=NOW, task_seconds=120)
    # Then twice the tasks
    assert decision.desired == 120


def test_decide_drain_adds_what_stops_a_growing_queue():
    # Given 10 busy of 10, the queue grew from 60 to 120 in 60 s (1 task/s more than finishes)
    last = replace(scaled(+1, ago=60, desired=10, base=9), seen=Observation(NOW - 60, 60, 10))
    decision = decide(depth(120, in_flight=10), counts(10), DRAIN, now=NOW, last=last)
    # Then 10 serving + 60 for the growth (capped at double: 20) + ceil(120 x 60 / 540) = 14 draining
    assert decision.desired == 20 + 14


def test_decide_drain_never_takes_back_tasks_while_work_waits():
    # Given 300 asked for, 100 running and 200 starting, and a backlog that now needs fewer
    decision = decide(depth(90, in_flight=100), counts(100, 300, pending=200), DRAIN, now=NOW)
    # Then the starting tasks are kept (a cancelled start is billed a minute for nothing)
    assert decision.desired == 300


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


# ---------------------------------------------------------------- the controller


class FakeQueue:
    def __init__(self, visible: int = 0, in_flight: int = 0, fail: bool = False) -> None:
        self.visible, self.in_flight, self.fail = visible, in_flight, fail

    def depth(self) -> QueueDepth:
        if self.fail:
            raise ConnectionError("sqs unreachable")
        return depth(self.visible, self.in_flight)


class FakeService:
    def __init__(self, running: int) -> None:
        self.desired = self.running = running
        self.applied: list[int] = []

    def counts(self) -> ServiceCounts:
        return counts(self.running, self.desired)

    def set_desired(self, count: int) -> None:
        self.applied.append(count)
        self.desired = count


class FakeState(ScalingState):
    def __init__(self, losses: int = 0) -> None:
        self.stored: LastAction | None = None
        self.losses = losses  # how many writes another invocation wins first

    def last_action(self) -> LastAction | None:
        return self.stored

    def record(self, action: LastAction, *, previous: LastAction | None) -> bool:
        if self.losses:
            self.losses -= 1
            self.stored = replace(previous or action, version=(previous.version if previous else 0) + 1)
            return False
        assert (self.stored.version if self.stored else None) == (previous.version if previous else None)
        self.stored = action
        return True


class FixedDurations(TaskDurations):
    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds

    def recent_mean_seconds(self) -> float | None:
        return self.seconds


@pytest.fixture
def log_output():
    """The logger's raw output during the test (what CloudWatch Logs stores as @message)."""
    stream = io.StringIO()
    previous = logger.registered_handler.setStream(stream)
    yield stream.getvalue
    logger.registered_handler.setStream(previous)


def test_autoscaler_deep_queue_records_then_applies_the_decision(log_output):
    # Given 150 visible, 4 running, the seed's table
    service, state = FakeService(4), FakeState()
    scaler = Autoscaler(FakeQueue(150), service, STEP, state, clock=lambda: NOW)
    # When it runs
    decision = scaler.run()
    # Then 9 is recorded as the last action and applied to the service
    assert decision.desired == 9
    assert service.applied == [9]
    assert (state.stored.desired, state.stored.at, state.stored.adjustment) == (9, NOW, 5)


def test_autoscaler_read_error_changes_nothing_and_says_so(log_output):
    # Given a queue that cannot be read
    service, state = FakeService(4), FakeState()
    scaler = Autoscaler(FakeQueue(fail=True), service, STEP, state, clock=lambda: NOW)
    # When it runs / Then nothing is applied or recorded, and the log says why
    assert scaler.run() is None
    assert service.applied == []
    assert state.stored is None
    assert "scaling inputs unavailable" in log_output()


def test_autoscaler_lost_race_reads_again_and_acts_once(log_output):
    # Given another invocation that writes the record first, once
    service, state = FakeService(4), FakeState(losses=1)
    scaler = Autoscaler(FakeQueue(150), service, STEP, state, clock=lambda: NOW)
    # When it runs / Then it decides again on fresh readings and applies once
    assert scaler.run().desired == 9
    assert service.applied == [9]


def test_autoscaler_keeps_losing_the_race_applies_nothing(log_output):
    # Given other invocations that always write first / When it runs / Then nothing is applied
    service = FakeService(4)
    scaler = Autoscaler(FakeQueue(150), service, STEP, FakeState(losses=99), clock=lambda: NOW)
    assert scaler.run() is None
    assert service.applied == []


def test_autoscaler_hold_records_the_observation_without_touching_the_service(log_output):
    # Given a queue with nothing to change / When it runs
    service, state = FakeService(4), FakeState()
    Autoscaler(FakeQueue(5, in_flight=4), service, STEP, state, clock=lambda: NOW).run()
    # Then the service is left alone and the record holds what was seen
    assert service.applied == []
    assert state.stored.seen == Observation(NOW, 5, 4)


def test_autoscaler_scaling_event_line_matches_the_seed_logs_insights_query(log_output):
    # Given a run that scales out from 4 running to 9
    Autoscaler(FakeQueue(150), FakeService(4), STEP, FakeState(), clock=lambda: NOW).run()
    # When its line is read as the scaling-events query reads @message
    (line,) = [line for line in log_output().splitlines() if "scaling_event" in line]
    # Then the filter matches and the parse expressions find the counts as JSON numbers
    assert re.search(r'"desired_count":(\d+)', line).group(1) == "9"
    assert re.search(r'"running_count":(\d+)', line).group(1) == "4"
    assert json.loads(line)["message"] == "scaling_event"


def test_autoscaler_emits_its_decision_and_inputs_as_one_emf_line(log_output, capsys):
    # Given a run with 150 visible and 4 running / When it decides
    Autoscaler(FakeQueue(150), FakeService(4), STEP, FakeState(), clock=lambda: NOW).run()
    # Then one EMF line carries the decision, by direction and in total, and what it saw
    (document,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    directive = document["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "MisterSmith"
    assert directive["Dimensions"] == [["service"], ["service", "direction"]]
    assert document["direction"] == "out"
    assert document["ScalingDecisions"] == [1.0]
    assert document["BacklogPerTask"] == [37.5]
    assert document["DesiredCount"] == [9.0]


def test_autoscaler_drain_uses_the_observed_durations(log_output):
    # Given tasks observed at 120 s and 540 waiting / When the drain policy runs
    service = FakeService(2)
    scaler = Autoscaler(FakeQueue(540), service, DRAIN, FakeState(), FixedDurations(120.0), clock=lambda: NOW)
    # Then it sizes with 120 s, not the 60 s estimate
    assert scaler.run().desired == 120


# ---------------------------------------------------------------- settings


REQUIRED = {"TASK_TABLE_NAME": "t", "WORK_QUEUE_URL": "w", "CLUSTER_NAME": "c", "WORKER_SERVICE_NAME": "s"}


@pytest.fixture
def autoscaler_env(monkeypatch):
    tunables = ["SCALING_STEPS", "MIN_TASKS", "MAX_TASKS", "COOLDOWN_SECONDS", "SCALING_POLICY"]
    tunables += [
        "SCALING_LATENCY_SECONDS",
        "SCALING_TASK_SECONDS",
        "WORKER_START_SECONDS",
        "SCALING_HEADROOM",
    ]
    for name in [*REQUIRED, *tunables]:
        monkeypatch.delenv(name, raising=False)
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_autoscaler_settings_defaults_give_the_drain_policy(autoscaler_env):
    # Given only the required variables / When read / Then drain with the template's defaults
    policy = AutoscalerSettings().policy
    assert (policy.kind, policy.min_tasks, policy.max_tasks, policy.cooldown_seconds) == (
        PolicyKind.DRAIN,
        2,
        1000,
        60,
    )
    assert (policy.latency_seconds, policy.task_seconds, policy.start_seconds) == (600, 60, 60)


def test_autoscaler_settings_policy_and_tunables_are_read(autoscaler_env):
    # Given the template's scaling variables / When read / Then the policy carries them
    autoscaler_env.setenv("SCALING_POLICY", "backlog")
    autoscaler_env.setenv("SCALING_LATENCY_SECONDS", "300")
    autoscaler_env.setenv("SCALING_TASK_SECONDS", "30")
    policy = AutoscalerSettings().policy
    assert (policy.kind, policy.latency_seconds, policy.task_seconds) == (PolicyKind.BACKLOG, 300, 30)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SCALING_POLICY", "fastest"),
        ("SCALING_POLICY", ""),
        ("SCALING_LATENCY_SECONDS", "0"),
        ("SCALING_TASK_SECONDS", "-1"),
    ],
)
def test_autoscaler_settings_invalid_policy_or_tunable_is_refused(autoscaler_env, name, value):
    # Given an unknown policy or a non-positive time / When read / Then refused naming the field
    autoscaler_env.setenv(name, value)
    with pytest.raises(ValidationError, match=name.lower()):
        AutoscalerSettings()
