"""Autoscaler: scheduled every minute; sets the worker service's desired count from the queue."""

from __future__ import annotations

from functools import cache
from typing import Any

from mistersmith import wiring
from mistersmith.autoscaler import Autoscaler
from mistersmith.observability import logger, tracer
from mistersmith.settings import AutoscalerSettings, load


@cache
def get_autoscaler() -> Autoscaler:
    return wiring.autoscaler(load(AutoscalerSettings))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    decision = get_autoscaler().run()
    # One reply shape: without a decision the counts are unknown (null), not left out.
    if decision is None:
        return {
            "changed": False,
            "desired_count": None,
            "previous_desired_count": None,
            "adjustment": 0,
            "reason": "nothing applied: inputs unavailable (see the log)",
        }
    return {
        "changed": decision.changed,
        "desired_count": decision.desired,
        "previous_desired_count": decision.previous,
        "adjustment": decision.adjustment,
        "reason": decision.reason,
    }
