"""Callers: who sent a request, as API Gateway authenticated it, and which tasks they may see.

A caller is a principal string: an IAM ARN (SigV4, ApiAuth=AWS_IAM) or `apikey:<key id>`
(ApiAuth=API_KEY). An assumed-role session is its role, so that every CI run of one role is one
caller: `arn:aws:sts::123:assumed-role/R/session` becomes `arn:aws:iam::123:role/R`. STS ARNs
carry no role path, so roles are always written path-less (`role/ci/R` is `role/R`; role names
are unique in an account whatever their path)."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from mistersmith.errors import CallerUnknown
from mistersmith.models import StoredTask

_ASSUMED_ROLE = re.compile(
    r"^arn:(?P<partition>[a-z-]+):sts::(?P<account>\d{12}):assumed-role/(?P<role>[^/]+)/[^/]+$"
)
_ROLE = re.compile(r"^arn:(?P<partition>[a-z-]+):iam::(?P<account>\d{12}):role/(?:[^/]+/)*(?P<role>[^/]+)$")
API_KEY_PREFIX = "apikey:"
# Local stack only (IntakeSettings.local_caller_header): the caller of a request no gateway authenticated.
CALLER_HEADER = "x-mistersmith-caller"
LOCAL_CALLER = "local"


def principal(arn: str) -> str:
    """The caller `arn` stands for: a role for its sessions, a role ARN without its path."""
    if match := _ASSUMED_ROLE.match(arn) or _ROLE.match(arn):
        return f"arn:{match['partition']}:iam::{match['account']}:role/{match['role']}"
    return arn


@dataclass(frozen=True)
class Caller:
    principal: str
    # Listed in the ApiAdminPrincipals template parameter: sees and cancels every caller's tasks.
    admin: bool = False

    def may_see(self, task: StoredTask) -> bool:
        """Its own tasks; unowned ones (from the bus, or from before owners were kept) stay readable
        by id as they always were, so that a client following such a task is not cut off."""
        return self.admin or task.owner is None or task.owner == self.principal


def identify(
    request_context: Mapping[str, Any] | None,
    caller_header: str | None,
    *,
    admins: Collection[str],
    trust_caller_header: bool,
) -> Caller:
    """The caller of one request: the identity API Gateway put in `request_context` (REST API,
    Lambda proxy), else, when `trust_caller_header` (the local stack), the caller header or LOCAL_CALLER.
    Raises CallerUnknown when there is neither."""
    identity = (request_context or {}).get("identity") or {}
    if arn := identity.get("userArn"):
        name = principal(arn)
    elif key_id := identity.get("apiKeyId"):
        name = f"{API_KEY_PREFIX}{key_id}"
    elif trust_caller_header:
        name = principal(caller_header or LOCAL_CALLER)
    else:
        raise CallerUnknown("the request carries no caller identity (a SigV4 signature or an API key)")
    return Caller(name, admin=name in admins)
