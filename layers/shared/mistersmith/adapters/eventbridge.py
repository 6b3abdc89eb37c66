"""Events on the MisterSmith EventBridge bus."""

from __future__ import annotations

from typing import Any

from mistersmith.adapters.aws import client
from mistersmith.errors import PublishFailed
from mistersmith.models import canonical_json
from mistersmith.ports import EventPublisher


class EventBridgePublisher(EventPublisher):
    """Implements `ports.EventPublisher` for one bus."""

    def __init__(self, bus_name: str) -> None:
        self.bus_name = bus_name
        self._events = client("events")

    def publish(self, *, source: str, detail_type: str, detail: dict[str, Any]) -> None:
        response = self._events.put_events(
            Entries=[
                {
                    "EventBusName": self.bus_name,
                    "Source": source,
                    "DetailType": detail_type,
                    "Detail": canonical_json(detail),
                }
            ]
        )
        if response.get("FailedEntryCount"):
            entry = response["Entries"][0]
            raise PublishFailed(
                f"the bus refused the {detail_type!r} event: "
                f"{entry.get('ErrorCode')} {entry.get('ErrorMessage')}"
            )
