"""The local stack's stream mapping (local_stack/streams.py) on an in-memory stream: the template's
filter, batch size, partial batch responses, bisection and retries, as Lambda applies them."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from local_stack.streams import StreamMapping, StreamPoller, matches

pytestmark = pytest.mark.unit

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/tasks/stream/label"
PATTERN = {
    "eventName": ["INSERT"],
    "dynamodb": {"NewImage": {"status": {"S": ["QUEUED"]}, "region": {"S": ["r1"]}}},
}


def record(
    sequence: int, *, event: str = "INSERT", status: str = "QUEUED", region: str = "r1"
) -> dict[str, Any]:
    image = {"id": {"S": f"t{sequence}"}, "status": {"S": status}, "region": {"S": region}}
    return {"eventName": event, "dynamodb": {"SequenceNumber": str(sequence), "NewImage": image}}


class Stream:
    """A one-shard stream: each read answers what was written since the iterator's position."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records
        self.reads = 0

    def describe_stream(self, StreamArn: str) -> dict[str, Any]:  # noqa: N803 - boto3's names
        return {"StreamDescription": {"Shards": [{"ShardId": "s"}]}}

    def get_shard_iterator(self, **_: Any) -> dict[str, Any]:
        return {"ShardIterator": "0"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:  # noqa: N803
        self.reads += 1
        start = int(ShardIterator)
        return {"Records": self.records[start : start + Limit], "NextShardIterator": str(len(self.records))}


class Outbox:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_message(self, **request: Any) -> None:
        self.sent.append(request)


def poller(records: list[dict[str, Any]], invoke: Any, **mapping: Any) -> tuple[StreamPoller, Outbox]:
    outbox = Outbox()
    stopping = threading.Event()
    config = StreamMapping("Router", ARN, filters=(PATTERN,), **mapping)
    return StreamPoller(config, Stream(records), invoke, stopping, sqs=outbox), outbox


def ids(event: dict[str, Any]) -> list[str]:
    return [item["dynamodb"]["SequenceNumber"] for item in event["Records"]]


def test_the_filter_keeps_only_this_regions_queued_inserts():
    assert matches(PATTERN, record(1))
    assert not matches(PATTERN, record(2, event="MODIFY"))
    assert not matches(PATTERN, record(3, status="FAILED"))
    assert not matches(PATTERN, record(4, region="r2"))
    assert not matches(
        PATTERN, {"eventName": "INSERT", "dynamodb": {"NewImage": {"status": {"S": "QUEUED"}}}}
    )


def test_matching_records_are_delivered_in_order_in_batches_of_the_mapping_size():
    # Given seven inserts, two of which the filter drops
    delivered: list[list[str]] = []
    records = [record(n) for n in range(5)] + [record(5, event="MODIFY"), record(6, region="r2")]
    reader, _ = poller(records, lambda event: delivered.append(ids(event)), batch_size=2)
    # When the stream is read once / Then the five are delivered two at a time, in order
    reader.poll()
    assert delivered == [["0", "1"], ["2", "3"], ["4"]]
    assert reader.deliveries == 3


def test_a_partial_failure_is_delivered_again_from_the_lowest_failed_record():
    delivered: list[list[str]] = []

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        delivered.append(ids(event))
        failed = ["3", "2"] if len(delivered) == 1 else []
        return {"batchItemFailures": [{"itemIdentifier": item} for item in failed]}

    reader, _ = poller([record(n) for n in range(5)], invoke, report_item_failures=True)
    reader.poll()
    assert delivered == [["0", "1", "2", "3", "4"], ["2", "3", "4"]]


def test_an_error_splits_the_batch_until_the_failing_record_is_alone_and_gives_it_up_after_the_retries():
    delivered: list[list[str]] = []

    def invoke(event: dict[str, Any]) -> None:
        delivered.append(ids(event))
        if "2" in ids(event):
            raise RuntimeError("the router crashed")

    reader, outbox = poller([record(n) for n in range(4)], invoke, bisect=True, max_retries=1)
    reader.poll()
    # The others are delivered once more; the failing one alone, once and once again, then given
    # up (no destination here: nothing is sent anywhere)
    assert delivered == [["0", "1", "2", "3"], ["0", "1"], ["2", "3"], ["2"], ["2"], ["3"]]
    assert outbox.sent == []


def test_a_batch_given_up_is_named_to_the_on_failure_destination():
    def invoke(event: dict[str, Any]) -> None:
        raise RuntimeError("the router crashed")

    reader, outbox = poller([record(7)], invoke, max_retries=0, on_failure_url="https://dlq")
    reader.poll()
    assert len(outbox.sent) == 1
    assert '"startSequenceNumber": "7"' in outbox.sent[0]["MessageBody"]
