"""`mistersmith dlq list / redrive` on moto. The stack's own DLQs are drained at once by
DeadLetterFunction, so these tests use a source queue and DLQ of their own on the same moto server,
found the way .local/env's WORK_QUEUE_URL is: through the source queue's redrive policy."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest

from mistersmith.adapters.dynamodb import DynamoTaskStore
from mistersmith.clock import now_iso
from mistersmith.models import StoredTask, TaskMessage
from mistersmith_client.cli import main

pytestmark = pytest.mark.integration


@pytest.fixture
def queues(stack, monkeypatch):
    """(source queue URL, DLQ URL): a fresh pair, the client pointed at the source queue."""
    sqs = stack.client("sqs")
    suffix = uuid.uuid4().hex[:8]
    dlq = sqs.create_queue(QueueName=f"cli-dlq-{suffix}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    source = sqs.create_queue(
        QueueName=f"cli-source-{suffix}",
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})},
    )["QueueUrl"]
    monkeypatch.setenv("MISTERSMITH_WORK_QUEUE_URL", source)
    monkeypatch.setenv("MISTERSMITH_API_URL", stack.api_url)
    yield source, dlq
    sqs.delete_queue(QueueUrl=source)
    sqs.delete_queue(QueueUrl=dlq)


def dead_letter(stack, dlq: str, count: int) -> list[str]:
    sqs = stack.client("sqs")
    ids = [f"dead-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    for task_id in ids:
        sqs.send_message(
            QueueUrl=dlq, MessageBody=json.dumps({"id": task_id, "task_type": "execute", "payload": {}})
        )
    return ids


def depth(stack, url: str) -> int:
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_dlq_list_shows_the_depth_and_the_tasks_of_each_message(stack, queues):
    # Given three task messages in the work DLQ
    _, dlq = queues
    ids = dead_letter(stack, dlq, 3)
    # When the DLQ is listed with its messages
    code, out, _ = run("dlq", "list", "--queue", "work", "--show", "10")
    # Then its depth and each task id are shown, and the messages are still there
    assert code == 0
    assert out.splitlines()[0] == f"work\t3 message(s)\t{dlq}"
    assert {line.split("\t")[1] for line in out.splitlines()[1:]} == {f"task={task_id}" for task_id in ids}
    assert depth(stack, dlq) == 3


def test_cli_dlq_redrive_moves_every_message_back_to_the_source_queue(stack, queues):
    # Given three messages in the DLQ (moto has no StartMessageMoveTask, so they move one by one)
    source, dlq = queues
    dead_letter(stack, dlq, 3)
    # When the work DLQ is redriven
    code, out, _ = run("dlq", "redrive", "--queue", "work")
    # Then all three are in the source queue and none in the DLQ
    assert code == 0
    assert out.strip() == f"work\t3 message(s) moved back to {source}"
    assert (depth(stack, dlq), depth(stack, source)) == (0, 3)


def test_cli_dlq_redrive_max_moves_only_that_many(stack, queues):
    source, dlq = queues
    dead_letter(stack, dlq, 3)
    code, _, _ = run("dlq", "redrive", "--queue", "work", "--max", "2")
    assert code == 0
    assert (depth(stack, dlq), depth(stack, source)) == (1, 2)


def test_cli_dlq_redriven_task_message_is_run_by_a_worker(stack, wait_terminal, monkeypatch):
    # Given a QUEUED task whose only message sits in a DLQ (as when DeadLetterFunction could not
    # record it), that DLQ being one the stack does not drain
    task_id = f"redriven-{uuid.uuid4().hex[:8]}"
    message = TaskMessage(id=task_id, task_type="compile", payload={"files": {"a.py": "x = 1\n"}})
    DynamoTaskStore(stack.template.refs["TaskTable"]).create(StoredTask.queued(message, now_iso()))
    sqs = stack.client("sqs")
    parked = sqs.create_queue(QueueName=f"parked-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    sqs.send_message(QueueUrl=parked, MessageBody=message.model_dump_json(exclude_none=True))
    monkeypatch.setenv("MISTERSMITH_WORK_DLQ_URL", parked)
    monkeypatch.setenv("MISTERSMITH_WORK_QUEUE_URL", stack.template.refs["WorkQueue"])
    # When that DLQ is redriven into the work queue
    code, out, err = run("dlq", "redrive", "--queue", "work")
    # Then a worker runs the task to the end
    assert code == 0, err
    assert out.startswith("work\t1 message(s) moved back")
    assert wait_terminal(task_id)["status"] == "SUCCEEDED"
    assert depth(stack, parked) == 0
    sqs.delete_queue(QueueUrl=parked)


def test_cli_dlq_without_any_queue_configured_exits_2_saying_what_to_set(monkeypatch):
    for name in (
        "MISTERSMITH_WORK_QUEUE_URL",
        "WORK_QUEUE_URL",
        "ANALYZE_QUEUE_URL",
        "MISTERSMITH_ANALYZE_QUEUE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in ("WORK", "ANALYZE", "ROUTER"):
        monkeypatch.delenv(f"MISTERSMITH_{name}_DLQ_URL", raising=False)
    code, _, err = run("dlq", "list")
    assert code == 2
    assert "--stack-name" in err and "MISTERSMITH_WORK_DLQ_URL" in err


def test_cli_dlq_redrive_on_moto_leaves_no_traceback_in_the_console(stack, queues, caplog):
    # Given dead letters on moto, which lacks StartMessageMoveTask
    source, dlq = queues
    dead_letter(stack, dlq, 1)
    # When the whole DLQ is redriven (the move task first, then message by message)
    with caplog.at_level(logging.ERROR):
        code, out, _ = run("dlq", "redrive", "--queue", "work")
    # Then the messages moved, and moto's refusal is one line, not a traceback
    logged = [record.getMessage() for record in caplog.records]
    assert (code, depth(stack, source)) == (0, 1), out
    assert not any("Traceback" in record.getMessage() or record.exc_info for record in caplog.records)
    assert "moto: The start_message_move_task action has not been implemented" in logged
