"""Callers: the principal API Gateway authenticated, and which tasks it may see."""

from __future__ import annotations

import pytest

from mistersmith.callers import LOCAL_CALLER, Caller, identify, principal
from mistersmith.errors import CallerUnknown
from mistersmith.models import StoredTask, TaskStatus

pytestmark = pytest.mark.unit

ROLE = "arn:aws:iam::123456789012:role/ci-runner"


def context(**identity: str | None) -> dict[str, object]:
    """A REST API request context as API Gateway passes it to a Lambda proxy integration."""
    fields = {"userArn": None, "apiKeyId": None, "caller": None, "accessKey": None, "sourceIp": "192.0.2.1"}
    return {"accountId": "123456789012", "stage": "dev", "identity": fields | identity}


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        ("arn:aws:sts::123456789012:assumed-role/ci-runner/run-4711", ROLE),
        ("arn:aws:sts::123456789012:assumed-role/ci-runner/botocore-session-1", ROLE),
        ("arn:aws:iam::123456789012:role/ci/ci-runner", ROLE),
        (ROLE, ROLE),
        ("arn:aws-cn:sts::123456789012:assumed-role/R/s", "arn:aws-cn:iam::123456789012:role/R"),
        ("arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:user/alice"),
        ("arn:aws:iam::123456789012:root", "arn:aws:iam::123456789012:root"),
        ("arn:aws:sts::123456789012:federated-user/bob", "arn:aws:sts::123456789012:federated-user/bob"),
    ],
)
def test_principal_of_a_session_is_its_role_path_less(arn, expected):
    assert principal(arn) == expected


def test_identify_two_sessions_of_one_role_are_one_caller():
    # Given two CI runs of the same role
    first = identify(
        context(userArn="arn:aws:sts::123456789012:assumed-role/ci-runner/run-1"),
        None,
        admins=(),
        trust_caller_header=False,
    )
    second = identify(
        context(userArn="arn:aws:sts::123456789012:assumed-role/ci-runner/run-2"),
        None,
        admins=(),
        trust_caller_header=False,
    )
    # Then they are the same caller, and not an admin
    assert first == second == Caller(ROLE, admin=False)


def test_identify_api_key_caller_is_its_key_id_never_the_key():
    caller = identify(
        context(apiKeyId="k3y1d", apiKey="s3cret-value"), None, admins=(), trust_caller_header=False
    )
    assert caller.principal == "apikey:k3y1d"


def test_identify_principal_in_the_admin_list_is_an_admin():
    caller = identify(
        context(userArn="arn:aws:sts::123456789012:assumed-role/ci-runner/x"),
        None,
        admins={ROLE},
        trust_caller_header=False,
    )
    assert caller.admin


def test_identify_without_identity_in_the_cloud_configuration_is_refused_even_with_the_header():
    with pytest.raises(CallerUnknown):
        identify(context(), "arn:aws:iam::123456789012:role/Admin", admins=(), trust_caller_header=False)
    with pytest.raises(CallerUnknown):
        identify(None, "arn:aws:iam::123456789012:role/Admin", admins=(), trust_caller_header=False)


def test_identify_header_never_overrides_the_gateway_identity_even_when_trusted():
    caller = identify(
        context(userArn=ROLE), "arn:aws:iam::123456789012:role/Admin", admins=(), trust_caller_header=True
    )
    assert caller.principal == ROLE


def test_identify_locally_the_header_names_the_caller_and_its_absence_is_the_local_caller():
    assert identify(None, "alice", admins=(), trust_caller_header=True).principal == "alice"
    assert identify(None, None, admins=(), trust_caller_header=True).principal == LOCAL_CALLER


@pytest.mark.parametrize(
    ("caller", "owner", "visible"),
    [
        (Caller("a"), "a", True),
        (Caller("a"), "b", False),
        (Caller("a", admin=True), "b", True),
        (Caller("a"), None, True),
    ],
)
def test_caller_sees_its_own_tasks_unowned_ones_and_admins_everything(caller, owner, visible):
    task = StoredTask(
        id="t", owner=owner, task_type="analyze", status=TaskStatus.QUEUED, created_at="t", updated_at="t"
    )
    assert caller.may_see(task) is visible
