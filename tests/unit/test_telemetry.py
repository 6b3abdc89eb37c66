"""observability: EMF lines, the trace header a task carries, and tracing that costs nothing when
no collector is configured."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from contextlib import redirect_stdout

import pytest
from aws_lambda_powertools.metrics import MetricUnit

from mistersmith.observability import record_metrics, task_span, trace_header_for, trace_root

pytestmark = pytest.mark.unit

HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


def test_record_metrics_writes_one_emf_line_per_type_and_in_total():
    # Given a task outcome with a task type
    out = io.StringIO()
    with redirect_stdout(out):
        record_metrics(
            {"TasksSucceeded": (MetricUnit.Count, 1), "TaskQueueWait": (MetricUnit.Milliseconds, 250)},
            task_type="compile",
        )
    # When CloudWatch reads the line / Then both metrics are kept per service and per service + type
    (document,) = [json.loads(line) for line in out.getvalue().splitlines()]
    directive = document["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "MisterSmith"
    assert directive["Dimensions"] == [["service"], ["service", "task_type"]]
    assert {metric["Name"]: metric["Unit"] for metric in directive["Metrics"]} == {
        "TasksSucceeded": "Count",
        "TaskQueueWait": "Milliseconds",
    }
    assert (document["task_type"], document["TaskQueueWait"]) == ("compile", [250.0])


def test_record_metrics_lines_stay_whole_when_threads_write_at_once():
    # Given 8 threads each writing 200 metric lines at once
    out = io.StringIO()

    def write() -> None:
        for _ in range(200):
            record_metrics({"TasksFailed": (MetricUnit.Count, 1)}, task_type="execute")

    with redirect_stdout(out):
        threads = [threading.Thread(target=write) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # Then every line is one whole JSON document
    lines = out.getvalue().splitlines()
    assert len(lines) == 1600
    assert all(json.loads(line)["TasksFailed"] == [1.0] for line in lines)


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        (HEADER, True),
        (None, False),
        ("", False),
        ("Root=garbage;Sampled=1", False),
        ("Root=1-5759e988-bd862e3fe1be46a994272793", False),
    ],
)
def test_a_task_joins_the_caller_s_trace_or_starts_one(incoming, kept):
    # Given a trace header from the caller, or none, or one without a parent
    header = trace_header_for(incoming)
    # Then a complete caller's header is kept, and otherwise a new sampled X-Ray trace begins
    assert (header == incoming) is kept
    assert trace_root(header) is not None
    assert "Parent=" in header and "Sampled=1" in header
    assert trace_root(trace_header_for(None)) != trace_root(trace_header_for(None))


def test_task_span_without_a_collector_continues_the_trace_and_loads_nothing():
    # Given a fresh interpreter with no collector configured, that records every connection attempt
    script = f"""
import json, socket, sys, threading
attempts = []
connect = socket.socket.connect
socket.socket.connect = lambda self, address: attempts.append(str(address)) or connect(self, address)
from mistersmith.observability import start_tracing, task_span
shutdown = start_tracing(None, "mistersmith-worker")
for _ in range(100):
    with task_span("execute task", {HEADER!r}, {{"task.id": "t-1"}}) as trace_id:
        pass
print(json.dumps({{
    "shutdown": shutdown,
    "trace_id": trace_id,
    "threads": [thread.name for thread in threading.enumerate()],
    "connections": attempts,
    "loaded": sorted(name for name in sys.modules if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter"))),
}}))
"""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.splitlines()[-1])
    # When tasks run in spans / Then the trace id continues, and no SDK, thread or connection exists
    assert report == {
        "shutdown": None,
        "trace_id": "1-5759e988-bd862e3fe1be46a994272793",
        "threads": ["MainThread"],
        "connections": [],
        "loaded": [],
    }


def test_task_span_without_a_header_has_no_trace_id_to_log():
    with task_span("analyze task", None, {}) as trace_id:
        assert trace_id is None


def test_task_span_with_a_tracer_provider_records_the_task_s_span_in_the_caller_s_trace():
    # Given a fresh interpreter whose spans go to an SDK provider (as start_tracing sets one up)
    script = f"""
import json
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from mistersmith.observability import task_span
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
with task_span("execute task", {HEADER!r}, {{"task.id": "t-1"}}) as trace_id:
    current = trace.get_current_span().get_span_context().span_id
[span] = exporter.get_finished_spans()
print(json.dumps({{
    "trace_id": trace_id,
    "name": span.name,
    "kind": span.kind.name,
    "span_trace_id": format(span.context.trace_id, "032x"),
    "parent": format(span.parent.span_id, "016x"),
    "current_is_the_span": current == span.context.span_id,
    "attributes": dict(span.attributes),
}}))
"""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    # When a task runs in a span / Then the span is recorded, current inside, a child of the caller's
    assert json.loads(run.stdout.splitlines()[-1]) == {
        "trace_id": "1-5759e988-bd862e3fe1be46a994272793",
        "name": "execute task",
        "kind": "CONSUMER",
        "span_trace_id": "5759e988bd862e3fe1be46a994272793",
        "parent": "53995c3f42cd8ad8",
        "current_is_the_span": True,
        "attributes": {"task.id": "t-1"},
    }


def test_the_worker_never_loads_the_x_ray_sdk_that_only_a_lambda_uses():
    # Given a fresh interpreter outside Lambda that builds the worker and runs a traced call
    script = """
import json, sys
import fargate_worker.worker
from mistersmith.observability import traced
calls = []
traced(calls.append)("x")
print(json.dumps({"calls": calls, "loaded": sorted(name for name in sys.modules if name.startswith("aws_xray_sdk"))}))
"""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("LAMBDA_", "POWERTOOLS_TRACE"))
    }
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    # Then the call is made and the SDK (about 20 MiB of the worker's memory) is never imported
    assert json.loads(run.stdout.splitlines()[-1]) == {"calls": ["x"], "loaded": []}


def test_in_a_lambda_traced_calls_are_x_ray_subsegments_and_handlers_get_the_tracer():
    # Given a fresh interpreter in a Lambda's environment
    script = """
import json, sys
from mistersmith.observability import traced
def work():
    return 42
wrapped = traced(work)
from mistersmith.observability import tracer
print(json.dumps({"wrapped": wrapped is not work, "tracer": type(tracer).__name__, "sdk": "aws_xray_sdk.core" in sys.modules}))
"""
    env = os.environ | {"LAMBDA_TASK_ROOT": "/var/task", "AWS_LAMBDA_FUNCTION_NAME": "f"}
    env.pop("POWERTOOLS_TRACE_DISABLED", None)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr
    # Then Powertools' Tracer wraps the call, and the handlers' `tracer` is that Tracer
    assert json.loads(run.stdout.splitlines()[-1]) == {"wrapped": True, "tracer": "Tracer", "sdk": True}
