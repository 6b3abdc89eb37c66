"""The autoscaler's controller with fakes for the queue, the service, the record and the task times;
its settings."""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import replace

import pytest
from pydantic import ValidationError

from mistersmith.autoscaler import Autoscaler
from mistersmith.observability import logger
from mistersmith.ports import (
    LastAction,
    Observation,
    QueueDepth,
    ScalingState,
    ServiceCounts,
    TaskTimes,
    TaskTimeSource,
)
from mistersmith.scaling import SEED_STEPS, TASK_TIME_SAMPLE, Decision, PolicyKind, ScalingPolicy, StepTable
from mistersmith.settings import AutoscalerSettings

pytestmark = pytest.mark.unit

STEP = ScalingPolicy(StepTable.parse(SEED_STEPS), min_tasks=2, max_tasks=1000)
DRAIN = replace(STEP, kind=PolicyKind.DRAIN, latency_seconds=600, task_seconds=60, start_seconds=60)
NOW = 1_000_000.0


def counts(running: int, desired: int | None = None) -> ServiceCounts:
    return ServiceCounts(
        desired=running if desired is None else desired,
        running=running,
        pending=0,
        deployment_in_progress=False,
    )


def depth(visible: int, in_flight: int = 0) -> QueueDepth:
    return QueueDepth(visible=visible, in_flight=in_flight, delayed=0)


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
        self.decisions: list[tuple[Decision, float]] = []

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

    def record_decision(
        self, decision: Decision, *, now: float, depth: QueueDepth, counts: ServiceCounts
    ) -> None:
        self.decisions.append((decision, now))


class FixedTimes(TaskTimeSource):
    """Every finished task took `seconds`; none runs."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.samples: list[int] = []

    def task_times(self, *, sample: int) -> TaskTimes:
        self.samples.append(sample)
        return TaskTimes(tuple((NOW - 3600 + i, self.seconds) for i in range(sample)), ())


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


def test_autoscaler_drain_uses_the_estimate_from_the_task_times(log_output):
    # Given 1000 finished tasks that took 120 s each and 540 waiting / When the drain policy runs
    times = FixedTimes(120.0)
    scaler = Autoscaler(FakeQueue(540), FakeService(2), DRAIN, FakeState(), times, clock=lambda: NOW)
    decision = scaler.run()
    # Then it read the sample the estimate is built for, and sized with about 120 s, not the 60 s prior
    assert times.samples == [TASK_TIME_SAMPLE]
    estimate = (1000 * 120 + 20 * 60) / 1020
    assert decision.desired == math.ceil(540 * estimate / (540 + estimate))


def test_autoscaler_hands_each_applied_decision_to_the_record_decision_seam(log_output):
    # Given a run that scales out / When it runs / Then the decision goes to record_decision once
    state = FakeState()
    decision = Autoscaler(FakeQueue(150), FakeService(4), STEP, state, clock=lambda: NOW).run()
    assert state.decisions == [(decision, NOW)]


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
        "WORKER_CONCURRENCY",
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


def test_autoscaler_settings_worker_concurrency_reaches_the_policy(autoscaler_env):
    # Given workers that run 2 tasks at once / When read / Then the policy counts in workers of 2 slots
    autoscaler_env.setenv("WORKER_CONCURRENCY", "2")
    assert AutoscalerSettings().policy.concurrency == 2
