"""The task store on a DynamoDB table: key `id`, indexes `by-status` and `by-owner` (status or
owner, created_at)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Collection, MutableSequence, Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from mistersmith.adapters.aws import client
from mistersmith.clock import iso_from_epoch
from mistersmith.errors import InvalidRequest, TransitionRejected
from mistersmith.models import StoredTask, TaskStatus, canonical_json
from mistersmith.ports import TaskStore, claim_refused

STATUS_INDEX = "by-status"
OWNER_INDEX = "by-owner"
# Nested documents are kept as JSON text: DynamoDB maps reject floats and empty keys.
_JSON_FIELDS = frozenset({"payload", "payload_ref", "result"})
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _encode(name: str, value: Any) -> dict[str, Any]:
    if name in _JSON_FIELDS:
        value = canonical_json(value)
    elif isinstance(value, float):
        value = Decimal(repr(value))
    serialized: dict[str, Any] = _serializer.serialize(value)
    return serialized


def task_from_image(item: dict[str, Any]) -> StoredTask:
    """A task from its item in DynamoDB's JSON (as GetItem answers and a stream record's image holds)."""
    data = {name: _deserializer.deserialize(value) for name, value in item.items()}
    for name in _JSON_FIELDS & data.keys():
        data[name] = json.loads(data[name])
    return StoredTask.model_validate(data)


def _encode_token(key: dict[str, Any] | None) -> str | None:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode() if key else None


def _decode_token(token: str | None) -> dict[str, Any] | None:
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError as error:
        raise InvalidRequest("next_token is not a token this API issued") from error
    if not isinstance(key, dict) or "id" not in key:
        raise InvalidRequest("next_token is not a token this API issued")
    return key


class DynamoTaskStore(TaskStore):
    """Implements `ports.TaskStore`: every status change is a conditional update."""

    def __init__(self, table_name: str) -> None:
        self._table = table_name
        self._ddb = client("dynamodb")

    def create(self, task: StoredTask) -> bool:
        item = {
            name: _encode(name, value)
            for name, value in task.model_dump(mode="json", exclude_none=True).items()
        }
        try:
            self._ddb.put_item(
                TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(id)"
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get(self, task_id: str) -> StoredTask | None:
        response = self._ddb.get_item(TableName=self._table, Key={"id": {"S": task_id}}, ConsistentRead=True)
        return task_from_image(response["Item"]) if "Item" in response else None

    def list(
        self,
        *,
        status: TaskStatus | None,
        task_type: str | None,
        limit: int,
        next_token: str | None,
        owner: str | None = None,
    ) -> tuple[list[StoredTask], str | None]:
        request: dict[str, Any] = {"TableName": self._table, "Limit": limit}
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        if start := _decode_token(next_token):
            # A token from another owner's listing would be DynamoDB's error (a 500), not the client's.
            if owner is not None and start.get("owner") != {"S": owner}:
                raise InvalidRequest("next_token is not a token this API issued")
            request["ExclusiveStartKey"] = start
        # Control records (the autoscaler's last action, say) share the table but are not tasks.
        filters = ["attribute_exists(task_type)"]
        if task_type:
            filters.append("task_type = :task_type")
            values[":task_type"] = {"S": task_type}
        if status:
            names["#status"] = "status"
            values[":status"] = {"S": status.value}
        index: tuple[str, str] | None = None  # (name, key condition)
        if owner is not None:
            names["#owner"] = "owner"
            values[":owner"] = {"S": owner}
            index = (OWNER_INDEX, "#owner = :owner")
            if status:
                filters.append("#status = :status")
        elif status:
            index = (STATUS_INDEX, "#status = :status")
        request["FilterExpression"] = " AND ".join(filters)
        if index:
            request |= {"IndexName": index[0], "KeyConditionExpression": index[1], "ScanIndexForward": False}
        if names:
            request["ExpressionAttributeNames"] = names
        if values:
            request["ExpressionAttributeValues"] = values
        response = self._ddb.query(**request) if index else self._ddb.scan(**request)
        items = [task_from_image(item) for item in response.get("Items", [])]
        return items, _encode_token(response.get("LastEvaluatedKey"))

    def count_tasks(self, status: TaskStatus, task_type: str | None = None, owner: str | None = None) -> int:
        # Everyone's: the status is the by-status index's key; one owner's: the by-owner index's.
        names = {"#status": "status"}
        values: dict[str, Any] = {":status": {"S": status.value}}
        filters = []
        condition = "#status = :status"
        if owner is not None:
            condition = "#owner = :owner"
            names["#owner"] = "owner"
            values[":owner"] = {"S": owner}
            filters.append("#status = :status")
        if task_type:
            filters.append("task_type = :task_type")
            values[":task_type"] = {"S": task_type}
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": STATUS_INDEX if owner is None else OWNER_INDEX,
            "Select": "COUNT",
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if filters:
            request["FilterExpression"] = " AND ".join(filters)
        pages = self._ddb.get_paginator("query").paginate(**request)
        return sum(page["Count"] for page in pages)

    def transition(
        self,
        task_id: str,
        target: TaskStatus,
        *,
        allowed_from: Collection[TaskStatus],
        changes: dict[str, Any],
        holder: str | None = None,
    ) -> StoredTask:
        fields = {"status": target.value, **changes}
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values: dict[str, Any] = {}
        sets, removes = [], []
        for placeholder, name in names.items():
            value = fields[name]
            if value is None:
                removes.append(placeholder)
            else:
                values[f":v{placeholder[2:]}"] = _encode(name, value)
                sets.append(f"{placeholder} = :v{placeholder[2:]}")
        sources = sorted(status.value for status in allowed_from)
        for i, source in enumerate(sources):
            values[f":from{i}"] = {"S": source}
        names["#status"] = "status"
        condition = f"#status IN ({', '.join(f':from{i}' for i in range(len(sources)))})"
        if holder is not None:
            names["#worker"] = "worker_id"
            values[":holder"] = {"S": holder}
            condition += " AND #worker = :holder"
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        return self._update(task_id, target, expression, condition, names, values)

    def claim(self, task_id: str, *, worker_id: str, token: str, expires_at: float, now: float) -> StoredTask:
        return self._update(
            task_id,
            TaskStatus.RUNNING,
            "SET #status = :running, worker_id = :worker, lease_expires_at = :lease, "
            "lease_token = :token, attempts = if_not_exists(attempts, :zero) + :one, "
            "started_at = :now_iso, updated_at = :now_iso, claimed_from = #status, "
            "attempt_workers = list_append(if_not_exists(attempt_workers, :none), :workers)",
            "#status = :queued OR (#status = :running AND lease_expires_at < :now)",
            {"#status": "status"},
            {
                ":running": {"S": TaskStatus.RUNNING.value},
                ":queued": {"S": TaskStatus.QUEUED.value},
                ":worker": {"S": worker_id},
                ":token": {"S": token},
                ":lease": _encode("lease_expires_at", expires_at),
                ":now": _encode("lease_expires_at", now),
                ":now_iso": {"S": iso_from_epoch(now)},
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
                ":none": {"L": []},
                ":workers": {"L": [{"S": worker_id}]},
            },
            refused=lambda current: claim_refused(current, task_id, token),
        )

    def renew(self, task_id: str, *, worker_id: str, token: str, expires_at: float, now: float) -> StoredTask:
        return self._update(
            task_id,
            TaskStatus.RUNNING,
            "SET lease_expires_at = :lease",
            "#status = :running AND worker_id = :worker AND lease_token = :token AND lease_expires_at > :now",
            {"#status": "status"},
            {
                ":running": {"S": TaskStatus.RUNNING.value},
                ":worker": {"S": worker_id},
                ":token": {"S": token},
                ":lease": _encode("lease_expires_at", expires_at),
                ":now": _encode("lease_expires_at", now),
            },
        )

    def created_before(
        self, status: TaskStatus, before: str, *, limit: int, unrouted: bool = False
    ) -> Sequence[StoredTask]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": STATUS_INDEX,
            "KeyConditionExpression": "#status = :status AND created_at < :before",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":status": {"S": status.value}, ":before": {"S": before}},
            "ScanIndexForward": True,
        }
        if unrouted:
            request["FilterExpression"] = "attribute_not_exists(routed_at)"
        tasks: MutableSequence[StoredTask] = []
        while len(tasks) < limit:
            response = self._ddb.query(**request)
            tasks += [task_from_image(item) for item in response.get("Items", [])]
            if "LastEvaluatedKey" not in response:
                break
            request["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return tasks[:limit]

    def get_many(self, task_ids: Collection[str]) -> Sequence[StoredTask]:
        tasks: MutableSequence[StoredTask] = []
        ids = [*dict.fromkeys(task_ids)]
        # BatchGetItem takes at most 100 keys; what it leaves unprocessed is asked for again.
        for start in range(0, len(ids), 100):
            keys: dict[str, Any] = {
                self._table: {
                    "Keys": [{"id": {"S": i}} for i in ids[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            while keys:
                response = self._ddb.batch_get_item(RequestItems=keys)
                tasks += [
                    task_from_image(item) for item in response.get("Responses", {}).get(self._table, [])
                ]
                keys = response.get("UnprocessedKeys") or {}
        return tasks

    def _update(
        self,
        task_id: str,
        target: TaskStatus,
        expression: str,
        condition: str,
        names: dict[str, str],
        values: dict[str, Any],
        refused: Callable[[StoredTask | None], StoredTask] | None = None,
    ) -> StoredTask:
        """The conditional update; when the condition fails, `refused` decides on the current record
        (None: there is none; by default: TransitionRejected)."""
        try:
            response = self._ddb.update_item(
                TableName=self._table,
                Key={"id": {"S": task_id}},
                UpdateExpression=expression,
                ConditionExpression=f"attribute_exists(id) AND ({condition})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                # The refusal carries the record as it stood: no second read to say why.
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            current = task_from_image(error.response["Item"]) if "Item" in error.response else None
            if refused is not None:
                return refused(current)
            raise TransitionRejected(task_id, current.status if current else None, target) from error
        return task_from_image(response["Attributes"])
