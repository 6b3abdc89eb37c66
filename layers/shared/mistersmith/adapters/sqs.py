"""A work queue on SQS."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from mistersmith.adapters.aws import client
from mistersmith.observability import logger
from mistersmith.ports import QueueDepth, QueueMessage, WorkQueue

# SendMessageBatch's limits: ten entries, and (for every region's queues alike) 256 KiB in all.
BATCH_ENTRIES = 10
BATCH_BYTES = 256 * 1024
DEPTH_ATTRIBUTES = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


def _depth(answer: dict[str, Any]) -> QueueDepth:
    attributes = answer["Attributes"]
    return QueueDepth(
        visible=int(attributes["ApproximateNumberOfMessages"]),
        in_flight=int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        delayed=int(attributes["ApproximateNumberOfMessagesDelayed"]),
    )


def _trace(trace_header: str | None) -> dict[str, Any]:
    return {"AWSTraceHeader": {"DataType": "String", "StringValue": trace_header}} if trace_header else {}


def _batches(
    messages: Sequence[tuple[str, str | None]],
) -> list[list[tuple[int, tuple[str, str | None]]]]:
    """The messages, with their indexes, in runs that each fit one SendMessageBatch request."""
    batches: list[list[tuple[int, tuple[str, str | None]]]] = []
    size = BATCH_BYTES
    for index, message in enumerate(messages):
        length = len(message[0].encode())
        if not batches or len(batches[-1]) == BATCH_ENTRIES or size + length > BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append((index, message))
        size += length
    return batches


class SqsQueueGauge:
    """One queue's depth and nothing more (GET /stats): its role needs only GetQueueAttributes."""

    def __init__(self, queue_url: str) -> None:
        self.url = queue_url
        self._sqs = client("sqs")

    def queue_depth(self) -> QueueDepth:
        return _depth(self._sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=DEPTH_ATTRIBUTES))


class SqsWorkQueue(WorkQueue):
    """Implements `ports.WorkQueue` for one queue URL."""

    def __init__(self, queue_url: str) -> None:
        self.url = queue_url
        self._sqs = client("sqs")

    def send(self, body: str, *, trace_header: str | None = None, delay_seconds: int = 0) -> str:
        sent = self._sqs.send_message(
            QueueUrl=self.url,
            MessageBody=body,
            DelaySeconds=delay_seconds,
            MessageSystemAttributes=_trace(trace_header),
        )
        return str(sent["MessageId"])

    def send_batch(self, messages: Sequence[tuple[str, str | None]]) -> list[int]:
        failed: list[int] = []
        for batch in _batches(messages):
            entries = [
                {"Id": str(index), "MessageBody": body, "MessageSystemAttributes": _trace(trace_header)}
                for index, (body, trace_header) in batch
            ]
            try:
                response = self._sqs.send_message_batch(QueueUrl=self.url, Entries=entries)
            except Exception:  # none of this request's entries is known to be sent: the caller retries them
                logger.exception("batch send failed", extra={"queue_url": self.url, "entries": len(entries)})
                failed += [index for index, _ in batch]
                continue
            refused = response.get("Failed", [])
            if refused:  # the caller retries them; why is said here, once per request
                reasons = sorted({f"{entry.get('Code')}: {entry.get('Message', '')}" for entry in refused})
                logger.warning("batch entries refused", extra={"queue_url": self.url, "reasons": reasons})
            failed += [int(entry["Id"]) for entry in refused]
        return sorted(failed)

    def receive(self, *, max_messages: int, wait_seconds: int) -> list[QueueMessage]:
        # Before the call: a message's visibility starts after this, so leases dated from it end early.
        asked_at = time.time()
        response = self._sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "AWSTraceHeader"],
        )
        return [
            QueueMessage(
                message_id=message["MessageId"],
                body=message["Body"],
                receipt_handle=message["ReceiptHandle"],
                receive_count=int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)),
                attributes=message.get("Attributes", {}),
                received_at=asked_at,
            )
            for message in response.get("Messages", [])
        ]

    def delete(self, receipt_handle: str) -> None:
        self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=receipt_handle)

    def delete_batch(self, receipt_handles: list[str]) -> list[str]:
        if not receipt_handles:
            return []
        entries = [{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(receipt_handles)]
        response = self._sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)
        return [receipt_handles[int(failed["Id"])] for failed in response.get("Failed", [])]

    def change_visibility(self, receipt_handle: str, seconds: int) -> None:
        self._sqs.change_message_visibility(
            QueueUrl=self.url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )

    def depth(self) -> QueueDepth:
        return _depth(self._sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=DEPTH_ATTRIBUTES))
