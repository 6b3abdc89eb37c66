"""Our worker beside Celery on SQS, in one run, against the same moto server and queue depth.

Every side gets the same TASKS no-op compile tasks (byte-compile `pass`) queued before its worker
starts, and the figure is the time from the first task's start to the last task's end (so start-up
is not counted), at the same concurrency. Ours and the Celery of the goal run ROUNDS times,
alternating, and the goal takes the median of the rounds' ratios:

- ours: one `python -m fargate_worker` with CONCURRENCY=N, full state tracking (claim, lease,
  terminal record, status events, logs, EMF);
- Celery 5.7 on SQS, threads pool of N, `task_acks_late=True`, `worker_prefetch_multiplier=1`,
  `task_track_started=True` and its DynamoDB result backend: the same bookkeeping as ours, and
  the same work (its task calls mistersmith.work.perform, our sandboxed child): the goal's ratio;
- the same Celery compiling in its own thread (no child), with and without a result backend (the
  latter is the figure the issue quoted first): what the sandbox's child costs beside them.

Also printed: each worker's resident memory after the run (VmRSS) and its CPU time per task (its
children's included; on a shared machine the throughput also measures the wait for a core), and
the end-to-end latency of
one no-op task at a time with an idle warm worker: ours from `POST /tasks` to RUNNING and to
SUCCEEDED (the record's timestamps against the client's clock), Celery's from `apply_async` to its
start and to its stored result, p50 and p95 of LATENCY_TASKS. Celery is a bench-only dependency
(requirements-bench.txt).

Run: make bench   (or: .venv/bin/python -m bench.peer_throughput)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.worker_throughput import free_port, noop_message, quiet_stdout, worker_environment
from local_stack.stack import ROOT, LocalConfig, LocalStack
from mistersmith.adapters.dynamodb import DynamoTaskStore
from mistersmith.callers import LOCAL_CALLER
from mistersmith.clock import epoch_from_iso, now_iso
from mistersmith.models import StoredTask, canonical_json, task_key

TASKS = 200
CONCURRENCY = 4
LATENCY_TASKS = 30
DEADLINE_SECONDS = 600
# Issue 16: at least Celery's throughput doing the same bookkeeping (its DynamoDB result backend).
THROUGHPUT_GOAL = 1.0
ROUNDS = 3  # of ours and Celery with results, alternating


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User and system time of a process and of the children it has waited for (the sandbox's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def send_all(sqs: object, url: str, bodies: list[str]) -> None:
    for n in range(0, len(bodies), 10):
        sqs.send_message_batch(  # type: ignore[attr-defined]
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[n : n + 10])]
        )


def ours(stack: LocalStack, run: str) -> tuple[float, float, float]:
    sqs = stack.client("sqs")
    url = stack.template.refs["WorkQueue"]
    store = DynamoTaskStore(stack.template.refs["TaskTable"])
    messages = [noop_message(n).model_copy(update={"id": f"bench-{run}-{n}"}) for n in range(TASKS)]
    for message in messages:
        store.create(StoredTask.queued(message, now_iso()))
    send_all(sqs, url, [canonical_json(m.model_dump(mode="json", exclude_none=True)) for m in messages])
    worker = stack.start_worker(
        0, worker_environment({"RECEIVE_WAIT_SECONDS": "1", "CONCURRENCY": str(CONCURRENCY)})
    )
    deadline = time.monotonic() + DEADLINE_SECONDS
    # Celery's side is watched through a file; reading all 200 records every 0.5 s loaded the moto
    # server our worker shares with up to 400 reads a second. The oldest unfinished one is enough.
    pending = [m.id for m in messages]
    while pending and time.monotonic() < deadline:
        if store.get(pending[0]).status == "SUCCEEDED":
            pending.pop(0)
        else:
            time.sleep(0.5)
    if pending:
        raise RuntimeError(f"our worker did not finish the bench tasks: {len(pending)} left")
    tasks = [store.get(m.id) for m in messages]
    memory, cpu = rss_mib(worker.pid), cpu_seconds(worker.pid)
    worker.terminate()
    worker.wait()
    first = min(epoch_from_iso(task.started_at) for task in tasks)
    last = max(epoch_from_iso(task.finished_at) for task in tasks)
    return last - first, memory, cpu


def celery(stack: LocalStack, with_results: bool, sandboxed: bool = False) -> tuple[float, float, float]:
    sqs = stack.client("sqs")
    url = sqs.create_queue(QueueName=f"celery-bench-{time.monotonic_ns()}")["QueueUrl"]
    table = f"celery-results-{time.monotonic_ns()}" if with_results else ""
    with tempfile.TemporaryDirectory() as scratch:
        times = Path(scratch) / "times"
        env = celery_environment(stack, url, table, times) | {
            "BENCH_CELERY_SANDBOXED": "1" if sandboxed else ""
        }
        # The producer is the Celery app itself, as a Celery user would send.
        send = (
            "from bench.celery_app import noop_compile\n"
            f"for n in range({TASKS}):\n"
            f"    noop_compile.apply_async(args=[{NOOP_FILES!r}], task_id=f'bench-{{n}}')\n"
        )
        subprocess.run([sys.executable, "-c", send], env=env, cwd=ROOT, check=True)
        worker = celery_worker(env)
        deadline = time.monotonic() + DEADLINE_SECONDS
        lines: list[str] = []
        while time.monotonic() < deadline:
            lines = times.read_text().splitlines() if times.exists() else []
            if len(lines) >= TASKS:
                break
            time.sleep(0.5)
        else:
            worker.kill()
            raise RuntimeError(f"Celery finished {len(lines)} of {TASKS} bench tasks")
        if with_results:
            # Done means the result is stored, as ours is done when its record is terminal.
            backend = stack.client("dynamodb")
            while backend.scan(TableName=table, Select="COUNT")["Count"] < TASKS:
                if time.monotonic() > deadline:
                    raise RuntimeError("Celery's results did not all reach DynamoDB")
                time.sleep(0.2)
        memory, cpu = rss_mib(worker.pid), cpu_seconds(worker.pid)
        worker.terminate()
        worker.wait(timeout=30)
    spans = [tuple(map(float, line.split())) for line in lines]
    return max(end for _, end in spans) - min(start for start, _ in spans), memory, cpu


NOOP_PAYLOAD = noop_message(0).payload
NOOP_FILES = NOOP_PAYLOAD["files"]


def celery_environment(stack: LocalStack, queue_url: str, table: str, times: Path) -> dict[str, str]:
    return os.environ | {
        "BENCH_MOTO_ENDPOINT": stack.endpoint_url,
        "BENCH_CELERY_QUEUE_URL": queue_url,
        "BENCH_CELERY_RESULTS_TABLE": table,
        "BENCH_CELERY_TIMES": str(times),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def celery_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker", "--pool", "threads"),
            *("--concurrency", str(CONCURRENCY), "--without-gossip", "--without-mingle"),
            *("--without-heartbeat", "--loglevel", "WARNING"),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def latency_ours(stack: LocalStack) -> list[tuple[float, float, float]]:
    store = DynamoTaskStore(stack.template.refs["TaskTable"])
    worker = stack.start_worker(1, worker_environment({"RECEIVE_WAIT_SECONDS": "20"}))
    rows = []
    try:
        with httpx.Client(base_url=stack.api_url, timeout=30) as api:
            for n in range(-1, LATENCY_TASKS):  # the first one warms the path and is not counted
                task_id = f"latency-{n + 1}"
                sent = time.time()
                api.post("/tasks", json={"id": task_id, "task_type": "compile", "payload": NOOP_PAYLOAD})
                deadline = time.monotonic() + 60
                # Stored under the caller's scope (the local stack's caller, with no caller header).
                while (task := store.get(task_key(LOCAL_CALLER, task_id))).status != "SUCCEEDED":
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{task_id} ended {task.status}, not SUCCEEDED")
                    time.sleep(0.005)
                if n >= 0:
                    rows.append((sent, epoch_from_iso(task.started_at), epoch_from_iso(task.finished_at)))
    finally:
        worker.terminate()
        worker.wait()
    return rows


def latency_celery(stack: LocalStack) -> list[tuple[float, float, float]]:
    sqs = stack.client("sqs")
    url = sqs.create_queue(QueueName=f"celery-latency-{time.monotonic_ns()}")["QueueUrl"]
    with tempfile.TemporaryDirectory() as scratch:
        env = celery_environment(stack, url, f"celery-latency-{time.monotonic_ns()}", Path(scratch) / "t")
        worker = celery_worker(env)
        try:
            measure = f"import json; from bench.celery_app import latencies; print(json.dumps(latencies({LATENCY_TASKS})))"
            done = subprocess.run(
                [sys.executable, "-c", measure], env=env, cwd=ROOT, check=True, capture_output=True, text=True
            )
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    return [tuple(row) for row in json.loads(done.stdout.splitlines()[-1])]


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=20, method="inclusive")
    return statistics.median(samples), cuts[18]


def main() -> int:
    report = quiet_stdout()
    config = LocalConfig(moto_port=free_port(), api_port=free_port(), max_workers=0, log_level="WARNING")
    report(
        f"{TASKS} no-op compile tasks each, concurrency {CONCURRENCY}, one moto server;"
        f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    with LocalStack(config) as stack:
        runs: dict[str, list[tuple[float, float, float]]] = {}
        ratios = []
        # The goal's pair alternates, round after round: on a shared machine one run of each can
        # land on a slow and a fast stretch of the same minute.
        for round_number in range(1, ROUNDS + 1):
            mine = ours(stack, f"r{round_number}")
            theirs = celery(stack, with_results=True, sandboxed=True)
            runs.setdefault("ours (full state tracking)", []).append(mine)
            runs.setdefault("Celery + DynamoDB results", []).append(theirs)
            ratios.append(theirs[0] / mine[0])
            report(
                f"  round {round_number}: ours {TASKS / mine[0]:.1f} tasks/s,"
                f" Celery + DynamoDB results {TASKS / theirs[0]:.1f} tasks/s: {ratios[-1]:.2f}x"
            )
        runs["  same, work in its thread"] = [celery(stack, with_results=True)]
        runs["Celery, no result backend"] = [celery(stack, with_results=False)]
        rows = []
        for name, measured in runs.items():
            seconds, memory, cpu = (statistics.median(values) for values in zip(*measured, strict=True))
            rows.append((name, seconds, memory))
            report(
                f"  {name:<30} {TASKS / seconds:>8.1f} tasks/s   worker RSS {memory:>6.1f} MiB"
                f"   worker CPU {cpu / TASKS * 1000:>5.1f} ms/task (its start and children included)"
                + (f", median of {len(measured)}" if len(measured) > 1 else "")
            )
        latency = {"ours": latency_ours(stack), "Celery": latency_celery(stack)}
    throughput = statistics.median(ratios)
    memory = rows[0][2] / min(row[2] for row in rows[1:])  # the leanest Celery of the run
    report(f"  ours / Celery with results, its work in its thread: {rows[2][1] / rows[0][1]:.2f}x throughput")
    report(
        f"  ours / Celery without results, its work in its thread: {rows[3][1] / rows[0][1]:.2f}x throughput"
    )
    report(
        f"worker throughput {throughput:.2f}x Celery's with DynamoDB results, concurrency {CONCURRENCY},"
        f" median of {ROUNDS} rounds"
        f" (goal >= {THROUGHPUT_GOAL}x): {'met' if throughput >= THROUGHPUT_GOAL else 'MISSED'}"
    )
    report(
        f"worker RSS after {TASKS} tasks {memory:.2f}x Celery's worker's (goal <= 1.0x):"
        f" {'met' if memory <= 1.0 else 'MISSED'}"
    )
    report(f"latency of one no-op task, idle warm worker, {LATENCY_TASKS} tasks (ms, p50 / p95)")
    figures = {}
    for name, samples in latency.items():
        started = percentiles([(start - sent) * 1000 for sent, start, _ in samples])
        ended = percentiles([(end - sent) * 1000 for sent, _, end in samples])
        figures[name] = ended
        report(
            f"  {name:<8} to start {started[0]:>7.1f} / {started[1]:>7.1f}   to result {ended[0]:>7.1f} / {ended[1]:>7.1f}"
        )
    ratio = [ours / celery for ours, celery in zip(figures["ours"], figures["Celery"], strict=True)]
    report(f"  ours / Celery to result: p50 {ratio[0]:.2f}x, p95 {ratio[1]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
