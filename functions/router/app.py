"""Router: the target of the bus rule for `Worker Task` events."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, event_source

from mistersmith import wiring
from mistersmith.observability import logger, tracer
from mistersmith.routing import Router
from mistersmith.settings import RouterSettings, load


@cache
def get_router() -> Router:
    return wiring.router(load(RouterSettings))


# No correlation path: each task's lines carry its id (task_context), which a global key would outlive.
@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_source(data_class=EventBridgeEvent)
def handler(event: EventBridgeEvent, context: Any) -> dict[str, str]:
    task_id, outcome = get_router().route(event.detail)
    return {"task_id": task_id, "outcome": outcome.value}
