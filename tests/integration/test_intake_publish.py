"""Intake when publishing the task's event fails: a definite refusal takes the record back (503); a
failure after which the event may be on the bus keeps it (202), and the task runs exactly once,
routed by the router if the event went out or by the reconciler if it did not."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from local_stack.lambda_runtime import module_of
from mistersmith.adapters.dynamodb import DynamoTaskStore
from mistersmith.adapters.eventbridge import EventBridgePublisher
from mistersmith.callers import LOCAL_CALLER, Caller
from mistersmith.errors import PublishFailed
from mistersmith.intake import Intake
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import TASK_REQUEST_ADAPTER
from mistersmith.reconciling import Reconciler
from mistersmith.settings import IntakeSettings, load
from tests.conftest import stored_key, wait_for_status
from tests.faults import Fault, Faulty, Injection, Recorder

pytestmark = pytest.mark.integration


class Always:
    """A bus client every call of which fails with `error` before it is sent (or, for a timeout,
    without knowing whether it was)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def put_events(self, **_: object) -> dict:
        raise self.error


def intake_with(stack, bus_client_wrapper) -> tuple[Intake, DynamoTaskStore]:
    store = DynamoTaskStore(stack.template.refs["TaskTable"])
    publisher = EventBridgePublisher(stack.template.refs["EventBus"])
    publisher._events = bus_client_wrapper(publisher._events)
    return Intake(Lifecycle(store, publisher), None, load(IntakeSettings)), store


def request(task_id: str):
    return TASK_REQUEST_ADAPTER.validate_python(
        {"id": task_id, "task_type": "compile", "payload": {"files": {"a.py": "x = 1\n"}}}
    )


def test_an_event_published_whose_answer_was_lost_is_accepted_and_runs_once(stack, api):
    # Given a bus that takes the event and loses its answer
    recorder = Recorder(Injection("put_events", Fault.APPLY_THEN_LOSE))
    intake, _ = intake_with(stack, lambda client: Faulty("bus", client, recorder))
    task_id = f"lost-answer-{uuid.uuid4().hex[:10]}"
    # When a task is submitted / Then it is accepted and kept
    record, created = intake.submit(request(task_id), Caller(LOCAL_CALLER))
    assert (record.status, created, recorder.injection.fired) == ("QUEUED", True, True)
    # and the event that did go out gets it run, once
    done = wait_for_status(api, task_id, {"SUCCEEDED", "FAILED", "DEAD_LETTERED"})
    assert (done["status"], done["attempts"]) == ("SUCCEEDED", 1)


def test_an_event_that_may_be_lost_leaves_the_task_to_the_reconciler(stack, api):
    # Given a bus whose every attempt times out unanswered (and nothing reaches it)
    intake, store = intake_with(stack, lambda client: Always(ReadTimeoutError(endpoint_url="fault://bus")))
    task_id = f"maybe-lost-{uuid.uuid4().hex[:10]}"
    # When a task is submitted / Then it is accepted, kept, never routed
    record, _ = intake.submit(request(task_id), Caller(LOCAL_CALLER))
    assert record.status == "QUEUED"
    assert store.get(stored_key(task_id)).routed_at is None
    # When the reconciler comes round / Then it routes it, and it runs once
    router = module_of(stack.template, "RouterFunction").get_router()
    reconciler = Reconciler(
        router.lifecycle, router, lease_grace_seconds=300, unrouted_after_seconds=0, max_recoveries=3
    )
    assert reconciler.run().routed >= 1
    done = wait_for_status(api, task_id, {"SUCCEEDED", "FAILED", "DEAD_LETTERED"})
    assert (done["status"], done["attempts"]) == ("SUCCEEDED", 1)


def test_a_bus_that_cannot_be_reached_answers_503_and_leaves_no_record(stack):
    intake, store = intake_with(
        stack, lambda client: Always(EndpointConnectionError(endpoint_url="fault://bus"))
    )
    task_id = f"bus-down-{uuid.uuid4().hex[:10]}"
    with pytest.raises(PublishFailed):
        intake.submit(request(task_id), Caller(LOCAL_CALLER))
    assert store.get(stored_key(task_id)) is None
