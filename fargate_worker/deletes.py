"""Deletes of finished messages, batched: SQS deletes up to ten in one call."""

from __future__ import annotations

import threading
import time

from mistersmith.observability import logger
from mistersmith.ports import WorkQueue

# SQS deletes at most ten messages per call.
DELETE_BATCH = 10
# A failed batch is tried again after 0.5 s, 1 s, 2 s ... at most this long.
MAX_BACKOFF_SECONDS = 5.0


class DeferredDeletes:
    """Collects receipt handles and deletes them ten at a time. With a window, a handle waits up to
    `window_seconds` for others to share its call (tasks that finish one by one would each pay a
    call); a timer sends them then, and a flush before that sends only a full batch. A call that
    fails keeps its handles for the next flush, after a back-off, and never raises into the
    caller's thread: a message left undeleted comes back and is skipped, its task being terminal."""

    def __init__(self, queue: WorkQueue, *, window_seconds: float = 0.0) -> None:
        self.queue = queue
        self.window_seconds = window_seconds
        self._pending: list[str] = []
        self._oldest = 0.0  # when the oldest pending handle was added (monotonic)
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._failures = 0
        self._not_before = 0.0

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def add(self, receipt_handle: str) -> None:
        with self._lock:
            if not self._pending:
                self._oldest = time.monotonic()
                if self.window_seconds:
                    timer = threading.Timer(
                        self.window_seconds, self._flush, kwargs={"wait": False, "due_only": False}
                    )
                    timer.daemon = True
                    timer.start()
            self._pending.append(receipt_handle)

    def full(self) -> bool:
        return len(self) >= DELETE_BATCH

    def flush(self, *, wait: bool = False) -> None:
        """Deletes what is pending, unless a back-off is running (`wait`: sleep it out, once, and
        send everything); without `wait`, only a full batch or one whose window has passed."""
        self._flush(wait=wait, due_only=not wait)

    def _due(self) -> bool:
        with self._lock:
            waited = time.monotonic() - self._oldest
            return len(self._pending) >= DELETE_BATCH or waited >= self.window_seconds

    def _flush(self, *, wait: bool, due_only: bool) -> None:
        if due_only and not self._due():  # the window's timer sends them
            return
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
            self._pending[:0] = batch
