"""One place that creates Logger, Tracer and Metrics, with one namespace and service name."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

# Service name, namespace and level come from POWERTOOLS_* / LOG_LEVEL, set per function in template.yaml.
logger = Logger()
tracer = Tracer()
metrics = Metrics()
