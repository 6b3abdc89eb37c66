"""Retention in the template: task records (TTL), uploads and artifacts (lifecycle rules), and the API's
access logs in a log group of their own, each with its parameter."""

from __future__ import annotations

import pytest

from tests.infrastructure.permissions import entry_points

pytestmark = pytest.mark.infrastructure


def test_every_entry_point_gets_the_task_retention_parameter(default_deployment, sam_template):
    # Given the retention parameter / When the stack is deployed / Then every function and the worker read it
    assert sam_template["Parameters"]["TaskRetentionDays"]["Default"] == 30
    for entry in entry_points(default_deployment.resources):
        assert entry.environment.get("TASK_RETENTION_DAYS") == {"Ref": "TaskRetentionDays"}, entry.name


@pytest.mark.parametrize(
    ("prefix", "parameter"), [("uploads/", "UploadRetentionDays"), ("artifacts/", "ArtifactRetentionDays")]
)
def test_uploads_and_artifacts_expire_by_lifecycle_rule(resources, sam_template, prefix, parameter):
    rules = resources["ArtifactsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    (rule,) = [rule for rule in rules if rule.get("Prefix") == prefix]
    assert rule["Status"] == "Enabled"
    assert rule["ExpirationInDays"] == {"Ref": parameter}
    assert sam_template["Parameters"][parameter]["Type"] == "Number"


def test_api_access_logs_go_to_their_own_log_group_kept_for_the_retention(resources):
    # Given the API's stage / When it logs access / Then to a log group of its own, kept LogRetentionDays
    (stage,) = [resource for resource in resources.values() if resource["Type"] == "AWS::ApiGateway::Stage"]
    setting = stage["Properties"]["AccessLogSetting"]
    assert setting["DestinationArn"] == {"Fn::GetAtt": ["IntakeApiAccessLogGroup", "Arn"]}
    assert "$context.requestId" in setting["Format"]
    group = resources["IntakeApiAccessLogGroup"]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    # API Gateway writes logs with the region's account role, which the stack sets (and keeps on delete).
    assert resources["ApiGatewayAccount"]["DeletionPolicy"] == "Retain"
