"""One place that creates Logger, Tracer and Metrics, with one namespace and service name."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

# One namespace for every component, fixed here so that import order can never leave it unset.
METRICS_NAMESPACE = "MisterSmith"

# Service name and level come from POWERTOOLS_SERVICE_NAME / LOG_LEVEL, set per component in template.yaml.
logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace=METRICS_NAMESPACE)
