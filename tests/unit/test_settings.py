"""Settings models: missing, empty and invalid values are refused at start, with the field named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mistersmith.settings import (
    AutoscalerSettings,
    IntakeSettings,
    RouterSettings,
    StatsSettings,
    WorkerSettings,
)

pytestmark = pytest.mark.unit

REQUIRED = {
    IntakeSettings: {"TASK_TABLE_NAME": "t", "EVENT_BUS_NAME": "b", "ARTIFACTS_BUCKET_NAME": "a"},
    RouterSettings: {
        "TASK_TABLE_NAME": "t",
        "EVENT_BUS_NAME": "b",
        "WORK_QUEUE_URL": "w",
        "ANALYZE_QUEUE_URL": "q",
    },
    AutoscalerSettings: {
        "TASK_TABLE_NAME": "t",
        "WORK_QUEUE_URL": "w",
        "CLUSTER_NAME": "c",
        "WORKER_SERVICE_NAME": "s",
    },
    WorkerSettings: {
        "TASK_TABLE_NAME": "t",
        "EVENT_BUS_NAME": "b",
        "ARTIFACTS_BUCKET_NAME": "a",
        "WORK_QUEUE_URL": "w",
    },
    StatsSettings: {"TASK_TABLE_NAME": "t"},
}
CASES = [(model, name) for model, names in REQUIRED.items() for name in names]


@pytest.fixture
def environment(monkeypatch):
    # Every variable any model reads: a local stack started earlier in the run leaves its own set.
    for model in REQUIRED:
        for name in model.model_fields:
            monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


@pytest.mark.parametrize(("model", "name"), CASES)
def test_settings_missing_required_value_is_refused_naming_it(environment, model, name):
    for other, value in REQUIRED[model].items():
        if other != name:
            environment.setenv(other, value)
    with pytest.raises(ValidationError) as error:
        model()
    assert name.lower() in str(error.value)


@pytest.mark.parametrize(("model", "name"), CASES)
def test_settings_empty_required_value_is_refused(environment, model, name):
    for other, value in REQUIRED[model].items():
        environment.setenv(other, "" if other == name else value)
    with pytest.raises(ValidationError):
        model()


def test_autoscaler_settings_max_below_min_is_refused(environment):
    for name, value in REQUIRED[AutoscalerSettings].items():
        environment.setenv(name, value)
    environment.setenv("MIN_TASKS", "5")
    environment.setenv("MAX_TASKS", "3")
    with pytest.raises(ValidationError, match="max_tasks"):
        AutoscalerSettings()


def test_autoscaler_settings_parse_the_template_step_table(environment):
    for name, value in REQUIRED[AutoscalerSettings].items():
        environment.setenv(name, value)
    environment.setenv("SCALING_STEPS", "<=0:-1,>=10:2")
    assert AutoscalerSettings().scaling_steps.adjustment(10) == 2


def test_worker_settings_receive_batch_above_ten_is_refused(environment):
    for name, value in REQUIRED[WorkerSettings].items():
        environment.setenv(name, value)
    environment.setenv("RECEIVE_BATCH_SIZE", "11")
    with pytest.raises(ValidationError, match="receive_batch_size"):
        WorkerSettings()


def test_worker_ids_differ_between_two_processes_on_one_host(environment):
    for name, value in REQUIRED[WorkerSettings].items():
        environment.setenv(name, value)
    assert WorkerSettings().worker_id != WorkerSettings().worker_id


def test_intake_settings_admin_principals_are_split_and_read_as_callers(environment):
    for name, value in REQUIRED[IntakeSettings].items():
        environment.setenv(name, value)
    environment.setenv(
        "API_ADMIN_PRINCIPALS",
        "arn:aws:iam::123456789012:role/ops/Admin, arn:aws:sts::123456789012:assumed-role/Ci/s,,apikey:k1",
    )
    assert IntakeSettings().api_admin_principals == {
        "arn:aws:iam::123456789012:role/Admin",
        "arn:aws:iam::123456789012:role/Ci",
        "apikey:k1",
    }


def test_intake_settings_in_the_cloud_trust_no_caller_header_and_name_no_admin(environment):
    for name, value in REQUIRED[IntakeSettings].items():
        environment.setenv(name, value)
    environment.setenv("API_ADMIN_PRINCIPALS", "")
    settings = IntakeSettings()
    assert settings.api_admin_principals == frozenset()
    assert settings.local_caller_header is False


def test_stats_settings_cache_period_over_a_minute_is_refused(environment):
    # Given a cache longer than a console would wait / When the settings are read / Then it is refused, named
    for name, value in REQUIRED[StatsSettings].items():
        environment.setenv(name, value)
    environment.setenv("STATS_CACHE_SECONDS", "600")
    with pytest.raises(ValidationError, match="stats_cache_seconds"):
        StatsSettings()
