"""One trace and one log schema along a task's whole path on the local stack: intake -> bus ->
router -> SQS -> worker. The worker exports its spans over OTLP/HTTP to a collector played here by
a small HTTP server on 127.0.0.1 that decodes what it receives."""

from __future__ import annotations

import gzip
import http.server
import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from local_stack.emf import json_objects
from mistersmith.observability import logger
from tests.conftest import own_workers, stored_key

pytestmark = pytest.mark.integration

# Lines that every component writes, whatever the line is about.
COMMON_FIELDS = {"level", "message", "timestamp", "service", "correlation_id"}
WORKER_TASK_FIELDS = {"task_id", "task_type", "duration_ms", "attempt", "worker_id", "trace_id"}


class Collector(http.server.ThreadingHTTPServer):
    """Receives OTLP/HTTP trace exports and keeps every span (trace id and parent as hex)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ExportHandler)
        self.spans: list[dict] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ExportHandler(http.server.BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            service = {a.key: a.value.string_value for a in resource.resource.attributes}.get("service.name")
            for scope in resource.scope_spans:
                for span in scope.spans:
                    self.server.spans.append(
                        {
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "parent_span_id": span.parent_span_id.hex(),
                            "service": service,
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                        }
                    )
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def _value(value) -> object:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def xray_to_otel(trace_id: str) -> str:
    return trace_id.removeprefix("1-").replace("-", "")


def test_worker_span_joins_the_trace_the_api_call_started(stack, api, wait_terminal, collector):
    # Given a worker that exports to a collector, and an API call that arrives inside a trace
    root = f"1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
    parent = uuid.uuid4().hex[:16]
    task_id = f"traced-{uuid.uuid4().hex[:8]}"
    with own_workers(stack) as workers:
        worker = stack.start_worker(
            81, {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"}
        )
        workers.append(worker)
        # When the task goes through the bus, the router and the queue to the worker
        response = api.post(
            "/tasks",
            json={"id": task_id, "task_type": "execute", "payload": {"command": ["python3", "-c", "pass"]}},
            headers={"X-Amzn-Trace-Id": f"Root={root};Parent={parent};Sampled=1"},
        )
        assert response.status_code == 202
        record = wait_terminal(task_id)
        # The worker flushes its spans when it stops.
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    # Then the record carries the trace id, and the worker's span is in that trace, a child of the call
    assert record["status"] == "SUCCEEDED"
    assert record["trace_id"] == root
    spans = [span for span in collector.spans if span["attributes"].get("task.id") == stored_key(task_id)]
    assert [(span["name"], span["service"]) for span in spans] == [("execute task", "mistersmith-worker")]
    assert spans[0]["trace_id"] == xray_to_otel(root)
    assert spans[0]["parent_span_id"] == parent
    assert spans[0]["attributes"]["task.attempt"] == 1


def test_a_task_s_log_lines_share_its_correlation_and_trace_ids_from_api_to_worker(stack, api, wait_terminal):
    # Given every component's lines, as the local stack shows them, at INFO
    task_id = f"schema-{uuid.uuid4().hex[:8]}"
    lines: list[tuple[str, dict]] = []

    def listener(component: str, line: str) -> None:
        lines.extend((component, document) for document in json_objects(line) if "_aws" not in document)

    def components() -> set[str]:
        return {name.split("-")[0] for name, document in list(lines) if task_id in json.dumps(document)}

    def outcome_seen() -> bool:
        # The worker logs its outcome line after the terminal write, so it can follow the record.
        return any(
            document.get("message") == "task_duration" and task_id in json.dumps(document)
            for _, document in list(lines)
        )

    previous_level = logger.log_level
    logger.setLevel("INFO")
    stack.console.add_listener(listener)
    try:
        # When a task that fails goes from the API to a worker
        command = ["python3", "-c", "raise SystemExit(3)"]
        api.post(
            "/tasks", json={"id": task_id, "task_type": "execute", "payload": {"command": command}}
        ).raise_for_status()
        record = wait_terminal(task_id)
        deadline = time.monotonic() + 10
        while (components() != {"intake", "router", "worker"} or not outcome_seen()) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
    finally:
        stack.console.remove_listener(listener)
        logger.setLevel(previous_level)
    about_task = [(name, document) for name, document in lines if task_id in json.dumps(document)]
    # Then intake, router and worker each wrote about it, and every such line has the common schema,
    # the task id as its correlation id and the task's trace id
    assert components() == {"intake", "router", "worker"}, [
        (name, {key: value for key, value in document.items() if task_id in json.dumps(value)})
        for name, document in about_task
        if not name.startswith(("intake", "router", "worker"))
    ]
    for name, document in about_task:
        assert set(document) >= COMMON_FIELDS, (name, document)
        assert document["correlation_id"] == stored_key(task_id), (name, document)
        assert document["trace_id"] == record["trace_id"], (name, document)
    # And the worker's outcome line has the seed's fields, with the error type of the failure
    [outcome] = [document for name, document in about_task if document["message"] == "task_duration"]
    assert set(outcome) >= WORKER_TASK_FIELDS
    assert (outcome["level"], outcome["error_type"], outcome["task_type"]) == (
        "ERROR",
        "CommandFailed",
        "execute",
    )
