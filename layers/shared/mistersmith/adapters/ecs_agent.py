"""Task scale-in protection through the ECS agent's endpoint inside a running task."""

from __future__ import annotations

import json
import urllib.request

from mistersmith.ports import TaskProtection


class EcsAgentTaskProtection(TaskProtection):
    """Implements `ports.TaskProtection` with `PUT $ECS_AGENT_URI/task-protection/v1/state`."""

    def __init__(self, agent_uri: str) -> None:
        if not agent_uri.startswith(("http://", "https://")):
            raise ValueError(f"ECS agent URI {agent_uri!r} is not an http URL")
        self._url = f"{agent_uri.rstrip('/')}/task-protection/v1/state"

    def set(self, protected: bool, *, minutes: int) -> None:
        body = {"ProtectionEnabled": protected} | ({"ExpiresInMinutes": minutes} if protected else {})
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            self._url,
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - as above
            response.read()


class NoTaskProtection(TaskProtection):
    """Outside ECS (locally, in tests) there is nothing to protect."""

    def set(self, protected: bool, *, minutes: int) -> None:
        return None
