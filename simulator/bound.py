"""The clairvoyant bound: what a policy that knows every arrival and task time in advance pays, with
the same start latency, launch limit, billing and minimum fleet, to keep every wait within `wait`.

It runs the tasks first come first served on the worker that frees earliest; a task that worker
cannot start within `wait` gets a new worker launched to be ready at its arrival (later if the launch
bucket is empty); a worker that would sit idle longer than a start is stopped and a new one launched
(a start costs less than the idle time). Every wait is within `wait`, stricter than the goal's p95,
so this is an achievable schedule, not a proof that nothing cheaper exists.

With `decisions` (seconds between decisions) the same schedule is held to what a policy deciding that
often on what has arrived can do: a worker is launched at the first decision at or after the arrival
of the task it is for, and stopped at the first decision after its last task ends (a busy worker is
never set aside). It still knows every task time. Where even this costs more than the goal, the goal
is out of reach for any such policy, and the clairvoyant bound (without `decisions`) is the reference."""

from __future__ import annotations

import heapq
import math

from simulator.model import Fleet
from simulator.pricing import Prices


def clairvoyant_task_hours(
    arrivals: list[tuple[float, float]],
    *,
    wait: float,
    min_tasks: int,
    duration: float,
    fleet: Fleet,
    prices: Prices,
    decisions: float | None = None,
) -> float:
    start = fleet.start_seconds
    minimum = prices.billing_minimum_seconds
    free: list[tuple[float, int]] = [(0.0, -1 - i) for i in range(min_tasks)]  # (free at, id<0: always on)
    heapq.heapify(free)
    launched: list[float] = []
    last_end: list[float] = []
    tokens, refilled = float(fleet.launch_burst), float("-inf")
    billed = 0.0

    def next_decision(moment: float) -> float:
        return math.ceil(moment / decisions) * decisions if decisions else moment

    def launch(ready_wanted: float) -> tuple[float, int]:
        nonlocal tokens, refilled
        # Launched in advance, or at the first decision that sees the task.
        at = next_decision(ready_wanted) if decisions else ready_wanted - start
        if refilled != float("-inf"):
            tokens = min(fleet.launch_burst, tokens + (at - refilled) * fleet.launches_per_second)
        if tokens < 1:
            at += (1 - tokens) / fleet.launches_per_second
            tokens = 1.0
        tokens -= 1
        refilled = at
        launched.append(at)
        last_end.append(at + start)
        return at + start, len(launched) - 1

    end = duration
    for arrival, seconds in arrivals:
        free_at, worker = free[0]
        if free_at <= arrival + wait and not (worker >= 0 and arrival - free_at > start):
            heapq.heappop(free)
            began = max(arrival, free_at)
        else:
            if free_at <= arrival + wait:  # idle longer than a start: stop it, start afresh
                heapq.heappop(free)
            ready, worker = launch(arrival)
            began = max(arrival, ready)
        finished = began + seconds
        if worker >= 0:
            last_end[worker] = finished
        heapq.heappush(free, (finished, worker))
        end = max(end, finished)
    billed += sum(max(minimum, next_decision(stop) - at) for at, stop in zip(launched, last_end, strict=True))
    billed += min_tasks * end
    return billed / 3600
