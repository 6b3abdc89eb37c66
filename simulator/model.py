"""The discrete-time model: one step a second; every `tick` seconds the autoscaler reads the queue, the
service and the worker tasks' times as the Lambda does, estimates the task time with the Lambda's
own `estimate_task_seconds` and calls the same `decide`; ECS then starts or stops tasks.

What it models: Poisson arrivals (profiles.py); `concurrency` tasks at a time per worker, first come
first served, started at the exact moment a free slot and a task meet; Fargate start latency (launch
to taking work, billed; start_seconds +/- start_jitter, uniform); the launch rate limit (a bucket of
`launch_burst` launches refilled at `launches_per_second`); Spot interruptions (exponential, with the
two-minute notice: a task that cannot finish in it goes back to the queue, and ECS replaces the
worker); scale-in protection (a worker with a task is never stopped: a surplus stops once idle);
per-second billing with a one-minute minimum. Robustness knobs: the depth read `depth_lag_ticks`
decisions late, a share of ticks whose metrics are missing.

What it does not: SQS's approximate counts and visibility timeouts, duplicate deliveries, a
worker's prefetch, failed tasks and retries, deployments."""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field

from mistersmith.ports import LastAction, QueueDepth, ServiceCounts, TaskTimes
from mistersmith.scaling import TASK_TIME_SAMPLE, ScalingPolicy, decide, estimate_task_seconds, next_record
from simulator.pricing import Prices

SAMPLE_SECONDS = 10
# A run that has not finished its tasks this long after the profile ends reports them unfinished.
OVERTIME_SECONDS = 6 * 3600


@dataclass(frozen=True)
class Fleet:
    """How ECS and Fargate behave around the autoscaler."""

    start_seconds: float = 60.0  # launch to taking work (image pull, boot)
    start_jitter: float = 15.0  # each start is start_seconds +/- this, uniform
    launch_burst: int = 100
    launches_per_second: float = 20.0
    tick_seconds: int = 60  # the autoscaler's schedule
    spot_interruptions_per_hour: float = 0.05  # per Spot task-hour
    spot_notice_seconds: float = 120.0
    concurrency: int = 1  # tasks per worker at once
    depth_lag_ticks: int = 0  # the queue depth the autoscaler reads is this many ticks old
    missing_metrics: float = 0.0  # share of ticks whose queue metrics are missing


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
    reversals: int = 0  # desired-count changes in the other direction than the previous change
    stopped_busy: int = 0  # busy workers a decision set the count below (a scale-in would stop them)
    unfinished: int = 0  # tasks not finished OVERTIME_SECONDS after the profile ended
    duration: float = 0.0  # the profile's length, seconds
    samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def task_hours(self) -> float:
        return self.on_demand_hours + self.spot_hours

    @property
    def reversals_per_hour(self) -> float:
        return self.reversals / max(self.duration, self.end) * 3600 if self.end else 0.0

    def wait(self, quantile: float) -> float:
        if not self.waits:
            return 0.0
        return self.waits[min(len(self.waits) - 1, max(0, math.ceil(quantile * len(self.waits)) - 1))]


class _Worker:
    __slots__ = ("active", "gone", "idle_since", "launched", "noticed", "ready", "spot", "tasks")

    def __init__(self, launched: float, spot: bool) -> None:
        self.launched = launched
        self.spot = spot
        self.idle_since = 0.0
        self.tasks: dict[int, float] = {}  # task -> its end
        self.active = 0  # tasks it runs
        self.noticed = False  # given a Spot notice: takes no new work, leaves when its tasks end
        self.gone = False
        self.ready = False


def oracle(
    profile: str, arrivals: list[tuple[float, float]], prices: Prices, concurrency: int = 1
) -> RunResult:
    """Capacity that appears exactly when a task arrives, starts at once and is billed for processing
    time only (a worker's time shared by the `concurrency` tasks it runs)."""
    busy = sum(seconds for _, seconds in arrivals) / 3600 / concurrency
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
        self.queue: deque[int] = deque()
        self.requeued: list[tuple[float, int]] = []  # (visible again at, task): released by a notice
        self.waits: list[float] = []
        self.starting: list[tuple[float, int, _Worker]] = []  # (ready at, seq, worker)
        self.ends: list[tuple[float, int, int, _Worker]] = []  # (task ends at, seq, task, worker)
        self.idle: list[_Worker] = []  # workers with a free slot, newest last
        self.notices: list[tuple[float, int, _Worker]] = []  # (interrupted at, seq, worker)
        self.alive = {False: 0, True: 0}  # by Spot or not, until they stop
        self.billed = {False: 0.0, True: 0.0}
        self.running: dict[int, float] = {}  # task -> started at
        self.newest: list[tuple[int, float]] = []  # min-heap of the newest finished (task, seconds)
        self.n_starting = self.n_noticed = self.n_busy_workers = 0
        self.seq = self.launches = self.interruptions = self.reversals = self.stopped_busy = 0
        self.to_launch = 0
        self.depths: deque[QueueDepth] = deque(maxlen=fleet.depth_lag_ticks + 1)
        self.direction = 0
        self.desired = policy.min_tasks
        self.last: LastAction | None = None
        self.tokens = float(fleet.launch_burst)
        self.next_arrival = self.done = 0
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
            worker.ready = True
            worker.idle_since = now
            self.idle.append(worker)
            return
        self.launches += 1
        self.n_starting += 1
        jitter = self.fleet.start_jitter
        self._push(self.starting, now + self.fleet.start_seconds + self.rng.uniform(-jitter, jitter), worker)

    def leave(self, worker: _Worker, at: float) -> None:
        if worker.gone:
            return
        worker.gone = True
        self.alive[worker.spot] -= 1
        self.billed[worker.spot] += max(self.prices.billing_minimum_seconds, at - worker.launched)
        if worker.noticed:
            self.n_noticed -= 1

    def start(self, worker: _Worker, task: int, at: float) -> None:
        end = at + self.work[task]
        worker.tasks[task] = end
        self.n_busy_workers += not worker.active
        worker.active += 1
        self.running[task] = at
        self.seq += 1
        heapq.heappush(self.ends, (end, self.seq, task, worker))

    def interrupt(self, worker: _Worker, at: float) -> None:
        self.interruptions += 1
        worker.noticed = True
        self.n_noticed += 1
        self.to_launch += 1  # ECS replaces it at the same desired count
        for task, end in list(worker.tasks.items()):
            if end > at + self.fleet.spot_notice_seconds:
                # Cannot finish within the notice: released, visible again when the worker stops.
                heapq.heappush(self.requeued, (at + self.fleet.spot_notice_seconds, task))
                del worker.tasks[task]
                worker.active -= 1
                self.n_busy_workers -= not worker.active
                del self.running[task]
        if worker.active:
            return
        if not worker.ready:
            self.n_starting -= 1  # its entry in `starting` is skipped when it comes up
        self.leave(worker, at)  # an idle one's entry in `idle` is skipped once gone

    def finish(self, task: int, end: float, worker: _Worker) -> None:
        del worker.tasks[task]
        worker.active -= 1
        self.n_busy_workers -= not worker.active
        self.waits.append(self.running.pop(task) - self.times[task])
        heapq.heappush(self.newest, (task, self.work[task]))
        if len(self.newest) > TASK_TIME_SAMPLE:
            heapq.heappop(self.newest)
        self.done += 1
        if worker.noticed:
            if not worker.active:
                self.leave(worker, end)
        elif worker.active == self.fleet.concurrency - 1:
            worker.idle_since = end
            self.idle.append(worker)

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
                worker.ready = True
                worker.idle_since = ready_at
                self.idle.append(worker)
        while self.ends and self.ends[0][0] <= t:
            end, _, task, worker = heapq.heappop(self.ends)
            if task in worker.tasks:
                self.finish(task, end, worker)
        capacity = self.fleet.concurrency
        while self.idle and queue:
            worker = self.idle[-1]
            if worker.gone or worker.noticed or worker.active >= capacity:
                self.idle.pop()
                continue
            task = queue.popleft()
            self.start(worker, task, max(worker.idle_since, times[task]))
            if worker.active >= capacity:
                self.idle.pop()

    def task_times(self) -> TaskTimes:
        """What DynamoTaskTimes reads: the newest finished by creation, the running of that cohort."""
        finished = sorted(self.newest, reverse=True)
        since = finished[-1][0] if finished else len(self.times)
        return TaskTimes(
            tuple((self.times[task], seconds) for task, seconds in finished),
            tuple((self.times[task], started) for task, started in self.running.items() if task >= since),
        )

    def tick(self, t: int) -> None:
        running = self.alive[False] + self.alive[True] - self.n_starting - self.n_noticed
        self.depths.append(
            QueueDepth(visible=len(self.queue), in_flight=len(self.running), delayed=len(self.requeued))
        )
        depth: QueueDepth | None = self.depths[0]
        if self.fleet.missing_metrics and self.rng.random() < self.fleet.missing_metrics:
            depth = None
        now = float(t)
        decision = decide(
            depth,
            ServiceCounts(
                desired=self.desired, running=running, pending=self.n_starting, deployment_in_progress=False
            ),
            self.policy,
            now=now,
            last=self.last,
            task_seconds=estimate_task_seconds(self.task_times(), now=now, prior=self.policy.task_seconds),
        )
        if decision is None:
            return
        self.last = next_record(decision, now=now, last=self.last)
        # Without scale-in protection these busy workers would be stopped.
        self.stopped_busy += max(0, min(self.n_busy_workers, self.desired) - decision.desired)
        if decision.desired != self.desired:
            direction = 1 if decision.desired > self.desired else -1
            self.reversals += self.direction == -direction
            self.direction = direction
        self.desired = decision.desired

    def converge(self, t: int) -> None:
        """ECS moves toward the desired count: cancel launches, stop starting tasks, then idle ones;
        a worker with a task is protected and stops once idle."""
        alive = self.alive[False] + self.alive[True] - self.n_noticed
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
            # Scale-in protection: only workers with no task stop; the others stay until idle.
            keep: list[_Worker] = []
            while surplus > 0 and self.idle:
                worker = self.idle.pop()
                if worker.gone or worker.noticed:
                    continue
                if worker.active:
                    keep.append(worker)
                    continue
                self.leave(worker, t)
                surplus -= 1
            self.idle.extend(reversed(keep))
        elif surplus < 0:
            self.to_launch -= surplus
        self.tokens = min(self.fleet.launch_burst, self.tokens + self.fleet.launches_per_second)
        while self.to_launch > 0 and self.tokens >= 1:
            self.launch(float(t))
            self.to_launch -= 1
            self.tokens -= 1

    def run(self, profile: str, label: str, duration: float) -> RunResult:
        for _ in range(self.desired):
            self.launch(0.0, ready=True)
        backlog_run = longest_backlog = 0
        t = 0
        limit = duration + OVERTIME_SECONDS
        while (self.done < len(self.times) or t < duration) and t < limit:
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
        for _, _, worker in self.starting:
            self.leave(worker, t)
        for _, _, _, worker in self.ends:
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
            reversals=self.reversals,
            stopped_busy=self.stopped_busy,
            unfinished=len(self.times) - self.done,
            duration=duration,
            samples=self.samples,
        )

    def sample(self, t: int) -> None:
        self.samples["t"].append(t / 3600)
        self.samples["depth"].append(len(self.queue))
        self.samples["desired"].append(self.desired)
        self.samples["running"].append(self.alive[False] + self.alive[True] - self.n_starting)
        self.samples["pending"].append(self.n_starting)
