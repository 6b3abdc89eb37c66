"""Autoscaler: scheduled every minute; sets the worker service's desired count from queue depth."""

from __future__ import annotations

from functools import cache
from typing import Any

from mistersmith import wiring
from mistersmith.observability import logger, metrics, tracer
from mistersmith.scaling import Autoscaler
from mistersmith.settings import AutoscalerSettings, load


@cache
def get_autoscaler() -> Autoscaler:
    return wiring.autoscaler(load(AutoscalerSettings))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    decision = get_autoscaler().run()
    if decision is None:
        return {"changed": False, "reason": "inputs unavailable"}
    return {"desired_count": decision.desired, "adjustment": decision.adjustment, "reason": decision.reason}
