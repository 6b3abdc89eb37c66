"""Dead letter: consumes the work and analyze DLQs and ends each task DEAD_LETTERED, visibly."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from mistersmith import wiring
from mistersmith.dead_letters import DeadLetters
from mistersmith.models import TaskMessage
from mistersmith.observability import logger, tracer
from mistersmith.settings import LifecycleSettings, load

_batch = BatchProcessor(event_type=EventType.SQS)


@cache
def get_dead_letters() -> DeadLetters:
    return DeadLetters(wiring.lifecycle(load(LifecycleSettings)))


def record_dead_letter(record: SQSRecord) -> None:
    message = TaskMessage.model_validate_json(record.body)
    get_dead_letters().record(message, receive_count=int(record.attributes.approximate_receive_count))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=record_dead_letter, processor=_batch, context=context
    )
