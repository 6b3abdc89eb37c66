"""Status events batched on their way to the bus: EventBridge takes ten per request, and a short
task's RUNNING and terminal events are a fraction of a second apart."""

from __future__ import annotations

import threading
import time
from typing import Any

from mistersmith.observability import logger
from mistersmith.ports import Event, EventPublisher, Refusal

# EventBridge's PutEvents takes at most ten entries.
BATCH_SIZE = 10
# How long the first event waits for others to share its request.
WINDOW_SECONDS = 0.3
ATTEMPTS = 4


class BatchingPublisher(EventPublisher):
    """Holds events back for up to `window_seconds` after the first, or until ten wait, then
    publishes them in one request on a thread of its own; `flush` publishes what waits at once
    (a worker or a Lambda does before it stops). Entries the bus refuses for a passing reason go
    again, alone, before any later event; a task's events reach the bus in the order they were
    published, so a refused event whose task's later event was taken is given up, not sent after
    it. An event that cannot be published is logged: its state is already saved."""

    def __init__(
        self,
        bus: EventPublisher,
        *,
        window_seconds: float = WINDOW_SECONDS,
        backoff_seconds: float = 0.1,
    ) -> None:
        self.bus = bus
        self.window_seconds = window_seconds
        self.backoff_seconds = backoff_seconds
        self._pending: list[Event] = []
        self._arrived = threading.Condition()
        # One batch on its way at a time: a task's later event never overtakes an earlier one.
        self._sending = threading.Lock()
        self._thread: threading.Thread | None = None

    def publish(self, *, source: str, detail_type: str, detail: dict[str, Any]) -> None:
        with self._arrived:
            self._pending.append(Event(source, detail_type, detail))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="event-batches", daemon=True)
                self._thread.start()
            # The thread waits for a first event, then for a full batch: any other wake-up is wasted.
            if len(self._pending) == 1 or len(self._pending) >= BATCH_SIZE:
                self._arrived.notify()

    def flush(self) -> None:
        with self._sending:
            while batch := self._take():
                self._send(batch)

    def _take(self) -> list[Event]:
        with self._arrived:
            batch, self._pending = self._pending[:BATCH_SIZE], self._pending[BATCH_SIZE:]
            return batch

    def _run(self) -> None:
        while True:
            with self._arrived:
                while not self._pending:
                    self._arrived.wait()
                deadline = time.monotonic() + self.window_seconds
                while len(self._pending) < BATCH_SIZE and (left := deadline - time.monotonic()) > 0:
                    self._arrived.wait(left)
            try:
                self.flush()
            except Exception:  # never the thread's end: the next events go out all the same
                logger.exception("status events not published")

    def _send(self, batch: list[Event]) -> None:
        pending = batch
        for attempt in range(ATTEMPTS):
            if attempt:
                time.sleep(self.backoff_seconds * 2**attempt)
            try:
                refusals = self.bus.publish_batch(pending)
            except Exception as error:  # the adapter's own failure: as if every entry was refused
                refusals = [Refusal(event, str(error), retryable=True) for event in pending]
            last = attempt == ATTEMPTS - 1
            again = []
            refused = {id(refusal.event) for refusal in refusals}
            position = {id(event): i for i, event in enumerate(pending)}
            for refusal in refusals:
                later = pending[position[id(refusal.event)] + 1 :]
                overtaken = any(_task(e) == _task(refusal.event) and id(e) not in refused for e in later)
                if refusal.retryable and not last and not overtaken:
                    again.append(refusal.event)
                else:
                    reason = "a later event of its task was taken" if overtaken else refusal.reason
                    logger.warning(
                        "status event not published",
                        extra={"task_id": _task(refusal.event), "reason": reason},
                    )
            if not again:
                return
            pending = again


def _task(event: Event) -> Any:
    return event.detail.get("id")
