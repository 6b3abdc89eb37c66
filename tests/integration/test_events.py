"""Every file in events/ drives its function's handler the way `sam local invoke -e` would."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from local_stack.lambda_runtime import invoke, module_of
from local_stack.stack import EVENTS_DIR
from mistersmith.adapters.dynamodb import DynamoTaskStore, task_from_image
from tests.conftest import event_files, load_event

pytestmark = pytest.mark.integration

FUNCTION_BY_PREFIX = {
    "intake": "IntakeFunction",
    "router": "RouterFunction",
    "analyze": "AnalyzeFunction",
    "autoscaler": "AutoscalerFunction",
    "dead": "DeadLetterFunction",
    "reconciler": "ReconcilerFunction",
}
EXPECTED_STATUS = {
    "intake_submit_invalid.json": 422,
    "intake_submit_execute.json": 202,
    "intake_submit_compile.json": 202,
    "intake_submit_analyze.json": 202,
}


def expected_status(event_name: str) -> int:
    """The status promised above, or the one recorded for a generated event (test_generated_events)."""
    recorded = EVENTS_DIR / "responses" / event_name
    if recorded.exists():
        return json.loads(recorded.read_text())["statusCode"]
    return EXPECTED_STATUS.get(event_name, 200)


def function_for(event_name: str) -> str:
    return FUNCTION_BY_PREFIX[event_name.split("_", 1)[0]]


def test_every_event_file_names_a_function_of_the_template(stack):
    # Given the template's functions, when every event file is matched by its prefix, then all match
    functions = {name for name, _ in stack.template.of_type("AWS::Serverless::Function")}
    assert {function_for(path.name) for path in event_files()} <= functions
    assert {function_for(path.name) for path in event_files()} == functions


@pytest.mark.parametrize("name", [path.name for path in event_files() if path.name.startswith("intake_")])
def test_intake_event_file_is_answered_as_api_gateway_expects(stack, name):
    # Given an intake submission whose task may be read back by intake_get_task.json
    invoke(stack.template, "IntakeFunction", load_event("intake_submit_execute.json"))
    # When the event is invoked as API Gateway would
    response = invoke(stack.template, "IntakeFunction", load_event(name))
    # Then the proxy response has the status the route promises and a JSON body
    assert response["statusCode"] == expected_status(name), response["body"]
    json.loads(response["body"])


def test_router_worker_task_event_queues_the_task(stack, wait_terminal):
    result = invoke(stack.template, "RouterFunction", load_event("router_worker_task.json"))
    assert result == {"task_id": "orchestrated-compile-1", "outcome": "queued"}
    assert wait_terminal("orchestrated-compile-1")["status"] == "SUCCEEDED"


def test_router_stream_event_sends_the_inserted_task_and_reports_no_failure(stack, wait_terminal):
    # Given the task record whose insert the stream event carries (as intake wrote it)
    event = load_event("router_stream_inserts.json")
    image = event["Records"][0]["dynamodb"]["NewImage"]
    DynamoTaskStore(stack.template.refs["TaskTable"]).create(task_from_image(image))
    # When the stream's batch is delivered / Then it is sent, with no item to deliver again, and runs
    assert invoke(stack.template, "RouterFunction", event) == {"batchItemFailures": []}
    assert wait_terminal("streamed-compile-1")["status"] == "SUCCEEDED"


def test_router_event_again_for_a_finished_task_skips_it(stack, wait_terminal):
    # Given an orchestrator event whose task has finished
    invoke(stack.template, "RouterFunction", load_event("router_worker_task.json"))
    wait_terminal("orchestrated-compile-1")
    # When the same event arrives again (EventBridge delivers at least once)
    result = invoke(stack.template, "RouterFunction", load_event("router_worker_task.json"))
    # Then the task is not queued a second time
    assert result == {"task_id": "orchestrated-compile-1", "outcome": "skipped"}


def test_router_unknown_type_event_rejects_the_task_visibly(stack, wait_terminal):
    result = invoke(stack.template, "RouterFunction", load_event("router_unknown_type.json"))
    assert result["outcome"] == "rejected"
    record = wait_terminal("orchestrated-unknown-1")
    assert record["error"]["type"] == "UnknownTaskType"


def test_analyze_sqs_batch_event_processes_its_record(stack, wait_terminal):
    response = invoke(stack.template, "AnalyzeFunction", load_event("analyze_sqs_batch.json"))
    assert response == {"batchItemFailures": []}
    record = wait_terminal("sample-analyze-sqs-1")
    assert record["status"] == "SUCCEEDED"
    assert record["result"]["functions"] == 1


def test_autoscaler_schedule_event_decides_a_count_within_bounds(stack):
    response = invoke(stack.template, "AutoscalerFunction", load_event("autoscaler_schedule.json"))
    minimum = int(stack.template.parameters["MinTasks"])
    maximum = int(stack.template.parameters["MaxTasks"])
    assert minimum <= response["desired_count"] <= maximum


def test_autoscaler_reply_has_one_shape_also_when_its_inputs_are_unavailable(stack, monkeypatch):
    # Given an autoscaler whose inputs cannot be read this minute
    module = module_of(stack.template, "AutoscalerFunction")
    monkeypatch.setattr(module, "get_autoscaler", lambda: SimpleNamespace(run=lambda: None))
    # When the schedule invokes it
    response = invoke(stack.template, "AutoscalerFunction", load_event("autoscaler_schedule.json"))
    # Then it answers with the same fields as a decision, saying nothing was applied
    assert set(response) == {"changed", "desired_count", "previous_desired_count", "adjustment", "reason"}
    assert (response["changed"], response["desired_count"]) == (False, None)
    assert "inputs unavailable" in response["reason"]


def test_dead_letter_sqs_batch_event_ends_the_task_dead_lettered(stack, wait_terminal):
    # Given a message that SQS moved to the work DLQ after its receives ran out
    event = load_event("dead_letter_sqs_batch.json")
    # When the dead-letter function gets it
    response = invoke(stack.template, "DeadLetterFunction", event)
    # Then the task ends DEAD_LETTERED with a readable reason, and the batch reports no failure
    assert response == {"batchItemFailures": []}
    record = wait_terminal("sample-dead-letter-1")
    assert record["status"] == "DEAD_LETTERED"
    assert "gave up after 4 receives" in record["error"]["message"]


def test_reconciler_schedule_event_answers_what_it_put_back(stack):
    response = invoke(stack.template, "ReconcilerFunction", load_event("reconciler_schedule.json"))
    assert set(response) == {"requeued", "routed", "dead_lettered"}
    assert all(isinstance(value, int) and value >= 0 for value in response.values())
