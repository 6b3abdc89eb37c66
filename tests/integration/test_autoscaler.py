"""The autoscaler end to end on the local stack: a queue filled, the handler invoked with the schedule
event from events/, the service's desired count read back from ECS, the record read back from DynamoDB.

Each test gets a queue and an ECS service of its own (in the stack's cluster, from the stack's task
definition), so the stack's own workers and its background autoscaler tick are not disturbed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from local_stack.lambda_runtime import invoke, load_module
from mistersmith import wiring
from mistersmith.adapters.scaling_state import DynamoScalingState, DynamoTaskTimes, control_id
from mistersmith.clock import epoch_from_iso, iso_from_epoch
from mistersmith.ports import LastAction
from mistersmith.settings import AutoscalerSettings
from tests.conftest import load_event

pytestmark = pytest.mark.integration

FUNCTION = "AutoscalerFunction"


@dataclass
class Target:
    """An isolated worker service and queue, and the autoscaler settings that point at them."""

    queue_url: str
    cluster: str
    service: str
    table: str

    def settings(self, **overrides: Any) -> AutoscalerSettings:
        values = {
            "task_table_name": self.table,
            "work_queue_url": self.queue_url,
            "cluster_name": self.cluster,
            "worker_service_name": self.service,
            "scaling_policy": "step",
        }
        return AutoscalerSettings(**(values | overrides))


def fill(sqs, queue_url: str, count: int) -> None:
    for start in range(0, count, 10):
        entries = [
            {"Id": str(i), "MessageBody": f'{{"n": {start + i}}}'} for i in range(min(10, count - start))
        ]
        sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)


def describe(ecs, target: Target) -> dict[str, Any]:
    return ecs.describe_services(cluster=target.cluster, services=[target.service])["services"][0]


def desired_count(ecs, target: Target) -> int:
    return describe(ecs, target)["desiredCount"]


def task_table(stack, name: str) -> str:
    """A table with TaskTable's key and indexes from template.yaml, for a test that needs it empty."""
    properties = stack.template.resources["TaskTable"]["Properties"]
    stack.client("dynamodb").create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=properties["AttributeDefinitions"],
        KeySchema=properties["KeySchema"],
        GlobalSecondaryIndexes=properties["GlobalSecondaryIndexes"],
    )
    return name


@pytest.fixture
def target(stack) -> Target:
    ecs, sqs = stack.client("ecs"), stack.client("sqs")
    service_id, properties = next(stack.template.of_type("AWS::ECS::Service"))
    cluster = stack.template.resolve(properties["Cluster"])
    real = ecs.describe_services(cluster=cluster, services=[stack.template.attributes[service_id]["Name"]])
    name = f"scaling-{uuid.uuid4().hex[:8]}"
    ecs.create_service(
        cluster=cluster,
        serviceName=name,
        taskDefinition=real["services"][0]["taskDefinition"],
        desiredCount=2,
    )
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return Target(queue_url, cluster, name, stack.template.refs["TaskTable"])


@pytest.fixture
def handler_scaling(stack, monkeypatch) -> Iterator[Any]:
    """Points the real handler at an autoscaler wired (by wiring.autoscaler) to the given settings."""
    spec = stack.template.function(FUNCTION)
    module = load_module(spec["CodeUri"], spec["Handler"].rpartition(".")[0])

    def use(settings: AutoscalerSettings) -> None:
        scaler = wiring.autoscaler(settings)
        monkeypatch.setattr(module, "get_autoscaler", lambda: scaler)

    yield use


def test_autoscaler_step_policy_filled_queue_scales_the_service_out(stack, target, handler_scaling):
    # Given the seed's step table, a service asked for 2 tasks, and 100 messages visible
    fill(stack.client("sqs"), target.queue_url, 100)
    desired = describe(stack.client("ecs"), target)["desiredCount"]
    handler_scaling(target.settings())
    # When the handler gets the schedule event
    response = invoke(stack.template, FUNCTION, load_event("autoscaler_schedule.json"))
    # Then the +5 step applies to the desired count (AAS's current capacity), in the reply and in ECS
    assert response["desired_count"] == desired + 5
    assert desired_count(stack.client("ecs"), target) == response["desired_count"]


def test_autoscaler_records_its_action_as_a_control_record_not_a_task(stack, api, target, handler_scaling):
    # Given 100 messages visible and the step table
    fill(stack.client("sqs"), target.queue_url, 100)
    handler_scaling(target.settings())
    desired = describe(stack.client("ecs"), target)["desiredCount"]
    # When the handler runs
    response = invoke(stack.template, FUNCTION, load_event("autoscaler_schedule.json"))
    # Then its record holds the scale-out, has no task attributes, and no listing shows it
    item = stack.client("dynamodb").get_item(
        TableName=target.table, Key={"id": {"S": control_id(target.service)}}, ConsistentRead=True
    )["Item"]
    assert (int(item["desired"]["N"]), item["adjustment"]["N"]) == (response["desired_count"], "5")
    assert int(item["base"]["N"]) == desired
    assert int(item["seen_waiting"]["N"]) == 100
    assert "status" not in item and "task_type" not in item
    listed = api.get("/tasks", params={"limit": 100}).json()["items"]
    assert all(not task["id"].startswith("control#") for task in listed)


def test_autoscaler_drain_policy_sizes_from_finished_and_running_task_times(stack, target, handler_scaling):
    # Given a fresh task table: 20 finished worker tasks that took 120 s each, and 20 of the same
    # cohort still running after 240 s (created after the finished ones), and one running task
    # created before them (not of the cohort)
    ddb = stack.client("dynamodb")
    table = task_table(stack, f"tasks-{uuid.uuid4().hex[:8]}")
    started = iso_from_epoch(time.time() - 240)
    items = [
        ("SUCCEEDED", f"2026-11-28T08:00:{i:02d}.000Z", {"duration_ms": {"N": "120000"}}) for i in range(20)
    ]
    items += [
        ("RUNNING", f"2026-11-28T08:01:{i:02d}.000Z", {"started_at": {"S": started}}) for i in range(20)
    ]
    items += [("RUNNING", "2026-11-28T07:00:00.000Z", {"started_at": {"S": iso_from_epoch(0.0)}})]
    for i, (status, created, times) in enumerate(items):
        ddb.put_item(
            TableName=table,
            Item={
                "id": {"S": f"task-{i}"},
                "task_type": {"S": "execute"},
                "status": {"S": status},
                "created_at": {"S": created},
                **times,
            },
        )
    # And 45 messages waiting, the drain policy with its defaults (600 s budget, 60 s start, 60 s prior)
    fill(stack.client("sqs"), target.queue_url, 45)
    handler_scaling(target.settings(task_table_name=table, scaling_policy="drain"))
    # When the handler runs
    response = invoke(stack.template, FUNCTION, load_event("autoscaler_schedule.json"))
    # Then the cohort's Kaplan-Meier mean counts the running ones as still going: beyond 120 s half the
    # cohort survives, taken to need as long again (120 + 0.5 x 120 = 180 s), with the 60 s prior
    # weighing as 20 tasks: 120 s; 45 tasks x 120 s started within the 540 s a new task has (the last
    # starting a task time before the work is done, 540 + 120 s): 9 tasks (90 s, the finished ones alone: 7)
    assert response["desired_count"] == 9
    assert desired_count(stack.client("ecs"), target) == 9


def test_autoscaler_unreadable_service_changes_nothing_and_says_so(stack, target, handler_scaling):
    # Given settings naming a service that does not exist, and a filled queue
    fill(stack.client("sqs"), target.queue_url, 100)
    handler_scaling(target.settings(worker_service_name="no-such-service"))
    # When the handler runs
    response = invoke(stack.template, FUNCTION, load_event("autoscaler_schedule.json"))
    # Then it reports that nothing changed, the real target is untouched and nothing was recorded
    assert response["changed"] is False
    assert desired_count(stack.client("ecs"), target) == 2
    item = stack.client("dynamodb").get_item(
        TableName=target.table, Key={"id": {"S": control_id("no-such-service")}}
    )
    assert "Item" not in item


def test_scaling_state_second_writer_on_the_same_version_is_refused(stack, target):
    # Given two invocations that read the same (absent) record
    state = DynamoScalingState(target.table, target.service)
    first = LastAction(at=1.0, desired=3, base=2, adjustment=1, version=1)
    second = LastAction(at=1.5, desired=4, base=2, adjustment=2, version=1)
    # When both write on what they read / Then the first wins and the second is refused
    assert state.record(first, previous=None) is True
    assert state.record(second, previous=None) is False
    # And a write on the stored version succeeds and reads back whole
    third = LastAction(at=2.0, desired=5, base=3, adjustment=2, version=2)
    assert state.record(third, previous=first) is True
    assert state.last_action() == third


def test_task_times_reads_the_newest_finished_and_the_running_of_their_cohort(stack):
    # Given 30 finished worker tasks created a second apart, a finished analyze task (not a worker's),
    # and two running tasks: one created before the 10 newest finished, one after
    ddb = stack.client("dynamodb")
    table = task_table(stack, f"tasks-{uuid.uuid4().hex[:8]}")

    def put(
        task_id: str, status: str, second: int, times: dict[str, Any], task_type: str = "compile"
    ) -> None:
        created = {"S": f"2026-11-28T08:{second // 60:02d}:{second % 60:02d}.000Z"}
        item = {
            "id": {"S": task_id},
            "task_type": {"S": task_type},
            "status": {"S": status},
            "created_at": created,
        }
        ddb.put_item(TableName=table, Item=item | times)

    for second in range(30):
        put(f"done-{second}", "SUCCEEDED", second, {"duration_ms": {"N": str(1000 * (second + 1))}})
    put("analyzed", "SUCCEEDED", 40, {"duration_ms": {"N": "1"}}, task_type="analyze")
    put("old-runner", "RUNNING", 5, {"started_at": {"S": "2026-11-28T08:00:06.000Z"}})
    put("new-runner", "RUNNING", 35, {"started_at": {"S": "2026-11-28T08:00:36.000Z"}})
    # When the 10 newest are read
    times = DynamoTaskTimes(table).task_times(sample=10)
    # Then the 10 newest worker tasks (29 s down to 20 s), and only the runner of their cohort
    assert [seconds for _, seconds in times.finished] == [float(s + 1) for s in range(29, 19, -1)]
    assert [started for _, started in times.running] == [epoch_from_iso("2026-11-28T08:00:36.000Z")]
