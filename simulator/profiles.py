"""Arrival profiles: when tasks arrive and how long each takes to process.

Arrivals are a non-homogeneous Poisson process (thinning), plus bursts of tasks spread evenly over a
short window. Processing times are log-normal with the profile's mean (sigma 0.5 unless set)."""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HOUR = 3600.0


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
    task_seconds: float = 60.0  # mean processing time
    task_sigma: float = 0.5  # log-normal shape of processing times
    standard: bool = True  # part of the default comparison table

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
        mu = math.log(self.task_seconds) - self.task_sigma**2 / 2
        return [(t, rng.lognormvariate(mu, self.task_sigma)) for t in times]


def _constant(rate: float) -> Callable[[float], float]:
    return lambda _t: rate


def _diurnal(low: float, high: float, period: float) -> Callable[[float], float]:
    # Trough at midnight (t = 0), peak at midday.
    return lambda t: low + (high - low) * (1 - math.cos(2 * math.pi * t / period)) / 2


def _ramp(top: float, rise: float) -> Callable[[float], float]:
    return lambda t: top * min(t / rise, 1.0)


def _silent(_t: float) -> float:
    return 0.0


STANDARD: dict[str, Profile] = {
    profile.name: profile
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
}


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


def load_profile(path: Path, *, task_seconds: float = 60.0) -> Profile:
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
        task_seconds=task_seconds,
        standard=False,
    )
