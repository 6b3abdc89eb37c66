"""The console page: served by the local stack at /console/, and by `mistersmith console`, which
forwards the page's API calls (answers and problem documents as they are); artifact downloads."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from mistersmith_client.cli import main
from mistersmith_client.client import MisterSmithClient
from mistersmith_client.console_server import ConsoleServer

pytestmark = pytest.mark.integration


@pytest.fixture
def console_server(stack) -> Iterator[ConsoleServer]:
    server = ConsoleServer(MisterSmithClient(stack.api_url, retries=0))
    server.start()
    yield server
    server.close()


def test_local_stack_serves_the_console_beside_the_api(api):
    # Given the local stack / When the console's address is opened
    page = api.get("/console/")
    redirect = api.get("/console")
    # Then the page comes (static: no build step), and /console leads to it
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>MisterSmith console</title>" in page.text and 'api("GET", "/stats")' in page.text
    assert (redirect.status_code, redirect.headers["location"]) == (308, "/console/")


def test_console_command_serves_the_page_and_forwards_the_api_calls(console_server):
    base = console_server.url.removesuffix("/console/")
    with httpx.Client(base_url=base, timeout=10) as browser:
        # Given the console server / When the page and its calls are made through it
        page = browser.get("/console/")
        stats = browser.get("/stats")
        task_id = f"console-{uuid.uuid4().hex[:8]}"
        submitted = browser.post(
            "/tasks", json={"id": task_id, "task_type": "analyze", "payload": {"files": {"a.py": "x = 1\n"}}}
        )
        missing = browser.get("/tasks/no-such-task")
    # Then the page comes from it, and the API's answers pass through, problem documents included
    assert page.status_code == 200 and "MisterSmith console" in page.text
    assert stats.status_code == 200 and "queues" in stats.json()
    assert submitted.status_code == 202 and submitted.json()["id"] == task_id
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert missing.json()["status"] == 404


def test_console_command_when_the_api_is_unreachable_answers_a_502_problem():
    server = ConsoleServer(MisterSmithClient("http://127.0.0.1:9", retries=0))
    server.start()
    try:
        answer = httpx.get(server.url.removesuffix("/console/") + "/stats", timeout=10)
    finally:
        server.close()
    assert answer.status_code == 502 and answer.json()["title"] == "API unreachable"


def test_console_command_prints_its_url_as_json_before_serving(stack, monkeypatch):
    # Given a console that stops as soon as it would serve (as Ctrl-C would)
    def interrupted(self: ConsoleServer) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ConsoleServer, "serve_forever", interrupted)
    out = io.StringIO()
    code = main(
        ["console", "--port", "0", "--api-url", stack.api_url, "-o", "json"], stdout=out, stderr=io.StringIO()
    )
    # Then it printed one JSON document with its address
    assert code == 0
    assert json.loads(out.getvalue())["url"].startswith("http://127.0.0.1:")


def test_artifact_link_redirects_to_a_download_of_the_archive(api, wait_terminal):
    # Given a compile task whose result names its archive
    task_id = f"artifact-{uuid.uuid4().hex[:8]}"
    api.post(
        "/tasks", json={"id": task_id, "task_type": "compile", "payload": {"files": {"m.py": "X = 1\n"}}}
    )
    assert wait_terminal(task_id)["status"] == "SUCCEEDED"
    # When the console's download link is followed
    link = api.get(f"/tasks/{task_id}/artifacts/artifact_uri")
    download = httpx.get(link.headers["location"], timeout=10)
    # Then it leads to a short-lived URL that downloads the zip
    assert link.status_code == 307
    assert download.status_code == 200 and download.content[:2] == b"PK"
    assert api.get(f"/tasks/{task_id}/artifacts/stdout_uri").status_code == 404
