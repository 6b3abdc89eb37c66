"""GET /stats: what the system is doing now, for a console that polls every few seconds. Each part
is read on its own (a failed read leaves its part out and says so) and the whole is cached briefly."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, TypeVar

from mistersmith.clock import iso_from_epoch
from mistersmith.models import (
    QueueStats,
    ScalingDecisionEntry,
    StatsReport,
    TaskCounts,
    TaskStatus,
    TaskType,
    WorkerStats,
)
from mistersmith.observability import logger
from mistersmith.ports import QueueDepth, ServiceCounts, TaskStore

HISTORY_SECONDS = 3600
TASK_TYPES = [task_type.value for task_type in TaskType]
T = TypeVar("T")


class ScalingHistory(Protocol):
    def since(self, at: str) -> list[ScalingDecisionEntry]: ...


class DepthGauge(Protocol):
    def queue_depth(self) -> QueueDepth: ...


class CountsGauge(Protocol):
    def service_counts(self) -> ServiceCounts: ...


@dataclass
class Stats:
    """Queue, DLQ, worker and scaling figures (the same for everyone) and task counts."""

    store: TaskStore
    queues: Mapping[str, DepthGauge]
    # Each queue's DLQ under the queue's name, plus DLQs of their own (the router's).
    dead_letter_queues: Mapping[str, DepthGauge]
    service: CountsGauge | None
    history: ScalingHistory | None
    cache_seconds: float = 5.0
    clock: Callable[[], float] = time.time
    # Per whose tasks are counted (None: everyone's): when it was read, and the report.
    _cached: dict[str | None, tuple[float, StatsReport]] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def report(self, owner: str | None) -> StatsReport:
        """The figures, with the task counts of `owner` (None: of everyone, for an admin)."""
        now = self.clock()
        with self._lock:
            cached = self._cached.get(owner)
            if cached and now - cached[0] < self.cache_seconds:
                return cached[1]
        report = self._read(now, owner)
        with self._lock:
            # Drop the stale ones, so that a stream of different callers cannot grow the cache.
            self._cached = {
                key: value for key, value in self._cached.items() if now - value[0] < self.cache_seconds
            }
            self._cached[owner] = (now, report)
        return report

    def _read(self, now: float, owner: str | None) -> StatsReport:
        unavailable: list[str] = []

        def attempt(part: str, read: Callable[[], T]) -> T | None:
            try:
                return read()
            except Exception as error:  # one unreadable part must not hide the others
                logger.warning("stats part unavailable", extra={"part": part, "error": str(error)})
                unavailable.append(f"{part}: {type(error).__name__}")
                return None

        dead = {
            name: attempt(f"dlq {name}", partial(_depth_of, queue))
            for name, queue in self.dead_letter_queues.items()
        }
        queues = {}
        for name, queue in self.queues.items():
            depth = attempt(f"queue {name}", partial(_depth_of, queue))
            if depth is not None:
                waiting = dead.get(name)
                queues[name] = QueueStats(
                    visible=depth.visible,
                    in_flight=depth.in_flight,
                    delayed=depth.delayed,
                    dead_letters=waiting.visible + waiting.in_flight if waiting else None,
                )
        service = self.service
        counts = attempt("workers", lambda: service.service_counts()) if service else None
        history = self.history
        decisions = (
            attempt("scaling decisions", lambda: history.since(iso_from_epoch(now - HISTORY_SECONDS)))
            if history
            else None
        )
        return StatsReport(
            generated_at=iso_from_epoch(now),
            queues=queues,
            dead_letter_queues={
                name: depth.visible + depth.in_flight for name, depth in dead.items() if depth is not None
            },
            workers=WorkerStats(desired=counts.desired, running=counts.running, pending=counts.pending)
            if counts
            else None,
            scaling_decisions=sorted(decisions or [], key=lambda entry: entry.at),
            tasks=attempt("task counts", lambda: self._counts(owner)),
            unavailable=unavailable,
        )

    def _counts(self, owner: str | None) -> TaskCounts:
        by_status_and_type = {
            status.value: {
                task_type: self.store.count_tasks(status, task_type, owner) for task_type in TASK_TYPES
            }
            for status in TaskStatus
        }
        return TaskCounts(
            scope="all" if owner is None else "caller",
            by_status={status.value: self.store.count_tasks(status, owner=owner) for status in TaskStatus},
            by_type={
                task_type: sum(counts[task_type] for counts in by_status_and_type.values())
                for task_type in TASK_TYPES
            },
            by_status_and_type=by_status_and_type,
        )


def _depth_of(gauge: DepthGauge) -> QueueDepth:
    return gauge.queue_depth()
