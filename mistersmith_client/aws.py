"""What the client reads from AWS itself: credentials, stack outputs, artifacts, dead-letter queues.
Endpoints and credentials come from the usual AWS chain (AWS_PROFILE, AWS_ENDPOINT_URL, ...)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import BotoCoreError, ClientError

from mistersmith_client.errors import AwsCallFailed, ConfigurationError
from mistersmith_client.settings import ClientSettings

# StartMessageMoveTask answers these where it does not exist (moto answers a bare 500).
_MOVE_TASK_UNSUPPORTED = frozenset({"UnsupportedOperation", "InvalidAction", "NotImplemented", "500", "501"})
# A DLQ message is hidden this long while it is shown or moved, then visible again if not deleted.
_PEEK_VISIBILITY_SECONDS = 30


@cache
def session(profile: str | None, region: str | None) -> boto3.session.Session:
    return boto3.session.Session(profile_name=profile, region_name=region)


def credentials_provider(profile: str | None) -> Callable[[], ReadOnlyCredentials]:
    """Frozen credentials from the default chain, fetched again per request (they may rotate)."""

    def current() -> ReadOnlyCredentials:
        credentials = session(profile, None).get_credentials()
        if credentials is None:
            raise ConfigurationError(
                "no AWS credentials to sign with: configure a profile (AWS_PROFILE), environment "
                "variables or an instance role, or use --auth api-key"
            )
        return credentials.get_frozen_credentials()

    return current


def stack_outputs(settings: ClientSettings) -> dict[str, str]:
    if not settings.stack_name:
        return {}
    return _outputs(settings.stack_name, settings.profile, settings.region)


@cache
def _outputs(stack_name: str, profile: str | None, region: str | None) -> dict[str, str]:
    try:
        stacks = session(profile, region).client("cloudformation").describe_stacks(StackName=stack_name)
    except (ClientError, BotoCoreError) as error:
        raise ConfigurationError(f"cannot read the outputs of stack {stack_name!r}: {error}") from error
    outputs = stacks["Stacks"][0].get("Outputs", [])
    return {output["OutputKey"]: output["OutputValue"] for output in outputs}


def download(uri: str, directory: Path, settings: ClientSettings) -> Path:
    """Copies an s3:// artifact into `directory` (under its key's last part) and returns the path."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
        raise ConfigurationError(f"{uri} is not an s3:// URI")
    target = directory / Path(parts.path).name
    directory.mkdir(parents=True, exist_ok=True)
    try:
        session(settings.profile, settings.region).client("s3").download_file(
            parts.netloc, parts.path.lstrip("/"), str(target)
        )
    except (ClientError, BotoCoreError) as error:
        raise AwsCallFailed(f"cannot download {uri}: {error}") from error
    return target


# ---------------------------------------------------------------- dead-letter queues


@dataclass(frozen=True)
class DeadLetterQueue:
    name: str
    url: str
    # Where a redrive sends messages back to; None where there is no task queue to go back to.
    source_url: str | None


@dataclass
class DeadLetter:
    message_id: str
    task_id: str | None
    task_type: str | None
    receive_count: int
    sent_at: str | None
    body: str = field(repr=False)


@dataclass
class RedriveResult:
    queue: str
    moved: int = 0
    task_handle: str | None = None
    method: str = "receive-send-delete"


class DeadLetters:
    """Lists and redrives the stack's dead-letter queues over SQS."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self._session = session(settings.profile, settings.region)
        self._sqs = self._session.client("sqs")

    def queues(self) -> list[DeadLetterQueue]:
        """From the stack's outputs, else MISTERSMITH_*_DLQ_URL, else the source queues' redrive policies."""
        outputs = stack_outputs(self.settings)
        if outputs:
            found = [
                ("work", outputs.get("WorkDLQUrl"), outputs.get("WorkQueueUrl")),
                ("analyze", outputs.get("AnalyzeDLQUrl"), outputs.get("AnalyzeQueueUrl")),
                ("router", outputs.get("RouterDLQUrl"), None),
            ]
        else:
            found = [
                ("work", self.settings.work_dlq_url, self.settings.work_queue_url),
                ("analyze", self.settings.analyze_dlq_url, self.settings.analyze_queue_url),
                ("router", self.settings.router_dlq_url, None),
            ]
            found = [(name, dlq or self._dlq_of(source), source) for name, dlq, source in found]
        queues = [DeadLetterQueue(name, dlq, source) for name, dlq, source in found if dlq]
        if not queues:
            raise ConfigurationError(
                "no dead-letter queues found: pass --stack-name, or set MISTERSMITH_WORK_DLQ_URL (or "
                "WORK_QUEUE_URL, as the local stack's .local/env does)"
            )
        return queues

    def depth(self, queue: DeadLetterQueue) -> int:
        attributes = self._call(
            "get_queue_attributes", QueueUrl=queue.url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def peek(self, queue: DeadLetterQueue, limit: int) -> list[DeadLetter]:
        """Up to `limit` messages, made visible again at once (their receive count still goes up)."""
        letters: list[DeadLetter] = []
        while len(letters) < limit:
            messages = self._receive(queue, min(10, limit - len(letters)))
            if not messages:
                break
            letters += [_letter(message) for message in messages]
            for message in messages:
                self._call(
                    "change_message_visibility",
                    QueueUrl=queue.url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=0,
                )
            if len(messages) < 10:
                break
        return letters

    def redrive(self, queue: DeadLetterQueue, limit: int | None = None) -> RedriveResult:
        """Sends the queue's messages back to their source queue: with SQS's own message move task
        where it exists and no limit is asked for, otherwise message by message (receive, send,
        delete: a crash in between leaves a copy in both queues, never in neither)."""
        if queue.source_url is None:
            raise ConfigurationError(
                f"the {queue.name} dead-letter queue holds bus events and stream batches the router gave up "
                "on, not task messages: put events back on the bus (aws events put-events); the reconciler "
                "sends the tasks of a stream batch once they are RoutingMaximumRecordAgeSeconds old"
            )
        result = RedriveResult(queue.name)
        if limit is None:
            handle = self._start_move_task(queue)
            if handle is not None:
                result.task_handle, result.method = handle, "StartMessageMoveTask"
                return result
        while limit is None or result.moved < limit:
            messages = self._receive(queue, 10 if limit is None else min(10, limit - result.moved))
            if not messages:
                break
            for message in messages:
                self._call(
                    "send_message",
                    QueueUrl=queue.source_url,
                    MessageBody=message["Body"],
                    **(
                        {"MessageAttributes": message["MessageAttributes"]}
                        if message.get("MessageAttributes")
                        else {}
                    ),
                )
                self._call("delete_message", QueueUrl=queue.url, ReceiptHandle=message["ReceiptHandle"])
                result.moved += 1
        return result

    def _start_move_task(self, queue: DeadLetterQueue) -> str | None:
        # One attempt: where the call is missing, retrying it only delays the fallback.
        sqs = self._session.client("sqs", config=Config(retries={"total_max_attempts": 1}))
        try:
            return sqs.start_message_move_task(
                SourceArn=self._arn(queue.url), DestinationArn=self._arn(queue.source_url or "")
            )["TaskHandle"]
        except ClientError as error:
            if error.response["Error"]["Code"] in _MOVE_TASK_UNSUPPORTED:
                return None
            raise AwsCallFailed(f"cannot start a message move task on {queue.url}: {error}") from error

    def _receive(self, queue: DeadLetterQueue, count: int) -> list[dict[str, Any]]:
        return self._call(
            "receive_message",
            QueueUrl=queue.url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=1,
            VisibilityTimeout=_PEEK_VISIBILITY_SECONDS,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])

    def _arn(self, url: str) -> str:
        return self._call("get_queue_attributes", QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]

    def _dlq_of(self, source_url: str | None) -> str | None:
        if not source_url:
            return None
        attributes = self._call("get_queue_attributes", QueueUrl=source_url, AttributeNames=["RedrivePolicy"])
        policy = attributes.get("Attributes", {}).get("RedrivePolicy")
        if not policy:
            return None
        queue_name = json.loads(policy)["deadLetterTargetArn"].rsplit(":", 1)[-1]
        return self._call("get_queue_url", QueueName=queue_name)["QueueUrl"]

    def _call(self, operation: str, **arguments: Any) -> Any:
        try:
            return getattr(self._sqs, operation)(**arguments)
        except (ClientError, BotoCoreError) as error:
            raise AwsCallFailed(f"SQS {operation} failed: {error}") from error


def _letter(message: dict[str, Any]) -> DeadLetter:
    try:
        body = json.loads(message["Body"])
    except ValueError:
        body = None
    task = body if isinstance(body, dict) else {}
    attributes = message.get("Attributes", {})
    return DeadLetter(
        message_id=message["MessageId"],
        task_id=task.get("id") if isinstance(task.get("id"), str) else None,
        task_type=task.get("task_type") if isinstance(task.get("task_type"), str) else None,
        receive_count=int(attributes.get("ApproximateReceiveCount", 0)),
        sent_at=attributes.get("SentTimestamp"),
        body=message["Body"],
    )


# ---------------------------------------------------------------- logs

# Every line of a task carries its id as correlation_id (the worker's and the functions' alike).
_TASK_QUERY = (
    'fields @timestamp, @log, @message | filter correlation_id = "{task_id}" or task_id = "{task_id}" '
    "| sort @timestamp asc | limit 10000"
)
_QUERY_DONE = frozenset({"Complete", "Failed", "Cancelled", "Timeout", "Unknown"})


def log_groups(settings: ClientSettings) -> list[str]:
    """Every log group of the stack (the functions' and the worker's)."""
    if not settings.stack_name:
        raise ConfigurationError("logs in AWS need the stack: give --stack-name (or MISTERSMITH_STACK_NAME)")
    try:
        pages = (
            session(settings.profile, settings.region)
            .client("cloudformation")
            .get_paginator("list_stack_resources")
            .paginate(StackName=settings.stack_name)
        )
        return [
            resource["PhysicalResourceId"]
            for page in pages
            for resource in page["StackResourceSummaries"]
            if resource["ResourceType"] == "AWS::Logs::LogGroup"
        ]
    except (ClientError, BotoCoreError) as error:
        raise ConfigurationError(f"cannot list the log groups of {settings.stack_name!r}: {error}") from error


def task_log_lines(
    settings: ClientSettings,
    task_id: str,
    *,
    since: float,
    until: float,
    sleep: Callable[[float], None],
) -> list[tuple[str, str, str]]:
    """(timestamp, log group, message) of every line of the task between two epoch seconds, by a
    Logs Insights query across the stack's log groups."""
    logs = session(settings.profile, settings.region).client("logs")
    try:
        query_id = logs.start_query(
            logGroupNames=log_groups(settings),
            startTime=int(since),
            endTime=int(until) + 1,
            queryString=_TASK_QUERY.format(task_id=task_id),
        )["queryId"]
        while (answer := logs.get_query_results(queryId=query_id))["status"] not in _QUERY_DONE:
            sleep(0.5)
    except (ClientError, BotoCoreError) as error:
        raise AwsCallFailed(f"Logs Insights query failed: {error}") from error
    if answer["status"] != "Complete":
        raise AwsCallFailed(f"Logs Insights query ended {answer['status']}")
    rows = [{cell["field"]: cell["value"] for cell in row} for row in answer["results"]]
    return [(row.get("@timestamp", ""), row.get("@log", ""), row.get("@message", "")) for row in rows]
