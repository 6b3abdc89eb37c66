"""The discrete-time model: one step a second; every `tick` seconds the autoscaler observes the queue
and the service and calls the same `decide` the Lambda calls; ECS then starts or stops tasks.

What it models: Poisson and burst arrivals (profiles.py); one task at a time per worker, first come
first served, started at the exact moment a worker and a task meet; Fargate start latency (launch to
taking work, billed); the launch rate limit (a bucket of 100 launches refilled at 20 a second); Spot
interruptions (exponential, with the two-minute notice: a task that cannot finish in it goes back to
the queue, and ECS replaces the task); scale-in protection (a busy worker is never stopped: a surplus
stops once it is idle with nothing waiting); per-second billing with a one-minute minimum.

What it does not: SQS's approximate counts and visibility timeouts, duplicate deliveries, a
worker's prefetch of several messages, failed tasks and retries, deployments."""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field

from mistersmith.ports import QueueDepth, ServiceCounts
from mistersmith.scaling import LastAction, ScalingPolicy, decide, next_record
from simulator.pricing import Prices

SAMPLE_SECONDS = 10
RECENT_TASKS = 50  # the controller's observed mean: the last 50 finished tasks


@dataclass(frozen=True)
class Fleet:
    """How ECS and Fargate behave around the autoscaler."""

    start_seconds: float = 60.0  # launch to taking work (image pull, boot)
    start_jitter: float = 0.2  # each start is start_seconds x uniform(1 - j, 1 + j)
    launch_burst: int = 100
    launches_per_second: float = 20.0
    tick_seconds: int = 60  # the autoscaler's schedule
    spot_interruptions_per_hour: float = 0.05  # per Spot task-hour
    spot_notice_seconds: float = 120.0


@dataclass
class RunResult:
    profile: str
    policy: str
    tasks: int
    waits: list[float]  # per task, sorted: arrival to the start of the run that finished it
    longest_backlog: float  # seconds: the longest stretch with tasks waiting
    busy_hours: float  # processing time, the oracle's bill
    on_demand_hours: float
    spot_hours: float
    cost: float
    end: float  # seconds: when the last task finished (or the profile ended, if later)
    interruptions: int = 0
    launches: int = 0
    samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def task_hours(self) -> float:
        return self.on_demand_hours + self.spot_hours

    def wait(self, quantile: float) -> float:
        if not self.waits:
            return 0.0
        return self.waits[min(len(self.waits) - 1, max(0, math.ceil(quantile * len(self.waits)) - 1))]


class _Worker:
    __slots__ = (
        "free_at",
        "gone",
        "idle_since",
        "launched",
        "noticed",
        "released",
        "spot",
        "started",
        "task",
    )

    def __init__(self, launched: float, spot: bool) -> None:
        self.launched = launched
        self.spot = spot
        self.idle_since = 0.0
        self.free_at = 0.0
        self.started = 0.0
        self.task = -1  # the task it runs, or -1
        self.noticed = False  # given a Spot notice: takes no new work, leaves when its task ends
        self.released = False
        self.gone = False


def oracle(profile: str, arrivals: list[tuple[float, float]], prices: Prices) -> RunResult:
    """Capacity that appears exactly when a task arrives and is billed for processing time only."""
    busy = sum(seconds for _, seconds in arrivals) / 3600
    end = max((t + seconds for t, seconds in arrivals), default=0.0)
    return RunResult(
        profile=profile,
        policy="oracle",
        tasks=len(arrivals),
        waits=[0.0] * len(arrivals),
        longest_backlog=0.0,
        busy_hours=busy,
        on_demand_hours=busy * (1 - prices.spot_share),
        spot_hours=busy * prices.spot_share,
        cost=busy * prices.blended_hour(),
        end=end,
    )


def simulate(
    profile: str,
    arrivals: list[tuple[float, float]],
    policy: ScalingPolicy,
    *,
    label: str | None = None,
    duration: float = 0.0,
    fleet: Fleet | None = None,
    prices: Prices | None = None,
    seed: int = 1,
) -> RunResult:
    """Runs `arrivals` (sorted (time, processing seconds)) against `policy` until every task is done
    and `duration` has passed. The service starts at `policy.min_tasks` tasks, all running."""
    return _Run(arrivals, policy, fleet or Fleet(), prices or Prices(), seed).run(
        profile, label or policy.kind.value, duration
    )


class _Run:
    # Set at the start of each run().
    desired: int
    last: LastAction | None
    tokens: float

    def __init__(
        self,
        arrivals: list[tuple[float, float]],
        policy: ScalingPolicy,
        fleet: Fleet,
        prices: Prices,
        seed: int,
    ) -> None:
        self.policy = policy
        self.fleet = fleet
        self.prices = prices
        self.rng = random.Random(seed)  # noqa: S311 - a reproducible model, not a secret
        self.interrupt_rate = fleet.spot_interruptions_per_hour / 3600
        self.times = [t for t, _ in arrivals]
        self.work = [seconds for _, seconds in arrivals]
        self.waits: list[float] = []
        self.recent: deque[float] = deque(maxlen=RECENT_TASKS)
        self.queue: deque[int] = deque()
        self.requeued: list[tuple[float, int]] = []  # (visible again at, task) cut short by a Spot notice
        self.starting: list[tuple[float, int, _Worker]] = []  # (ready at, seq, worker)
        self.busy: list[tuple[float, int, _Worker]] = []  # (free at, seq, worker)
        self.idle: list[_Worker] = []
        self.notices: list[tuple[float, int, _Worker]] = []  # (interrupted at, seq, worker)
        self.alive = {False: 0, True: 0}  # by Spot or not, until they stop
        self.billed = {False: 0.0, True: 0.0}
        # n_released: workers under a Spot notice that gave their task back and wait to stop.
        self.n_starting = self.n_busy = self.n_draining = self.n_released = 0
        self.seq = self.launches = self.interruptions = 0
        self.to_launch = 0
        self.samples: dict[str, list[float]] = {
            "t": [],
            "depth": [],
            "desired": [],
            "running": [],
            "pending": [],
        }

    def _push(self, heap: list[tuple[float, int, _Worker]], at: float, worker: _Worker) -> None:
        self.seq += 1
        heapq.heappush(heap, (at, self.seq, worker))

    def launch(self, now: float, *, ready: bool = False) -> None:
        spot = self.prices.place_on_spot(self.alive[False], self.alive[True])
        self.alive[spot] += 1
        worker = _Worker(now, spot)
        if spot and self.interrupt_rate > 0:
            self._push(self.notices, now + self.rng.expovariate(self.interrupt_rate), worker)
        if ready:
            worker.idle_since = now
            self.idle.append(worker)
            return
        self.launches += 1
        self.n_starting += 1
        jitter = self.fleet.start_jitter
        self._push(
            self.starting, now + self.fleet.start_seconds * self.rng.uniform(1 - jitter, 1 + jitter), worker
        )

    def leave(self, worker: _Worker, at: float) -> None:
        if worker.gone:
            return
        worker.gone = True
        self.alive[worker.spot] -= 1
        self.billed[worker.spot] += max(self.prices.billing_minimum_seconds, at - worker.launched)
        if worker.noticed:
            self.n_draining -= 1
        if worker.released:
            self.n_released -= 1

    def start(self, worker: _Worker, task: int, at: float) -> None:
        worker.task = task
        worker.started = at
        worker.free_at = at + self.work[task]
        self.n_busy += 1
        self._push(self.busy, worker.free_at, worker)

    def interrupt(self, worker: _Worker, at: float) -> None:
        self.interruptions += 1
        worker.noticed = True
        self.n_draining += 1
        self.to_launch += 1  # ECS replaces it at the same desired count
        if worker.task >= 0:
            if worker.free_at > at + self.fleet.spot_notice_seconds:
                # Cannot finish within the notice: released, visible again when the worker stops.
                stop = at + self.fleet.spot_notice_seconds
                heapq.heappush(self.requeued, (stop, worker.task))
                worker.task = -1
                worker.released = True
                self.n_busy -= 1
                self.n_released += 1
                worker.free_at = stop
                self._push(self.busy, stop, worker)
            return
        if worker in self.idle:
            self.idle.remove(worker)
        else:
            self.n_starting -= 1  # its entry in `starting` is skipped when it comes up
        self.leave(worker, at)

    def step(self, t: int) -> None:
        times, queue = self.times, self.queue
        while self.next_arrival < len(times) and times[self.next_arrival] <= t:
            queue.append(self.next_arrival)
            self.next_arrival += 1
        while self.requeued and self.requeued[0][0] <= t:
            queue.appendleft(heapq.heappop(self.requeued)[1])
        while self.notices and self.notices[0][0] <= t:
            at, _, worker = heapq.heappop(self.notices)
            if not worker.gone:
                self.interrupt(worker, at)
        while self.starting and self.starting[0][0] <= t:
            ready_at, _, worker = heapq.heappop(self.starting)
            if not worker.gone:
                self.n_starting -= 1
                worker.idle_since = ready_at
                self.idle.append(worker)
        while self.busy and self.busy[0][0] <= t:
            free_at, _, worker = heapq.heappop(self.busy)
            if worker.gone or worker.free_at != free_at:
                continue  # stale entry
            if worker.task >= 0:
                task = worker.task
                self.waits.append(worker.started - times[task])
                self.recent.append(self.work[task])
                self.done += 1
                self.n_busy -= 1
                worker.task = -1
            if worker.noticed:
                self.leave(worker, free_at)
            else:
                worker.idle_since = free_at
                self.idle.append(worker)
        while self.idle and queue:
            worker = self.idle.pop()
            task = queue.popleft()
            self.start(worker, task, max(worker.idle_since, times[task]))

    def tick(self, t: int) -> None:
        running = len(self.idle) + self.n_busy + self.n_released
        decision = decide(
            QueueDepth(visible=len(self.queue), in_flight=self.n_busy, delayed=len(self.requeued)),
            ServiceCounts(
                desired=self.desired, running=running, pending=self.n_starting, deployment_in_progress=False
            ),
            self.policy,
            now=float(t),
            last=self.last,
            task_seconds=sum(self.recent) / len(self.recent) if self.recent else None,
        )
        if decision is not None:
            self.last = next_record(decision, now=float(t), last=self.last)
            self.desired = decision.desired

    def converge(self, t: int) -> None:
        """ECS moves toward the desired count: cancel launches, stop starting tasks, then idle ones."""
        alive = self.alive[False] + self.alive[True] - self.n_draining
        surplus = alive + self.to_launch - self.desired
        if surplus > 0:
            cancelled = min(surplus, self.to_launch)
            self.to_launch -= cancelled
            surplus -= cancelled
            while surplus > 0 and self.starting:
                _, _, worker = heapq.heappop(self.starting)
                if not worker.gone:
                    self.n_starting -= 1
                    self.leave(worker, t)
                    surplus -= 1
            while surplus > 0 and self.idle:
                self.leave(self.idle.pop(), t)
                surplus -= 1
        elif surplus < 0:
            self.to_launch -= surplus
        self.tokens = min(self.fleet.launch_burst, self.tokens + self.fleet.launches_per_second)
        while self.to_launch > 0 and self.tokens >= 1:
            self.launch(float(t))
            self.to_launch -= 1
            self.tokens -= 1

    def run(self, profile: str, label: str, duration: float) -> RunResult:
        self.desired = self.policy.min_tasks
        for _ in range(self.desired):
            self.launch(0.0, ready=True)
        self.last = None
        self.tokens = float(self.fleet.launch_burst)
        self.next_arrival = self.done = 0
        backlog_run = longest_backlog = 0
        t = 0
        while self.done < len(self.times) or t < duration:
            t += 1
            self.step(t)
            if t % self.fleet.tick_seconds == 0:
                self.tick(t)
            self.converge(t)
            backlog_run = backlog_run + 1 if self.queue else 0
            longest_backlog = max(longest_backlog, backlog_run)
            if t % SAMPLE_SECONDS == 0:
                self.sample(t)
        for worker in list(self.idle):
            self.leave(worker, t)
        for heap in (self.starting, self.busy):
            for _, _, worker in heap:
                if not worker.gone:
                    self.leave(worker, t)
        self.waits.sort()
        on_demand, spot = self.billed[False] / 3600, self.billed[True] / 3600
        return RunResult(
            profile=profile,
            policy=label,
            tasks=len(self.times),
            waits=self.waits,
            longest_backlog=float(longest_backlog),
            busy_hours=sum(self.work) / 3600,
            on_demand_hours=on_demand,
            spot_hours=spot,
            cost=self.prices.cost(on_demand, spot),
            end=float(t),
            interruptions=self.interruptions,
            launches=self.launches,
            samples=self.samples,
        )

    def sample(self, t: int) -> None:
        self.samples["t"].append(t / 3600)
        self.samples["depth"].append(len(self.queue))
        self.samples["desired"].append(self.desired)
        self.samples["running"].append(len(self.idle) + self.n_busy + self.n_released)
        self.samples["pending"].append(self.n_starting)
