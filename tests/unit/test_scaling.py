"""The seed's step table at its boundaries, and the decision built on it."""

from __future__ import annotations

import pytest

from mistersmith.ports import QueueDepth, ServiceCounts
from mistersmith.scaling import SEED_STEPS, ScalingPolicy, StepTable, decide

pytestmark = pytest.mark.unit

SEED = StepTable.parse(SEED_STEPS)
POLICY = ScalingPolicy(SEED, min_tasks=2, max_tasks=1000)


@pytest.mark.parametrize(
    ("depth", "change"),
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
def test_step_table_seed_boundaries_give_the_seed_change(depth, change):
    assert SEED.adjustment(depth) == change


@pytest.mark.parametrize(
    "text",
    ["0:-1", ">=10:-1", "<=0:1", "<=0:-1", "<=20:-1,>=10:1", ">=10:1,>=10:2", ">=x:1", ""],
)
def test_step_table_malformed_or_overlapping_text_is_refused(text):
    with pytest.raises(ValueError):
        StepTable.parse(text)


def counts(running: int, desired: int | None = None) -> ServiceCounts:
    return ServiceCounts(
        desired=running if desired is None else desired,
        running=running,
        pending=0,
        deployment_in_progress=False,
    )


def test_decide_deep_queue_adds_the_step_to_the_running_count():
    decision = decide(QueueDepth(visible=150, in_flight=0, delayed=0), counts(running=4, desired=6), POLICY)
    assert decision is not None
    assert (decision.desired, decision.adjustment) == (9, 5)


def test_decide_empty_queue_removes_one_but_not_below_min():
    assert decide(QueueDepth(0, 0, 0), counts(5), POLICY).desired == 4
    assert decide(QueueDepth(0, 0, 0), counts(2), POLICY).desired == 2


def test_decide_below_min_goes_to_min_first():
    assert decide(QueueDepth(10, 0, 0), counts(0), POLICY).desired == 2


def test_decide_never_exceeds_max():
    assert decide(QueueDepth(6000, 0, 0), counts(990), POLICY).desired == 1000


def test_decide_empty_visible_queue_with_work_in_flight_does_not_scale_in():
    decision = decide(QueueDepth(visible=0, in_flight=3, delayed=0), counts(running=5), POLICY)
    assert decision.desired == 5
    assert decision.adjustment == 0


def test_decide_missing_data_changes_nothing():
    assert decide(None, counts(3), POLICY) is None
    assert decide(QueueDepth(5, 0, 0), None, POLICY) is None
