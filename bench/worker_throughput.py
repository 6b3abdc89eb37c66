"""How much the worker costs per task, beside the work's own cost measured in the same run.

(a) in memory: the real Worker, TaskProcessor, Lifecycle and status-event batching on an
    in-memory queue, store and bus, with the worker's default limits and exec helper (as the image builds it). Every task's work runs in
    a sandboxed child, so a task cannot cost microseconds end to end: the worker's overhead is its
    time per task minus the work's own time, both in the same run. The work's time is that of each
    `perform` call the processor makes (timed around the call, in wall time and in this process's
    own CPU time: its threads, not the children); beside it, `perform` called directly in a loop
    on the same payload shows what the work costs alone. Rounds alternate; figures are medians.
    On a shared machine the wall time also measures the wait for a core, the CPU time does not. The
    no-op task is `execute` of `python -c pass`, whose child starts through the exec helper; also
    shown, a no-op `compile`, whose child is forked from the worker (it writes the files first):
    after each fork every page the worker writes faults once more, a cost of forking that shows
    as worker overhead. Goal (issue 16): at most 200 us per task, with the per-task log line, EMF
    metrics and span kept.
    Where that time goes is printed beside it: each thread's CPU (Linux: /proc/self/task/*/schedstat)
    split into the task threads outside their work, the poll thread, the status events' batching
    thread, the deletes' thread and the periodic ones (the run loop and heartbeats: on Fargate a
    cost per hour, not per task, but counted here all the same); and the same worker with the work stubbed out (an
    instant `perform` returning the real result), whose overhead is the same per-task code run
    back to back with warm caches. The gap between the two is that code running cold after each
    child: measured per thread, no periodic thread accounts for it. A third run puts a sleep as
    long as the work before the stub's answer: no child at all, only the idle gap.
(b) on the local stack (moto on loopback): one worker process beside a bare boto3 loop on the
    same queue. moto slows as a queue deepens, so both runs keep the depth at TASKS_MOTO.

Run: make bench   (or: .venv/bin/python -m bench.worker_throughput)
"""

from __future__ import annotations

import json
import os
import resource
import socket
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any, NamedTuple

from bench.execute_overhead import choose_command, worker_limits
from fargate_worker.worker import Worker
from local_stack.stack import LocalConfig, LocalStack
from mistersmith import processing
from mistersmith.adapters.dynamodb import DynamoTaskStore
from mistersmith.clock import epoch_from_iso, now_iso
from mistersmith.event_batching import BatchingPublisher
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask, TaskMessage, canonical_json
from mistersmith.payloads import PayloadStore
from mistersmith.processing import TaskProcessor
from mistersmith.work import WorkLimits, perform
from tests.exec_helper import exec_helper
from tests.fakes import MemoryBlobStore, MemoryQueue, MemoryTaskStore, NullPublisher, worker_settings

TASKS_MEMORY = 150
ROUNDS = 3
TASKS_TRACED = 50
TASKS_MOTO = 200
NOOP = {"files": {"noop.py": "pass\n"}}
OVERHEAD_GOAL_US = 200


def noop_message(n: int) -> TaskMessage:
    return TaskMessage(id=f"bench-{n}", task_type="compile", payload=NOOP)


def execute_message(n: int, command: list[str]) -> TaskMessage:
    return TaskMessage(id=f"bench-{n}", task_type="execute", payload={"command": command})


def own_cpu() -> float:
    """This process's CPU seconds, all threads, children not included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


Make = Callable[[int], TaskMessage]


def work(message: TaskMessage, limits: WorkLimits, payloads: PayloadStore, n: int) -> dict[str, Any]:
    """A task's work, called as the processor calls it."""
    payload = dict(message.payload or {})
    return perform(message.task_type, payload, limits, threading.Event(), payloads.artifact_sink(f"w-{n}"))


def work_alone(make: Make, count: int, limits: WorkLimits) -> tuple[float, float]:
    """(wall, CPU) seconds for `count` no-op tasks' work."""
    payloads, message = PayloadStore(MemoryBlobStore()), make(0)
    cpu, started = own_cpu(), time.perf_counter()
    for n in range(count):
        work(message, limits, payloads, n)
    return time.perf_counter() - started, own_cpu() - cpu


def thread_cpu() -> dict[int, float]:
    """CPU seconds of each thread of this process by native id; empty where /proc has no schedstat."""
    seconds = {}
    for tid in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else []:
        try:
            with open(f"/proc/self/task/{tid}/schedstat") as stat:
                seconds[int(tid)] = int(stat.read().split()[0]) / 1e9
        except OSError:  # the thread has just ended
            pass
    return seconds


class TimedWork:
    """The processor's `perform`, timed: wall and CPU seconds spent inside it (concurrency 1, so
    this process's CPU meanwhile is the work's), and the calling thread's own CPU inside it.
    With `result`, the work is a stub that returns it after sleeping `pause` seconds (no child)."""

    def __init__(self, result: dict[str, Any] | None = None, pause: float = 0.0) -> None:
        self.wall = self.cpu = self.thread_cpu = 0.0
        self.result = result
        self.pause = pause

    def __enter__(self) -> TimedWork:
        def timed(*args: object, **options: object) -> dict[str, object]:
            cpu, thread, started = own_cpu(), time.thread_time(), time.perf_counter()
            try:
                if self.result is not None:
                    time.sleep(self.pause)
                    return dict(self.result)
                return perform(*args, **options)  # type: ignore[arg-type]
            finally:
                self.wall += time.perf_counter() - started
                self.cpu += own_cpu() - cpu
                self.thread_cpu += time.thread_time() - thread

        processing.perform = timed
        return self

    def __exit__(self, *_: object) -> None:
        processing.perform = perform


class CountingQueue(MemoryQueue):
    """Says when `expected` messages have been deleted, so the bench waits without polling."""

    def __init__(self, expected: int) -> None:
        super().__init__(visibility_seconds=300)
        self.expected, self.deleted, self.done = expected, 0, threading.Event()

    def delete_batch(self, receipt_handles: list[str]) -> list[str]:
        failed = super().delete_batch(receipt_handles)
        self.deleted += len(receipt_handles) - len(failed)
        if self.deleted >= self.expected:
            self.done.set()
        return failed


class WorkerRun(NamedTuple):
    wall: float
    cpu: float
    # CPU seconds by kind of thread: "task", "poll", "event-batches", "deletes", "periodic" (the
    # rest: the run loop and the heartbeats, which wake on a timer whether tasks run or not).
    threads: dict[str, float]


def worker_in_memory(make: Make, count: int, concurrency: int, limits: WorkLimits) -> WorkerRun:
    """Wall and CPU seconds for the worker to run `count` no-op tasks, from its start to the last
    delete, and its threads' CPU seconds over the same span."""
    store, queue = MemoryTaskStore(), CountingQueue(count)
    for n in range(count):
        message = make(n)
        store.create(StoredTask.queued(message, now_iso()))
        queue.send(canonical_json(message.model_dump(mode="json", exclude_none=True)))
    settings = worker_settings(concurrency=concurrency)
    processor = TaskProcessor(
        # Batched as the worker's are: the batching thread's CPU is the worker's, only the bus is a stub.
        Lifecycle(store, BatchingPublisher(NullPublisher())),
        blobs=MemoryBlobStore(),
        worker_id="bench",
        lease_seconds=300,
        limits=limits,
    )
    worker = Worker(queue, processor, settings)
    runner = threading.Thread(target=worker.run, name="run")
    before = thread_cpu()
    cpu, started = own_cpu(), time.perf_counter()
    runner.start()
    if not queue.done.wait(600):
        raise RuntimeError(f"the worker deleted {queue.deleted} of {count} bench tasks")
    elapsed, spent = time.perf_counter() - started, own_cpu() - cpu
    after, names = thread_cpu(), {thread.native_id: thread.name for thread in threading.enumerate()}
    threads = dict.fromkeys(("task", "poll", "event-batches", "deletes", "periodic"), 0.0)
    for tid, seconds in after.items():
        name = names.get(tid, "")
        if tid != threading.main_thread().native_id:
            kind = "task" if name.startswith("task") else name if name in threads else "periodic"
            threads[kind] += seconds - before.get(tid, 0.0)
    worker.request_stop()
    runner.join()
    assert all(task.status == "SUCCEEDED" for task in store.tasks.values()), "a bench task did not succeed"
    return WorkerRun(elapsed, spent, threads)


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
        sqs = stack.client("sqs")
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
        worker = stack.start_worker(0, worker_environment({"RECEIVE_WAIT_SECONDS": "1"}))
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


def worker_environment(env: dict[str, str]) -> dict[str, str]:
    """A bench worker's environment: children start through the exec helper, as in the image."""
    helper = exec_helper()
    return env | ({"SANDBOX_EXEC_HELPER": helper} if helper else {})


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
    helper = exec_helper()
    limits = worker_limits(helper)
    command = choose_command(limits)
    kinds: dict[str, Make] = {
        "execute": lambda n: execute_message(n, command),
        "compile": noop_message,
    }
    print(
        f"(a) in memory, {TASKS_MEMORY} no-op tasks x {ROUNDS} rounds, exec helper "
        f"{'built' if helper else 'missing (forked children)'}; load average {os.getloadavg()[0]:.1f}"
        f" on {os.cpu_count()} CPUs"
    )
    runs: dict[str, list[tuple[float, float]]] = {}
    for make in kinds.values():
        work_alone(make, 10, limits)  # warm: the first children pay for imports and page faults
    # The stub's answer: what the no-op execute task's work really returns.
    stub_result = work(kinds["execute"](0), limits, PayloadStore(MemoryBlobStore()), 0)
    account: dict[str, list[float]] = {}
    for _ in range(ROUNDS):
        for kind, make in kinds.items():
            runs.setdefault(f"{kind} work alone", []).append(work_alone(make, TASKS_MEMORY, limits))
            with TimedWork() as timed:
                run = worker_in_memory(make, TASKS_MEMORY, 1, limits)
            runs.setdefault(f"{kind} worker", []).append((run.wall, run.cpu))
            runs.setdefault(f"{kind} work in it", []).append((timed.wall, timed.cpu))
            runs.setdefault(f"{kind} overhead", []).append((run.wall - timed.wall, run.cpu - timed.cpu))
            if kind == "execute":
                account.setdefault("task threads outside the work", []).append(
                    run.threads["task"] - timed.thread_cpu
                )
                account.setdefault("poll thread", []).append(run.threads["poll"])
                account.setdefault("event batching", []).append(run.threads["event-batches"])
                account.setdefault("deletes", []).append(run.threads["deletes"])
                account.setdefault("periodic (run loop, heartbeats)", []).append(run.threads["periodic"])
        # The stub answers at once, then after a sleep as long as this round's work: an idle gap, no child.
        pause = runs["execute work in it"][-1][0] / TASKS_MEMORY
        for name, seconds in (
            ("execute overhead, work stubbed", 0.0),
            ("execute overhead, work a sleep", pause),
        ):
            with TimedWork(stub_result, seconds) as timed:
                run = worker_in_memory(kinds["execute"], TASKS_MEMORY, 1, limits)
            runs.setdefault(name, []).append((run.wall - timed.wall, run.cpu - timed.cpu))
        run = worker_in_memory(kinds["execute"], TASKS_MEMORY, 2, limits)
        runs.setdefault("execute worker, concurrency 2", []).append((run.wall, 0.0))
    us = {
        name: tuple(statistics.median(run[i] for run in results) / TASKS_MEMORY * 1e6 for i in (0, 1))
        for name, results in runs.items()
    }
    for name, (wall, cpu) in us.items():
        if name.endswith(("stubbed", "a sleep")):
            continue
        if name.endswith("concurrency 2"):
            print(f"  {name:<30} {wall:>9,.0f} us/task wall ({1e6 / wall:,.1f} tasks/s)")
        else:
            print(f"  {name:<30} {wall:>9,.0f} us/task wall {cpu:>8,.0f} us/task CPU")
    wall_overhead, cpu_overhead = us["execute overhead"]
    met = cpu_overhead <= OVERHEAD_GOAL_US
    print(
        f"worker overhead per no-op task in memory (CPU, worker - its work) {cpu_overhead:,.0f} us,"
        f" {wall_overhead:,.0f} us wall (goal <= {OVERHEAD_GOAL_US} us): {'met' if met else 'MISSED'}"
    )
    if any(account["poll thread"]):  # per-thread CPU is read from Linux's /proc
        shares = ", ".join(
            f"{name} {statistics.median(seconds) / TASKS_MEMORY * 1e6:,.0f}"
            for name, seconds in account.items()
        )
        print(f"  of which (CPU us/task, per thread): {shares}")
    print(
        f"  the same worker, work stubbed (instant, warm caches): {us['execute overhead, work stubbed'][1]:,.0f}"
        " us/task CPU; the rest is its per-task code running cold after each child"
    )
    print(
        f"  the same stub after a sleep as long as the work ({us['execute work in it'][0] / 1000:,.1f} ms, no child):"
        f" {us['execute overhead, work a sleep'][1]:,.0f} us/task CPU: code that runs after an idle gap"
        " costs more on this host, child or not"
    )
    peak = peak_memory(worker_in_memory, kinds["execute"], TASKS_TRACED, 2, limits)
    print(f"  worker peak traced memory for {TASKS_TRACED} tasks: {peak / 2**20:.1f} MiB")
    print(f"(b) local stack on moto, {TASKS_MOTO} no-op tasks, queue depth <= {TASKS_MOTO}")
    bare_moto, worker_moto = on_local_stack(TASKS_MOTO)
    print(f"  bare boto3 receive+delete    {TASKS_MOTO / bare_moto:>10,.1f} msgs/s")
    print(
        f"  one worker process           {TASKS_MOTO / worker_moto:>10,.1f} tasks/s  x{worker_moto / bare_moto:,.1f} the bare loop's time"
    )
    print(
        json.dumps(
            {
                "memory_work_us": us["execute work in it"][0],
                "memory_overhead_us": wall_overhead,
                "memory_overhead_cpu_us": cpu_overhead,
                "moto_bare_s": bare_moto,
                "moto_worker_s": worker_moto,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
