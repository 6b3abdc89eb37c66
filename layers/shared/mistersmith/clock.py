"""Timestamps: records carry ISO 8601 UTC strings; leases compare epoch seconds."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def iso_from_epoch(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return iso_from_epoch(time.time())


def epoch_from_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
