"""Lambda's event source mapping on a DynamoDB stream, as the template configures it (Events of type
DynamoDB): reads the table's stream on moto, keeps the records the filter criteria match, and
invokes the function with batches of them in order, with the same batch size and window, partial
batch responses, bisection on error, bounded retries and an on-failure destination."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# How often Lambda reads each shard (four times a second).
POLL_SECONDS = 0.25
READ_LIMIT = 1000
# Pause before a failed batch is invoked again.
RETRY_SECONDS = 0.5


@dataclass(frozen=True)
class StreamMapping:
    """What the template says about one function's stream mapping."""

    function: str
    stream_arn: str
    batch_size: int = 100
    batching_window_seconds: float = 0.0
    filters: tuple[dict[str, Any], ...] = ()
    bisect: bool = False
    report_item_failures: bool = False
    # -1: until the record expires, as Lambda's default.
    max_retries: int = -1
    on_failure_url: str = ""


def matches(pattern: Any, value: Any) -> bool:
    """Lambda's filter rule for what the template uses: a list holds the allowed values, an object
    names fields that must all be there and match."""
    if isinstance(pattern, list):
        return not isinstance(value, (dict, list)) and value in pattern
    if not isinstance(pattern, dict) or not isinstance(value, dict):
        return False
    return all(key in value and matches(sub, value[key]) for key, sub in pattern.items())


@dataclass
class StreamPoller:
    """One mapping's reader: `poll` reads once and delivers what is due; call it until stopping."""

    mapping: StreamMapping
    streams: Any  # a boto3 dynamodbstreams client
    invoke: Callable[[dict[str, Any]], Any]
    stopping: threading.Event
    sqs: Any = None  # a boto3 sqs client, for the on-failure destination
    # Invocations made, one per delivered batch (the AWS-call bench counts them).
    deliveries: int = 0
    _iterator: str | None = None
    _last_sequence: str | None = None
    _pending: list[dict[str, Any]] = field(default_factory=list)
    _first_pending_at: float = 0.0

    def poll(self) -> None:
        records = self._read()
        matched = [record for record in records if self._wanted(record)]
        if matched and not self._pending:
            self._first_pending_at = time.monotonic()
        self._pending += matched
        window_over = time.monotonic() - self._first_pending_at >= self.mapping.batching_window_seconds
        while self._pending and (len(self._pending) >= self.mapping.batch_size or window_over):
            batch = self._pending[: self.mapping.batch_size]
            self._pending = self._pending[self.mapping.batch_size :]
            self._process(batch)
            self._first_pending_at = time.monotonic()
        if len(records) < READ_LIMIT:  # more may be waiting: read again at once
            self.stopping.wait(POLL_SECONDS)

    def _read(self) -> list[dict[str, Any]]:
        if self._iterator is None:
            self._iterator = self._shard_iterator()
        try:
            answer = self.streams.get_records(ShardIterator=self._iterator, Limit=READ_LIMIT)
        except Exception:
            self._iterator = None  # read again from the last record taken
            raise
        self._iterator = answer.get("NextShardIterator")
        records: list[dict[str, Any]] = answer.get("Records", [])
        if records:
            self._last_sequence = records[-1]["dynamodb"]["SequenceNumber"]
        return [self._as_lambda_record(record) for record in records]

    def _shard_iterator(self) -> str:
        stream = self.streams.describe_stream(StreamArn=self.mapping.stream_arn)["StreamDescription"]
        shard = stream["Shards"][0]["ShardId"]
        position: dict[str, str] = {"ShardIteratorType": "TRIM_HORIZON"}
        if self._last_sequence is not None:
            position = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": self._last_sequence}
        iterator: str = self.streams.get_shard_iterator(
            StreamArn=self.mapping.stream_arn, ShardId=shard, **position
        )["ShardIterator"]
        return iterator

    def _as_lambda_record(self, record: dict[str, Any]) -> dict[str, Any]:
        dynamodb = dict(record["dynamodb"])
        created = dynamodb.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            dynamodb["ApproximateCreationDateTime"] = created.timestamp()
        return record | {"dynamodb": dynamodb, "eventSourceARN": self.mapping.stream_arn}

    def _wanted(self, record: dict[str, Any]) -> bool:
        return not self.mapping.filters or any(matches(pattern, record) for pattern in self.mapping.filters)

    def _process(self, batch: list[dict[str, Any]]) -> None:
        """Invokes until the batch is done: from the lowest failed record on after a partial failure;
        split in two after an error (when bisecting); given up after the retries (to the destination)."""
        retries = 0
        while batch:
            self.deliveries += 1
            try:
                answer = self.invoke({"Records": batch}) or {}
            except Exception:
                if self.mapping.bisect and len(batch) > 1:
                    half = len(batch) // 2
                    self._process(batch[:half])
                    self._process(batch[half:])
                    return
                failed_from = 0
            else:
                failed = {
                    item["itemIdentifier"]
                    for item in (
                        answer.get("batchItemFailures", []) if self.mapping.report_item_failures else []
                    )
                }
                if not failed:
                    return
                failed_from = min(
                    (
                        index
                        for index, record in enumerate(batch)
                        if record["dynamodb"]["SequenceNumber"] in failed
                    ),
                    default=0,  # an identifier of no record in the batch: Lambda retries it all
                )
            batch = batch[failed_from:]
            retries += 1
            if self.stopping.is_set():
                return
            if 0 <= self.mapping.max_retries < retries:
                self._give_up(batch)
                return
            self.stopping.wait(RETRY_SECONDS)

    def _give_up(self, batch: list[dict[str, Any]]) -> None:
        """What Lambda sends the on-failure destination: where the batch was, not the records."""
        if not self.mapping.on_failure_url:
            return
        record = {
            "requestContext": {"condition": "RetryAttemptsExhausted", "functionArn": self.mapping.function},
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "DDBStreamBatchInfo": {
                "streamArn": self.mapping.stream_arn,
                "startSequenceNumber": batch[0]["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": batch[-1]["dynamodb"]["SequenceNumber"],
                "batchSize": len(batch),
            },
        }
        self.sqs.send_message(QueueUrl=self.mapping.on_failure_url, MessageBody=json.dumps(record))
