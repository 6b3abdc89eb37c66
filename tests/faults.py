"""Fault injection around the real adapters: a chosen call of the worker protocol fails before it is
sent, stalls and times out, or is applied and then loses its answer (what a connection reset after
the request reached AWS looks like to the caller)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from botocore.exceptions import ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from mistersmith.models import TaskStatus


class Fault(StrEnum):
    FAIL = "fail"  # refused before it was sent: nothing happened
    TIMEOUT = "timeout"  # stalled, then timed out: nothing happened, late
    APPLY_THEN_LOSE = "apply_then_lose"  # it happened, and the caller hears an error
    DIE_BEFORE = "die_before"  # the process dies (kill -9) just before the call: nothing more from it
    DIE_AFTER = "die_after"  # the process dies just after the call reached AWS


# How long a TIMEOUT call stalls before it raises.
TIMEOUT_STALL_SECONDS = 1.0


@dataclass(frozen=True)
class Step:
    """One call of the protocol: an adapter (`store`, `queue`, `events`) method, narrowed by what
    it is asked to do when one method serves several steps (a transition renews, ends or releases)."""

    name: str
    adapter: str
    method: str
    matches: Callable[[tuple[Any, ...], dict[str, Any]], bool] = field(default=lambda args, kwargs: True)


def _target(args: tuple[Any, ...], kwargs: dict[str, Any]) -> TaskStatus | None:
    target = kwargs.get("target", args[1] if len(args) > 1 else None)
    return TaskStatus(target) if target is not None else None


def _is_terminal_write(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    target = _target(args, kwargs)
    return target is not None and target.is_terminal


def _is_release_write(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return _target(args, kwargs) is TaskStatus.QUEUED


# Every call the worker protocol makes for one task. A call outside this list fails
# test_the_matrix_covers_every_call_of_the_protocol, so a new call cannot go untested.
STEPS: tuple[Step, ...] = (
    Step("receive", "queue", "receive"),
    Step("claim", "store", "claim"),
    Step("create", "store", "create"),
    Step("read", "store", "get"),
    Step("announce", "events", "publish_batch"),
    Step("extend", "queue", "change_visibility"),
    Step("renew", "store", "renew"),
    Step("watch", "store", "get_many"),
    Step("finish", "store", "transition", _is_terminal_write),
    Step("release", "store", "transition", _is_release_write),
    Step("delete", "queue", "delete_batch"),
    Step("resend", "queue", "send"),
    # Intake's hand-on: the bus client under the EventBridge adapter.
    Step("put_events", "bus", "put_events"),
)


def step_of(adapter: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    for step in STEPS:
        if step.adapter == adapter and step.method == method and step.matches(args, kwargs):
            return step.name
    return None


@dataclass
class Injection:
    step: str
    fault: Fault
    # Which occurrence of the step fails (1: the first).
    occurrence: int = 1
    fired: bool = False


class Recorder:
    """What every wrapped adapter was asked, in order, and which fault fired where."""

    def __init__(self, injection: Injection | None = None) -> None:
        self.injection = injection
        self.calls: list[tuple[str, str, str | None]] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        # Set when a DIE fault fired: every later call of the dead worker hangs until `buried`, then fails.
        self.dead = threading.Event()
        self.buried = threading.Event()

    def hang(self) -> None:
        """What a killed process does from now on: nothing, then never anything that lands."""
        self.dead.set()
        self.buried.wait()
        raise SystemExit("this worker was killed")

    def before(
        self, adapter: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Fault | None:
        step = step_of(adapter, method, args, kwargs)
        with self._lock:
            self.calls.append((adapter, method, step))
            if step is None:
                return None
            self._counts[step] = self._counts.get(step, 0) + 1
            injection = self.injection
            if (
                injection is None
                or injection.fired
                or injection.step != step
                or self._counts[step] != injection.occurrence
            ):
                return None
            injection.fired = True
            return injection.fault


class Faulty:
    """Wraps an adapter: each public method call is recorded and may be made to fail."""

    def __init__(self, adapter: str, inner: Any, recorder: Recorder) -> None:
        self._adapter = adapter
        self._inner = inner
        self._recorder = recorder

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name.startswith("_") or not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._recorder.dead.is_set():
                self._recorder.hang()
            fault = self._recorder.before(self._adapter, name, args, kwargs)
            if fault is Fault.DIE_BEFORE:
                self._recorder.hang()
            if fault is Fault.FAIL:
                raise EndpointConnectionError(endpoint_url=f"fault://{self._adapter}.{name}")
            if fault is Fault.TIMEOUT:
                time.sleep(TIMEOUT_STALL_SECONDS)
                raise ReadTimeoutError(endpoint_url=f"fault://{self._adapter}.{name}")
            result = value(*args, **kwargs)
            if fault is Fault.DIE_AFTER:
                self._recorder.hang()
            if fault is Fault.APPLY_THEN_LOSE:
                raise ConnectionClosedError(endpoint_url=f"fault://{self._adapter}.{name}")
            return result

        return call
