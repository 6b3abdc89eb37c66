"""The reconciler: the safety net under the worker protocol, not the mechanism. On a schedule it finds
tasks nobody will move on by themselves and puts them back on their way:

- RUNNING with a lease that ran out long enough ago that its message, had it still existed, would
  have come back and been claimed (the message was deleted by hand, or lost with its queue): the
  task goes back to QUEUED and is routed again; each time counts toward its recoveries, and a task
  that has used them up (it hangs or kills every worker) ends DEAD_LETTERED instead;
- QUEUED, not sent by it before, and older than a bound past which the table's stream no longer
  delivers its insert (the router kept failing on it); a task still waiting in a backlog that
  long is sent once more, and the claim drops the copy.

Everything it does is conditional on what it saw, so two runs at once, or a run racing a worker,
do one thing; a duplicate message it may cause is dropped by the claim."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from mistersmith.clock import iso_from_epoch, now_iso
from mistersmith.errors import TransitionRejected
from mistersmith.lifecycle import Lifecycle
from mistersmith.models import StoredTask, TaskError, TaskStatus, known_task_type
from mistersmith.observability import count, logger, task_context
from mistersmith.routing import RouteOutcome, Router


@dataclass
class ReconcileReport:
    requeued: int = 0
    routed: int = 0
    dead_lettered: int = 0


class Reconciler:
    def __init__(
        self,
        lifecycle: Lifecycle,
        router: Router,
        *,
        lease_grace_seconds: float,
        unrouted_after_seconds: float,
        max_recoveries: int,
        batch_limit: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lifecycle = lifecycle
        self.store = lifecycle.store
        self.router = router
        self.lease_grace_seconds = lease_grace_seconds
        self.unrouted_after_seconds = unrouted_after_seconds
        self.max_recoveries = max_recoveries
        self.batch_limit = batch_limit
        self.clock = clock

    def run(self) -> ReconcileReport:
        report = ReconcileReport()
        now = self.clock()
        # A lease that ended this long ago had its message back (and claimed) long since.
        lapsed_before = now - self.lease_grace_seconds
        for task in self.store.created_before(
            TaskStatus.RUNNING, iso_from_epoch(lapsed_before), limit=self.batch_limit
        ):
            if (task.lease_expires_at or 0) < lapsed_before:
                with task_context(task.id, task.trace_id):
                    self._recover(task, report)
        for task in self.store.created_before(
            TaskStatus.QUEUED,
            iso_from_epoch(now - self.unrouted_after_seconds),
            limit=self.batch_limit,
            unrouted=True,
        ):
            with task_context(task.id, task.trace_id):
                self._route(task, report)
        if report.requeued or report.routed or report.dead_lettered:
            logger.warning("reconciled", extra=vars(report))
        return report

    def _recover(self, task: StoredTask, report: ReconcileReport) -> None:
        lost = f"its lease ran out with no message left to run it (worker {task.worker_id})"
        try:
            if task.recoveries >= self.max_recoveries:
                error = TaskError(
                    type="WorkerLost",
                    message=f"gave up after {task.recoveries} recoveries: {lost}",
                )
                self.lifecycle.move(
                    task.id,
                    TaskStatus.DEAD_LETTERED,
                    holder=task.worker_id,
                    error=error,
                    finished_at=now_iso(),
                )
                report.dead_lettered += 1
                count("TasksDeadLettered", task_type=known_task_type(task.task_type))
                logger.error("task dead-lettered by the reconciler", extra={"task_id": task.id})
                return
            # Back to QUEUED, not yet routed: should the send below fail, the next run routes it.
            self.lifecycle.move(
                task.id,
                TaskStatus.QUEUED,
                holder=task.worker_id,
                error=TaskError(type="WorkerLost", message=lost),
                recoveries=task.recoveries + 1,
                routed_at=None,
            )
        except TransitionRejected:  # a worker took it, or it ended, since it was read
            return
        report.requeued += 1
        logger.warning("task with a lapsed lease put back", extra={"task_id": task.id})
        self._route(task, report)

    def _route(self, task: StoredTask, report: ReconcileReport) -> None:
        if self.router.resend(task) is RouteOutcome.QUEUED:
            report.routed += 1
