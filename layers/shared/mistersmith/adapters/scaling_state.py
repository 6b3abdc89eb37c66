"""The autoscaler's record in the state table, and the worker tasks' times read from it.

The record is a control item, id `control#autoscaler#<service>`, with no `status` or `task_type`:
task listings filter on attribute_exists(task_type) and the by-status index skips items without a
status, so it never shows up as a task."""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from mistersmith.adapters.aws import client
from mistersmith.clock import epoch_from_iso, iso_from_epoch
from mistersmith.models import ScalingDecisionEntry, TaskStatus, TaskType
from mistersmith.observability import logger
from mistersmith.ports import (
    LastAction,
    Observation,
    QueueDepth,
    ScalingState,
    ServiceCounts,
    TaskTimes,
    TaskTimeSource,
)

if TYPE_CHECKING:
    from mistersmith.scaling import Decision

CONTROL_PREFIX = "control#autoscaler#"
# Decisions are kept two hours (DynamoDB's TTL deletes within days; readers ask for the last hour).
DECISION_TTL_SECONDS = 2 * 3600
STATUS_INDEX = "by-status"
# The task types the Fargate workers run (analyze runs in a Lambda and says nothing about them).
WORKER_TASK_TYPES = (TaskType.COMPILE, TaskType.EXECUTE)


_deserializer = TypeDeserializer()


def control_id(service_name: str) -> str:
    return f"{CONTROL_PREFIX}{service_name}"


def _number(value: float) -> dict[str, str]:
    return {"N": str(Decimal(repr(float(value))).normalize()) if isinstance(value, float) else str(value)}


class DynamoScalingState(ScalingState):
    """Implements `ports.ScalingState` as one item per worker service, versioned for conditional puts."""

    def __init__(self, table_name: str, service_name: str) -> None:
        self._table = table_name
        self.record_id = control_id(service_name)
        self._ddb = client("dynamodb")

    def last_action(self) -> LastAction | None:
        response = self._ddb.get_item(
            TableName=self._table, Key={"id": {"S": self.record_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        return _decode(item) if item else None

    def record(self, action: LastAction, *, previous: LastAction | None) -> bool:
        if previous is None:
            condition, values = "attribute_not_exists(id)", {}
        else:
            condition, values = "version = :expected", {":expected": _number(previous.version)}
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=_encode(self.record_id, action),
                ConditionExpression=condition,
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def record_decision(
        self, decision: Decision, *, now: float, depth: QueueDepth, counts: ServiceCounts
    ) -> None:
        entry = ScalingDecisionEntry(
            at=iso_from_epoch(now),
            desired=decision.desired,
            previous=decision.previous,
            reason=decision.reason,
            changed=decision.changed,
            visible=depth.visible,
            in_flight=depth.in_flight,
            delayed=depth.delayed,
            running=counts.running,
            pending=counts.pending,
        )
        # Its own item, found through the by-status index under the history's own partition.
        item = {
            name: {"BOOL": value}
            if isinstance(value, bool)
            else {"N": str(value)}
            if isinstance(value, int)
            else {"S": value}
            for name, value in entry.model_dump().items()
        }
        item |= {
            "id": {"S": f"{self.record_id}#decision#{entry.at}#{secrets.token_hex(4)}"},
            "status": {"S": history_partition(self.record_id)},
            "created_at": {"S": entry.at},
            "expires_at": {"N": str(int(now) + DECISION_TTL_SECONDS)},
        }
        try:
            self._ddb.put_item(TableName=self._table, Item=item)
        except ClientError as error:  # the history is for people; scaling goes on without it
            logger.warning("scaling decision not kept", extra={"error": str(error)})


class DynamoScalingHistory:
    """The decisions DynamoScalingState kept for one worker service."""

    def __init__(self, table_name: str, service_name: str) -> None:
        self._table = table_name
        self._partition = history_partition(control_id(service_name))
        self._ddb = client("dynamodb")

    def since(self, at: str) -> list[ScalingDecisionEntry]:
        pages = self._ddb.get_paginator("query").paginate(
            TableName=self._table,
            IndexName=STATUS_INDEX,
            KeyConditionExpression="#status = :history AND created_at >= :since",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":history": {"S": self._partition}, ":since": {"S": at}},
        )
        return [
            ScalingDecisionEntry.model_validate(
                {name: _deserializer.deserialize(value) for name, value in item.items()}
            )
            for page in pages
            for item in page.get("Items", [])
        ]


def history_partition(record_id: str) -> str:
    return f"{record_id}#decisions"


def _encode(record_id: str, action: LastAction) -> dict[str, Any]:
    item = {
        "id": {"S": record_id},
        "record_type": {"S": "autoscaler"},
        "at": _number(action.at),
        "desired": _number(action.desired),
        "base": _number(action.base),
        "adjustment": _number(action.adjustment),
        "version": _number(action.version),
        "updated_at": {"S": iso_from_epoch(action.seen.at if action.seen else action.at)},
    }
    if action.seen is not None:
        item |= {
            "seen_at": _number(action.seen.at),
            "seen_waiting": _number(action.seen.waiting),
            "seen_busy": _number(action.seen.busy),
            "seen_load": _number(action.seen.load),
        }
    return item


def _decode(item: dict[str, Any]) -> LastAction:
    def number(name: str) -> float:
        return float(item[name]["N"])

    seen = None
    if "seen_at" in item:
        seen = Observation(
            at=number("seen_at"),
            waiting=int(number("seen_waiting")),
            busy=int(number("seen_busy")),
            load=number("seen_load") if "seen_load" in item else 0.0,
        )
    return LastAction(
        at=number("at"),
        desired=int(number("desired")),
        base=int(number("base")),
        adjustment=int(number("adjustment")),
        seen=seen,
        version=int(number("version")),
    )


class DynamoTaskTimes(TaskTimeSource):
    """Implements `ports.TaskTimeSource` on the by-status index (status, created_at): a Query of the
    newest SUCCEEDED worker tasks (at most `sample`, in pages of as many), then one of the RUNNING
    ones created since the oldest of those (a key condition, so only that cohort is read). Items are
    projected to the times the estimate needs."""

    def __init__(self, table_name: str) -> None:
        self._table = table_name
        self._ddb = client("dynamodb")

    def task_times(self, *, sample: int) -> TaskTimes:
        done = self._query(TaskStatus.SUCCEEDED, "duration_ms", since=None, most=sample)
        since = min((item["created_at"]["S"] for item in done), default=None)
        running = self._query(TaskStatus.RUNNING, "started_at", since=since, most=None)
        return TaskTimes(
            tuple((epoch_from_iso(i["created_at"]["S"]), float(i["duration_ms"]["N"]) / 1000) for i in done),
            tuple(
                (epoch_from_iso(i["created_at"]["S"]), epoch_from_iso(i["started_at"]["S"])) for i in running
            ),
        )

    def _query(self, status: TaskStatus, needed: str, *, since: str | None, most: int | None) -> list[Any]:
        values: dict[str, Any] = {":status": {"S": status.value}}
        values |= {f":type{i}": {"S": task_type.value} for i, task_type in enumerate(WORKER_TASK_TYPES)}
        types = ", ".join(f":type{i}" for i in range(len(WORKER_TASK_TYPES)))
        key = "#status = :status"
        if since is not None:
            key += " AND created_at >= :since"
            values[":since"] = {"S": since}
        pages = self._ddb.get_paginator("query").paginate(
            TableName=self._table,
            IndexName=STATUS_INDEX,
            KeyConditionExpression=key,
            FilterExpression=f"task_type IN ({types}) AND attribute_exists({needed})",
            ProjectionExpression=f"created_at, {needed}",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=values,
            ScanIndexForward=False,
            PaginationConfig={"MaxItems": most, "PageSize": most} if most else {},
        )
        return [item for page in pages for item in page.get("Items", [])]
