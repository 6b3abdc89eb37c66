"""Chaos: hundreds of tasks while workers are killed (-9), told to stop (SIGTERM) and replaced.
Nothing may be lost, run twice to completion, run again after it ended, or left in a queue."""

from __future__ import annotations

import json
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mistersmith.adapters.dynamodb import DynamoTaskStore
from mistersmith.clock import epoch_from_iso
from mistersmith.settings import ReconcilerSettings
from tests.conftest import TERMINAL, marks_directory, own_workers, stored_key

pytestmark = pytest.mark.chaos

TASKS = 300
WORKERS = 3
CHAOS_ROUNDS = 25
WORKER_ENV = {"CONCURRENCY": "2", "DRAIN_GRACE_SECONDS": "2", "LOG_LEVEL": "INFO"}


def mixed_tasks(run: str, marks: Path) -> dict[str, tuple[dict, str]]:
    """Task id -> (body, expected status). execute tasks note each start in `marks`."""
    rng = random.Random(run)  # noqa: S311 - task durations, not cryptography
    tasks = {}
    for n in range(TASKS):
        task_id = f"chaos-{run}-{n}"
        kind = n % 6
        if kind in (0, 1):
            body = {"task_type": "compile", "payload": {"files": {"m.py": f"x = {n}\n"}}}
            expected = "SUCCEEDED"
        elif kind == 2:
            body = {"task_type": "analyze", "payload": {"files": {"m.py": "def f(a):\n    return a or 1\n"}}}
            expected = "SUCCEEDED"
        elif kind in (3, 4):
            seconds = round(rng.uniform(0, 1.5), 2)
            # umask 0: each attempt's child runs as a uid of its own and appends to the same file.
            code = f"import os, time; os.umask(0); open({str(marks / task_id)!r}, 'a').write(repr(time.time()) + '\\n'); time.sleep({seconds})"
            body = {"task_type": "execute", "payload": {"command": ["python3", "-c", code]}}
            expected = "SUCCEEDED"
        else:
            body = {"task_type": "execute", "payload": {"command": ["python3", "-c", "raise SystemExit(1)"]}}
            expected = "FAILED"
        tasks[task_id] = (body | {"id": task_id}, expected)
    return tasks


def queue_totals(stack) -> dict[str, int]:
    sqs = stack.client("sqs")
    totals = {}
    for logical_id in ("WorkQueue", "WorkDLQ", "AnalyzeQueue", "AnalyzeDLQ"):
        attributes = sqs.get_queue_attributes(
            QueueUrl=stack.template.refs[logical_id],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        totals[logical_id] = sum(int(value) for value in attributes.values())
    return totals


def finished_lines(log_dir: Path, indexes: list[int]) -> list[dict]:
    """The workers' `task_duration` records (threads may run two JSON lines together)."""
    decoder, records = json.JSONDecoder(), []
    for index in indexes:
        path = log_dir / f"worker-{index}.log"
        text = path.read_text() if path.exists() else ""
        position = text.find("{")
        while position != -1:
            try:
                record, end = decoder.raw_decode(text, position)
            except json.JSONDecodeError:
                end = position + 1
            else:
                if isinstance(record, dict) and record.get("message") == "task_duration":
                    records.append(record)
            position = text.find("{", end)
    return records


class Fleet:
    """The workers of a chaos run. A signalled worker may live on while it drains or dies: it neither
    counts toward the fleet nor is it chosen again, as ECS replaces a task the moment it is told to stop."""

    def __init__(self, stack, workers: list) -> None:
        self.stack = stack
        self.workers = workers
        self.indexes: list[int] = []
        self.signalled: set[int] = set()

    def start_worker(self) -> None:
        index = 500 + len(self.indexes)
        self.indexes.append(index)
        self.workers.append(self.stack.start_worker(index, WORKER_ENV))

    def alive(self) -> list:
        return [worker for worker in self.workers if worker.poll() is None]

    def serving(self) -> list:
        return [worker for worker in self.alive() if worker.pid not in self.signalled]

    def replenish(self) -> None:
        while len(self.serving()) < WORKERS:
            self.start_worker()

    def signal(self, worker, signum: int) -> None:
        worker.send_signal(signum)
        self.signalled.add(worker.pid)

    def kill_holder(self, worker_id: str | None) -> int:
        """Kills the serving worker with this id; how many were killed."""
        killed = 0
        for worker in self.serving():
            if self.stack.worker_ids.get(worker.pid) == worker_id:
                worker.kill()
                self.signalled.add(worker.pid)
                killed += 1
        return killed

    def stop(self) -> None:
        for worker in self.alive():
            worker.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.wait(timeout=30)


def run_until_all_ended(fleet: Fleet, store: DynamoTaskStore, task_ids: list[str], poison_id: str) -> int:
    """Keeps the fleet whole, killing whichever worker holds the poison task, until every task has
    ended (or 300 s passed); how many workers the poison task took down."""
    poison_kills = 0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        held_by = store.get(stored_key(poison_id))
        if held_by is not None and held_by.status == "RUNNING":
            poison_kills += fleet.kill_holder(held_by.worker_id)
        fleet.replenish()
        keys = [stored_key(task_id) for task_id in (*task_ids, poison_id)]
        if all(task.status.is_terminal for task in map(store.get, keys) if task):
            break
        time.sleep(0.3)
    return poison_kills


def settled_queues(stack) -> dict[str, int]:
    """The queues' totals once they are empty, or after 30 s."""
    settle = time.monotonic() + 30
    while any(queue_totals(stack).values()) and time.monotonic() < settle:
        time.sleep(0.5)
    return queue_totals(stack)


def starts_after_the_end(marks: Path, records: dict[str, dict]) -> list[str]:
    """Execute tasks that started again after their record was terminal."""
    late_starts = []
    for path in marks.iterdir():
        finished_at = epoch_from_iso(records[path.name]["finished_at"])
        late_starts += [path.name for start in path.read_text().split() if float(start) > finished_at]
    return late_starts


@pytest.fixture
def marks() -> Iterator[Path]:
    with marks_directory("chaos-marks-") as directory:
        yield directory


def test_chaos_kills_and_stops_lose_nothing_and_repeat_nothing(stack, api, marks):
    run = uuid.uuid4().hex[:6]
    tasks = mixed_tasks(run, marks)
    poison_id = f"chaos-{run}-poison"
    poison = {
        "id": poison_id,
        "task_type": "execute",
        "payload": {"command": ["python3", "-c", "import time; time.sleep(30)"]},
    }
    rng = random.Random(run)  # noqa: S311 - chaos, not cryptography
    store = DynamoTaskStore(stack.template.refs["TaskTable"])
    for old in stack.config.log_dir.glob("worker-5??.log"):
        old.unlink()

    with own_workers(stack) as workers:
        fleet = Fleet(stack, workers)
        for _ in range(WORKERS):
            fleet.start_worker()
        # Given 300 mixed tasks
        for body, _expected in tasks.values():
            assert api.post("/tasks", json=body).status_code == 202
        # When workers are killed and stopped while they work, and replaced
        for round_ in range(CHAOS_ROUNDS):
            fleet.signal(rng.choice(fleet.serving()), signal.SIGKILL if round_ % 2 else signal.SIGTERM)
            fleet.replenish()
            time.sleep(0.7)
        # And a task that crashes its worker every time it runs arrives
        assert api.post("/tasks", json=poison).status_code == 202
        poison_kills = run_until_all_ended(fleet, store, list(tasks), poison_id)
        records = {task_id: api.get(f"/tasks/{task_id}").json() for task_id in (*tasks, poison_id)}
        left_in_queues = settled_queues(stack)
        fleet.stop()

    # Then every task ended, as its kind says, and nothing is left in any queue
    not_terminal = {
        task_id: record.get("status")
        for task_id, record in records.items()
        if record.get("status") not in TERMINAL
    }
    assert not_terminal == {}
    wrong = {
        task_id: records[task_id]["status"]
        for task_id, (_body, expected) in tasks.items()
        if records[task_id]["status"] != expected
    }
    assert wrong == {}
    assert left_in_queues == dict.fromkeys(left_in_queues, 0)
    # The poison task crashed its worker on each attempt, then was dead-lettered: after its three
    # receives, plus at most one attempt that shared its worker (fair dead-lettering does not count
    # it) and the reconciler's recoveries when a slow redelivery let its lease lapse a visibility
    poison = records[poison_id]
    assert poison["status"] == "DEAD_LETTERED"
    assert 3 <= poison["attempts"] <= 3 + 1 + ReconcilerSettings.model_fields["max_recoveries"].default
    assert 3 <= poison_kills <= poison["attempts"]
    # No task was recorded finished twice
    finished = Counter(line["task_id"] for line in finished_lines(stack.config.log_dir, fleet.indexes))
    assert [task_id for task_id, count in finished.items() if count > 1] == []
    # No task started again after its record was terminal
    late_starts = starts_after_the_end(marks, records)
    assert late_starts == []
