"""What the DynamoDB, EventBridge and SQS adapters send, request by request, on a stubbed client: a refused
condition is answered without a second read, and a batch of events whose bus refuses some entries
sends those again, only those."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import ANY, Stubber

from mistersmith.adapters.dynamodb import DynamoTaskStore
from mistersmith.adapters.eventbridge import EventBridgePublisher
from mistersmith.adapters.sqs import SqsWorkQueue
from mistersmith.errors import TransitionRejected
from mistersmith.event_batching import BatchingPublisher
from mistersmith.models import TaskStatus
from mistersmith.ports import Event

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def test_a_refused_transition_reads_the_current_status_from_the_refusal_itself():
    store = DynamoTaskStore("tasks")
    store._ddb = boto3.session.Session().client("dynamodb")
    with Stubber(store._ddb) as stub:
        # Given a table whose record has moved on: the refusal carries the record (ALL_OLD)
        stub.add_client_error(
            "update_item",
            service_error_code="ConditionalCheckFailedException",
            http_status_code=400,
            expected_params={
                "TableName": "tasks",
                "Key": {"id": {"S": "t"}},
                "UpdateExpression": ANY,
                "ConditionExpression": ANY,
                "ExpressionAttributeNames": ANY,
                "ExpressionAttributeValues": ANY,
                "ReturnValues": "ALL_NEW",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            },
            modeled_fields={
                "Item": {
                    "id": {"S": "t"},
                    "status": {"S": "RUNNING"},
                    "task_type": {"S": "execute"},
                    "created_at": {"S": "2026-11-29T00:00:00Z"},
                    "updated_at": {"S": "2026-11-29T00:00:00Z"},
                }
            },
        )
        # When the router notes it / Then the refusal names the status, with no GetItem after it
        with pytest.raises(TransitionRejected) as refused:
            store.transition(
                "t",
                TaskStatus.QUEUED,
                allowed_from={TaskStatus.QUEUED},
                changes={"routed_at": "2026-11-29T00:00:00Z"},
            )
        stub.assert_no_pending_responses()
    assert refused.value.current == TaskStatus.RUNNING.value


def test_a_refused_transition_of_a_missing_record_says_there_is_none():
    store = DynamoTaskStore("tasks")
    store._ddb = boto3.session.Session().client("dynamodb")
    with Stubber(store._ddb) as stub:
        stub.add_client_error("update_item", service_error_code="ConditionalCheckFailedException")
        with pytest.raises(TransitionRejected) as refused:
            store.transition("t", TaskStatus.QUEUED, allowed_from={TaskStatus.QUEUED}, changes={})
    assert refused.value.current is None


def events(n: int) -> list[Event]:
    return [Event(source="s", detail_type="Task Status Changed", detail={"id": f"t{i}"}) for i in range(n)]


def entry_ok(i: int) -> dict[str, str]:
    return {"EventId": f"e{i}"}


def test_a_batch_is_one_put_events_and_only_the_refused_entries_go_again():
    bus = EventBridgePublisher("bus")
    with Stubber(bus._events) as stub:
        # Given a bus that throttles the second of three entries once
        stub.add_response(
            "put_events",
            {
                "FailedEntryCount": 1,
                "Entries": [
                    entry_ok(0),
                    {"ErrorCode": "ThrottlingException", "ErrorMessage": "slow down"},
                    entry_ok(2),
                ],
            },
            {"Entries": [ANY, ANY, ANY]},
        )
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 0, "Entries": [entry_ok(1)]},
            {"Entries": [{"EventBusName": "bus", "Source": "s", "DetailType": ANY, "Detail": '{"id":"t1"}'}]},
        )
        # When three status events are published through the batching publisher
        publisher = BatchingPublisher(bus, window_seconds=3600, backoff_seconds=0)
        for event in events(3):
            publisher.publish(source=event.source, detail_type=event.detail_type, detail=event.detail)
        publisher.flush()
        # Then two requests went out, the second with the refused entry alone
        stub.assert_no_pending_responses()


def test_the_adapter_names_each_refused_entry_and_whether_to_try_again():
    bus = EventBridgePublisher("bus")
    with Stubber(bus._events) as stub:
        stub.add_response(
            "put_events",
            {
                "FailedEntryCount": 2,
                "Entries": [
                    {"ErrorCode": "MalformedDetail", "ErrorMessage": "no"},
                    entry_ok(1),
                    {"ErrorCode": "InternalFailure", "ErrorMessage": "oops"},
                ],
            },
        )
        refused = bus.publish_batch(events(3))
        stub.assert_no_pending_responses()
    assert [(r.event.detail["id"], r.retryable) for r in refused] == [("t0", False), ("t2", True)]


def test_a_batch_send_splits_at_ten_messages_and_at_the_request_size_and_names_what_failed():
    queue = SqsWorkQueue("https://sqs.us-east-1.amazonaws.com/123456789012/work")
    queue._sqs = boto3.session.Session().client("sqs")
    big = "x" * (200 * 1024)
    # Given twelve small messages, then two that do not fit one request together
    messages = [(f"m{n}", None) for n in range(12)] + [(big, "Root=1-a"), (big, None)]
    with Stubber(queue._sqs) as stub:
        # When they are sent / Then ten go in the first request, two and a big one in the second,
        # the last big one alone; the queue's refusal of one entry is answered by its index
        for ids, failed in (
            (range(10), []),
            (range(10, 13), [{"Id": "11", "SenderFault": False, "Code": "InternalError"}]),
            (range(13, 14), []),
        ):
            stub.add_response(
                "send_message_batch",
                {"Successful": [], "Failed": failed},
                {
                    "QueueUrl": queue.url,
                    "Entries": [
                        {"Id": str(i), "MessageBody": ANY, "MessageSystemAttributes": ANY} for i in ids
                    ],
                },
            )
        assert queue.send_batch(messages) == [11]
        stub.assert_no_pending_responses()


def test_a_batch_request_that_fails_as_a_whole_names_each_of_its_messages():
    queue = SqsWorkQueue("https://sqs.us-east-1.amazonaws.com/123456789012/work")
    queue._sqs = boto3.session.Session().client("sqs")
    with Stubber(queue._sqs) as stub:
        stub.add_client_error("send_message_batch", service_error_code="KMS.ThrottlingException")
        assert queue.send_batch([("a", None), ("b", None)]) == [0, 1]
