"""The events `sam local generate-event` makes (scripts/generate_events.py: events/*_sam_*.json) drive
every handler that has a generator, on the local stack, and each answers as events/responses/ records.
UPDATE_EVENT_RESPONSES=1 records what the handlers answer now instead of comparing."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest

from local_stack.lambda_runtime import invoke
from local_stack.stack import EVENTS_DIR
from tests.integration.test_events import function_for

pytestmark = pytest.mark.integration

RESPONSES = EVENTS_DIR / "responses"
GENERATED = sorted(path.name for path in EVENTS_DIR.glob("*_sam_*.json"))
# What clients send and what they get: JSON under any of the lenient types is taken; anything else is told what to send.
INTAKE_STATUS = {
    "intake_sam_submit_no_content_type.json": 202,
    "intake_sam_submit_form.json": 202,
    "intake_sam_submit_text.json": 202,
    "intake_sam_submit_json.json": 202,
    "intake_sam_submit_xml.json": 415,
    "intake_sam_submit_form_not_json.json": 415,
    "intake_sam_submit_not_utf8.json": 400,
    "intake_sam_health.json": 200,
}
STABLE_BODY_KEYS = ("status", "task_type", "type", "title")


def observed(name: str, result: Any) -> dict[str, Any]:
    """What a handler answered, without what changes from run to run (ids, times, traces, counts)."""
    if name.startswith("intake_"):
        text = base64.b64decode(result["body"]).decode() if result.get("isBase64Encoded") else result["body"]
        body = json.loads(text)
        return {
            "statusCode": result["statusCode"],
            "contentType": result["headers"]["content-type"],
            "body": {key: body[key] for key in STABLE_BODY_KEYS if key in body},
        }
    if name.startswith("autoscaler_"):
        return {"keys": sorted(result)}
    return result


def test_every_handler_with_a_sam_generator_has_a_generated_event():
    functions = {function_for(name) for name in GENERATED}
    assert functions == {"IntakeFunction", "AnalyzeFunction", "DeadLetterFunction", "AutoscalerFunction"}
    assert set(INTAKE_STATUS) == {name for name in GENERATED if name.startswith("intake_")}


@pytest.mark.parametrize("name", GENERATED)
def test_generated_event_is_answered_as_recorded(stack, name):
    # Given an event as SAM generates it / When its handler is invoked on the stack
    result = invoke(stack.template, function_for(name), json.loads((EVENTS_DIR / name).read_text()))
    answer = observed(name, result)
    if os.environ.get("UPDATE_EVENT_RESPONSES"):
        RESPONSES.mkdir(exist_ok=True)
        (RESPONSES / name).write_text(json.dumps(answer, indent=2) + "\n")
    # Then it answers as recorded, and intake's answers are the ones promised to clients
    assert answer == json.loads((RESPONSES / name).read_text())
    if name in INTAKE_STATUS:
        assert answer["statusCode"] == INTAKE_STATUS[name]
        if answer["statusCode"] >= 400:
            assert answer["contentType"] == "application/problem+json"
            assert "application/json" in json.loads(result["body"])["detail"]
