"""Deletes of finished messages, batched: SQS deletes up to ten in one call, and a finished
message's handle waits up to a second for others to share the call."""

from __future__ import annotations

import threading
import time

from mistersmith.observability import logger
from mistersmith.ports import WorkQueue

# SQS deletes at most ten messages per call.
DELETE_BATCH = 10
# A failed batch is tried again after 0.5 s, 1 s, 2 s ... at most this long.
MAX_BACKOFF_SECONDS = 5.0
# The longest a handle waits for others to share its call: far below any visibility timeout, so a
# late delete never lets a finished message come back; long enough to batch a busy worker's deletes.
MAX_WAIT_SECONDS = 1.0


class DeferredDeletes:
    """Collects receipt handles and deletes them ten at a time, on a thread of its own: a handle
    waits up to `max_wait_seconds` for others to share its call, and the poll thread's long poll is
    never cut short for it (an empty receive that a lone task would pay for). A call that fails
    keeps its handles for the next flush, after a back-off, and never raises into the caller's
    thread: a message left undeleted comes back and is skipped, since its task is already terminal."""

    def __init__(self, queue: WorkQueue, max_wait_seconds: float = MAX_WAIT_SECONDS) -> None:
        self.queue = queue
        self.max_wait_seconds = max_wait_seconds
        self._pending: list[str] = []
        # When the oldest pending handle was added (monotonic).
        self._since = 0.0
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._flushing = threading.Lock()
        self._failures = 0
        self._not_before = 0.0
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def add(self, receipt_handle: str) -> None:
        with self._arrived:
            if not self._pending:
                self._since = time.monotonic()
            self._pending.append(receipt_handle)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deletes", daemon=True)
                self._thread.start()
            # The thread waits for a first handle, then for its time or a full batch: no other wake-up.
            if len(self._pending) in (1, DELETE_BATCH):
                self._arrived.notify()

    def _due_in(self) -> float | None:
        """Seconds until the pending handles are due (0: now, a full batch or one that has waited
        long enough, once any back-off has run out); None when nothing is pending. Lock held."""
        if not self._pending:
            return None
        due = self._since + (0 if len(self._pending) >= DELETE_BATCH else self.max_wait_seconds)
        # A back-off after a failed call holds them back too.
        return max(0.0, due - time.monotonic(), self._not_before - time.monotonic())

    def _run(self) -> None:
        while True:
            with self._arrived:
                while (due := self._due_in()) != 0.0:
                    self._arrived.wait(due)
            self.flush()

    def flush(self, *, wait: bool = False) -> None:
        """Deletes what is pending, unless a back-off is running (`wait`: sleep it out, once)."""
        with self._flushing:
            delay = self._not_before - time.monotonic()
            if delay > 0:
                if not wait:
                    return
                time.sleep(delay)
            while batch := self._take():
                try:
                    failed = self.queue.delete_batch(batch)
                except Exception:  # SQS unreachable for now: keep the handles, back off
                    logger.exception("delete failed; kept for the next flush", extra={"pending": len(batch)})
                    self._put_back(batch)
                    self._failures += 1
                    backoff = min(MAX_BACKOFF_SECONDS, 0.5 * 2 ** (self._failures - 1))
                    self._not_before = time.monotonic() + backoff
                    return
                self._failures = 0
                for handle in failed:
                    # Stale or invalid: the message comes back and is skipped as terminal.
                    logger.warning(
                        "message not deleted; it is skipped when it comes back",
                        extra={"receipt": handle[:16]},
                    )

    def _take(self) -> list[str]:
        with self._lock:
            batch, self._pending = self._pending[:DELETE_BATCH], self._pending[DELETE_BATCH:]
            return batch

    def _put_back(self, batch: list[str]) -> None:
        with self._lock:
            if not self._pending:
                self._since = time.monotonic()
            self._pending[:0] = batch
