"""The limits a worker applies to every task it performs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WorkLimits:
    """Upper bounds for one task: the execute wall clock and the bytes kept per output stream."""

    execute_timeout_seconds: float = 600
    output_limit_bytes: int = 65536

    def __post_init__(self) -> None:
        if not self.execute_timeout_seconds > 0:
            raise ValueError("execute_timeout_seconds must be positive")
        if self.output_limit_bytes <= 0:
            raise ValueError("output_limit_bytes must be positive")
