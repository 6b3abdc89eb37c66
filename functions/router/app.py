"""Router: fed by the task table's stream (new QUEUED tasks, in batches) and by the bus rule for
`Worker Task` events (recorded, then routed from the stream like intake's)."""

from __future__ import annotations

from functools import cache
from typing import Any

from mistersmith import wiring
from mistersmith.adapters.dynamodb import task_from_image
from mistersmith.observability import logger, tracer
from mistersmith.routing import Router
from mistersmith.settings import RouterSettings, load


@cache
def get_router() -> Router:
    return wiring.router(load(RouterSettings))


# No correlation path: each task's lines carry its id (task_context), which a global key would outlive.
@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if "Records" in event:
        # The stream's inserts: a task not sent is reported by its record's sequence number, and
        # the mapping delivers it (and those after it) again.
        sequence = {}
        tasks = []
        for record in event["Records"]:
            task = task_from_image(record["dynamodb"]["NewImage"])
            sequence[task.id] = record["dynamodb"]["SequenceNumber"]
            tasks.append(task)
        failed = get_router().route_inserts(tasks)
        return {"batchItemFailures": [{"itemIdentifier": sequence[task_id]} for task_id in failed]}
    task_id, outcome = get_router().accept(event["detail"])
    return {"task_id": task_id, "outcome": outcome.value}
