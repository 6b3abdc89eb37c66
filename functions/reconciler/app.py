"""Reconciler: scheduled every minute; puts back on their way tasks that nothing else will move."""

from __future__ import annotations

from functools import cache
from typing import Any

from mistersmith import wiring
from mistersmith.observability import logger, tracer
from mistersmith.reconciling import Reconciler
from mistersmith.settings import ReconcilerSettings, load


@cache
def get_reconciler() -> Reconciler:
    return wiring.reconciler(load(ReconcilerSettings))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    report = get_reconciler().run()
    return {"requeued": report.requeued, "routed": report.routed, "dead_lettered": report.dead_lettered}
