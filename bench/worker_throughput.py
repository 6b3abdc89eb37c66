"""How much the worker costs per task, beside a bare receive/delete loop measured in the same run.

(a) in memory: the real Worker, TaskProcessor and Lifecycle on in-memory queue and store, so the
    figure is the worker's own overhead; the baseline receives and deletes through the same queue.
(b) on the local stack (moto on loopback): one worker process beside a bare boto3 loop on the
    same queue. moto slows as a queue deepens, so both runs keep the depth at TASKS_MOTO.

Run: make bench   (or: .venv/bin/python -m bench.worker_throughput)
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable

from fargate_worker.worker import Worker
from local_stack.stack import LocalConfig, LocalStack
from mistersmith.adapters.dynamodb import DynamoTaskStore
from mistersmith.clock import epoch_from_iso, now_iso
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask, TaskMessage, canonical_json
from mistersmith.processing import TaskProcessor
from mistersmith.settings import WorkerSettings
from mistersmith.work import WorkLimits
from tests.fakes import MemoryBlobStore, MemoryQueue, MemoryTaskStore, NullPublisher

TASKS_MEMORY = 3000
TASKS_MOTO = 200
NOOP = {"files": {"noop.py": "pass\n"}}


def noop_message(n: int) -> TaskMessage:
    return TaskMessage(id=f"bench-{n}", task_type="compile", payload=NOOP)


def bare_loop(queue: MemoryQueue, count: int) -> float:
    for n in range(count):
        queue.send(canonical_json(noop_message(n).model_dump(mode="json", exclude_none=True)))
    started = time.perf_counter()
    done = 0
    while done < count:
        for message in queue.receive(max_messages=10, wait_seconds=0):
            queue.delete(message.receipt_handle)
            done += 1
    return time.perf_counter() - started


def worker_in_memory(count: int, concurrency: int) -> float:
    store, queue = MemoryTaskStore(), MemoryQueue(visibility_seconds=300)
    for n in range(count):
        message = noop_message(n)
        store.create(StoredTask.queued(message, now_iso()))
        queue.send(canonical_json(message.model_dump(mode="json", exclude_none=True)))
    settings = WorkerSettings(
        task_table_name="-",
        event_bus_name="-",
        artifacts_bucket_name="-",
        work_queue_url="-",
        concurrency=concurrency,
        receive_wait_seconds=0,
        health_port=0,
    )
    processor = TaskProcessor(
        Lifecycle(store, NullPublisher()),
        blobs=MemoryBlobStore(),
        worker_id="bench",
        lease_seconds=300,
        limits=WorkLimits(),
    )
    worker = Worker(queue, processor, settings)
    started = time.perf_counter()
    runner = threading.Thread(target=worker.run)
    runner.start()
    while queue.depth().visible or queue.depth().in_flight:
        time.sleep(0.001)
    elapsed = time.perf_counter() - started
    worker.request_stop()
    runner.join()
    assert all(task.status == "SUCCEEDED" for task in store.tasks.values()), "a bench task did not succeed"
    return elapsed


def peak_memory(function, *args) -> int:
    tracemalloc.start()
    function(*args)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def on_local_stack(count: int) -> tuple[float, float]:
    config = LocalConfig(moto_port=free_port(), api_port=free_port(), max_workers=0, log_level="WARNING")
    with LocalStack(config) as stack:
        sqs = stack.session().client("sqs")
        url = stack.template.refs["WorkQueue"]
        bodies = [
            canonical_json(noop_message(n).model_dump(mode="json", exclude_none=True)) for n in range(count)
        ]
        for n in range(0, count, 10):
            sqs.send_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[n : n + 10])],
            )
        started, done = time.perf_counter(), 0
        while done < count:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            if messages:
                sqs.delete_message_batch(
                    QueueUrl=url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
                    ],
                )
            done += len(messages)
        bare = time.perf_counter() - started

        store = DynamoTaskStore(stack.template.refs["TaskTable"])
        for n in range(count):
            store.create(StoredTask.queued(noop_message(n), now_iso()))
        for n in range(0, count, 10):
            sqs.send_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[n : n + 10])],
            )
        worker = stack.start_worker(0, {"RECEIVE_WAIT_SECONDS": "1"})
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            tasks = [store.get(f"bench-{n}") for n in range(count)]
            if all(task.status == "SUCCEEDED" for task in tasks):
                break
            time.sleep(1)
        worker.terminate()
        worker.wait()
        # From the first claim to the last result: the worker's start-up is not the figure.
        first = min(epoch_from_iso(task.started_at) for task in tasks)
        last = max(epoch_from_iso(task.finished_at) for task in tasks)
        return bare, last - first


def quiet_stdout() -> Callable[..., None]:
    """Logs and EMF lines are still produced (their cost counts) but only the figures reach the
    terminal: stdout goes to /dev/null and the returned function prints to the real one."""
    report = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)

    def write(*parts: object) -> None:
        report.write(" ".join(str(part) for part in parts) + "\n")

    return write


def main() -> int:
    print = quiet_stdout()  # noqa: A001 - the report's own print

    print(f"(a) in memory, {TASKS_MEMORY} no-op tasks")
    bare = bare_loop(MemoryQueue(), TASKS_MEMORY)
    rows = [("bare receive+delete loop", bare)]
    for concurrency in (1, 2):
        rows.append((f"worker, concurrency {concurrency}", worker_in_memory(TASKS_MEMORY, concurrency)))
    for name, seconds in rows:
        print(
            f"  {name:<28} {TASKS_MEMORY / seconds:>10,.0f} tasks/s {seconds / TASKS_MEMORY * 1e6:>9,.1f} us/task"
            f"  x{seconds / bare:,.1f} the bare loop's time"
        )
    peak = peak_memory(worker_in_memory, TASKS_MEMORY, 2)
    print(f"  worker peak traced memory for {TASKS_MEMORY} tasks: {peak / 2**20:.1f} MiB")
    print(f"(b) local stack on moto, {TASKS_MOTO} no-op tasks, queue depth <= {TASKS_MOTO}")
    bare_moto, worker_moto = on_local_stack(TASKS_MOTO)
    print(f"  bare boto3 receive+delete    {TASKS_MOTO / bare_moto:>10,.1f} msgs/s")
    print(
        f"  one worker process           {TASKS_MOTO / worker_moto:>10,.1f} tasks/s  x{worker_moto / bare_moto:,.1f} the bare loop's time"
    )
    print(
        json.dumps(
            {
                "memory_bare_s": bare,
                "memory_worker_s": rows[1][1],
                "moto_bare_s": bare_moto,
                "moto_worker_s": worker_moto,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
