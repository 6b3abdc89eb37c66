"""Dashboards (workers, right-sizing, queue, API and function health), alarms and tracing."""

from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.infrastructure

FUNCTIONS = [
    "IntakeFunction",
    "RouterFunction",
    "AnalyzeFunction",
    "DeadLetterFunction",
    "AutoscalerFunction",
    "ReconcilerFunction",
]
_VARIABLE = re.compile(r"\$\{([A-Za-z0-9:._]+)\}")


def _dashboard(resources: dict, name: str, parameter_defaults: dict) -> dict:
    """The dashboard body as CloudWatch receives it, with parameters at their defaults and names as placeholders."""
    text, variables = resources[name]["Properties"]["DashboardBody"]["Fn::Sub"]

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key in parameter_defaults:
            return str(parameter_defaults[key])
        return f"<{key}>" if key in variables or "::" in key or key in resources else match.group(0)

    body = _VARIABLE.sub(value, text)
    assert "${" not in body, body
    return json.loads(body)


def _widgets(body: dict) -> dict[str, dict]:
    return {widget["properties"]["title"]: widget["properties"] for widget in body["widgets"]}


def _metric_names(widget: dict) -> list[str]:
    names, last = [], None
    for line in widget["metrics"]:
        items = [item for item in line if not isinstance(item, dict)]
        if len(items) >= 2:
            last = items[1] if items[1] != "." else last
            names.append(last)
    return names


@pytest.fixture(scope="module")
def ops_widgets(resources, parameter_defaults) -> dict[str, dict]:
    return _widgets(_dashboard(resources, "WorkerDashboard", parameter_defaults))


@pytest.fixture(scope="module")
def sizing_widgets(resources, parameter_defaults) -> dict[str, dict]:
    return _widgets(_dashboard(resources, "SizingDashboard", parameter_defaults))


def test_dashboards_body_valid_json(resources, parameter_defaults):
    # Given both dashboards / When CloudFormation substitutes names / Then CloudWatch gets valid JSON
    for name in ("WorkerDashboard", "SizingDashboard"):
        assert _dashboard(resources, name, parameter_defaults)["widgets"], name


@pytest.mark.parametrize(
    ("title", "target"),
    [("CPU Utilization", 70), ("Memory Utilization", 80)],
)
def test_ops_dashboard_utilization_annotated_with_seed_targets(ops_widgets, title, target):
    # Given the CPU and memory widgets / When shown with default parameters / Then each carries its target line
    widget = ops_widgets[title]
    assert widget["annotations"]["horizontal"][0]["value"] == target


@pytest.mark.parametrize(
    ("title", "target"),
    [("CPU Utilization vs Reservation", 70), ("Memory Utilization vs Reservation", 80)],
)
def test_sizing_dashboard_used_against_reserved_with_targets(sizing_widgets, title, target):
    # Given the right-sizing widgets / When shown / Then utilized and reserved plot beside the target
    widget = sizing_widgets[title]
    names = _metric_names(widget)
    assert any(n.endswith("Utilized") for n in names) and any(n.endswith("Reserved") for n in names)
    assert widget["annotations"]["horizontal"][0]["value"] == target


def test_ops_dashboard_task_count_running_and_desired(ops_widgets):
    # Given the task count widget / When the autoscaler acts / Then running and desired counts show side by side
    assert _metric_names(ops_widgets["Task Count"]) == ["RunningTaskCount", "DesiredTaskCount"]


def test_ops_dashboard_queue_depth_and_backlog_per_task(ops_widgets):
    # Given the queue widgets / When work piles up / Then depth, in-flight, age and backlog per task are visible
    assert {"ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible"} <= set(
        _metric_names(ops_widgets["Queue depth"])
    )
    backlog = ops_widgets["Backlog per task"]["metrics"]
    expressions = [
        item["expression"]
        for line in backlog
        for item in line
        if isinstance(item, dict) and "expression" in item
    ]
    assert expressions == ["visible / IF(running > 0, running, 1)"]


def test_ops_dashboard_dead_letter_queues_all_shown(ops_widgets):
    # Given the DLQ widget / When tasks are dead-lettered / Then every DLQ's depth shows
    lines = ops_widgets["Dead-letter queues"]["metrics"]
    queues = {item for line in lines for item in line if isinstance(item, str) and item.startswith("<")}
    assert {"<WorkDLQName>", "<AnalyzeDLQName>", "<RouterDLQName>"} <= queues


def test_ops_dashboard_api_errors_by_class(ops_widgets):
    # Given the API widget / When clients get errors / Then 4xx and 5xx are counted apart, for this API's stage
    widget = ops_widgets["API 4xx / 5xx"]
    assert {"4XXError", "5XXError"} <= set(_metric_names(widget))
    assert widget["metrics"][0][2:6] == ["ApiName", "<ApiName>", "Stage", "dev"]


def test_ops_dashboard_api_name_matches_api(resources):
    # Given the dashboard's ApiName / When API Gateway reports metrics / Then they are keyed by the API's name
    variables = resources["WorkerDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][1]
    assert variables["ApiName"] == resources["IntakeApi"]["Properties"]["Name"]


@pytest.mark.parametrize(
    ("title", "metric"), [("Lambda errors", "Errors"), ("Lambda duration (p99)", "Duration")]
)
def test_ops_dashboard_every_function_errors_and_duration(ops_widgets, title, metric):
    # Given the function widgets / When a function fails or slows / Then every function shows
    widget = ops_widgets[title]
    functions = {
        item for line in widget["metrics"] for item in line if isinstance(item, str) and item.startswith("<")
    }
    assert functions == {f"<{f}>" for f in FUNCTIONS}
    assert set(_metric_names(widget)) == {metric}


def _alarms(resources: dict) -> dict[str, dict]:
    return {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def _queue_of(alarm: dict) -> dict:
    if "Dimensions" in alarm:
        return alarm["Dimensions"][0]["Value"]
    (stat,) = [m for m in alarm["Metrics"] if m["Id"] == "waiting"]
    return stat["MetricStat"]["Metric"]["Dimensions"][0]["Value"]


@pytest.mark.parametrize(
    ("alarm", "queue"),
    [("WorkDlqAlarm", "WorkDLQ"), ("AnalyzeDlqAlarm", "AnalyzeDLQ"), ("RouterDlqAlarm", "RouterDLQ")],
)
def test_dead_letter_alarm_fires_on_first_message(resources, alarm, queue):
    # Given a dead-letter queue's alarm
    properties = _alarms(resources)[alarm]
    # When one message lands there (or DeadLetterFunction takes it)
    # Then the alarm fires within a minute
    assert _queue_of(properties) == {"Fn::GetAtt": [queue, "QueueName"]}
    assert (properties["ComparisonOperator"], properties["Threshold"]) == ("GreaterThanThreshold", 0)
    assert properties["EvaluationPeriods"] == 1


def test_work_dlq_alarm_counts_messages_taken_by_dead_letter_function(resources):
    # Given the work DLQ alarm / When DeadLetterFunction empties the DLQ at once / Then the receive still counts
    metrics = {m["Id"]: m for m in _alarms(resources)["WorkDlqAlarm"]["Metrics"]}
    assert metrics["taken"]["MetricStat"]["Metric"]["MetricName"] == "NumberOfMessagesReceived"
    assert metrics["deadletters"]["Expression"] == "MAX([waiting, taken])"


def test_oldest_message_alarm_follows_parameter(resources, parameter_defaults):
    # Given the work queue's age alarm / When the oldest task waits 10 minutes (default) / Then it fires
    alarm = _alarms(resources)["WorkQueueOldestMessageAlarm"]
    assert alarm["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert alarm["Threshold"] == {"Ref": "OldestMessageAlarmSeconds"}
    assert int(parameter_defaults["OldestMessageAlarmSeconds"]) == 600


def test_tasks_at_max_alarm_uses_max_tasks(resources):
    # Given the capacity alarm / When the service runs at MaxTasks for 15 minutes / Then it fires
    alarm = _alarms(resources)["WorkerTasksAtMaxAlarm"]
    assert alarm["MetricName"] == "RunningTaskCount"
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == (
        "GreaterThanOrEqualToThreshold",
        {"Ref": "MaxTasks"},
    )
    assert alarm["Period"] * alarm["EvaluationPeriods"] == 900


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_errors_alarm_per_function(resources, function):
    # Given a function / When it raises an error / Then its own alarm fires
    alarm = _alarms(resources)[f"{function.removesuffix('Function')}ErrorsAlarm"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function}}]


def test_alarms_notify_the_alarm_topic(resources):
    # Given every alarm / When it changes state / Then the (encrypted) alarm topic hears about it
    for name, alarm in _alarms(resources).items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["OKActions"] == [{"Ref": "AlarmTopic"}], name
        assert alarm["TreatMissingData"] == "notBreaching", name


def test_alarm_email_subscribes_to_topic(deployment):
    # Given an alarm address / When deployed / Then it is subscribed to the topic
    subscription = deployment(AlarmEmail="oncall@example.com").resources["AlarmEmailSubscription"][
        "Properties"
    ]
    assert subscription == {
        "TopicArn": {"Ref": "AlarmTopic"},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }


def test_api_stage_traced_and_functions_traced(resources):
    # Given the API stage and every function / When a request comes in / Then X-Ray traces it end to end
    assert resources["IntakeApiStage"]["Properties"]["TracingEnabled"] is True
    for function in FUNCTIONS:
        assert resources[function]["Properties"]["TracingConfig"] == {"Mode": "Active"}, function
