"""The intake function's cold start beside a Powertools `APIGatewayRestResolver` with the same
observability set-up (Logger, Tracer, Metrics), measured in the same run.

Each sample is a fresh interpreter (`python -X importtime` is not used: its own cost skews the
figure) that imports the handler module the way Lambda does (the function's folder and the layer
on the path) and answers one event; the time is from before the import to after the first answer,
taken inside the process, so interpreter start-up is not counted on either side. Both sides run
as Lambda runs them: the runtime's variables (LAMBDA_TASK_ROOT, a trace header: the template has
`Tracing: Active`, so each Tracer patches what it finds and sends its segments, here to a UDP port of
the bench's) and only the packages the intake's Lambda ships (SHIPPED). Two events:

- `events/intake_health.json` (GET /health): the cold start itself. The baseline is the smallest
  Powertools API app that answers the same route, loading what only its POST needs (boto3) on its
  first POST, as the intake does.
- `events/intake_submit_execute.json` (POST /tasks, a new id each time): what the first submission
  after a cold start pays, the imports and clients that /health leaves for later included. Both
  sides write the task to the table and put one event on the bus, on moto on loopback (the
  template's table and bus); the baseline does it with two bare boto3 calls, no validation.

Both sides run with bytecode for every module (a cache of the bench's own, filled by one untimed
sample each), as a Lambda whose build compiled its packages would. A third line shows GET /health
with no bytecode at all, every module compiled from source at each cold start: how a Lambda runs
whose packages were unpacked without .pyc files. Samples alternate between the two sides; median of
REPEATS. CPU time (the process's own) is printed beside wall time: on a shared machine it moves less.

Run: make bench   (or: .venv/bin/python -m bench.cold_start)
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3

from local_stack.moto_server import MotoServer
from local_stack.provision import Provisioner
from local_stack.template import Template

ROOT = Path(__file__).resolve().parents[1]
# The goal: the intake's cold start (GET /health) against the Powertools resolver's, in CPU
# time: on a shared machine wall time also counts the waits for a core, which flatter the ratio.
RATIO_GOAL = 1.1
REPEATS = int(os.environ.get("BENCH_REPEATS", "9"))
HEALTH = ROOT / "events" / "intake_health.json"
SUBMIT = ROOT / "events" / "intake_submit_execute.json"

# Both sides, beside the intake function's own variables (from the template, on moto). What the
# Lambda runtime sets, with the template's `Tracing: Active`: outside Lambda (no LAMBDA_TASK_ROOT)
# the X-Ray SDK builds its centralized sampler with two botocore clients (about 150 ms that a Lambda
# never pays, on both sides), and a disabled Tracer patches nothing.
ENVIRONMENT = {
    "POWERTOOLS_SERVICE_NAME": "mistersmith",
    "LAMBDA_TASK_ROOT": str(ROOT / "functions" / "intake"),
    "AWS_LAMBDA_FUNCTION_NAME": "bench",
    "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}
# What a Lambda of the intake imports from: the function's and the layer's packages, and the runtime's
# boto3. The bench's environment has more, and X-Ray's patch_all imports each one it patches that it
# finds (requests, httpx and what httpx loads: about 60 ms on each side that no Lambda pays).
SHIPPED = (
    ROOT / "functions" / "intake" / "requirements.txt",
    ROOT / "layers" / "shared" / "requirements.txt",
)
REQUIREMENT = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[(?P<extras>[^\]]*)\])?")
EXTRA_MARKER = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")

# Not passed on from the bench's own environment: each sample says for itself.
INHERITED_NOT = frozenset({"PYTHONDONTWRITEBYTECODE", "POWERTOOLS_TRACE_DISABLED"})
# Why the baseline is written as it is, printed with the figures.
FAIRNESS = (
    "both sides run as a traced Lambda (LAMBDA_TASK_ROOT, a trace header, segments to a UDP port of the"
    " bench's) with only the packages the intake's Lambda ships (the function's and the layer's requirements,"
    " the runtime's boto3); the baseline imports boto3 in its POST route, as the intake does"
)

# What Lambda passes as the context (Powertools' Logger reads these fields); the clocks start first.
PRELUDE = """
import json, os, sys, time
sys.path[:] = [folder for folder in sys.path if not folder.endswith("site-packages")]
sys.path.append(os.environ["BENCH_PACKAGES"])
started, cpu_started = time.perf_counter(), time.process_time()
class Context:
    function_name, memory_limit_in_mb, aws_request_id = "bench", 512, "bench-request"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
event = json.load(open(sys.argv[1]))
if len(sys.argv) > 2:
    event["body"] = json.dumps(json.loads(event["body"]) | {"id": sys.argv[2]})
"""

# The answer's status, then wall and CPU seconds.
REPORT = """
print(answer["statusCode"], time.perf_counter() - started, time.process_time() - cpu_started)
"""

INTAKE = f"""{PRELUDE}
sys.path[:0] = [{str(ROOT / "functions" / "intake")!r}, {str(ROOT / "layers" / "shared")!r}]
import app
answer = app.handler(event, Context())
{REPORT}"""

BASELINE = f"""{PRELUDE}
import os
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
logger, tracer, metrics = Logger(), Tracer(), Metrics(namespace="MisterSmith")
resolver = APIGatewayRestResolver()

@resolver.get("/health")
def health():
    return {{"status": "ok"}}

@resolver.post("/tasks")
def submit():
    import boto3

    task = resolver.current_event.json_body
    boto3.client("dynamodb").put_item(
        TableName=os.environ["TASK_TABLE_NAME"],
        Item={{"id": {{"S": task["id"]}}, "status": {{"S": "QUEUED"}}, "task": {{"S": json.dumps(task)}}}},
    )
    boto3.client("events").put_events(
        Entries=[{{"EventBusName": os.environ["EVENT_BUS_NAME"], "Source": "bench", "DetailType": "TaskQueued",
                  "Detail": json.dumps({{"id": task["id"]}})}}]
    )
    return {{"id": task["id"], "status": "QUEUED"}}, 202

@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event, context):
    return resolver.resolve(event, context)

answer = handler(event, Context())
{REPORT}"""


def requirement(line: str) -> tuple[str, frozenset[str]] | None:
    match = REQUIREMENT.match(line)
    if match is None:
        return None
    return match["name"], frozenset(
        extra.strip() for extra in (match["extras"] or "").split(",") if extra.strip()
    )


def shipped_packages(into: Path) -> Path:
    """`into`, with a link to each installed module of SHIPPED's requirements and of what they
    require (their named extras included), and to its metadata: the sample's only packages, as in
    Lambda (whose folders keep each package's .dist-info, which pydantic scans for plugins)."""
    wanted = [("boto3", frozenset[str]())]
    for file in SHIPPED:
        wanted += [found for line in file.read_text().splitlines() if (found := requirement(line))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while wanted:
        name, extras = wanted.pop()
        key = (re.sub(r"[-_.]+", "-", name).lower(), extras)
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue  # required only under a marker this Python does not meet
        for required in distribution.requires or []:
            extra = EXTRA_MARKER.search(required)
            if (extra is None or extra[1] in extras) and (found := requirement(required)):
                wanted.append(found)
        for path in distribution.files or []:
            top = path.parts[0]
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            if not (into / top).exists():
                (into / top).symlink_to(Path(str(distribution.locate_file(top))))
    return into


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def local_aws(daemon: socket.socket) -> tuple[MotoServer, dict[str, str]]:
    """moto on loopback with the template's resources; the intake function's variables on it, and
    X-Ray segments sent to `daemon` (which nobody reads)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    moto = MotoServer("127.0.0.1", free_port())
    moto.start()
    host, port = daemon.getsockname()
    aws = ENVIRONMENT | {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto.port}",
        "AWS_XRAY_DAEMON_ADDRESS": f"{host}:{port}",
    }
    os.environ.update(aws)
    template = Template.load()
    Provisioner(template, boto3.session.Session(region_name=template.region).client).create_all()
    return moto, aws | template.function_environment("IntakeFunction")


def sample(code: str, environment: dict[str, str], *arguments: str) -> tuple[float, float]:
    done = subprocess.run(
        [sys.executable, "-c", code, *arguments],
        env={name: value for name, value in os.environ.items() if name not in INHERITED_NOT} | environment,
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    status, wall, cpu = done.stdout.split()[-3:]
    expected = "202" if arguments[0] == str(SUBMIT) else "200"
    if status != expected:
        raise RuntimeError(f"answered {status}, not {expected}: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return float(wall), float(cpu)


def main() -> int:
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    moto, aws = local_aws(daemon)
    routes = ("health", "submit", "health_from_source")
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {
        (side, route): [] for side in ("intake", "powertools") for route in routes
    }
    codes = {"intake": INTAKE, "powertools": BASELINE}
    try:
        with (
            tempfile.TemporaryDirectory() as cached,
            tempfile.TemporaryDirectory() as empty,
            tempfile.TemporaryDirectory() as packages,
        ):
            aws |= {"BENCH_PACKAGES": str(shipped_packages(Path(packages)))}
            bytecode = aws | {"PYTHONPYCACHEPREFIX": cached}
            source = aws | {"PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"}
            for code in codes.values():
                sample(code, bytecode, str(HEALTH))
                sample(code, bytecode, str(SUBMIT), f"bench-cold-warm-{code == INTAKE}")
            for n in range(REPEATS):
                for side, code in codes.items():
                    runs[side, "health"].append(sample(code, bytecode, str(HEALTH)))
                    runs[side, "submit"].append(sample(code, bytecode, str(SUBMIT), f"bench-cold-{side}-{n}"))
                    runs[side, "health_from_source"].append(sample(code, source, str(HEALTH)))
    finally:
        moto.stop()
        daemon.close()
    wall = {key: statistics.median(w for w, _ in values) * 1000 for key, values in runs.items()}
    cpu = {key: statistics.median(c for _, c in values) * 1000 for key, values in runs.items()}
    print(f"cold start: import + first answer in a fresh interpreter (median of {REPEATS}, ms; wall / CPU)")
    print(f"  fairness: {FAIRNESS}")
    labels = {
        "health": "GET /health",
        "submit": "POST /tasks (moto)",
        "health_from_source": "GET /health, no .pyc",
    }
    for route, label in labels.items():
        ours, theirs = ("intake", route), ("powertools", route)
        print(
            f"  {label:<21} intake (FastAPI + Mangum) {wall[ours]:7.1f} / {cpu[ours]:6.1f}"
            f"   Powertools resolver {wall[theirs]:7.1f} / {cpu[theirs]:6.1f}"
            f"   ratio {wall[ours] / wall[theirs]:.2f}x / {cpu[ours] / cpu[theirs]:.2f}x"
        )
    figures = {
        f"{side}_{route}": {"wall": wall[side, route], "cpu": cpu[side, route]} for side, route in runs
    }
    print(json.dumps({"cold_start_ms": figures}))
    ratio = cpu["intake", "health"] / cpu["powertools", "health"]
    met = ratio <= RATIO_GOAL
    print(
        f"intake cold start (CPU) {ratio:.2f}x the Powertools resolver's (goal <= {RATIO_GOAL}x): {'met' if met else 'MISSED'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
