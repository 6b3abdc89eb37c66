"""Callers own their tasks: ids are namespaced by caller, and GET, DELETE and GET /tasks show a
caller only its own tasks unless it is an admin (in-process on in-memory adapters; the local stack's
case is in tests/integration/test_api_ownership.py). Also the API's small holes: text that cannot be
encoded, ids that are only dots, and file paths that collide after normalisation."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest

from local_stack.lambda_runtime import LambdaContext, fresh_module
from mistersmith.callers import CALLER_HEADER
from mistersmith.intake import Intake
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask, TaskStatus
from mistersmith.settings import IntakeSettings
from tests.conftest import load_event
from tests.fakes import MemoryBlobStore, MemoryTaskStore, NullPublisher

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's testclient warns about its httpx dependency
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.unit

ADMIN = "arn:aws:iam::123456789012:role/ops"
CI_SESSION = "arn:aws:sts::123456789012:assumed-role/ci-runner/run-1"
CI_ROLE = "arn:aws:iam::123456789012:role/ci-runner"
NAMES = {"task_table_name": "tasks", "event_bus_name": "bus", "artifacts_bucket_name": "bucket"}
LOCAL = IntakeSettings(**NAMES, local_caller_header=True, api_admin_principals=frozenset({ADMIN}))
CLOUD = IntakeSettings(**NAMES, api_admin_principals=frozenset({ADMIN}))
ANALYZE = {"task_type": "analyze", "payload": {"files": {"a.py": "x = 1\n"}}}
EXECUTE = {"task_type": "execute", "payload": {"command": ["true"]}}


class Api:
    """The intake app in-process on in-memory adapters, called as one caller or another."""

    def __init__(self, settings: IntakeSettings) -> None:
        self.module = fresh_module("functions/intake", "app")
        self.store = MemoryTaskStore()
        intake = Intake(Lifecycle(self.store, NullPublisher()), MemoryBlobStore("bucket"), settings)
        self.module.app.dependency_overrides[self.module.get_intake] = lambda: intake
        self.client = TestClient(self.module.app)

    def call(
        self,
        caller: str | None,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        **options: Any,
    ) -> Any:
        headers = (headers or {}) | ({CALLER_HEADER: caller} if caller else {})
        return self.client.request(method, path, headers=headers, **options)

    def proxy(self, event: dict[str, Any]) -> dict[str, Any]:
        """The app through its Lambda handler, as API Gateway invokes it."""
        return self.module.handler(event, LambdaContext(function_name="IntakeFunction"))


@pytest.fixture
def api() -> Api:
    return Api(LOCAL)


def submitted(api: Api, caller: str, task_id: str, body: dict[str, Any]) -> dict[str, Any]:
    response = api.call(caller, "POST", "/tasks", json={"id": task_id} | body)
    assert response.status_code == 202, response.text
    return response.json()


def test_api_two_callers_using_one_id_each_get_their_own_task(api):
    # Given alice's task build-1
    submitted(api, "alice", "build-1", ANALYZE)
    # When bob submits another body under the same id
    response = api.call("bob", "POST", "/tasks", json={"id": "build-1"} | EXECUTE)
    # Then it is accepted as bob's own task, and each reads back only their own
    assert response.status_code == 202
    assert response.json()["owner"] == "bob"
    alice, bob = (api.call(name, "GET", "/tasks/build-1").json() for name in ("alice", "bob"))
    assert (alice["task_type"], alice["owner"], alice["id"]) == ("analyze", "alice", "build-1")
    assert (bob["task_type"], bob["owner"], bob["id"]) == ("execute", "bob", "build-1")


def test_api_same_body_from_another_caller_is_a_new_task_not_the_first_callers(api):
    # Given alice's task
    first = submitted(api, "alice", "same-1", ANALYZE)
    # When bob sends the very same body and id
    second = submitted(api, "bob", "same-1", ANALYZE)
    # Then bob gets a task of his own, not alice's answered back
    assert second["owner"] == "bob"
    assert first["owner"] == "alice"
    assert len(api.store.tasks) == 2


def test_api_same_body_again_from_the_same_caller_is_the_same_task(api):
    first = submitted(api, "alice", "again-1", ANALYZE)
    assert submitted(api, "alice", "again-1", ANALYZE) == first
    assert api.call("alice", "POST", "/tasks", json={"id": "again-1"} | EXECUTE).status_code == 409


def test_api_caller_can_neither_read_nor_cancel_another_callers_task(api):
    # Given alice's task
    submitted(api, "alice", "private-1", ANALYZE)
    # When bob reads and cancels it, also naming alice as the owner
    answers = [
        api.call("bob", "GET", "/tasks/private-1"),
        api.call("bob", "DELETE", "/tasks/private-1"),
        api.call("bob", "GET", "/tasks/private-1", params={"owner": "alice"}),
        api.call("bob", "DELETE", "/tasks/private-1", params={"owner": "alice"}),
    ]
    # Then every answer is a 404, and the task is untouched
    assert [answer.status_code for answer in answers] == [404] * 4
    assert api.call("alice", "GET", "/tasks/private-1").json()["status"] == "QUEUED"


def listed(api: Api, caller: str, **params: Any) -> list[tuple[str, str]]:
    items, token = [], None
    while True:
        page = api.call(
            caller, "GET", "/tasks", params=params | ({"next_token": token} if token else {})
        ).json()
        items += [(item["owner"], item["id"]) for item in page["items"]]
        if not (token := page.get("next_token")):
            return sorted(items)


def test_api_listing_shows_a_caller_only_its_own_tasks(api):
    # Given two tasks of alice's and one of bob's, one under an id they share
    for caller, task_id in (("alice", "a-1"), ("alice", "shared"), ("bob", "shared")):
        submitted(api, caller, task_id, ANALYZE)
    # When each lists, one item per page, also naming the other as the owner
    # Then each sees only their own
    assert listed(api, "alice", limit=1) == [("alice", "a-1"), ("alice", "shared")]
    assert listed(api, "bob", limit=1) == [("bob", "shared")]
    assert listed(api, "bob", owner="alice") == []
    assert listed(api, "bob", status="QUEUED", task_type="analyze") == [("bob", "shared")]


def test_api_admin_lists_reads_and_cancels_every_callers_task(api):
    # Given tasks of alice's and bob's under one id
    submitted(api, "alice", "shared", ANALYZE)
    submitted(api, "bob", "shared", ANALYZE)
    # When an admin lists, reads and cancels alice's
    everything = listed(api, ADMIN)
    alices = listed(api, ADMIN, owner="alice")
    read = api.call(ADMIN, "GET", "/tasks/shared", params={"owner": "alice"})
    cancelled = api.call(ADMIN, "DELETE", "/tasks/shared", params={"owner": "alice"})
    # Then it saw both, read alice's, and cancelled alice's and not bob's
    assert everything == [("alice", "shared"), ("bob", "shared")]
    assert alices == [("alice", "shared")]
    assert (read.status_code, read.json()["owner"]) == (200, "alice")
    assert (cancelled.status_code, cancelled.json()["status"]) == (202, "CANCELLED")
    assert api.call("bob", "GET", "/tasks/shared").json()["status"] == "QUEUED"


def test_api_unowned_task_from_before_owners_stays_readable_by_its_old_id(api):
    # Given a task written before owners were kept, under an id the old pattern allowed
    api.store.create(
        StoredTask(
            id="-legacy.1", task_type="analyze", status=TaskStatus.SUCCEEDED, created_at="t", updated_at="t"
        )
    )
    # When a caller reads it
    response = api.call("bob", "GET", "/tasks/-legacy.1")
    # Then it is there, under its id
    assert (response.status_code, response.json()["id"]) == (200, "-legacy.1")


def gateway_event(method: str, path: str, body: dict[str, Any] | None, **identity: Any) -> dict[str, Any]:
    """A REST API proxy event (events/intake_get_task.json) for `path`, with this caller identity
    and a caller header claiming to be the admin."""
    event = load_event("intake_get_task.json")
    event["requestContext"]["identity"] |= {"userArn": None} | identity
    event |= {
        "httpMethod": method,
        "path": path,
        "resource": path,
        "pathParameters": None,
        "body": json.dumps(body) if body is not None else None,
    }
    event["headers"] |= {CALLER_HEADER: ADMIN, "Content-Type": "application/json"}
    event["multiValueHeaders"] = {name: [value] for name, value in event["headers"].items()}
    return event


def test_api_in_the_cloud_configuration_the_caller_header_is_ignored():
    # Given the intake as configured in the cloud, and a CI session's request claiming to be the admin
    api = Api(CLOUD)
    submitted_event = gateway_event("POST", "/tasks", {"id": "ci-1"} | ANALYZE, userArn=CI_SESSION)
    # When it submits and lists
    submitted_answer = api.proxy(submitted_event)
    listed_answer = api.proxy(gateway_event("GET", "/tasks", None, userArn=CI_SESSION))
    # Then the task is the CI role's, and the listing is not the admin's
    assert submitted_answer["statusCode"] == 202
    assert json.loads(submitted_answer["body"])["owner"] == CI_ROLE
    assert [item["owner"] for item in json.loads(listed_answer["body"])["items"]] == [CI_ROLE]


def test_api_in_the_cloud_configuration_a_request_without_identity_is_refused():
    # Given the cloud configuration and a request API Gateway did not authenticate, naming a caller in the header
    api = Api(CLOUD)
    # When it lists tasks, directly and through the handler
    direct = api.call(ADMIN, "GET", "/tasks")
    proxied = api.proxy(gateway_event("GET", "/tasks", None))
    # Then both are refused as forbidden problems
    assert direct.status_code == 403
    assert proxied["statusCode"] == 403
    assert json.loads(proxied["body"])["type"] == "urn:mistersmith:problem:caller-unknown"


def test_api_api_key_caller_owns_its_tasks_by_key_id():
    api = Api(CLOUD)
    answer = api.proxy(gateway_event("POST", "/tasks", ANALYZE, apiKeyId="k3y", apiKey="value"))
    assert json.loads(answer["body"])["owner"] == "apikey:k3y"


def test_api_stdin_that_cannot_be_encoded_is_a_422_naming_the_field(api):
    # Given a body whose stdin is a lone surrogate (valid JSON, not encodable text)
    body = '{"task_type": "execute", "payload": {"command": ["cat"], "stdin": "\\ud800"}}'
    # When it is submitted
    response = api.call("alice", "POST", "/tasks", content=body, headers={"content-type": "application/json"})
    # Then it is refused with the field named, and nothing is stored
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["payload.stdin"]
    assert api.store.tasks == {}


@pytest.mark.parametrize("task_id", ["..", ".", "-x"])
def test_api_id_outside_the_new_pattern_is_a_422(api, task_id):
    response = api.call("alice", "POST", "/tasks", json={"id": task_id} | ANALYZE)
    assert response.status_code == 422
    assert api.store.tasks == {}


def test_api_file_paths_naming_one_file_are_a_422(api):
    body = {"task_type": "analyze", "payload": {"files": {"a.py": "x\n", "./a.py": "y\n"}}}
    response = api.call("alice", "POST", "/tasks", json=body)
    assert response.status_code == 422
    assert "name the same file" in response.json()["detail"]
