"""`python -m local_stack demo` runs sample tasks end to end and checks them; `local` keeps the stack up."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from local_stack.stack import EVENTS_DIR, STATE_DIR, LocalConfig, LocalStack

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "DEAD_LETTERED"}


@dataclass(frozen=True)
class Sample:
    body: dict[str, Any]
    expected_status: str
    expected_error: str | None = None


def samples(run_id: str) -> list[Sample]:
    """The sample submissions of events/ plus one that must fail, with fresh ids for this run."""
    found = [
        Sample(
            json.loads(json.loads((EVENTS_DIR / f"intake_submit_{kind}.json").read_text())["body"]),
            "SUCCEEDED",
        )
        for kind in ("execute", "compile", "analyze")
    ]
    failing = Sample(
        {"task_type": "execute", "payload": {"command": ["python3", "-c", "import sys; sys.exit(3)"]}},
        "FAILED",
        "CommandFailed",
    )
    broken_source = Sample(
        {"task_type": "compile", "payload": {"files": {"bad.py": "def broken(:\n    pass\n"}}},
        "FAILED",
        "CompileError",
    )
    return [
        Sample(
            sample.body | {"id": f"{sample.body['task_type']}-{index}-{run_id}"},
            sample.expected_status,
            sample.expected_error,
        )
        for index, sample in enumerate([*found, failing, broken_source])
    ]


def run_demo(stack: LocalStack, timeout_seconds: float = 90) -> tuple[bool, str]:
    """Submits the samples and waits for them; returns whether all ended as expected, and the table."""
    client = httpx.Client(base_url=stack.api_url, timeout=10)
    run_id = uuid.uuid4().hex[:6]
    submitted = []
    for sample in samples(run_id):
        response = client.post("/tasks", json=sample.body)
        response.raise_for_status()
        submitted.append((sample, response.json()["id"]))
    rejected = client.post("/tasks", json={"task_type": "deploy", "payload": {}})
    print(f"invalid submission answered {rejected.status_code}: {rejected.json()['errors'][0]['msg']}")
    records: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        records = {task_id: client.get(f"/tasks/{task_id}").json() for _, task_id in submitted}
        if all(record["status"] in TERMINAL for record in records.values()):
            break
        time.sleep(0.5)
    lines = [f"{'id':<28} {'type':<8} {'status':<10} {'ms':>6}  {'expected':<10} error"]
    all_as_expected = True
    for sample, task_id in submitted:
        record = records[task_id]
        error = record.get("error") or {}
        as_expected = (
            record["status"] == sample.expected_status and error.get("type") == sample.expected_error
        )
        all_as_expected &= as_expected
        lines.append(
            f"{task_id:<28} {record['task_type']:<8} {record['status']:<10} {record.get('duration_ms', '-')!s:>6}  "
            f"{sample.expected_status:<10} {error.get('type', '')} {error.get('message', '')[:60]}"
            f"{'' if as_expected else '  <-- NOT AS EXPECTED'}"
        )
    lines.append(
        "\nall tasks ended as expected" if all_as_expected else "\nsome tasks did not end as expected"
    )
    return all_as_expected, "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m local_stack", description=__doc__)
    parser.add_argument("mode", choices=["demo", "local", "invoke"])
    parser.add_argument(
        "function", nargs="?", help="invoke: a function (intake, router, ... or its logical id)"
    )
    parser.add_argument("-e", "--event", type=Path, help="invoke: the event file (events/...)")
    parser.add_argument(
        "--env-file", type=Path, default=STATE_DIR / "env", help="invoke: the stack's variables"
    )
    parser.add_argument("--moto-port", type=int, default=5000)
    parser.add_argument("--api-port", type=int, default=3000)
    parser.add_argument("--max-workers", type=int, default=3)
    args = parser.parse_args()
    if args.mode == "invoke":
        if not (args.function and args.event):
            parser.error("invoke needs a FUNCTION and -e EVENT")
        from local_stack.invoke import run

        return run(args.function, args.event, args.env_file)
    config = LocalConfig(
        moto_port=args.moto_port,
        api_port=args.api_port,
        max_workers=args.max_workers,
    )
    as_expected, report = True, ""
    with LocalStack(config) as stack:
        env_file = stack.write_env()
        client_env = stack.write_client_env()
        print(
            f"local AWS (moto) on {stack.endpoint_url}, API on {stack.api_url}; "
            f"environment in {env_file}, a client's in {client_env}"
        )
        if args.mode == "demo":
            as_expected, report = run_demo(stack)
        else:
            print(
                "stack is up; Ctrl-C stops it. Another worker: set -a; . .local/env; python -m fargate_worker"
            )
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
    # After the stack has stopped, so that no component's line lands inside the tables.
    if report:
        print(f"\n{report}")
    print(f"\nmetrics emitted (the EMF lines of every component):\n{stack.metrics.table()}")
    return 0 if as_expected else 1


if __name__ == "__main__":
    sys.exit(main())
