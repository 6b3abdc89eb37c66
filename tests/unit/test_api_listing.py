"""GET /tasks in-process on in-memory adapters: pages on the by-status index, never a table scan."""

from __future__ import annotations

import uuid
import warnings
from typing import Any

import pytest

from local_stack.lambda_runtime import fresh_module
from mistersmith.callers import CALLER_HEADER, Caller
from mistersmith.intake import Intake
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import CompileRequest, TaskStatus, task_key
from mistersmith.settings import IntakeSettings
from tests.fakes import MemoryTaskStore, NullPublisher

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's testclient warns about its httpx dependency
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.unit

# The by-status walk is an admin's listing (everyone's tasks); a caller's own is on the by-owner index.
ADMIN = "arn:aws:iam::123456789012:role/ops"
SETTINGS = IntakeSettings(
    task_table_name="tasks",
    event_bus_name="bus",
    artifacts_bucket_name="bucket",
    local_caller_header=True,
    api_admin_principals=frozenset({ADMIN}),
)
OWNER = Caller("arn:aws:iam::123456789012:role/ci-runner")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class RecordingStore(MemoryTaskStore):
    """Remembers how it was asked to list."""

    def __init__(self) -> None:
        super().__init__()
        self.listings: list[dict[str, Any]] = []

    def list(self, **query: Any) -> Any:
        self.listings.append(query)
        return super().list(**query)


@pytest.fixture
def app_client():
    """The intake app in-process on in-memory adapters, and its store."""
    module = fresh_module("functions/intake", "app")
    store = RecordingStore()
    intake = Intake(Lifecycle(store, NullPublisher()), blobs=None, settings=SETTINGS)
    module.app.dependency_overrides[module.get_intake] = lambda: intake
    return TestClient(module.app, headers={CALLER_HEADER: ADMIN}), store, intake


def submit(intake: Intake, count: int) -> list[str]:
    ids = [unique("listed") for _ in range(count)]
    for task_id in ids:
        intake.submit(
            CompileRequest(id=task_id, task_type="compile", payload={"files": {"a.py": "x = 1\n"}}), OWNER
        )
    return ids


def test_api_listing_without_status_reads_each_status_never_the_whole_table(app_client):
    # Given tasks in two statuses
    client, store, intake = app_client
    queued = submit(intake, 3)
    store.transition(
        task_key(OWNER.principal, queued[0]),
        TaskStatus.CANCELLED,
        allowed_from={TaskStatus.QUEUED},
        changes={},
    )
    # When every task is listed two per page
    seen, token = [], None
    while True:
        page = client.get("/tasks", params={"limit": 2} | ({"next_token": token} if token else {})).json()
        seen += [item["id"] for item in page["items"]]
        if not (token := page.get("next_token")):
            break
    # Then each task came once, active ones first, and every read named a status (an index query)
    assert set(seen[:2]) == set(queued[1:])
    assert seen[2:] == [queued[0]]
    assert all(listing["status"] is not None for listing in store.listings)


def test_api_listing_page_is_filled_across_statuses(app_client):
    # Given one QUEUED and one CANCELLED task
    client, store, intake = app_client
    first, second = submit(intake, 2)
    store.transition(
        task_key(OWNER.principal, first), TaskStatus.CANCELLED, allowed_from={TaskStatus.QUEUED}, changes={}
    )
    # When two are asked for in one page
    page = client.get("/tasks", params={"limit": 2}).json()
    # Then both come, from the two statuses, and what follows is at most an empty last page
    assert [item["id"] for item in page["items"]] == [second, first]
    rest = client.get("/tasks", params={"limit": 2, "next_token": page["next_token"]}).json()
    assert rest == {"items": []}
