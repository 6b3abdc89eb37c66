"""Task models: ids, per-type payloads, and the lifecycle's allowed transitions."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mistersmith.models import (
    ALLOWED_TRANSITIONS,
    TASK_REQUEST_ADAPTER,
    TERMINAL_STATUSES,
    StoredTask,
    TaskMessage,
    TaskStatus,
    is_task_key,
    request_fingerprint,
    sources_allowed_into,
    task_key,
)

pytestmark = pytest.mark.unit


def submission(task_id: object) -> dict[str, object]:
    return {"id": task_id, "task_type": "analyze", "payload": {"files": {"a.py": ""}}}


@pytest.mark.parametrize("value", ["a", "A-z_0.9:x", "x" * 128, "a..b", "9.-:_"])
def test_task_id_of_a_new_task_in_the_contract_is_accepted(value):
    assert TASK_REQUEST_ADAPTER.validate_python(submission(value)).id == value


@pytest.mark.parametrize("value", ["", "x" * 129, "a b", "a/b", "é", ".", "..", ".hidden", "-x", ":x", 7])
def test_task_id_of_a_new_task_outside_the_contract_is_refused(value):
    with pytest.raises(ValidationError) as error:
        TASK_REQUEST_ADAPTER.validate_python(submission(value))
    assert error.value.errors()[0]["loc"][-1] == "id"


@pytest.mark.parametrize(
    "value", ["..", "-legacy", "x" * 128, task_key("arn:aws:iam::123456789012:role/R", "x" * 128)]
)
def test_task_key_of_an_existing_or_owned_task_is_a_key(value):
    assert is_task_key(value)


@pytest.mark.parametrize("value", ["", "a b", "a/b", "é", None, 7, "x" * 146])
def test_task_key_outside_the_alphabet_or_too_long_is_refused(value):
    assert not is_task_key(value)


def test_task_key_tells_owners_apart_and_public_record_shows_the_chosen_id():
    # Given two owners using the same id
    first, second = task_key("arn:aws:iam::1:role/A", "build-1"), task_key("arn:aws:iam::1:role/B", "build-1")
    # When the first's task is stored and shown
    task = StoredTask(
        id=first,
        owner="arn:aws:iam::1:role/A",
        task_type="analyze",
        status=TaskStatus.QUEUED,
        created_at="t",
        updated_at="t",
    )
    # Then the keys differ, and the record shows the id as chosen, with its owner
    assert first != second
    assert task.public().id == "build-1"
    assert task.public().owner == "arn:aws:iam::1:role/A"


def test_task_recreated_from_its_message_keeps_its_owner():
    message = TaskMessage(id=task_key("o", "t"), task_type="analyze", payload={}, owner="o")
    assert StoredTask.queued(message, "t").owner == "o"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"command": ["cat"], "stdin": "\ud800"}, "stdin"),
        ({"command": ["echo", "x\udfff"]}, "command"),
        ({"command": ["env"], "env": {"K\ud83d": "v"}}, "env"),
        ({"command": ["cat", "a"], "files": {"a": "\udc80"}}, "files"),
    ],
)
def test_execute_payload_text_that_cannot_be_encoded_is_refused(payload, field):
    with pytest.raises(ValidationError) as error:
        TASK_REQUEST_ADAPTER.validate_python({"task_type": "execute", "payload": payload})
    assert field in error.value.errors()[0]["loc"]


def test_execute_payload_text_with_astral_characters_is_accepted():
    request = TASK_REQUEST_ADAPTER.validate_python(
        {"task_type": "execute", "payload": {"command": ["cat"], "stdin": "\U0001f600 é"}}
    )
    assert request.payload.stdin == "\U0001f600 é"


@pytest.mark.parametrize("paths", [["a", "./a"], ["src/a.py", "src//a.py"], ["b/../a", "a"]])
def test_files_paths_that_name_one_file_after_normalisation_are_refused(paths):
    with pytest.raises(ValidationError) as error:
        TASK_REQUEST_ADAPTER.validate_python(
            {"task_type": "analyze", "payload": {"files": {path: "x" for path in paths}}}
        )
    assert "name the same file" in str(error.value)


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


def test_task_from_the_bus_with_a_long_key_is_shown_under_it():
    # Given an unowned task whose id is as long as an owned task's key
    message = TaskMessage(id="x" * 145, task_type="analyze", payload={})
    # When its record is shown (GET, or a status event) / Then it is, under that id
    assert StoredTask.queued(message, "t").public().id == "x" * 145
