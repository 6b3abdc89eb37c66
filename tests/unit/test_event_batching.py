"""Status events batched on their way to the bus (in memory): a short task's RUNNING and terminal
events in one request, ten at most per request, refused entries sent again alone and in order, and
nothing sent out of a task's order."""

from __future__ import annotations

import logging

import pytest

from mistersmith.clock import now_iso
from mistersmith.event_batching import BATCH_SIZE, BatchingPublisher
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask, TaskMessage
from mistersmith.ports import Event
from mistersmith.processing import Disposition, TaskProcessor
from mistersmith.work import WorkLimits
from tests.fakes import BatchBus, MemoryBlobStore, MemoryTaskStore

pytestmark = pytest.mark.unit

# Long enough that nothing goes out by itself within a test unless a batch is full.
NEVER = 3600.0
# What a test waits at most for the buffer's thread; the thread is expected well before.
BOUND = 30.0


def status(task_id: str, value: str) -> Event:
    return Event("mistersmith.tasks", "Task Status Changed", {"id": task_id, "status": value})


def published(bus: BatchBus) -> list[list[tuple[str, str]]]:
    return [[(e.detail["id"], e.detail["status"]) for e in request] for request in bus.requests]


def push(publisher: BatchingPublisher, *events: Event) -> None:
    for event in events:
        publisher.publish(source=event.source, detail_type=event.detail_type, detail=event.detail)


def test_a_short_tasks_running_and_terminal_events_go_out_in_one_request():
    # Given a processor whose status events are batched
    bus, store = BatchBus(), MemoryTaskStore()
    message = TaskMessage(id="t-1", task_type="analyze", payload={"files": {"a.py": "x = 1\n"}})
    store.create(StoredTask.queued(message, now_iso()))
    events = BatchingPublisher(bus, window_seconds=NEVER)
    processor = TaskProcessor(
        Lifecycle(store, events), MemoryBlobStore(), worker_id="w", lease_seconds=60, limits=WorkLimits()
    )
    # When a short task runs, and the buffer is flushed (as the worker and the Lambda do when they stop)
    assert processor.process(message).disposition is Disposition.DELETE
    assert bus.requests == []
    events.flush()
    # Then both events went out in one request, RUNNING first
    assert published(bus) == [[("t-1", "RUNNING"), ("t-1", "SUCCEEDED")]]


def test_events_go_out_by_themselves_after_the_window():
    bus = BatchBus()
    push(BatchingPublisher(bus, window_seconds=0.01), status("a", "RUNNING"))
    assert bus.got_one.wait(BOUND)
    assert published(bus) == [[("a", "RUNNING")]]


def test_a_full_batch_goes_out_without_waiting_for_the_window():
    bus = BatchBus()
    publisher = BatchingPublisher(bus, window_seconds=NEVER)
    push(publisher, *(status(f"t{i}", "RUNNING") for i in range(BATCH_SIZE + 1)))
    assert bus.got_one.wait(BOUND)
    # The eleventh waits for its window (or a flush): ten per request at most
    publisher.flush()
    assert [len(request) for request in bus.requests] == [BATCH_SIZE, 1]


def test_only_the_refused_entries_are_sent_again_in_their_order():
    # Given a bus that throttles the first and third entries of the first request
    bus = BatchBus()
    bus.refusals.append({0: True, 2: True})
    publisher = BatchingPublisher(bus, window_seconds=NEVER, backoff_seconds=0)
    push(publisher, status("a", "RUNNING"), status("b", "RUNNING"), status("c", "RUNNING"))
    # When flushed
    publisher.flush()
    # Then the second request holds those two alone, and every event was taken once
    assert published(bus) == [
        [("a", "RUNNING"), ("b", "RUNNING"), ("c", "RUNNING")],
        [("a", "RUNNING"), ("c", "RUNNING")],
    ]
    assert sorted(e.detail["id"] for e in bus.taken) == ["a", "b", "c"]


def test_a_refused_event_is_not_sent_after_a_later_event_of_its_task_that_was_taken(caplog):
    # Given a bus that throttles a task's RUNNING event and takes its terminal one, in one request
    bus = BatchBus()
    bus.refusals.append({0: True})
    publisher = BatchingPublisher(bus, window_seconds=NEVER, backoff_seconds=0)
    push(publisher, status("a", "RUNNING"), status("a", "SUCCEEDED"))
    # When flushed
    with caplog.at_level(logging.WARNING):
        publisher.flush()
    # Then RUNNING never follows SUCCEEDED on the bus: it is given up, and said so
    assert published(bus) == [[("a", "RUNNING"), ("a", "SUCCEEDED")]]
    assert "status event not published" in caplog.text


def test_a_later_event_of_a_task_waits_behind_its_refused_earlier_one():
    # Given a bus that throttles a task's RUNNING event, the last of a full request
    bus = BatchBus()
    bus.refusals.append({BATCH_SIZE - 1: True})
    publisher = BatchingPublisher(bus, window_seconds=NEVER, backoff_seconds=0)
    push(publisher, *(status(f"t{i}", "RUNNING") for i in range(BATCH_SIZE - 1)), status("a", "RUNNING"))
    # When its terminal event follows in the next request
    push(publisher, status("a", "SUCCEEDED"))
    publisher.flush()
    # Then the bus took RUNNING (sent again) before it
    taken = [(e.detail["id"], e.detail["status"]) for e in bus.taken]
    assert taken.index(("a", "RUNNING")) < taken.index(("a", "SUCCEEDED"))


def test_an_event_refused_for_good_or_too_often_is_logged_and_dropped(caplog):
    bus = BatchBus()
    bus.refusals.extend([{0: False, 1: True}, {0: True}, {0: True}, {0: True}])
    publisher = BatchingPublisher(bus, window_seconds=NEVER, backoff_seconds=0)
    push(publisher, status("a", "FAILED"), status("b", "FAILED"))
    with caplog.at_level(logging.WARNING):
        publisher.flush()
    assert bus.taken == []
    assert caplog.text.count("status event not published") == 2
    # The next events are not held up by them
    push(publisher, status("c", "SUCCEEDED"))
    publisher.flush()
    assert [e.detail["id"] for e in bus.taken] == ["c"]
