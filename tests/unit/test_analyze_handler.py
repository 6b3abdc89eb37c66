"""The analyze Lambda's handler on in-memory adapters: the status events its tasks held back for a
shared request are on the bus before it returns (a frozen Lambda publishes nothing)."""

from __future__ import annotations

import json

import pytest

from local_stack.lambda_runtime import LambdaContext, fresh_module
from local_stack.stack import EVENTS_DIR
from mistersmith.clock import now_iso
from mistersmith.event_batching import BatchingPublisher
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask, TaskMessage
from mistersmith.processing import TaskProcessor
from mistersmith.work import WorkLimits
from tests.fakes import BatchBus, MemoryBlobStore, MemoryTaskStore

pytestmark = pytest.mark.unit


def test_the_analyze_lambda_publishes_its_held_back_status_events_before_it_returns(monkeypatch):
    # Given the analyze handler on a processor whose events wait (a long time) to share a request
    module = fresh_module("functions/analyze", "app")
    event = json.loads((EVENTS_DIR / "analyze_sqs_batch.json").read_text())
    message = TaskMessage.model_validate_json(event["Records"][0]["body"])
    store, bus = MemoryTaskStore(), BatchBus()
    store.create(StoredTask.queued(message, now_iso()))
    processor = TaskProcessor(
        Lifecycle(store, BatchingPublisher(bus, window_seconds=3600)),
        MemoryBlobStore(),
        worker_id="analyze-lambda",
        lease_seconds=60,
        limits=WorkLimits(),
    )
    monkeypatch.setattr(module, "get_processor", lambda: processor)
    # When it handles a batch of one task
    answer = module.handler(event, LambdaContext(function_name="AnalyzeFunction"))
    # Then the task ran, and both its events went out, in one request, before the handler returned
    assert answer == {"batchItemFailures": []}
    assert [[e.detail["status"] for e in request] for request in bus.requests] == [["RUNNING", "SUCCEEDED"]]
