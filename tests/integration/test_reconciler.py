"""The reconciler on the local stack (scheduled like the autoscaler): alone it recovers a task whose
worker died and whose message was then deleted by hand, which nothing else would ever run again."""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from mistersmith.adapters.dynamodb import DynamoTaskStore
from tests.conftest import VISIBILITY_SECONDS, own_workers, stored_key, wait_for_status

pytestmark = pytest.mark.integration


def test_a_task_whose_message_was_deleted_by_hand_is_recovered_by_the_reconciler_alone(stack, api):
    store = DynamoTaskStore(stack.template.refs["TaskTable"])
    sqs = stack.client("sqs")
    url = stack.template.refs["WorkQueue"]
    task_id = f"by-hand-{uuid.uuid4().hex[:10]}"
    with own_workers(stack) as workers:
        # Given a task RUNNING on a worker that is then killed
        worker = stack.start_worker(95, {"CONCURRENCY": "1"})
        workers.append(worker)
        command = ["python3", "-c", "import time; time.sleep(2)"]
        api.post("/tasks", json={"id": task_id, "task_type": "execute", "payload": {"command": command}})
        wait_for_status(api, task_id, {"RUNNING"})
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        # And its message, back after the visibility timeout, deleted by hand
        deadline, deleted = time.monotonic() + 4 * VISIBILITY_SECONDS, False
        while not deleted and time.monotonic() < deadline:
            for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []
            ):
                if task_id in message["Body"]:
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                    deleted = True
                else:  # another test's: back at once
                    sqs.change_message_visibility(
                        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
        assert deleted
        assert store.get(stored_key(task_id)).status == "RUNNING"
        # When the reconciler's schedule comes round (its lease lapsed a visibility timeout ago)
        record = wait_for_status(api, task_id, {"QUEUED"}, timeout=6 * VISIBILITY_SECONDS)
        # Then it is back on the queue, and a worker runs it to the end
        workers.append(stack.start_worker(96, {"CONCURRENCY": "1"}))
        record = wait_for_status(api, task_id, {"SUCCEEDED", "FAILED", "DEAD_LETTERED"}, timeout=60)
    assert record["status"] == "SUCCEEDED"
    assert store.get(stored_key(task_id)).recoveries == 1
