"""The task dashboard and alarms against the metrics the code really emits: every MisterSmith metric a
dashboard or alarm names was emitted by the local stack during the integration tests (namespace, name
and dimension set exactly), and every metric emitted is shown somewhere.

In a run of every integration module this test goes last and reads the session's stack; otherwise it
reads what the last such run saved (tests/conftest.py), or is skipped when none has."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

import pytest

from local_stack.emf import SeriesKey, load_keys
from tests.conftest import EMITTED_METRICS_FILE, runs_every_integration_module
from tests.infrastructure.test_template_observability import _dashboard

pytestmark = [pytest.mark.infrastructure, pytest.mark.after_integration]

NAMESPACE = "MisterSmith"
# SEARCH('{Namespace,dim,...} MetricName="Name"', ...): the schema names the dimension set exactly.
_SEARCH = re.compile(r"""SEARCH\(\s*'\{([^}]*)\}\s+MetricName="([^"]+)"'""")


class Reference(NamedTuple):
    where: str
    namespace: str
    name: str
    dimensions: frozenset[str]
    # Dimension values written out (a SEARCH names none).
    values: tuple[tuple[str, str], ...] = ()


def dashboard_references(where: str, body: dict[str, Any]) -> Iterator[Reference]:
    for widget in body["widgets"]:
        title = f"{where}/{widget['properties'].get('title')}"
        previous: list[Any] = []
        for line in widget["properties"].get("metrics", []):
            items = [item for item in line if not isinstance(item, dict)]
            for options in (item for item in line if isinstance(item, dict)):
                if match := _SEARCH.search(options.get("expression", "")):
                    namespace, *dimensions = [part.strip() for part in match[1].split(",")]
                    yield Reference(title, namespace, match[2], frozenset(dimensions))
            if not items:
                continue
            # "." repeats the item at that place in the line above.
            items = [previous[index] if item == "." else item for index, item in enumerate(items)]
            previous = items
            namespace, name, *pairs = items
            values = tuple(zip(pairs[::2], pairs[1::2], strict=True))
            yield Reference(title, namespace, name, frozenset(key for key, _ in values), values)


def alarm_references(where: str, properties: dict[str, Any]) -> Iterator[Reference]:
    metrics = [properties] if "MetricName" in properties else []
    metrics += [
        query["MetricStat"]["Metric"] for query in properties.get("Metrics", []) if "MetricStat" in query
    ]
    for metric in metrics:
        values = tuple((item["Name"], item["Value"]) for item in metric.get("Dimensions", []))
        yield Reference(
            where, metric["Namespace"], metric["MetricName"], frozenset(key for key, _ in values), values
        )


@pytest.fixture(scope="module")
def references(resources, parameter_defaults) -> list[Reference]:
    found: list[Reference] = []
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::CloudWatch::Dashboard":
            found += dashboard_references(logical_id, _dashboard(resources, logical_id, parameter_defaults))
        elif resource["Type"] == "AWS::CloudWatch::Alarm":
            found += alarm_references(logical_id, resource["Properties"])
    return [reference for reference in found if reference.namespace == NAMESPACE]


@pytest.fixture(scope="module")
def emitted(request: pytest.FixtureRequest) -> set[SeriesKey]:
    if runs_every_integration_module(request.session):
        stack = request.getfixturevalue("stack")
        stack.read_worker_logs()
        return set(stack.metrics.series())
    if EMITTED_METRICS_FILE.exists():
        return load_keys(EMITTED_METRICS_FILE)
    pytest.skip(f"no integration run has saved its metrics yet ({EMITTED_METRICS_FILE})")


def shape(key: SeriesKey) -> tuple[str, str, frozenset[str]]:
    return key.namespace, key.name, frozenset(name for name, _ in key.dimensions)


def test_task_dashboard_shows_task_metrics_and_scaling_beside_queue_depth(references):
    # Given the task dashboard / When read / Then outcomes, p50/p95 times, dead letters and scaling are on it
    on_dashboard = {(ref.name, ref.dimensions) for ref in references if ref.where.startswith("TaskDashboard")}
    by_type = frozenset({"service", "task_type"})
    for name in ("TasksSucceeded", "TasksFailed", "TasksCancelled", "TasksDeadLettered", "TaskDuration"):
        assert (name, by_type) in on_dashboard, name
    assert ("TaskQueueWait", by_type) in on_dashboard
    assert {
        ("ScalingDecisions", frozenset({"service", "direction"})),
        ("QueueDepth", frozenset({"service"})),
    } <= (on_dashboard)


def test_task_dashboard_times_as_p50_and_p95(resources, parameter_defaults):
    # Given the duration and queue-wait widgets / When rendered / Then each plots p50 and p95
    body = _dashboard(resources, "TaskDashboard", parameter_defaults)
    for widget in body["widgets"]:
        expressions = json.dumps(widget["properties"]["metrics"])
        if "TaskDuration" in expressions and "by type" in widget["properties"]["title"]:
            assert "'p50'" in expressions and "'p95'" in expressions


def test_alarms_on_dead_lettered_tasks_and_failure_ratio(resources, parameter_defaults):
    # Given the task alarms / When deployed with defaults / Then one fires on any dead-lettered task, one on the ratio
    dead = resources["TasksDeadLetteredAlarm"]["Properties"]
    assert (dead["MetricName"], dead["Threshold"], dead["ComparisonOperator"]) == (
        "TasksDeadLettered",
        0,
        "GreaterThanThreshold",
    )
    ratio = resources["TaskFailureRatioAlarm"]["Properties"]
    expression = next(query["Expression"] for query in ratio["Metrics"] if "Expression" in query)
    assert expression.startswith("100 * (") and "ok_worker" in expression and "failed_fn" in expression
    assert ratio["Threshold"] == {"Ref": "FailureRatioAlarmPercent"}
    assert parameter_defaults["FailureRatioAlarmPercent"] == 25


def test_every_metric_a_dashboard_or_alarm_names_is_emitted(references, emitted):
    # Given what the code emitted on the local stack / When the dashboards and alarms are read
    shapes = {shape(key) for key in emitted}
    values_seen = {pair for key in emitted for pair in key.dimensions}
    # Then each metric they name has that namespace, name and dimension set, with values the code writes
    missing = [ref for ref in references if (ref.namespace, ref.name, ref.dimensions) not in shapes]
    assert not missing, missing
    unknown = [ref for ref in references if not set(ref.values) <= values_seen]
    assert not unknown, unknown


def test_every_emitted_metric_is_shown_somewhere(references, emitted):
    # Given what the code emitted / When matched against the dashboards and alarms / Then none is left unshown
    shown = {(ref.namespace, ref.name, ref.dimensions) for ref in references}
    unshown = sorted({shape(key) for key in emitted if key.namespace == NAMESPACE} - shown, key=str)
    assert not unshown, unshown
