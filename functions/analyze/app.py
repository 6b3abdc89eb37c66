"""Analyze: runs short analyze tasks from the analyze queue, with partial batch responses."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from mistersmith import wiring
from mistersmith.models import TaskMessage
from mistersmith.observability import logger, tracer
from mistersmith.processing import Disposition, TaskProcessor
from mistersmith.settings import AnalyzeSettings, load

_batch = BatchProcessor(event_type=EventType.SQS)


class RetryLater(Exception):
    """Marks the record failed in the batch response, so SQS redelivers it."""


@cache
def get_processor() -> TaskProcessor:
    return wiring.processor(load(AnalyzeSettings))


def process_record(record: SQSRecord) -> None:
    message = TaskMessage.model_validate_json(record.body)
    attempt = int(record.attributes.approximate_receive_count)
    trace_header = record.attributes.aws_trace_header
    outcome = get_processor().process(message, attempt=attempt, trace_header=trace_header)
    # A Lambda cannot delay one record: what must come back later comes back after the visibility.
    if outcome.disposition in (Disposition.RETRY, Disposition.DEFER):
        raise RetryLater(message.id)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    try:
        return process_partial_response(
            event=event, record_handler=process_record, processor=_batch, context=context
        )
    finally:  # the status events held back for a shared request go out before the Lambda freezes
        get_processor().lifecycle.events.flush()
