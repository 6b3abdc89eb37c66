"""The peer for bench/peer_throughput.py: a Celery app on SQS doing the same no-op work as our
bench task, configured as a careful Celery user would for at-least-once work (acks late,
prefetch 1, started state tracked, results in DynamoDB). Configured from the environment so the
bench can start it as `celery -A bench.celery_app worker`. With BENCH_CELERY_SANDBOXED=1 the task
does exactly our worker's work (mistersmith.work.perform, a sandboxed child with the worker's
default limits), so that only the bookkeeping differs; otherwise it compiles in its own thread.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

from celery import Celery

from bench.execute_overhead import worker_limits
from mistersmith.work import WorkLimits, perform
from tests.exec_helper import exec_helper

ENDPOINT = os.environ.get("BENCH_MOTO_ENDPOINT", "http://127.0.0.1:5000")
QUEUE_URL = os.environ.get("BENCH_CELERY_QUEUE_URL", "")
RESULTS_TABLE = os.environ.get("BENCH_CELERY_RESULTS_TABLE", "")
TIMES_FILE = os.environ.get("BENCH_CELERY_TIMES", os.devnull)
SANDBOXED = os.environ.get("BENCH_CELERY_SANDBOXED") == "1"
_host_port = ENDPOINT.removeprefix("http://")

app = Celery("bench")
app.conf.update(
    broker_url=f"sqs://testing:testing@{_host_port}",
    broker_transport_options={
        "region": "us-east-1",
        "is_secure": False,
        "predefined_queues": {"bench": {"url": QUEUE_URL}},
        "wait_time_seconds": 1,
        "polling_interval": 0.0,
        "visibility_timeout": 300,
    },
    task_default_queue="bench",
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_track_started=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
)
if RESULTS_TABLE:
    # localhost:<port> is how Celery's DynamoDB backend names a local endpoint.
    app.conf.result_backend = f"dynamodb://testing:testing@{_host_port}/{RESULTS_TABLE}"
else:
    app.conf.task_ignore_result = True


@app.task(name="bench.noop_compile")
def noop_compile(files: dict[str, str]) -> dict[str, Any]:
    """What our no-op compile task does: byte-compile each file. Its start and end go to a file
    (one short appended line each), so runs with and without a result backend are timed alike."""
    started = time.time()
    if SANDBOXED:
        perform("compile", {"files": files}, _worker_limits())
    else:
        for name, source in files.items():
            compile(source, name, "exec")
    finished = time.time()
    with open(TIMES_FILE, "a") as times:
        times.write(f"{started} {finished}\n")
    return {"started": started, "finished": finished}


@functools.cache
def _worker_limits() -> WorkLimits:
    return worker_limits(exec_helper())


def latencies(count: int) -> list[tuple[float, float, float]]:
    """Send one task at a time to an idle warm worker and wait for its stored result: for each,
    (sent, started, finished) in epoch seconds. Runs in the bench's producer process."""
    noop_compile.apply_async(args=[{"warm.py": "pass\n"}]).get(timeout=60, interval=0.005)
    rows = []
    for n in range(count):
        sent = time.time()
        result = noop_compile.apply_async(args=[{f"n{n}.py": "pass\n"}]).get(timeout=60, interval=0.005)
        rows.append((sent, result["started"], time.time()))
    return rows
