"""The console in a real browser: Debian's headless Chromium, driven by Playwright (never a browser
download: `executable_path`), against the local stack. Tasks submitted through the API appear and
finish on the page; a detail opens; a running task is cancelled from the page; a dead-lettered task
shows as such. The screenshot of the page is saved to .local/browser/console.png."""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_stack.lambda_runtime import invoke
from local_stack.stack import STATE_DIR
from tests.conftest import load_event, stored_key, wait_for_status

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that reaches past loopback: no updates, sync, QUIC or first-run pages.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = STATE_DIR / "browser" / "console.png"
# The page polls every 2 s; a task takes a few seconds on the local stack.
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def page(stack, tmp_path_factory) -> Iterator[object]:
    if not CHROMIUM.exists() or shutil.which("chromium") is None:
        pytest.fail("Debian's chromium is missing: `make browser` (apt-get install chromium chromium-driver)")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")  # a fresh --user-data-dir
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        page = context.new_page()
        page.goto(f"{stack.api_url}/console/")
        yield page
        context.close()


def row(task_id: str, status: str | None = None) -> str:
    selector = f'#tasks tbody tr[data-id="{task_id}"]'
    return selector + (f'[data-status="{status}"]' if status else "")


def submit(api, task_type: str, payload: dict) -> str:
    task_id = f"browser-{task_type}-{uuid.uuid4().hex[:6]}"
    api.post("/tasks", json={"id": task_id, "task_type": task_type, "payload": payload}).raise_for_status()
    return task_id


def test_console_shows_submitted_tasks_finish_and_their_detail(page, api):
    # Given two tasks submitted through the API
    printed = submit(api, "execute", {"command": ["python3", "-c", "print('hello from the console')"]})
    analyzed = submit(api, "analyze", {"files": {"a.py": "def f():\n    return 1\n"}})
    # When the console polls / Then both appear and end SUCCEEDED, newest first
    page.wait_for_selector(row(printed, "SUCCEEDED"), timeout=WAIT_MS)
    page.wait_for_selector(row(analyzed, "SUCCEEDED"), timeout=WAIT_MS)
    ids = page.eval_on_selector_all("#tasks tbody tr", "rows => rows.map(r => r.dataset.id)")
    assert ids.index(analyzed) < ids.index(printed)
    # And the execute task's detail shows its worker, its output and its payload
    page.click(row(printed))
    page.wait_for_selector("#stdout", timeout=WAIT_MS)
    assert page.inner_text("#detail-id") == printed
    assert page.inner_text("#stdout").strip() == "hello from the console"
    # The payload is a request of its own, which may land after the detail
    page.wait_for_selector("#payload:has-text('command')", timeout=WAIT_MS)
    assert "RUNNING" in page.inner_text("#timeline") and "SUCCEEDED" in page.inner_text("#timeline")


def test_console_cancels_a_running_task(page, api):
    # Given a long task running on a worker
    task_id = submit(api, "execute", {"command": ["python3", "-c", "import time; time.sleep(60)"]})
    wait_for_status(api, task_id, {"RUNNING"})
    # When it is opened and cancelled from the page
    page.wait_for_selector(row(task_id), timeout=WAIT_MS)
    page.click(row(task_id))
    page.wait_for_selector("#detail-status:text('RUNNING')", timeout=WAIT_MS)
    page.click("#cancel")
    # Then its worker stops it and the page shows it CANCELLED
    page.wait_for_selector(row(task_id, "CANCELLED"), timeout=WAIT_MS)
    assert api.get(f"/tasks/{task_id}").json()["status"] == "CANCELLED"


def test_console_shows_a_dead_lettered_task(page, api, stack):
    # Given a running task whose message SQS gave up on (the dead-letter function receives it)
    task_id = submit(api, "execute", {"command": ["python3", "-c", "import time; time.sleep(60)"]})
    wait_for_status(api, task_id, {"RUNNING"})
    event = load_event("dead_letter_sqs_batch.json")
    body = {"id": stored_key(task_id), "task_type": "execute", "payload": {"command": ["python3"]}}
    event["Records"][0]["body"] = json.dumps(body)
    invoke(stack.template, "DeadLetterFunction", event)
    # When the console polls / Then the task shows DEAD_LETTERED with its reason
    page.wait_for_selector(row(task_id, "DEAD_LETTERED"), timeout=WAIT_MS)
    assert "gave up" in page.inner_text(row(task_id) + " td.error")
    # And the figures and the chart of the last hour are drawn; the page as it is, saved
    page.wait_for_selector("#chart polyline", state="attached", timeout=WAIT_MS)
    assert page.inner_text("#fig-workers") != "-"
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000


def test_console_shows_the_apis_problem_document(page):
    # Given the page / When it calls the API with something the API refuses
    shown = page.evaluate(
        "api('GET', '/tasks?limit=0').catch(() => [$('problem').className, $('problem').textContent])"
    )
    # Then the problem document's status and title are shown to the user
    assert shown[0] == "shown" and shown[1].startswith("422 ")
