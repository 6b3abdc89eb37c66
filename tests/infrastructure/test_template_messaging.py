"""Queues, dead-letter queues and the event bus: the settings that decide whether a task can be lost."""

from __future__ import annotations

import json

import pytest
from moto.events.models import EventPattern

pytestmark = pytest.mark.infrastructure

FOURTEEN_DAYS = 14 * 24 * 3600


def _rule_matches(rule: dict, source: str, detail_type: str) -> bool:
    # moto's matcher: the same one the local stack runs the rule with.
    pattern = EventPattern.load(json.dumps(rule["Properties"]["EventPattern"]))
    return pattern.matches_event({"source": source, "detail-type": detail_type, "detail": {}})


def test_work_queue_redrive_targets_work_dlq_after_max_receive_count(resources):
    # Given the work queue
    redrive = resources["WorkQueue"]["Properties"]["RedrivePolicy"]
    # When SQS gives up on a message
    # Then it moves it to WorkDLQ after MaxReceiveCount receives
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["WorkDLQ", "Arn"]}
    assert redrive["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}


def test_max_receive_count_default_is_three(parameter_defaults):
    # Given the template's parameters / When none is overridden / Then 3 receives apply
    assert int(parameter_defaults["MaxReceiveCount"]) == 3


def test_work_queue_visibility_timeout_follows_parameter(resources, parameter_defaults):
    # Given the work queue
    visibility = resources["WorkQueue"]["Properties"]["VisibilityTimeout"]
    # When deployed with defaults
    # Then its visibility is the parameter, 300 s by default (the seed's value)
    assert visibility == {"Ref": "QueueVisibilityTimeoutSeconds"}
    assert int(parameter_defaults["QueueVisibilityTimeoutSeconds"]) == 300


@pytest.mark.parametrize("queue", ["WorkDLQ", "AnalyzeDLQ", "RouterDLQ"])
def test_dead_letter_queue_retention_defaults_to_fourteen_days(resources, parameter_defaults, queue):
    # Given a dead-letter queue
    retention = resources[queue]["Properties"]["MessageRetentionPeriod"]
    # When deployed with defaults
    # Then it keeps messages 14 days, the SQS maximum
    assert retention == {"Ref": "DlqRetentionSeconds"}
    assert int(parameter_defaults["DlqRetentionSeconds"]) == FOURTEEN_DAYS


def test_work_dlq_redrive_allow_policy_admits_work_queue_only(resources):
    # Given the work DLQ
    allow = resources["WorkDLQ"]["Properties"]["RedriveAllowPolicy"]
    # When another queue tries to use it as its DLQ
    # Then only the work queue (by its fixed name) may
    assert allow["redrivePermission"] == "byQueue"
    assert resources["WorkQueue"]["Properties"]["QueueName"] == {"Fn::Sub": "${AWS::StackName}-work"}
    (source_arn,) = allow["sourceQueueArns"]
    assert source_arn["Fn::Sub"].endswith(":${AWS::StackName}-work")


@pytest.mark.parametrize("queue", ["WorkQueue", "WorkDLQ", "AnalyzeQueue", "AnalyzeDLQ", "RouterDLQ"])
def test_queue_encryption_uses_template_kms_key(resources, queue):
    # Given a queue / When it stores messages / Then it encrypts them with the template's key (checkov CKV_AWS_27)
    assert resources[queue]["Properties"]["KmsMasterKeyId"] == {"Ref": "QueueKey"}


def test_router_rule_orchestrator_worker_task_matches(resources):
    # Given the router's rule on the bus
    rule = resources["RouterFunctionWorkerTaskRule"]
    # When the orchestrator (or intake) publishes a Worker Task event
    # Then the rule matches it
    assert _rule_matches(rule, "mistersmith.orchestrator", "Worker Task")
    assert _rule_matches(rule, "mistersmith.intake", "Worker Task")


def test_router_rule_task_status_changed_not_matched(resources):
    # Given the router's rule
    rule = resources["RouterFunctionWorkerTaskRule"]
    # When a status change is published on the same bus
    # Then the router does not receive it (no loop back into routing)
    assert not _rule_matches(rule, "mistersmith.orchestrator", "Task Status Changed")


def test_router_rule_listens_on_template_bus(resources):
    # Given the router's rule / When it is created / Then it is on the template's bus, not the default bus
    assert resources["RouterFunctionWorkerTaskRule"]["Properties"]["EventBusName"] == {"Ref": "EventBus"}


def test_router_rule_target_has_retry_policy_and_dead_letter_queue(resources):
    # Given the router's rule target
    (target,) = resources["RouterFunctionWorkerTaskRule"]["Properties"]["Targets"]
    # When EventBridge cannot deliver an event
    # Then it retries under a stated policy and then dead-letters to RouterDLQ instead of dropping it
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] >= 60
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["RouterDLQ", "Arn"]}


def test_router_failed_invocations_go_to_router_dlq(resources):
    # Given the router's async invoke configuration
    config = resources["RouterFunctionEventInvokeConfig"]["Properties"]
    # When the function keeps failing on an event
    # Then Lambda sends it to RouterDLQ
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["RouterDLQ", "Arn"]}


def test_router_dlq_policy_admits_only_router_rule(resources):
    # Given the RouterDLQ queue policy
    (statement,) = resources["RouterDLQPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    # When EventBridge dead-letters an event
    # Then only the router's rule may send
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Condition"]["ArnEquals"]["aws:SourceArn"] == {
        "Fn::GetAtt": ["RouterFunctionWorkerTaskRule", "Arn"]
    }


def test_queue_key_policy_lets_eventbridge_encrypt(resources):
    # Given the queues' KMS key
    statements = resources["QueueKey"]["Properties"]["KeyPolicy"]["Statement"]
    # When EventBridge writes to the encrypted RouterDLQ
    # Then the key policy lets it make and use data keys
    events = [s for s in statements if s.get("Principal") == {"Service": "events.amazonaws.com"}]
    assert events
    assert {"kms:GenerateDataKey", "kms:Decrypt"} <= set(events[0]["Action"])


def test_queue_key_rotation_enabled(resources):
    # Given the queues' KMS key / When a year passes / Then KMS rotates it
    assert resources["QueueKey"]["Properties"]["EnableKeyRotation"] is True


def test_analyze_event_source_reports_batch_item_failures(resources):
    # Given the analyze function's SQS event source mapping
    mapping = resources["AnalyzeFunctionAnalyzeTasks"]["Properties"]
    # When one record of a batch fails
    # Then only that record returns to the queue
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["AnalyzeQueue", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == 10


def test_analyze_queue_visibility_at_least_six_times_function_timeout(resources):
    # Given the analyze queue and function
    visibility = resources["AnalyzeQueue"]["Properties"]["VisibilityTimeout"]
    timeout = resources["AnalyzeFunction"]["Properties"]["Timeout"]
    # When Lambda polls the queue
    # Then a message stays hidden for 6x the timeout (AWS guidance for Lambda consumers)
    assert int(visibility) >= 6 * int(timeout)


def test_analyze_queue_redrive_targets_analyze_dlq(resources):
    # Given the analyze queue / When records keep failing / Then they go to AnalyzeDLQ after MaxReceiveCount
    redrive = resources["AnalyzeQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["AnalyzeDLQ", "Arn"]}
    assert redrive["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}


def test_event_bus_name_includes_environment(resources):
    # Given the bus / When deployed per environment / Then its name carries the environment
    assert resources["EventBus"]["Properties"]["Name"] == {"Fn::Sub": "mistersmith-events-${Environment}"}


def test_the_router_takes_new_tasks_from_the_task_tables_stream_without_losing_one(default_deployment):
    # Given the router's event source mapping on the (regional) task table's stream
    mapping = default_deployment.resources["RouterFunctionTaskInserts"]["Properties"]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["TaskTable", "StreamArn"]}
    # When a batch holds a task that cannot be sent / Then only it (and what follows) comes again,
    # a crash splits the batch, and a batch given up on is named in RouterDLQ
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["RouterDLQ", "Arn"]}
    # And records written before the mapping was enabled are read too
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["MaximumRecordAgeInSeconds"] == {"Ref": "RoutingMaximumRecordAgeSeconds"}


def test_the_stream_mapping_routes_only_new_queued_tasks_written_in_its_own_region(resources):
    # Given the mapping's filter, with the region's name put in as CloudFormation would
    (pattern,) = resources["RouterFunctionTaskInserts"]["Properties"]["FilterCriteria"]["Filters"]
    parsed = json.loads(pattern["Pattern"]["Fn::Sub"].replace("${AWS::Region}", "eu-west-1"))
    # Then it keeps intake's inserts of QUEUED tasks of that region, and nothing else: another
    # replica's insert (a global table streams every region's), or a status change, is not routed
    assert parsed == {
        "eventName": ["INSERT"],
        "dynamodb": {"NewImage": {"status": {"S": ["QUEUED"]}, "region": {"S": ["eu-west-1"]}}},
    }


def test_the_reconciler_sends_an_unrouted_task_once_the_stream_no_longer_would(function_environment):
    # Given the reconciler's bound for QUEUED tasks nothing sent / Then it is the mapping's maximum record age
    assert function_environment("ReconcilerFunction")["UNROUTED_AFTER_SECONDS"] == {
        "Ref": "RoutingMaximumRecordAgeSeconds"
    }
