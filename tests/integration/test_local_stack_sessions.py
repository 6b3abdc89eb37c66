"""The local stack shares its process with the functions it invokes and with the workers tests run
in it, whose heartbeats keep 3 s test leases: its loops must not make boto3 sessions. Each one
reloads botocore's endpoint and service data, CPU that holds the GIL plus tens of thousands of objects
whose collection pauses every thread (a replacement worker's lease lapsed on a quiet CI run)."""

from __future__ import annotations

import threading
import time

import botocore.session
import pytest

pytestmark = pytest.mark.integration


def test_a_running_stack_makes_no_session_while_it_supervises_and_schedules(stack, monkeypatch):
    # Given a running stack whose scheduled functions have each run once (their first run makes
    # their clients, as a cold start does)
    rounds = 2.5 * max(stack.config.supervise_seconds, stack.config.schedule_seconds)
    time.sleep(rounds)
    made: list[str] = []
    original = botocore.session.Session.__init__

    def counted(session: botocore.session.Session, *args: object, **kwargs: object) -> None:
        made.append(threading.current_thread().name)
        original(session, *args, **kwargs)

    monkeypatch.setattr(botocore.session.Session, "__init__", counted)
    # When it supervises its workers and runs its schedules for a few more rounds
    time.sleep(rounds)
    # Then it made no session, and the client it gives twice is the same one
    assert made == []
    assert stack.client("sqs") is stack.client("sqs")
