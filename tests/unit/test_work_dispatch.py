"""perform(): payload validation and dispatch by task type."""

from __future__ import annotations

import pytest

from mistersmith.errors import TaskFailure
from mistersmith.work import WorkLimits, perform

pytestmark = pytest.mark.unit

LIMITS = WorkLimits(execute_timeout_seconds=30)


def test_perform_unknown_task_type_raises_unknown_task_type():
    # Given a task type that does not exist
    task_type = "deploy"

    # When it is performed
    with pytest.raises(TaskFailure) as raised:
        perform(task_type, {"files": {"a.py": ""}}, LIMITS)

    # Then it is refused, listing the valid types
    assert raised.value.error_type == "UnknownTaskType"
    assert "'deploy'" in raised.value.message
    assert "analyze, compile, execute" in raised.value.message


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"command": ["true"], "shell": True}, "shell"),
        ({"stdin": "x"}, "command"),
        ({"command": ["true"], "files": {"../up.txt": "x"}}, "files"),
    ],
)
def test_perform_bad_payload_raises_invalid_payload_naming_field(payload, field):
    # Given an execute payload with an unknown, a missing or an invalid field
    # When it is performed
    with pytest.raises(TaskFailure) as raised:
        perform("execute", payload, LIMITS)

    # Then it is refused as InvalidPayload naming the field
    assert raised.value.error_type == "InvalidPayload"
    assert field in raised.value.message


@pytest.mark.parametrize(
    ("task_type", "payload", "expected"),
    [
        (
            "execute",
            {"command": ["python3", "-c", "print('ran')"]},
            {"exit_code": 0, "stdout": "ran\n", "stderr": "", "truncated": False},
        ),
        ("compile", {"language": "python", "files": {"a.py": "x = 1\n"}}, {"ok": True, "diagnostics": []}),
        ("analyze", {"files": {"a.py": "x = 1\n"}}, {"files": 1, "lines": 1, "code_lines": 1}),
    ],
)
def test_perform_each_task_type_dispatches_and_returns_dict(task_type, payload, expected):
    # Given a valid payload for the task type
    # When it is performed
    result = perform(task_type, payload, LIMITS)

    # Then the right task ran and its result comes back as a plain dict
    assert isinstance(result, dict)
    assert {key: result[key] for key in expected} == expected
