"""A worker paused (SIGSTOP: a stalled host, a long GC) across its lease, then resumed (SIGCONT):
its task passes to another worker, and the one that wakes neither takes it back nor records a
second outcome."""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from mistersmith.adapters.dynamodb import DynamoTaskStore
from tests.conftest import VISIBILITY_SECONDS, own_workers, stored_key, wait_for_status

pytestmark = pytest.mark.chaos


def test_a_worker_paused_past_its_lease_loses_the_task_to_another_and_wakes_harmless(stack, api):
    store = DynamoTaskStore(stack.template.refs["TaskTable"])
    task_id = f"paused-{uuid.uuid4().hex[:10]}"
    with own_workers(stack) as workers:
        # Given a task running on a worker
        paused = stack.start_worker(97, {"CONCURRENCY": "1"})
        workers.append(paused)
        command = ["python3", "-c", "import time; time.sleep(4)"]
        api.post("/tasks", json={"id": task_id, "task_type": "execute", "payload": {"command": command}})
        first = wait_for_status(api, task_id, {"RUNNING"})
        holder = store.get(stored_key(task_id)).worker_id
        # When the worker is paused past its lease and another worker takes the redelivery
        paused.send_signal(signal.SIGSTOP)
        try:
            workers.append(stack.start_worker(98, {"CONCURRENCY": "1"}))
            taken = wait_for_status(api, task_id, {"SUCCEEDED", "FAILED"}, timeout=6 * VISIBILITY_SECONDS)
        finally:
            # And the paused worker wakes up
            paused.send_signal(signal.SIGCONT)
        # Then the task ended once, on the other worker, and stays as it ended once the woken
        # worker's heartbeat and cancel watch have had their turn
        time.sleep(3)
        final = store.get(stored_key(task_id))
        assert paused.poll() is None
    assert first["attempts"] == 1
    assert (taken["status"], taken["attempts"]) == ("SUCCEEDED", 2)
    assert (final.status, final.attempts, final.finished_at) == ("SUCCEEDED", 2, taken["finished_at"])
    assert holder != stack.worker_ids[workers[1].pid]
