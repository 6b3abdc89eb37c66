"""Events on the MisterSmith EventBridge bus."""

from __future__ import annotations

import time
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, EndpointConnectionError

from mistersmith.adapters.aws import client
from mistersmith.errors import PublishFailed, PublishUncertain
from mistersmith.models import canonical_json
from mistersmith.ports import EventPublisher

# Retried here rather than by botocore: whether any attempt may have reached the bus must be known.
_ONE_ATTEMPT = Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=5, read_timeout=10)
ATTEMPTS = 4
# Answers that say the bus did not take the event, and that a later attempt may do better.
_RETRYABLE_CODES = frozenset(
    {"ThrottlingException", "InternalFailure", "InternalException", "ServiceUnavailable"}
)


class EventBridgePublisher(EventPublisher):
    """Implements `ports.EventPublisher` for one bus. Raises PublishFailed when the bus definitely
    did not take the event (refused, or never reached), PublishUncertain when an attempt may have
    reached it and its answer was lost."""

    def __init__(self, bus_name: str) -> None:
        self.bus_name = bus_name
        self._events = client("events", _ONE_ATTEMPT)

    def publish(self, *, source: str, detail_type: str, detail: dict[str, Any]) -> None:
        entry = {
            "EventBusName": self.bus_name,
            "Source": source,
            "DetailType": detail_type,
            "Detail": canonical_json(detail),
        }
        uncertain: Exception | None = None
        refusal = "no attempt made"
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(0.1 * 2**attempt)
            try:
                response = self._events.put_events(Entries=[entry])
            except (EndpointConnectionError, ConnectTimeoutError) as error:  # never sent
                refusal = str(error)
                continue
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code", "")
                status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
                if status >= 500:  # the bus may have acted before it failed
                    uncertain = error
                refusal = f"{code} {error}"
                if code in _RETRYABLE_CODES or status >= 500:
                    continue
                break
            except BotoCoreError as error:  # a timeout or reset after the request went out
                uncertain = error
                continue
            if not response.get("FailedEntryCount"):
                return
            failed = response["Entries"][0]
            refusal = f"{failed.get('ErrorCode')} {failed.get('ErrorMessage')}"
            if failed.get("ErrorCode") not in _RETRYABLE_CODES:
                break
        if uncertain is not None:
            raise PublishUncertain(f"the {detail_type!r} event may or may not be on the bus: {uncertain}")
        raise PublishFailed(f"the bus refused the {detail_type!r} event: {refusal}")
