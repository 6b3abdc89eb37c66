"""What kills or confuses workers must not lose, strand or repeat a task: drain on SIGTERM, duplicate
deliveries, racing claims, retries that end in the DLQ (intake and the router under faults:
test_stream_routing_faults.py)."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid

import pytest

from mistersmith.adapters.dynamodb import DynamoTaskStore
from mistersmith.clock import now_iso
from mistersmith.errors import TransitionRejected
from mistersmith.models import StoredTask, TaskMessage, TaskStatus, canonical_json
from tests.conftest import VISIBILITY_SECONDS, own_workers, wait_for_status

pytestmark = pytest.mark.integration


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def work_queue_count(stack) -> int:
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.template.refs["WorkQueue"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def test_sigterm_during_a_long_task_hands_it_to_another_worker_at_once(stack, api, wait_terminal):
    with own_workers(stack) as workers:
        # Given a worker with a 1 s drain grace running a 3 s task
        first = stack.start_worker(90, {"DRAIN_GRACE_SECONDS": "1", "CONCURRENCY": "1"})
        workers.append(first)
        task_id = unique("drain")
        command = ["python3", "-c", "import time; time.sleep(3)"]
        api.post("/tasks", json={"id": task_id, "task_type": "execute", "payload": {"command": command}})
        wait_for_status(api, task_id, {"RUNNING"})
        # When it is told to stop, and a second worker is ready
        signalled = time.monotonic()
        first.send_signal(signal.SIGTERM)
        workers.append(stack.start_worker(91, {"CONCURRENCY": "1"}))
        exit_code = first.wait(timeout=15)
        exited_after = time.monotonic() - signalled
        record = wait_terminal(task_id)
        finished_after = time.monotonic() - signalled
    # Then the first exits cleanly within its grace, and the task runs again at once, not after
    # the visibility timeout
    assert exit_code == 0
    assert exited_after < 1 + 5
    assert record["status"] == "SUCCEEDED"
    assert record["attempts"] == 2
    assert finished_after < VISIBILITY_SECONDS


def test_sigterm_while_idle_exits_within_one_long_poll(stack):
    with own_workers(stack) as workers:
        # Given an idle worker in a 3 s long poll
        log = stack.config.log_dir / "worker-92.log"
        log.unlink(missing_ok=True)
        worker = stack.start_worker(92, {"RECEIVE_WAIT_SECONDS": "3", "LOG_LEVEL": "INFO"})
        workers.append(worker)
        deadline = time.monotonic() + 30
        while (
            "worker started" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        time.sleep(1)
        # When it is told to stop
        signalled = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        exit_code = worker.wait(timeout=15)
    # Then it leaves cleanly once the poll in flight returns (3 s) and its lease and cancel-watch
    # threads have ended their last beat (CI measured 5.02 s with both, so 5 s of slack)
    assert exit_code == 0
    assert time.monotonic() - signalled < 3 + 5


def test_the_same_message_delivered_twice_runs_the_task_once(stack, wait_terminal):
    # Given one task whose message SQS delivers twice (at least once delivery)
    task_id = unique("dup")
    body = canonical_json(
        {
            "id": task_id,
            "task_type": "execute",
            "payload": {"command": ["python3", "-c", "import time; time.sleep(1)"]},
        }
    )
    sqs = stack.client("sqs")
    for _ in range(2):
        sqs.send_message(QueueUrl=stack.template.refs["WorkQueue"], MessageBody=body)
    # When the workers take them
    record = wait_terminal(task_id)
    # Then it ran once, and neither message is left behind
    assert record["status"] == "SUCCEEDED"
    assert record["attempts"] == 1
    # The duplicate is deferred (never deleted because of a lease) until the lease ends: a visibility.
    deadline = time.monotonic() + 3 * VISIBILITY_SECONDS
    while work_queue_count(stack) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert work_queue_count(stack) == 0


def test_racing_claims_on_one_task_let_exactly_one_worker_win(stack):
    # Given a QUEUED task and eight workers claiming it at the same moment
    store = DynamoTaskStore(stack.template.refs["TaskTable"])
    task_id = unique("race")
    message = TaskMessage(id=task_id, task_type="compile", payload={"files": {"a.py": ""}})
    store.create(StoredTask.queued(message, now_iso()))
    winners, barrier = [], threading.Barrier(8)

    def claim(worker: int) -> None:
        barrier.wait()
        with contextlib.suppress(TransitionRejected):
            now = time.time()
            store.claim(task_id, worker_id=f"w{worker}", token=f"t{worker}", expires_at=now + 30, now=now)
            winners.append(worker)

    threads = [threading.Thread(target=claim, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one holds it
    assert len(winners) == 1
    assert store.get(task_id).worker_id == f"w{winners[0]}"


def test_an_expired_lease_passes_to_another_worker_and_the_old_holder_cannot_finish(stack):
    # Given a task claimed by a worker whose lease has run out
    store = DynamoTaskStore(stack.template.refs["TaskTable"])
    task_id = unique("lease")
    store.create(StoredTask.queued(TaskMessage(id=task_id, task_type="compile", payload={}), now_iso()))
    store.claim(
        task_id, worker_id="old", token=f"{task_id}-old", expires_at=time.time() - 4, now=time.time() - 5
    )
    # When another worker claims it
    taken = store.claim(
        task_id, worker_id="new", token=f"{task_id}-new", expires_at=time.time() + 30, now=time.time()
    )
    # Then the new worker holds it and the old one's result is refused
    assert taken.worker_id == "new"
    assert taken.attempts == 2
    with pytest.raises(TransitionRejected):
        store.transition(
            task_id, TaskStatus.SUCCEEDED, allowed_from={TaskStatus.RUNNING}, changes={}, holder="old"
        )


def test_a_task_that_keeps_failing_retryably_ends_dead_lettered_after_three_receives(stack, wait_terminal):
    # Given a task whose claim-checked payload is missing from the bucket: an infrastructure error
    task_id = unique("poison")
    message = {
        "id": task_id,
        "task_type": "compile",
        "payload_ref": {
            "bucket": stack.template.refs["ArtifactsBucket"],
            "key": "payloads/missing.json",
            "sha256": "0" * 64,
            "size": 1,
        },
    }
    stack.client("sqs").send_message(
        QueueUrl=stack.template.refs["WorkQueue"], MessageBody=canonical_json(message)
    )
    # When the workers retry it until SQS gives up
    record = wait_terminal(task_id, timeout=90)
    # Then it ends DEAD_LETTERED with the last error it saw, after exactly three attempts
    assert record["status"] == "DEAD_LETTERED"
    assert record["attempts"] == 3
    assert record["error"]["type"] == "PayloadUnavailable"


def test_cancel_of_a_queued_task_ends_it_cancelled_and_it_never_runs(stack, api):
    with own_workers(stack):
        # Given a task that no worker has taken yet
        task_id = unique("cancel-queued")
        api.post("/tasks", json={"id": task_id, "task_type": "compile", "payload": {"files": {"a.py": ""}}})
        wait_for_status(api, task_id, {"QUEUED"})
        # When it is cancelled
        response = api.delete(f"/tasks/{task_id}")
    # Then it is CANCELLED at once, and stays so once workers are back
    assert response.status_code == 202
    assert response.json()["status"] == "CANCELLED"
    time.sleep(3)
    record = api.get(f"/tasks/{task_id}").json()
    assert record["status"] == "CANCELLED"
    assert record["attempts"] == 0


def test_cancel_of_a_running_task_stops_it_within_a_heartbeat(stack, api, wait_terminal):
    # Given a long task running on a worker
    task_id = unique("cancel-running")
    command = ["python3", "-c", "import time; time.sleep(60)"]
    api.post("/tasks", json={"id": task_id, "task_type": "execute", "payload": {"command": command}})
    wait_for_status(api, task_id, {"RUNNING"})
    # When it is cancelled
    response = api.delete(f"/tasks/{task_id}")
    record = wait_terminal(task_id, timeout=VISIBILITY_SECONDS)
    # Then its worker stops it at the next heartbeat and it ends CANCELLED
    assert response.status_code == 202
    assert response.json()["cancel_requested"] is True
    assert record["status"] == "CANCELLED"


def test_cancel_of_a_finished_task_is_answered_409(api, wait_terminal):
    task_id = unique("cancel-done")
    api.post("/tasks", json={"id": task_id, "task_type": "compile", "payload": {"files": {"a.py": ""}}})
    wait_terminal(task_id)
    assert api.delete(f"/tasks/{task_id}").status_code == 409
