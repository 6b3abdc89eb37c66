"""New tasks go from intake's one write to the queue through the task table's stream (the router's
event source mapping, played by the local stack's poller). A fault at each call on that path (the
stream read, the batch send, the router itself) still gets every accepted task to one terminal
state, run once; a bus that is down does not stop submissions; another region's insert is left to
that region; and a task the stream never delivers is sent by the reconciler."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError, EndpointConnectionError
from moto.dynamodbstreams.models import dynamodbstreams_backends

from local_stack.lambda_runtime import module_of
from mistersmith.adapters.dynamodb import DynamoTaskStore
from mistersmith.clock import now_iso
from mistersmith.intake import Intake
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask, TaskMessage, TaskStatus
from mistersmith.reconciling import Reconciler
from mistersmith.settings import IntakeSettings, load
from tests.conftest import stored_key
from tests.fakes import BrokenBus

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def compile_body(task_id: str) -> dict[str, Any]:
    return {"id": task_id, "task_type": "compile", "payload": {"files": {"a.py": "x = 1\n"}}}


class OneFault:
    """A boto3 client whose `operation` fails once, on the first call whose request or answer
    holds `task_id`: refused before it is sent, or made and its answer lost."""

    def __init__(self, inner: Any, operation: str, task_id: str, *, applied: bool) -> None:
        self.inner = inner
        self.operation = operation
        self.task_id = task_id
        self.applied = applied
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.inner, name)
        if name != self.operation:
            return value

        def call(**request: Any) -> Any:
            if not self.fired and not self.applied and self.task_id in str(request):
                self.fired = True
                raise EndpointConnectionError(endpoint_url=f"fault://{name}")
            answer = value(**request)
            if not self.fired and self.applied and self.task_id in str(request) + str(answer):
                self.fired = True
                raise ConnectionClosedError(endpoint_url=f"fault://{name}")
            return answer

        return call


@contextmanager
def swapped(owner: Any, attribute: str, replacement: Callable[[Any], Any]) -> Iterator[Any]:
    original = getattr(owner, attribute)
    wrapper = replacement(original)
    setattr(owner, attribute, wrapper)
    try:
        yield wrapper
    finally:
        setattr(owner, attribute, original)


def router_of(stack) -> Any:
    return module_of(stack.template, "RouterFunction").get_router()


def assert_ran_once(api, wait_terminal, task_id: str) -> None:
    record = wait_terminal(task_id)
    assert (record["status"], record["attempts"]) == ("SUCCEEDED", 1), record


def test_a_stream_read_whose_answer_is_lost_is_read_again(stack, api, wait_terminal):
    # Given the router's stream mapping whose read carrying the task loses its answer
    task_id = unique("lost-read")
    (poller,) = stack.stream_pollers
    with swapped(
        poller, "streams", lambda client: OneFault(client, "get_records", task_id, applied=True)
    ) as fault:
        # When the task is submitted / Then the stream is read again from where it was, and the task runs once
        assert api.post("/tasks", json=compile_body(task_id)).status_code == 202
        assert_ran_once(api, wait_terminal, task_id)
    assert fault.fired


@pytest.mark.parametrize("applied", [False, True], ids=["refused", "sent-answer-lost"])
def test_a_batch_send_that_fails_is_delivered_again_and_the_task_runs_once(
    stack, api, wait_terminal, applied
):
    # Given a work queue whose batch send holding the task is refused, or is sent and its answer lost
    task_id = unique("batch-send")
    queue = router_of(stack).work_queue
    with swapped(
        queue, "_sqs", lambda client: OneFault(client, "send_message_batch", task_id, applied=applied)
    ) as fault:
        # When the task is submitted
        assert api.post("/tasks", json=compile_body(task_id)).status_code == 202
        # Then the router reports it, the stream delivers it again, and it runs once (a copy
        # that went out the first time is dropped by the claim)
        assert_ran_once(api, wait_terminal, task_id)
    assert fault.fired


class PartialFailure:
    """A queue client whose batch send leaves out the entry holding `task_id` and answers it failed, once."""

    def __init__(self, inner: Any, task_id: str) -> None:
        self.inner = inner
        self.task_id = task_id
        self.fired = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's names
        ours = [entry for entry in Entries if self.task_id in entry["MessageBody"]]
        if self.fired or not ours:
            return self.inner.send_message_batch(QueueUrl=QueueUrl, Entries=Entries)
        self.fired = True
        rest = [entry for entry in Entries if entry not in ours]
        answer = (
            self.inner.send_message_batch(QueueUrl=QueueUrl, Entries=rest) if rest else {"Successful": []}
        )
        failed = [{"Id": entry["Id"], "SenderFault": False, "Code": "InternalError"} for entry in ours]
        return answer | {"Failed": [*answer.get("Failed", []), *failed]}


def test_an_entry_a_batch_send_refused_is_delivered_again_alone_of_its_batch(stack, api, wait_terminal):
    # Given a work queue that refuses one entry of a batch (SendMessageBatch's partial failure)
    task_id, neighbour = unique("partial"), unique("partial-neighbour")
    queue = router_of(stack).work_queue
    with swapped(queue, "_sqs", lambda client: PartialFailure(client, task_id)) as fault:
        # When it and another task are submitted
        for each in (neighbour, task_id):
            assert api.post("/tasks", json=compile_body(each)).status_code == 202
        # Then both run once
        assert_ran_once(api, wait_terminal, task_id)
        assert_ran_once(api, wait_terminal, neighbour)
    assert fault.fired


@pytest.mark.parametrize("after_send", [False, True], ids=["before-send", "after-send"])
def test_a_router_that_crashes_mid_batch_gets_the_batch_again(stack, api, wait_terminal, after_send):
    # Given a router that crashes once while it routes the batch holding the task
    task_id = unique("crash")
    router = router_of(stack)
    crashed: list[str] = []

    def crashing(route: Callable[[list[StoredTask]], list[str]]) -> Callable[[list[StoredTask]], list[str]]:
        def route_inserts(tasks: list[StoredTask]) -> list[str]:
            ours = not crashed and any(task.id == stored_key(task_id) for task in tasks)
            if ours and not after_send:
                crashed.append("before")
                raise RuntimeError("the router crashed before sending")
            not_sent = route(tasks)
            if ours:
                crashed.append("after")
                raise RuntimeError("the router crashed after sending")
            return not_sent

        return route_inserts

    with swapped(router, "route_inserts", crashing):
        # When the task is submitted / Then the mapping invokes the router again, and it runs once
        assert api.post("/tasks", json=compile_body(task_id)).status_code == 202
        assert_ran_once(api, wait_terminal, task_id)
    assert crashed == ["after" if after_send else "before"]


def test_a_bus_that_is_down_does_not_stop_a_submission_and_the_task_runs(stack, api, wait_terminal):
    # Given intake whose bus refuses every event
    intake_module = module_of(stack.template, "IntakeFunction")
    app, get_intake = intake_module.app, intake_module.get_intake
    store = DynamoTaskStore(stack.template.refs["TaskTable"])
    app.dependency_overrides[get_intake] = lambda: Intake(
        Lifecycle(store, BrokenBus()), None, load(IntakeSettings)
    )
    try:
        # When a task is submitted / Then it is accepted (intake publishes nothing), and runs once
        task_id = unique("nobus")
        assert api.post("/tasks", json=compile_body(task_id)).status_code == 202
    finally:
        app.dependency_overrides.clear()
    assert_ran_once(api, wait_terminal, task_id)


def test_another_regions_insert_is_left_to_it_and_a_task_the_stream_never_sent_goes_by_the_reconciler(
    stack, api, wait_terminal
):
    # Given a QUEUED task written by another region's intake (replicated into this table)
    store = DynamoTaskStore(stack.template.refs["TaskTable"])
    foreign = unique("foreign")
    message = TaskMessage.model_validate(compile_body(foreign))
    assert store.create(StoredTask.queued(message, now_iso(), region="elsewhere-1"))
    # When a task of this region's, inserted after it, has been routed and has run
    ours = unique("ours")
    assert api.post("/tasks", json=compile_body(ours)).status_code == 202
    assert_ran_once(api, wait_terminal, ours)
    # Then this region's stream mapping read past the other's and left it alone
    assert store.get(foreign).status is TaskStatus.QUEUED
    # And when it is older than the reconciler's bound (the stream's, here none), the reconciler sends it
    router = router_of(stack)
    reconciler = Reconciler(
        router.lifecycle, router, lease_grace_seconds=300, unrouted_after_seconds=0, max_recoveries=3
    )
    assert reconciler.run().routed >= 1
    record = wait_terminal(foreign)
    assert (record["status"], record["attempts"]) == ("SUCCEEDED", 1)


def test_the_local_aws_forgets_each_shard_iterator_once_it_is_used(stack, api, wait_terminal):
    # Given the stream mapping reading four times a second (each read answers a new iterator)
    task_id = unique("iterators")
    assert api.post("/tasks", json=compile_body(task_id)).status_code == 202
    assert_ran_once(api, wait_terminal, task_id)
    # When the local AWS's iterators are counted / Then only those not yet used are kept
    backend = dynamodbstreams_backends[stack.template.account][stack.template.region]
    assert len(backend.shard_iterators) <= 2 * len(stack.stream_pollers)
