"""Arrival profiles: when tasks arrive and how long each takes to process.

Arrivals are a non-homogeneous Poisson process (thinning), plus bursts of tasks spread evenly over a
short window. Processing times are log-normal with the profile's median and shape.

Two sets: `JUDGE` (issue 15's model, the default: median 30 s, p95 120 s) and `ISSUE8` (the model
the drain policy was first chosen on: mean 60 s, sigma 0.5)."""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

HOUR = 3600.0
MINUTE = 60.0
P95_Z = 1.6448536269514722  # the standard normal's 95th percentile
# Issue 15's task time: log-normal, median 30 s, p95 120 s (mean about 43 s).
JUDGE_MEDIAN = 30.0
JUDGE_SIGMA = math.log(120 / 30) / P95_Z


def sigma_for_p95(median: float, p95: float) -> float:
    return math.log(p95 / median) / P95_Z


def median_for_mean(mean: float, sigma: float) -> float:
    return mean * math.exp(-(sigma**2) / 2)


@dataclass(frozen=True)
class Burst:
    at: float  # seconds from the start
    tasks: int
    spread: float = 60.0  # the burst's tasks arrive evenly over this many seconds


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    duration: float  # seconds of arrivals; the run goes on until every task is done
    rate: Callable[[float], float]  # background arrivals per second at time t
    peak_rate: float  # an upper bound of `rate`, for thinning
    bursts: tuple[Burst, ...] = ()
    task_median: float = JUDGE_MEDIAN  # median processing seconds
    task_sigma: float = JUDGE_SIGMA  # log-normal shape of processing times
    standard: bool = True  # part of the default comparison table

    @property
    def task_seconds(self) -> float:
        """Mean processing seconds."""
        return self.task_median * math.exp(self.task_sigma**2 / 2)

    def arrivals(self, seed: int = 1) -> list[tuple[float, float]]:
        """(arrival time, processing seconds) of every task, in arrival order; the same for a seed."""
        rng = random.Random(f"{self.name}:{seed}")  # noqa: S311 - a reproducible model, not a secret
        times: list[float] = []
        if self.peak_rate > 0:
            t = 0.0
            while True:
                t += rng.expovariate(self.peak_rate)
                if t >= self.duration:
                    break
                if rng.random() * self.peak_rate < self.rate(t):
                    times.append(t)
        for burst in self.bursts:
            times.extend(burst.at + burst.spread * i / burst.tasks for i in range(burst.tasks))
        times.sort()
        mu = math.log(self.task_median)
        return [(t, rng.lognormvariate(mu, self.task_sigma)) for t in times]


def _constant(rate: float) -> Callable[[float], float]:
    return lambda _t: rate


def _diurnal(low: float, high: float, period: float) -> Callable[[float], float]:
    # Trough at midnight (t = 0), peak at midday.
    return lambda t: low + (high - low) * (1 - math.cos(2 * math.pi * t / period)) / 2


def _ramp(top: float, rise: float) -> Callable[[float], float]:
    return lambda t: top * min(t / rise, 1.0)


def _up_and_down(top: float, rise: float) -> Callable[[float], float]:
    return lambda t: top * max(1 - abs(t - rise) / rise, 0.0)


def _window(rate: float, start: float, length: float) -> Callable[[float], float]:
    return lambda t: rate if start <= t < start + length else 0.0


def _silent(_t: float) -> float:
    return 0.0


def _by_name(*profiles: Profile) -> dict[str, Profile]:
    return {profile.name: profile for profile in profiles}


# Issue 15's profiles (the default model).
JUDGE = _by_name(
    Profile("steady", "0.5 tasks/s for 2 h from the minimum fleet", 2 * HOUR, _constant(0.5), 0.5),
    Profile(
        "burst",
        "about 10,000 tasks in 5 min after 10 idle min, then 2 h idle",
        15 * MINUTE + 2 * HOUR,
        _window(10_000 / 300, 10 * MINUTE, 5 * MINUTE),
        10_000 / 300,
    ),
    Profile(
        "diurnal",
        "0.05 to 3 tasks/s over a 4 h period, for 8 h",
        8 * HOUR,
        _diurnal(0.05, 3.0, 4 * HOUR),
        3.0,
    ),
    Profile(
        "spike",
        "about 2,000 tasks in 30 s at minute 5, then 90 min idle",
        5.5 * MINUTE + 90 * MINUTE,
        _window(2_000 / 30, 5 * MINUTE, 30),
        2_000 / 30,
    ),
    Profile("ramp", "0 to 5 tasks/s over 1 h and back", 2 * HOUR, _up_and_down(5.0, HOUR), 5.0),
)

_ISSUE8_MEDIAN = median_for_mean(60.0, 0.5)
# The profiles the drain policy was first chosen on (`--model issue8`).
ISSUE8 = _by_name(
    *(
        replace(profile, task_median=_ISSUE8_MEDIAN, task_sigma=0.5)
        for profile in (
            Profile(
                "steady",
                "0.5 tasks/s for 4 h (30 busy workers on average)",
                4 * HOUR,
                _constant(0.5),
                0.5,
            ),
            Profile(
                "burst",
                "0.1 tasks/s for 4 h, and 3000 tasks within 2 min at 1 h",
                4 * HOUR,
                _constant(0.1),
                0.1,
                bursts=(Burst(1 * HOUR, 3000, 120),),
            ),
            Profile(
                "diurnal",
                "24 h day: 0.05 tasks/s at night to 1 task/s at midday",
                24 * HOUR,
                _diurnal(0.05, 1.0, 24 * HOUR),
                1.0,
            ),
            Profile(
                "spike-then-silence",
                "2000 tasks within 1 min at 5 min, then nothing until 1 h",
                1 * HOUR,
                _silent,
                0.0,
                bursts=(Burst(300, 2000, 60),),
            ),
            Profile(
                "ramp",
                "0 to 1 task/s over 2 h, then 1 task/s for 1 h",
                3 * HOUR,
                _ramp(1.0, 2 * HOUR),
                1.0,
                standard=False,
            ),
        )
    )
)


@dataclass(frozen=True)
class _Piecewise:
    starts: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)

    def __call__(self, t: float) -> float:
        rate = 0.0
        for start, value in zip(self.starts, self.rates, strict=True):
            if start > t:
                break
            rate = value
        return rate


def load_profile(path: Path) -> Profile:
    """A profile from a CSV file with the header `seconds,rate_per_second,burst_tasks`: the rate holds
    from `seconds` to the next row (a row at the end marks the duration); `burst_tasks` (optional)
    arrive within one minute from `seconds`."""
    starts: list[float] = []
    rates: list[float] = []
    bursts: list[Burst] = []
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                start = float(row["seconds"])
                rate = float(row.get("rate_per_second") or 0)
                burst = int(row.get("burst_tasks") or 0)
            except (KeyError, TypeError, ValueError) as error:
                raise ValueError(f"{path}:{line}: expected seconds,rate_per_second[,burst_tasks]") from error
            if start < 0 or rate < 0 or burst < 0 or (starts and start < starts[-1]):
                raise ValueError(f"{path}:{line}: times ascend and nothing is negative")
            starts.append(start)
            rates.append(rate)
            if burst:
                bursts.append(Burst(start, burst))
    if len(starts) < 2:
        raise ValueError(f"{path}: at least two rows (the last one marks the end)")
    return Profile(
        path.stem,
        f"from {path.name}",
        starts[-1],
        _Piecewise(starts, rates),
        max(rates),
        bursts=tuple(bursts),
        standard=False,
    )
