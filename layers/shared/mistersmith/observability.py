"""One place for telemetry: Powertools Logger and Tracer, metrics as CloudWatch EMF lines with one
namespace, and the trace context (an X-Ray trace header) that a task carries from the API to the
worker, where an OpenTelemetry span continues it."""

from __future__ import annotations

import json
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from opentelemetry import trace
from opentelemetry.propagators.aws import AwsXRayPropagator

# One namespace for every component, fixed here so that import order can never leave it unset.
METRICS_NAMESPACE = "MisterSmith"
XRAY_HEADER = "X-Amzn-Trace-Id"
_XRAY_ROOT = re.compile(r"(?:^|;)\s*Root=(1-[0-9a-f]{8}-[0-9a-f]{24})(?:;|$)")

# Service name and level come from POWERTOOLS_SERVICE_NAME / LOG_LEVEL, set per component in template.yaml.
logger = Logger()

F = TypeVar("F", bound=Callable[..., Any])


@cache
def _tracer() -> Tracer:
    # Made on first use: a Tracer loads the X-Ray SDK (about 20 MiB), which only a Lambda uses.
    return Tracer()


def __getattr__(name: str) -> Tracer:
    """`tracer`, the Lambda handlers' Powertools Tracer, made when a handler first imports it."""
    if name == "tracer":
        return _tracer()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def traced(method: F) -> F:
    """Domain calls as subsegments of a Lambda's X-Ray trace, without their arguments' payloads or
    their results, which may be large or secret. Outside Lambda, where Powertools' Tracer is off,
    the call itself: no Tracer, no X-Ray SDK and no dummy segment per call (the worker's case)."""
    if Tracer._is_tracer_disabled():  # the Tracer's own rule, read from the environment alone
        return method
    decorate: Callable[[F], F] = _tracer().capture_method(capture_response=False)
    return decorate(method)


_write_lock = threading.Lock()
_propagator = AwsXRayPropagator()
# A proxy that follows the provider start_tracing sets, whenever it is set.
_spans = trace.get_tracer("mistersmith")


def record_metrics(values: Mapping[str, tuple[MetricUnit, float]], **dimensions: str) -> None:
    """Writes these metrics now, as one EMF line in one write (safe from any thread, the same in a
    Lambda and on Fargate). With dimensions, each metric is kept per service and also per
    service + dimensions, so that alarms on totals need not list every value. The line is the one
    Powertools' EphemeralMetrics serializes, built directly: it costs a worker a quarter as much
    per task (the units are MetricUnit members, so there is nothing left to validate)."""
    service = logger.service
    dimensions = {
        name: value for name, value in dimensions.items() if value.strip()
    }  # as Powertools: blank ones dropped
    directive = {
        "Namespace": METRICS_NAMESPACE,
        "Dimensions": [["service"], ["service", *dimensions]] if dimensions else [["service"]],
        "Metrics": [{"Name": name, "Unit": unit.value} for name, (unit, _) in values.items()],
    }
    document: dict[str, Any] = {
        "_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [directive]}
    }
    document |= dimensions
    document["service"] = service
    document |= {name: [float(value)] for name, (_, value) in values.items()}
    line = json.dumps(document, separators=(",", ":")) + "\n"
    with _write_lock:
        sys.stdout.write(line)
        sys.stdout.flush()


def count(name: str, **dimensions: str) -> None:
    record_metrics({name: (MetricUnit.Count, 1)}, **dimensions)


@contextmanager
def task_context(task_id: str, trace_id: str | None = None) -> Iterator[None]:
    """Every line this thread logs inside carries the task id as its correlation id, and the trace
    id; thread-local, because a worker runs tasks side by side (not to be nested)."""
    keys = {"correlation_id": task_id} | ({"trace_id": trace_id} if trace_id else {})
    logger.thread_safe_append_keys(**keys)
    try:
        yield
    finally:
        logger.thread_safe_remove_keys(list(keys))


def trace_root(header: str | None) -> str | None:
    """The X-Ray trace id (`1-5759e988-bd862e3fe1be46a994272793`) in a trace header, if any."""
    match = _XRAY_ROOT.search(header or "")
    return match[1] if match else None


def trace_header_for(incoming: str | None) -> str:
    """The trace a new task joins: the caller's (API Gateway passes one) or, without one, a new
    sampled trace in X-Ray's format, so that the task's lines and spans always share an id."""
    if trace_root(incoming) and "Parent=" in (incoming or ""):
        return incoming or ""
    return f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=1"


@contextmanager
def task_span(name: str, trace_header: str | None, attributes: Mapping[str, Any]) -> Iterator[str | None]:
    """An OpenTelemetry span for a task's work, a child of the trace the task arrived with; yields
    the X-Ray trace id for the logs. Without `start_tracing` the span records nothing and costs
    next to nothing, but the trace id still continues."""
    parent = _propagator.extract({XRAY_HEADER: trace_header} if trace_header else {})
    with _spans.start_as_current_span(
        name, context=parent, kind=trace.SpanKind.CONSUMER, attributes=dict(attributes)
    ) as span:
        context = span.get_span_context()
        trace_id = format(context.trace_id, "032x") if context.is_valid else None
        yield f"1-{trace_id[:8]}-{trace_id[8:]}" if trace_id else None


def start_tracing(endpoint: str | None, service_name: str) -> Callable[[], None] | None:
    """Exports spans over OTLP/HTTP to a collector (the ADOT sidecar on localhost:4318) when one is
    configured; returns the shutdown that flushes them. With no endpoint nothing is loaded and no
    thread or connection is made."""
    if not endpoint:
        return None
    # Imported here: a process without a collector never loads the SDK or the exporter.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        # X-Ray accepts only trace ids that start with the epoch seconds.
        id_generator=AwsXRayIdGenerator(),
    )
    # A short export timeout: the last flush happens inside the container's stopTimeout.
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces", timeout=5)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider.shutdown
