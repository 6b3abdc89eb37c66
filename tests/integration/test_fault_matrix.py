"""The worker protocol under one fault at a time: every call it makes (tests/faults.py, STEPS) fails,
times out, or is applied and then loses its answer, on the real adapters against the local AWS.
Whatever fails, the task ends in exactly one terminal state that agrees with its events, its work
runs once per lease it was claimed under (more than once only where a lease was lost), and no
message is left in the queue."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from mistersmith.adapters.dynamodb import DynamoTaskStore
from mistersmith.clock import now_iso
from mistersmith.models import StoredTask, TaskMessage, TaskStatus
from tests.conftest import marks_directory
from tests.faults import STEPS, Fault, Injection, Recorder
from tests.integration.protocol import (
    WORK_SECONDS,
    execute_body,
    private_queue,
    queue_count,
    running,
    worker_for,
)

pytestmark = pytest.mark.integration

# Every fault must be over well within this: lease + two heartbeats + retries, with room for a slow CI.
BOUND_SECONDS = 45
# The steps one ordinary task goes through; release and resend happen only on other paths.
CLEAN_RUN_STEPS = ("receive", "claim", "announce", "extend", "renew", "watch", "finish", "delete")


@dataclass
class Outcome:
    record: StoredTask | None
    runs: int
    left_in_queue: int
    seconds: float
    announced: list[str]
    recorder: Recorder
    worker_alive: bool


def run_task(stack, injection: Injection | None, *, work_seconds: float = WORK_SECONDS) -> Outcome:
    """One execute task through a worker of its own on a queue of its own, with `injection` armed."""
    table = DynamoTaskStore(stack.template.refs["TaskTable"])
    with marks_directory("fault-marks-") as marks:
        task_id = f"fault-{uuid.uuid4().hex[:10]}"
        body = execute_body(task_id, marks, work_seconds)
        # Root's file, which the child only appends to: nothing that sweeps a sandbox uid's files takes it.
        (marks / task_id).touch(mode=0o666)
        (marks / task_id).chmod(0o666)
        recorder = Recorder(injection)
        dies = injection is not None and injection.fault in (Fault.DIE_BEFORE, Fault.DIE_AFTER)
        with private_queue(stack) as url, contextlib.ExitStack() as workers:
            worker, publisher = worker_for(stack, url, recorder)
            announced = [publisher.statuses]
            table.create(StoredTask.queued(TaskMessage.model_validate_json(body), now_iso()))
            stack.client("sqs").send_message(QueueUrl=url, MessageBody=body)
            started = time.monotonic()
            thread = workers.enter_context(running(worker))
            # The killed worker's hung calls fail before it is stopped (the stack closes in reverse).
            workers.callback(recorder.buried.set)
            deadline = started + BOUND_SECONDS
            record, replaced = table.get(task_id), False
            while time.monotonic() < deadline:
                if dies and recorder.dead.is_set() and not replaced:
                    # ECS replaces the dead task: a clean worker joins the same queue.
                    survivor, survivor_publisher = worker_for(stack, url, Recorder(None))
                    announced.append(survivor_publisher.statuses)
                    workers.enter_context(running(survivor))
                    replaced = True
                record = table.get(task_id)
                if record and record.status.is_terminal and queue_count(stack, url) == 0:
                    break
                time.sleep(0.1)
            seconds = time.monotonic() - started
            alive = thread.is_alive() or dies
            left = queue_count(stack, url)
        mark = marks / task_id
        runs = len(mark.read_text().split()) if mark.exists() else 0
    return Outcome(
        record, runs, left, seconds, [s for statuses in announced for s in statuses], recorder, alive
    )


def assert_ended_once(
    outcome: Outcome, expected: TaskStatus = TaskStatus.SUCCEEDED, *, event_may_be_lost: bool = False
) -> None:
    record = outcome.record
    assert record is not None, "the task's record is gone"
    assert record.status is expected, f"{record.status} (stranded if not terminal): {record}"
    assert outcome.left_in_queue == 0, "a message was left in the queue"
    # The protocol handled the fault: the stack's reconciler (the safety net) never had to
    assert record.recoveries == 0
    # Once, or twice where a worker died holding it: the replacement's own lease never lapses
    assert 1 <= outcome.runs <= 2
    terminal = [status for status in outcome.announced if TaskStatus(status).is_terminal]
    # No event disagrees with the record; one is missing only if the process died between the two.
    assert set(terminal) <= {record.status.value}, outcome.announced
    assert terminal or event_may_be_lost, outcome.announced


def test_the_matrix_covers_every_call_of_the_protocol(stack):
    # Given a worker whose adapters record every call
    # When one task runs through it without a fault
    outcome = run_task(stack, None)
    # Then it ends once, and every call it made is a step of the fault matrix
    assert_ended_once(outcome)
    uncovered = {(adapter, method) for adapter, method, step in outcome.recorder.calls if step is None}
    assert uncovered == set()
    reached = {step for _, _, step in outcome.recorder.calls}
    assert reached == set(CLEAN_RUN_STEPS)
    assert set(CLEAN_RUN_STEPS) <= {step.name for step in STEPS}


def record_row(record_property: Any, step: str, fault: Fault, outcome: Any) -> None:
    """One row of the closing note's fault table, kept in the test report."""
    record_property(
        "fault_matrix",
        json.dumps(
            {
                "step": step,
                "fault": fault.value,
                "runs": outcome.runs,
                "seconds": round(outcome.seconds, 1),
                "status": outcome.record.status.value if outcome.record else None,
                "left": outcome.left_in_queue,
            }
        ),
    )


@pytest.mark.parametrize("fault", [Fault.FAIL, Fault.TIMEOUT, Fault.APPLY_THEN_LOSE])
@pytest.mark.parametrize("step", CLEAN_RUN_STEPS)
def test_one_fault_at_any_step_neither_strands_nor_loses_nor_repeats_the_task(
    stack, step, fault, record_property
):
    # Given a worker whose `step` fails once in the way `fault` says
    injection = Injection(step, fault)
    # When a task runs through it
    outcome = run_task(stack, injection)
    record_row(record_property, step, fault, outcome)
    # Then the fault fired, and the task still ended once, with nothing left behind
    assert injection.fired
    assert_ended_once(outcome)
    assert outcome.worker_alive


@pytest.mark.chaos
@pytest.mark.parametrize("fault", [Fault.DIE_BEFORE, Fault.DIE_AFTER])
@pytest.mark.parametrize("step", CLEAN_RUN_STEPS)
def test_a_worker_killed_at_any_step_leaves_the_task_to_its_replacement(stack, step, fault, record_property):
    # Given a worker that is killed (-9) just before or just after `step` reaches AWS
    injection = Injection(step, fault)
    # When a task runs through it, and a replacement joins the queue once it is dead
    outcome = run_task(stack, injection)
    record_row(record_property, step, fault, outcome)
    # Then the task still ended once, with nothing left behind. A kill that falls between a terminal
    # write and its event (this step's, or another thread's of the same process) loses the event:
    # README, "Events"
    assert injection.fired
    assert_ended_once(outcome, event_may_be_lost=True)
