"""Writes the events of `sam local generate-event` that the tests drive every handler with
(events/*_sam_*.json): API Gateway proxy events as real clients send them (a base64 body and no
Content-Type, curl's form type, text/plain, XML, bytes that are not UTF-8), an SQS batch for analyze
and dead_letter, and the scheduled event of the autoscaler. What each handler answered is kept in
events/responses/ by tests/integration/test_generated_events.py (UPDATE_EVENT_RESPONSES=1).

    .venv/bin/python scripts/generate_events.py [--sam .venv-sam/bin/sam]
"""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
ANALYZE = {"task_type": "analyze", "payload": {"files": {"a.py": "x = 1\n"}}}
NOT_UTF8 = b'{"task_type": "analyze", "payload": {"files": {"a.py": "caf\xe9 = 1\\n"}}}'


def generate(sam: str, *arguments: str) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 - SAM CLI with fixed arguments
        [sam, "local", "generate-event", *arguments], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def with_content_type(event: dict[str, Any], content_type: str) -> dict[str, Any]:
    event["headers"]["Content-Type"] = content_type
    event["multiValueHeaders"]["Content-Type"] = [content_type]
    return event


def events(sam: str) -> dict[str, dict[str, Any]]:
    def submit(body: str) -> dict[str, Any]:
        return generate(sam, "apigateway", "aws-proxy", "--method", "POST", "--path", "tasks", "--body", body)

    analyze = json.dumps(ANALYZE)
    not_utf8 = submit("placeholder")
    not_utf8["body"] = base64.b64encode(NOT_UTF8).decode()

    def sqs(queue: str, message: dict[str, Any]) -> dict[str, Any]:
        # SAM pastes --body into its JSON template unescaped (a JSON body breaks it): set it afterwards.
        event = generate(sam, "sqs", "receive-message", "--queue-name", queue, "--body", "placeholder")
        event["Records"][0]["body"] = json.dumps(message)
        return event

    return {
        # What the issue's `sam local generate-event` command gives: base64 body, no Content-Type.
        "intake_sam_submit_no_content_type.json": submit(analyze),
        "intake_sam_submit_form.json": with_content_type(
            submit(analyze), "application/x-www-form-urlencoded"
        ),
        "intake_sam_submit_text.json": with_content_type(submit(analyze), "text/plain; charset=utf-8"),
        "intake_sam_submit_json.json": with_content_type(submit(analyze), "application/json"),
        "intake_sam_submit_xml.json": with_content_type(submit("<task type='analyze'/>"), "application/xml"),
        "intake_sam_submit_form_not_json.json": with_content_type(
            submit("task_type=analyze&file=a.py"), "application/x-www-form-urlencoded"
        ),
        "intake_sam_submit_not_utf8.json": not_utf8,
        "intake_sam_health.json": generate(
            sam, "apigateway", "aws-proxy", "--method", "GET", "--path", "health"
        ),
        "analyze_sam_sqs.json": sqs("analyze", {"id": "sam-analyze-1"} | ANALYZE),
        "dead_letter_sam_sqs.json": sqs("analyze-dlq", {"id": "sam-dead-letter-1"} | ANALYZE),
        "autoscaler_sam_schedule.json": generate(sam, "cloudwatch", "scheduled-event"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sam", default=str(ROOT / ".venv-sam" / "bin" / "sam"))
    arguments = parser.parse_args()
    for name, event in events(arguments.sam).items():
        (EVENTS / name).write_text(json.dumps(event, indent=2) + "\n")
        print(f"events/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
