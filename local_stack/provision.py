"""Creates the template's queues, bus, rules, table, bucket and ECS service on the local AWS (moto),
with the settings written in template.yaml, so that nothing is configured twice."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local_stack.streams import StreamMapping
from local_stack.template import Template

# A rule's Lambda target cannot run on moto (it needs Docker): the rule feeds this inbox instead,
# and the local stack invokes the function with what arrives there.
INBOX_SUFFIX = "-inbox"


@dataclass(frozen=True)
class Trigger:
    """How a function is invoked: from a queue (SQS event source or a rule's inbox) or a schedule."""

    function: str
    kind: str  # "sqs", "eventbridge" or "schedule"
    queue_url: str = ""
    queue_arn: str = ""
    batch_size: int = 10


class Provisioner:
    def __init__(self, template: Template, client: Callable[[str], Any]) -> None:
        self.template = template
        self._client = client

    def create_all(self) -> list[Trigger | StreamMapping]:
        self._queues()
        self._buses()
        self._tables()
        self._buckets()
        self._ecs()
        return self._triggers()

    def _name(self, properties: dict[str, Any], key: str, fallback: str) -> str:
        value = properties.get(key)
        return str(self.template.resolve(value)) if value else f"{self.template.stack_name}-{fallback}"

    def _queues(self) -> None:
        sqs = self._client("sqs")
        queues = dict(self.template.of_type("AWS::SQS::Queue"))
        # Dead-letter queues first: the others' redrive policies name them.
        for logical_id in sorted(queues, key=lambda name: "RedrivePolicy" in queues[name]):
            properties = queues[logical_id]
            attributes: dict[str, str] = {
                name: str(self.template.resolve(properties[name]))
                for name in (
                    "VisibilityTimeout",
                    "MessageRetentionPeriod",
                    "DelaySeconds",
                    "ReceiveMessageWaitTimeSeconds",
                )
                if name in properties
            }
            if "RedrivePolicy" in properties:
                attributes["RedrivePolicy"] = json.dumps(self.template.resolve(properties["RedrivePolicy"]))
            name = self._name(properties, "QueueName", logical_id.lower())
            url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            self._remember(logical_id, url, Arn=self._arn("sqs", name), QueueName=name, QueueUrl=url)

    def _buses(self) -> None:
        events = self._client("events")
        for logical_id, properties in self.template.of_type("AWS::Events::EventBus"):
            name = self._name(properties, "Name", logical_id.lower())
            arn = events.create_event_bus(Name=name)["EventBusArn"]
            self._remember(logical_id, name, Arn=arn, Name=name)

    def _tables(self) -> None:
        dynamodb = self._client("dynamodb")
        for logical_id, properties in self.template.of_type("AWS::DynamoDB::Table"):
            name = self._name(properties, "TableName", logical_id.lower())
            request: dict[str, Any] = {
                "TableName": name,
                "AttributeDefinitions": properties["AttributeDefinitions"],
                "KeySchema": properties["KeySchema"],
                "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
            }
            if "GlobalSecondaryIndexes" in properties:
                request["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
            if "StreamSpecification" in properties:
                request["StreamSpecification"] = {"StreamEnabled": True} | properties["StreamSpecification"]
            table = dynamodb.create_table(**request)["TableDescription"]
            streams = {"StreamArn": table["LatestStreamArn"]} if "LatestStreamArn" in table else {}
            self._remember(logical_id, name, Arn=table["TableArn"], **streams)

    def _buckets(self) -> None:
        s3 = self._client("s3")
        for logical_id, properties in self.template.of_type("AWS::S3::Bucket"):
            name = self._name(properties, "BucketName", logical_id.lower())
            s3.create_bucket(Bucket=name)
            self._remember(logical_id, name, Arn=f"arn:aws:s3:::{name}")

    def _ecs(self) -> None:
        ecs = self._client("ecs")
        for logical_id, properties in self.template.of_type("AWS::ECS::Cluster"):
            name = self._name(properties, "ClusterName", logical_id.lower())
            arn = ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]
            self._remember(logical_id, name, Arn=arn)
        for logical_id, properties in self.template.of_type("AWS::ECS::TaskDefinition"):
            containers = [
                {"name": c["Name"], "image": str(self.template.resolve(c["Image"])), "memory": 512}
                for c in self.template.present(properties["ContainerDefinitions"])
            ]
            family = self._name(properties, "Family", logical_id.lower())
            arn = ecs.register_task_definition(family=family, containerDefinitions=containers)[
                "taskDefinition"
            ]["taskDefinitionArn"]
            self._remember(logical_id, arn)
        for logical_id, properties in self.template.of_type("AWS::ECS::Service"):
            name = self._name(properties, "ServiceName", logical_id.lower())
            service = ecs.create_service(
                cluster=self.template.resolve(properties["Cluster"]),
                serviceName=name,
                taskDefinition=self.template.resolve(properties["TaskDefinition"]),
                # The template leaves DesiredCount out (deploys must not reset it): start at the minimum.
                desiredCount=int(self.template.parameters.get("MinTasks", "1")),
            )["service"]
            self._remember(logical_id, service["serviceArn"], Name=name)

    def _triggers(self) -> list[Trigger | StreamMapping]:
        triggers: list[Trigger | StreamMapping] = []
        for function, properties in self.template.of_type("AWS::Serverless::Function"):
            for event_name, event in properties.get("Events", {}).items():
                spec = event.get("Properties", {})
                if event["Type"] == "SQS":
                    queue_arn = self.template.resolve(spec["Queue"])
                    url = self._queue_url_for(queue_arn)
                    triggers.append(Trigger(function, "sqs", url, queue_arn, int(spec.get("BatchSize", 10))))
                elif event["Type"] == "EventBridgeRule":
                    triggers.append(self._rule_to_inbox(function, event_name, spec))
                elif event["Type"] == "Schedule":
                    triggers.append(Trigger(function, "schedule"))
                elif event["Type"] == "DynamoDB":
                    triggers.append(self._stream_mapping(function, spec))
        return triggers

    def _stream_mapping(self, function: str, spec: dict[str, Any]) -> StreamMapping:
        on_failure = spec.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        return StreamMapping(
            function=function,
            stream_arn=str(self.template.resolve(spec["Stream"])),
            batch_size=int(spec.get("BatchSize", 100)),
            batching_window_seconds=float(
                self.template.resolve(spec.get("MaximumBatchingWindowInSeconds", 0))
            ),
            filters=tuple(
                json.loads(self.template.resolve(item["Pattern"]))
                for item in spec.get("FilterCriteria", {}).get("Filters", [])
            ),
            bisect=bool(spec.get("BisectBatchOnFunctionError", False)),
            report_item_failures="ReportBatchItemFailures" in spec.get("FunctionResponseTypes", []),
            max_retries=int(self.template.resolve(spec.get("MaximumRetryAttempts", -1))),
            on_failure_url=self._queue_url_for(self.template.resolve(on_failure)) if on_failure else "",
        )

    def _rule_to_inbox(self, function: str, event_name: str, spec: dict[str, Any]) -> Trigger:
        sqs, events = self._client("sqs"), self._client("events")
        inbox = f"{self.template.stack_name}-{function}{INBOX_SUFFIX}"
        # A failed invocation is retried after a few seconds, as EventBridge's retry policy would.
        url = sqs.create_queue(QueueName=inbox, Attributes={"VisibilityTimeout": "2"})["QueueUrl"]
        bus = self.template.resolve(spec.get("EventBusName", "default"))
        rule = f"{function}{event_name}"
        events.put_rule(Name=rule, EventBusName=bus, EventPattern=json.dumps(spec["Pattern"]))
        events.put_targets(
            Rule=rule, EventBusName=bus, Targets=[{"Id": "local-inbox", "Arn": self._arn("sqs", inbox)}]
        )
        return Trigger(function, "eventbridge", url, self._arn("sqs", inbox))

    def _queue_url_for(self, arn: str) -> str:
        for attributes in self.template.attributes.values():
            if attributes.get("Arn") == arn and "QueueUrl" in attributes:
                return attributes["QueueUrl"]
        raise KeyError(f"no local queue has the ARN {arn}")

    def _arn(self, service: str, name: str) -> str:
        return f"arn:aws:{service}:{self.template.region}:{self.template.account}:{name}"

    def _remember(self, logical_id: str, ref: str, **attributes: str) -> None:
        self.template.refs[logical_id] = ref
        self.template.attributes[logical_id] = attributes
