"""A task's log lines on the local stack: the workers' `.local/logs/worker-N.log` and the functions'
`functions.log` (`component | {json}`), each line kept when it carries the task's id."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_LOG_DIR = Path(".local/logs")


@dataclass(frozen=True)
class LogLine:
    timestamp: str
    component: str
    record: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"timestamp": self.timestamp, "component": self.component, "record": self.record}

    def text(self) -> str:
        record = self.record
        return " | ".join(
            [
                self.component,
                str(record.get("level", "")),
                str(record.get("message", "")),
                str(record.get("correlation_id") or record.get("task_id") or ""),
            ]
        )


def local_lines(task_id: str, log_dir: Path) -> list[LogLine]:
    """Every line of the task in the local stack's log files, oldest first."""
    lines = []
    for path in sorted(log_dir.glob("*.log")):
        for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
            component, separator, rest = raw.partition(" | ")
            if not separator or rest[:1] != "{":
                component, rest = path.stem, raw
            record = _record(rest)
            if record is not None and task_id in (record.get("correlation_id"), record.get("task_id")):
                lines.append(LogLine(str(record.get("timestamp", "")), component, record))
    return sorted(lines, key=lambda line: line.timestamp)


def _record(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
