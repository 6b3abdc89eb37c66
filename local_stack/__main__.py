"""`python -m local_stack demo` runs sample tasks end to end and checks them; `local` keeps the stack up."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
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


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.mode == "invoke":
        if not (args.function and args.event):
            parser.error("invoke needs a FUNCTION and -e EVENT")
        from local_stack.invoke import run

        return run(args.function, args.event, args.env_file)
    for what, port in (("--moto-port", args.moto_port), ("--api-port", args.api_port)):
        if taken := _port_taken(args.host, port):
            print(
                f"python -m local_stack: error: {args.host}:{port} is taken ({taken}); choose another {what}"
            )
            return 2
    config = LocalConfig(
        host=args.host,
        moto_port=args.moto_port,
        api_port=args.api_port,
        max_workers=args.max_workers,
        schedule_seconds=args.schedule_seconds,
        log_level=args.log_level,
        compact=args.compact,
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


def _parser() -> argparse.ArgumentParser:
    defaults = LocalConfig()
    parser = argparse.ArgumentParser(
        prog="python -m local_stack",
        description="MisterSmith on one machine: moto as AWS on loopback, the intake API on uvicorn, the "
        "other functions run by their template triggers, and worker processes sized by the autoscaler. "
        "Every component's lines go to one console, prefixed with its name; .local/env gets the variables "
        "to join the stack from another terminal; the EMF metrics are summed when it stops.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "mode",
        choices=["demo", "local", "invoke"],
        help="demo: run the sample tasks end to end, check them and stop; local: keep the stack up until "
        "Ctrl-C; invoke: one function with one event against a running stack (as sam local invoke)",
    )
    parser.add_argument(
        "function", nargs="?", help="invoke: a function (intake, router, ... or its logical id)"
    )
    parser.add_argument("-e", "--event", type=Path, help="invoke: the event file (events/...)")
    parser.add_argument(
        "--env-file", type=Path, default=STATE_DIR / "env", help="invoke: the stack's variables"
    )
    parser.add_argument("--host", default=defaults.host, help="loopback address for moto and the API")
    parser.add_argument(
        "--moto-port", type=int, default=defaults.moto_port, help="moto's port (the AWS endpoint)"
    )
    parser.add_argument(
        "--api-port", type=int, default=defaults.api_port, help="the API's port (sam local start-api's)"
    )
    parser.add_argument(
        "--max-workers",
        type=int,
        default=defaults.max_workers,
        help="most worker processes on this machine, whatever the autoscaler's desired count",
    )
    parser.add_argument(
        "--schedule-seconds",
        type=float,
        default=defaults.schedule_seconds,
        help="period of the scheduled functions (the autoscaler)",
    )
    parser.add_argument(
        "--log-level",
        default=defaults.log_level,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="every component's",
    )
    parser.add_argument(
        "--compact",
        action="store_true",
        help="show `component | level | message | task id`, not whole JSON lines",
    )
    return parser


def _port_taken(host: str, port: int) -> str | None:
    """Why `port` cannot be served on, or None when it is free."""
    with socket.socket() as probe:
        # As the servers bind: a port in TIME_WAIT after a stack stopped is free to them.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return error.strerror or str(error)
    return None


if __name__ == "__main__":
    sys.exit(main())
