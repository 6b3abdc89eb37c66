"""One place that creates Logger, Tracer and Metrics, with one namespace and service name."""

from __future__ import annotations

import json
import sys
import threading

from aws_lambda_powertools import Logger, Metrics, Tracer

# One namespace for every component, fixed here so that import order can never leave it unset.
METRICS_NAMESPACE = "MisterSmith"

# Service name and level come from POWERTOOLS_SERVICE_NAME / LOG_LEVEL, set per component in template.yaml.
logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace=METRICS_NAMESPACE)

_flush_lock = threading.Lock()


def flush_metrics() -> None:
    """Writes the buffered metrics as one EMF line in one write, for long-running processes:
    Powertools' own flush prints the line and its newline apart, so other threads' log lines
    can land between them."""
    with _flush_lock:
        if not metrics.metric_set:
            return
        document = metrics.serialize_metric_set()
        metrics.clear_metrics()
    sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
    sys.stdout.flush()
