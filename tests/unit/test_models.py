"""Task models: ids, per-type payloads, and the lifecycle's allowed transitions."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mistersmith.models import (
    ALLOWED_TRANSITIONS,
    TASK_REQUEST_ADAPTER,
    TERMINAL_STATUSES,
    TaskStatus,
    is_task_id,
    request_fingerprint,
    sources_allowed_into,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("value", ["a", "A-z_0.9:x", "x" * 128])
def test_task_id_allowed_characters_and_length_are_accepted(value):
    assert is_task_id(value)


@pytest.mark.parametrize("value", ["", "x" * 129, "a b", "a/b", "é", None, 7])
def test_task_id_outside_the_contract_is_refused(value):
    assert not is_task_id(value)


def test_request_with_unknown_task_type_names_the_valid_ones():
    with pytest.raises(ValidationError) as error:
        TASK_REQUEST_ADAPTER.validate_python({"task_type": "deploy", "payload": {}})
    assert "'execute'" in str(error.value)


def test_execute_payload_unknown_field_is_an_error():
    with pytest.raises(ValidationError) as error:
        TASK_REQUEST_ADAPTER.validate_python(
            {"task_type": "execute", "payload": {"command": ["true"], "shell": True}}
        )
    assert error.value.errors()[0]["loc"][-1] == "shell"


@pytest.mark.parametrize("path", ["../x.py", "/etc/passwd", "a/../../b", "a\\b.py", ""])
def test_files_path_leaving_the_work_dir_is_refused(path):
    with pytest.raises(ValidationError):
        TASK_REQUEST_ADAPTER.validate_python({"task_type": "analyze", "payload": {"files": {path: "x"}}})


def test_files_path_is_normalised_inside_the_work_dir():
    request = TASK_REQUEST_ADAPTER.validate_python(
        {"task_type": "analyze", "payload": {"files": {"a/./b.py": ""}}}
    )
    assert list(request.payload.files) == ["a/b.py"]


def test_compile_language_defaults_to_python():
    request = TASK_REQUEST_ADAPTER.validate_python(
        {"task_type": "compile", "payload": {"files": {"a.py": ""}}}
    )
    assert request.payload.language == "python"


def test_terminal_statuses_allow_no_transition():
    assert all(not ALLOWED_TRANSITIONS[status] for status in TERMINAL_STATUSES)


def test_every_status_is_reachable_only_from_non_terminal_states():
    for status in TaskStatus:
        assert not sources_allowed_into(status) & TERMINAL_STATUSES


def test_running_may_return_to_queued_but_queued_is_entered_from_running_only():
    assert sources_allowed_into(TaskStatus.QUEUED) == {TaskStatus.RUNNING}


def test_fingerprint_ignores_key_order_and_tells_bodies_apart():
    assert request_fingerprint("compile", {"a": 1, "b": 2}) == request_fingerprint(
        "compile", {"b": 2, "a": 1}
    )
    assert request_fingerprint("compile", {"a": 1}) != request_fingerprint("analyze", {"a": 1})
