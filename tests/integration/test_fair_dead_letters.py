"""Fair dead-lettering: a task that kills its worker is dead-lettered for what it did, and a task
that shared the worker with it is not. After an attempt loses its worker, the task's next attempt
runs alone on its worker, so later losses are its own."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from mistersmith.adapters.dynamodb import DynamoTaskStore
from tests.conftest import TERMINAL, own_workers, stored_key, wait_for_status

pytestmark = pytest.mark.chaos

WORKER = {"CONCURRENCY": "2"}


def worker_running(marker: str, workers: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes] | None:
    """The live worker with a descendant process whose command line holds `marker`: the one whose
    task's work runs now (a claim alone runs nothing that could kill a worker)."""
    live = {worker.pid: worker for worker in workers if worker.poll() is None}
    for entry in os.scandir("/proc"):
        with contextlib.suppress(OSError, ValueError):
            if entry.name.isdigit() and marker.encode() in Path(entry.path, "cmdline").read_bytes():
                pid = int(entry.name)
                while pid > 1 and pid not in live:
                    pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
                if pid in live:
                    return live[pid]
    return None


def test_a_culprit_that_kills_its_worker_is_dead_lettered_and_its_neighbour_is_not(stack, api):
    store = DynamoTaskStore(stack.template.refs["TaskTable"])
    run = uuid.uuid4().hex[:8]
    culprit, innocent = f"culprit-{run}", f"innocent-{run}"
    keys = {culprit: stored_key(culprit), innocent: stored_key(innocent)}
    kills = 0
    with own_workers(stack) as workers:
        # Given a culprit (a task whose worker dies whenever it runs) and an innocent task, both
        # running on one worker of concurrency 2
        index = iter(range(700, 800))
        workers.append(stack.start_worker(next(index), WORKER))
        for task_id, seconds in ((culprit, 120), (innocent, 15)):
            command = ["python3", "-c", f"import time; time.sleep({seconds})  # {task_id}"]
            api.post("/tasks", json={"id": task_id, "task_type": "execute", "payload": {"command": command}})
        wait_for_status(api, culprit, {"RUNNING"})
        wait_for_status(api, innocent, {"RUNNING"})
        assert store.get(keys[culprit]).worker_id == store.get(keys[innocent]).worker_id
        # When every worker on which the culprit's work runs dies, and is replaced by one worker
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if (victim := worker_running(culprit, workers)) is not None:
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                kills += 1
            if not any(worker.poll() is None for worker in workers):
                workers.append(stack.start_worker(next(index), WORKER))
            if {store.get(keys[culprit]).status, store.get(keys[innocent]).status} <= TERMINAL:
                break
            time.sleep(0.2)
        records = {task_id: api.get(f"/tasks/{task_id}").json() for task_id in (culprit, innocent)}
        attempt_workers = store.get(keys[culprit]).attempt_workers
    # Then the innocent task succeeded, and the culprit alone was dead-lettered, saying why and where
    assert records[innocent]["status"] == "SUCCEEDED"
    assert records[culprit]["status"] == "DEAD_LETTERED"
    assert records[culprit]["error"]["type"] == "WorkerLost"
    assert all(worker in records[culprit]["error"]["message"] for worker in attempt_workers)
    assert kills >= 2
