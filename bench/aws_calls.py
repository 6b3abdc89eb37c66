"""Every AWS request a task costs, by component and operation, counted on the local stack.

TASKS execute tasks of `python3 -c pass` go through the whole path (POST /tasks -> intake ->
bus -> router -> queue -> worker -> terminal record) with one warm worker; a botocore hook
(tests/boto_calls, every call recorded) names the component that made each call. The bench's own
status reads are not counted (they are the client's). The router's stream mapping is counted as
its deliveries (one per invocation, each one GetRecords that returned the batch; the poller's empty
reads are not counted: Lambda's reads of a stream are free, and their number is the poll rate's,
not the tasks'). The per-task total is set against the goal
(GOAL requests); beside it, ALONE tasks sent one at a time, each once the last has ended, which
share no delivery, send, event or delete with another. Then the periodic requests: one worker (with the deployed long-poll wait) idle for
IDLE_SECONDS, and busy for BUSY_SECONDS with one long task (counted from once it runs, so none of
the task's own calls), and the scheduled functions (run every minute, as in AWS), each scaled to an
hour and priced with simulator/pricing.py's request prices.

Run: make bench   (or: .venv/bin/python -m bench.aws_calls)
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.worker_throughput import free_port, quiet_stdout
from local_stack.stack import LocalConfig, LocalStack
from mistersmith.adapters.dynamodb import DynamoTaskStore
from mistersmith.callers import LOCAL_CALLER
from mistersmith.models import task_key
from mistersmith.settings import WorkerSettings
from simulator.pricing import PER_MILLION
from tests.boto_record import record_boto_calls

TASKS = 100
# Tasks sent one at a time, each after the last has ended and its held-back requests have gone.
ALONE = 10
GOAL = 6.0  # AWS requests per task, whole path, at most (issue 16)
IDLE_SECONDS = 60.0
BUSY_SECONDS = 110.0  # past one heartbeat (a third of the default 300 s lease)
# Events and deletes held back for a shared request go out within this after the last task ends.
SETTLE_SECONDS = 2.0
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "DEAD_LETTERED"}
# Run on a schedule, not per task: their calls are reported per hour, as AWS would run them.
SCHEDULED = {"autoscaler", "reconciler"}
AWS_SCHEDULE_SECONDS = 60.0
STREAM_DELIVERIES = ("stream", "dynamodbstreams", "deliveries")


def counted(calls: Path, since: int) -> tuple[Counter[tuple[str, str, str]], int]:
    lines = calls.read_text().splitlines() if calls.exists() else []
    counts: Counter[tuple[str, str, str]] = Counter()
    for line in lines[since:]:
        call = json.loads(line)
        counts[(call["entry"], call["service"], call["operation"])] += 1
    return counts, len(lines)


def submit(api: httpx.Client, task_id: str, command: list[str]) -> None:
    answer = api.post("/tasks", json={"id": task_id, "task_type": "execute", "payload": {"command": command}})
    answer.raise_for_status()


def wait_for(store: DynamoTaskStore, ids: list[str], statuses: set[str]) -> None:
    deadline = time.monotonic() + 600
    pending = set(ids)
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} bench tasks did not get to {statuses}")
        pending = {
            task_id
            for task_id in pending
            if store.get(task_key(LOCAL_CALLER, task_id)).status not in statuses
        }
        time.sleep(0.2)


def submit_and_wait(api: httpx.Client, store: DynamoTaskStore, ids: list[str], command: list[str]) -> None:
    for task_id in ids:
        submit(api, task_id, command)
    wait_for(store, ids, TERMINAL)
    failed = [i for i in ids if store.get(task_key(LOCAL_CALLER, i)).status != "SUCCEEDED"]
    if failed:
        raise RuntimeError(f"bench tasks did not succeed: {failed[:5]}")


DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


def request_price(service: str, operation: str) -> float:
    """USD for one request, at one unit or 64 KB chunk (every bench item and message is smaller);
    S3 and anything unpriced count 0."""
    if service == "sqs":
        return PER_MILLION["sqs_request"] / 1e6
    if service == "events":
        return PER_MILLION["eventbridge_event"] / 1e6
    if service == "dynamodb":
        unit = "dynamodb_write_unit" if operation in DYNAMODB_WRITES else "dynamodb_read_unit"
        return PER_MILLION[unit] / 1e6
    return 0.0


def price(counts: Counter[tuple[str, str, str]]) -> float:
    return sum(n * request_price(service, operation) for (_, service, operation), n in counts.items())


def line(name: str, counts: Counter[tuple[str, str, str]], hourly: float) -> str:
    by_operation = ", ".join(f"{op} {n * hourly:,.0f}" for (_, _, op), n in sorted(counts.items()))
    total = sum(counts.values()) * hourly
    return (
        f"  periodic, {name}: {total:,.0f} requests an hour (${price(counts) * hourly:.6f}/h): {by_operation}"
    )


def one_at_a_time(
    stack: LocalStack, api: httpx.Client, store: DynamoTaskStore, calls: Path, mark: int
) -> tuple[Counter[tuple[str, str, str]], int]:
    """The requests of ALONE tasks sent one at a time, each once the last has ended and its
    held-back requests have gone."""
    deliveries = stack.stream_deliveries()
    for n in range(ALONE):
        submit_and_wait(api, store, [f"alone-{n}"], ["python3", "-c", "pass"])
        time.sleep(SETTLE_SECONDS)
    alone, mark = counted(calls, mark)
    alone[STREAM_DELIVERIES] = stack.stream_deliveries() - deliveries
    return alone, mark


def alone_line(alone: Counter[tuple[str, str, str]]) -> str:
    per_task = Counter({key: n for key, n in alone.items() if key[0] not in SCHEDULED})
    by_operation = ", ".join(
        f"{operation} {n / ALONE:.2f}" for (_, _, operation), n in sorted(per_task.items())
    )
    return (
        f"  one task at a time, {ALONE} tasks, nothing to share a request with:"
        f" {sum(per_task.values()) / ALONE:.2f} a task: {by_operation}"
    )


def main() -> int:
    report = quiet_stdout()
    calls = record_boto_calls(every=True)
    config = LocalConfig(moto_port=free_port(), api_port=free_port(), max_workers=0, log_level="WARNING")
    with LocalStack(config) as stack, httpx.Client(base_url=stack.api_url, timeout=30) as api:
        store = DynamoTaskStore(stack.template.refs["TaskTable"])
        wait = WorkerSettings.model_fields["receive_wait_seconds"].default
        # The busy task outlasts the template's execute timeout (45 s): this worker allows it.
        overrides = {"RECEIVE_WAIT_SECONDS": str(wait), "EXECUTE_TIMEOUT_SECONDS": str(BUSY_SECONDS + 60)}
        worker = stack.start_worker(0, overrides)
        try:
            submit_and_wait(api, store, ["warm-up"], ["python3", "-c", "pass"])
            _, mark = counted(calls, 0)
            first, started = mark, time.monotonic()
            deliveries = stack.stream_deliveries()
            submit_and_wait(api, store, [f"calls-{n}" for n in range(TASKS)], ["python3", "-c", "pass"])
            time.sleep(SETTLE_SECONDS)
            every, mark = counted(calls, mark)
            every[STREAM_DELIVERIES] = stack.stream_deliveries() - deliveries
            alone, mark = one_at_a_time(stack, api, store, calls, mark)
            time.sleep(IDLE_SECONDS)
            idle, mark = counted(calls, mark)
            # Counted from a second after it runs (its RUNNING event out) until before it ends.
            submit(api, "busy", ["python3", "-c", f"import time; time.sleep({BUSY_SECONDS + 10})"])
            wait_for(store, ["busy"], {"RUNNING"})
            time.sleep(1)
            _, mark = counted(calls, mark)
            time.sleep(BUSY_SECONDS)
            busy, mark = counted(calls, mark)
            record = store.get(task_key(LOCAL_CALLER, "busy"))
            if record.status != "RUNNING":  # then its own calls are in the window
                raise RuntimeError(f"the busy task ended within its window: {record.status} {record.error}")
            wait_for(store, ["busy"], TERMINAL)
            scheduled_span = time.monotonic() - started
            whole, _ = counted(calls, first)
        finally:
            worker.terminate()
            worker.wait()
    per_task = Counter({key: n for key, n in every.items() if key[0] not in SCHEDULED})
    report(f"AWS requests per task, {TASKS} execute tasks of `python3 -c pass`, one warm worker")
    for (entry, service, operation), n in sorted(per_task.items()):
        report(f"  {entry:<12} {service:<15} {operation:<21} {n / TASKS:>6.2f}")
    for entry in sorted({key[0] for key in per_task}):
        mine = sum(n for key, n in per_task.items() if key[0] == entry)
        report(f"  {entry:<12} {'(all)':<37} {mine / TASKS:>6.2f}")
    total = sum(per_task.values()) / TASKS
    verdict = "met" if total <= GOAL else "MISSED"
    report(
        f"  {'total':<50} {total:>6.2f}  goal <= {GOAL:g}: {verdict}"
        f"   ${price(per_task) / TASKS * 1e6:.2f} per million tasks"
    )
    report(alone_line(alone))
    # Locally the schedules fire every config.schedule_seconds; in AWS every AWS_SCHEDULE_SECONDS.
    scale = 3600 / scheduled_span * config.schedule_seconds / AWS_SCHEDULE_SECONDS
    for entry in sorted({key[0] for key in whole if key[0] in SCHEDULED}):
        mine = Counter({key: n for key, n in whole.items() if key[0] == entry})
        report(line(f"{entry} each minute", mine, scale))
    for name, counts, seconds in (
        ("one idle worker", idle, IDLE_SECONDS),
        ("one busy worker", busy, BUSY_SECONDS),
    ):
        report(
            line(name, Counter({key: n for key, n in counts.items() if key[0] == "worker"}), 3600 / seconds)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
