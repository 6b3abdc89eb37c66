"""GET /stats' logic on fakes: the parts, the counts, the cache, and a part that cannot be read."""

from __future__ import annotations

import pytest

from mistersmith.models import ScalingDecisionEntry, StoredTask, TaskStatus
from mistersmith.ports import QueueDepth, ServiceCounts, WorkQueue
from mistersmith.stats import Stats
from tests.fakes import MemoryQueue, MemoryTaskStore

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class Service:
    def __init__(self) -> None:
        self.reads = 0

    def service_counts(self) -> ServiceCounts:
        self.reads += 1
        return ServiceCounts(desired=3, running=2, pending=1, deployment_in_progress=False)


class Gauge:
    """A queue read as GET /stats reads one: its depth only."""

    def __init__(self, queue: WorkQueue) -> None:
        self.queue = queue

    def queue_depth(self) -> QueueDepth:
        return self.queue.depth()


class History:
    def __init__(self, entries: list[ScalingDecisionEntry]) -> None:
        self.entries = entries
        self.asked: list[str] = []

    def since(self, at: str) -> list[ScalingDecisionEntry]:
        self.asked.append(at)
        return [entry for entry in self.entries if entry.at >= at]


class Unreadable(MemoryQueue):
    def depth(self) -> QueueDepth:
        raise ConnectionError("sqs is down")


def decision(at: str, desired: int) -> ScalingDecisionEntry:
    return ScalingDecisionEntry(
        at=at, desired=desired, previous=2, reason="r", changed=desired != 2,
        visible=10, in_flight=1, delayed=0, running=2, pending=0,
    )  # fmt: skip


def task(task_id: str, status: TaskStatus, task_type: str) -> StoredTask:
    return StoredTask(
        id=task_id, task_type=task_type, status=status,
        created_at="2027-01-15T08:00:00.000Z", updated_at="2027-01-15T08:00:00.000Z",
    )  # fmt: skip


def stats(work: WorkQueue, history: History, clock: list[float]) -> tuple[Stats, MemoryTaskStore, Service]:
    store, service = MemoryTaskStore(), Service()
    dlq = MemoryQueue()
    dlq.send("{}")
    return (
        Stats(
            store,
            {"work": Gauge(work)},
            {"work": Gauge(dlq), "router": Gauge(MemoryQueue())},
            service,
            history,
            cache_seconds=5,
            clock=lambda: clock[0],
        ),
        store,
        service,
    )


def test_stats_reports_queues_dead_letters_workers_the_last_hours_decisions_and_counts():
    # Given two messages waiting, one dead letter, three tasks and decisions from two hours and minutes ago
    work = MemoryQueue()
    work.send("a")
    work.send("b")
    history = History([decision("2027-01-15T08:00:00.000Z", 5), decision("2027-01-15T06:00:00.000Z", 9)])
    report_of, store, _ = stats(work, history, [NOW])
    store.create(task("a", TaskStatus.SUCCEEDED, "execute"))
    store.create(task("b", TaskStatus.SUCCEEDED, "compile"))
    store.create(task("c", TaskStatus.FAILED, "execute"))
    # When the stats are read
    report = report_of.report(None)
    # Then every part is there
    assert report.queues["work"].model_dump() == {
        "visible": 2,
        "in_flight": 0,
        "delayed": 0,
        "dead_letters": 1,
    }
    assert report.dead_letter_queues == {"work": 1, "router": 0}
    assert report.workers is not None and (report.workers.desired, report.workers.running) == (3, 2)
    assert history.asked == ["2027-01-15T07:00:00.000Z"]  # one hour before now
    assert [entry.desired for entry in report.scaling_decisions] == [5]
    assert report.tasks is not None
    assert report.tasks.by_status["SUCCEEDED"] == 2 and report.tasks.by_status["QUEUED"] == 0
    assert report.tasks.by_type == {"execute": 2, "compile": 1, "analyze": 0}
    assert report.tasks.by_status_and_type["FAILED"]["execute"] == 1
    assert report.unavailable == []


def test_stats_within_the_cache_period_reads_nothing_again():
    # Given stats read once
    clock = [NOW]
    report_of, _, service = stats(MemoryQueue(), History([]), clock)
    first = report_of.report(None)
    # When read again 4 s later, then 6 s later
    clock[0] += 4
    second = report_of.report(None)
    clock[0] += 2
    third = report_of.report(None)
    # Then the second is the cached report and the third a fresh one
    assert second is first and service.reads == 2
    assert third is not first


def test_stats_part_that_cannot_be_read_is_named_and_the_rest_reported():
    # Given a work queue that cannot be read
    report_of, _, _ = stats(Unreadable(), History([]), [NOW])
    # When the stats are read / Then the queue is left out and named, and workers are still there
    report = report_of.report(None)
    assert "work" not in report.queues
    assert report.unavailable == ["queue work: ConnectionError"]
    assert report.workers is not None


def test_stats_counts_only_the_callers_own_tasks_and_caches_each_callers_apart():
    # Given tasks of two owners
    report_of, store, _ = stats(MemoryQueue(), History([]), [NOW])
    store.create(task("a", TaskStatus.SUCCEEDED, "execute").model_copy(update={"owner": "alice"}))
    store.create(task("b", TaskStatus.SUCCEEDED, "execute").model_copy(update={"owner": "bob"}))
    # When each asks, and an admin (everyone's)
    alice, bob, admin = report_of.report("alice"), report_of.report("bob"), report_of.report(None)
    # Then each sees their own count, the admin all of them
    assert alice.tasks is not None and bob.tasks is not None and admin.tasks is not None
    assert (alice.tasks.scope, alice.tasks.by_status["SUCCEEDED"]) == ("caller", 1)
    assert bob.tasks.by_status["SUCCEEDED"] == 1
    assert (admin.tasks.scope, admin.tasks.by_status["SUCCEEDED"]) == ("all", 2)
