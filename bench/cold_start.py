"""The intake function's cold start beside a Powertools `APIGatewayRestResolver` with the same
observability set-up (Logger, Tracer, Metrics), measured in the same run.

Each sample is a fresh interpreter (`python -X importtime` is not used: its own cost skews the
figure) that imports the handler module the way Lambda does (the function's folder and the layer
on the path) and answers `events/intake_health.json` once; the time is from before the import to
after the first answer, taken inside the process, so interpreter start-up is not counted on either
side. The baseline is the smallest Powertools API app that answers the same route, with Logger,
Tracer, Metrics and the same service name. Samples alternate between the two; median of REPEATS.

Run: make bench   (or: .venv/bin/python -m bench.cold_start)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 9
EVENT = ROOT / "events" / "intake_health.json"

# What the intake's settings need to load; nothing here is called on the /health path.
ENVIRONMENT = {
    "TASK_TABLE_NAME": "bench-tasks",
    "EVENT_BUS_NAME": "bench-bus",
    "ARTIFACTS_BUCKET_NAME": "bench-bucket",
    "POWERTOOLS_SERVICE_NAME": "mistersmith",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}

# What Lambda passes as the context (Powertools' Logger reads these fields).
CONTEXT = """
class Context:
    function_name, memory_limit_in_mb, aws_request_id = "bench", 512, "bench-request"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
"""

INTAKE = f"""
import json, sys, time
started = time.perf_counter()
{CONTEXT}
sys.path[:0] = [{str(ROOT / "functions" / "intake")!r}, {str(ROOT / "layers" / "shared")!r}]
import app
answer = app.handler(json.load(open({str(EVENT)!r})), Context())
assert answer["statusCode"] == 200, answer
print(time.perf_counter() - started)
"""

BASELINE = f"""
import json, time
started = time.perf_counter()
{CONTEXT}
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
logger, tracer, metrics = Logger(), Tracer(), Metrics(namespace="MisterSmith")
resolver = APIGatewayRestResolver()

@resolver.get("/health")
def health():
    return {{"status": "ok"}}

@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event, context):
    return resolver.resolve(event, context)

answer = handler(json.load(open({str(EVENT)!r})), Context())
assert answer["statusCode"] == 200, answer
print(time.perf_counter() - started)
"""


def sample(code: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=os.environ | ENVIRONMENT,
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    return float(done.stdout.splitlines()[-1])


def main() -> int:
    times: dict[str, list[float]] = {"intake": [], "powertools": []}
    for _ in range(REPEATS):
        times["intake"].append(sample(INTAKE))
        times["powertools"].append(sample(BASELINE))
    medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
    print(f"cold start, import + first /health answer in a fresh interpreter (median of {REPEATS}, ms)")
    print(f"  intake (FastAPI + Mangum)         {medians['intake']:>7.1f}")
    print(f"  Powertools resolver, same set-up  {medians['powertools']:>7.1f}")
    print(f"  intake / Powertools: {medians['intake'] / medians['powertools']:.2f}x")
    print(json.dumps({"cold_start_ms": medians}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
