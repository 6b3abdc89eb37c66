"""The metrics in CloudWatch embedded metric format (EMF) lines, kept and summed per series, so that a
person running the local stack sees what CloudWatch would have received."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeGuard

# Metrics in these units are times: their mean and maximum say more than their sum.
TIME_UNITS = frozenset({"Seconds", "Milliseconds", "Microseconds"})

_decoder = json.JSONDecoder()


@dataclass(frozen=True, order=True)
class SeriesKey:
    name: str
    dimensions: tuple[tuple[str, str], ...]
    unit: str
    namespace: str = ""


@dataclass(frozen=True)
class DataPoint:
    key: SeriesKey
    value: float


@dataclass
class Series:
    count: int = 0
    total: float = 0.0
    maximum: float = -math.inf

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.maximum = max(self.maximum, value)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan


def json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Every whole JSON object in `text`: also two that ran together; a cut one is skipped."""
    position = text.find("{")
    while position != -1:
        try:
            value, end = _decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            end = position + 1
        else:
            yield value
        position = text.find("{", end)


def data_points(document: Mapping[str, Any]) -> list[DataPoint]:
    """The data points of one EMF document: one per value, per dimension set; none if it is not EMF."""
    metadata = document.get("_aws")
    if not isinstance(metadata, dict):
        return []
    points: list[DataPoint] = []
    for directive in _dicts(metadata.get("CloudWatchMetrics")):
        dimension_sets = [names for names in _lists(directive.get("Dimensions")) if _all_str(names)] or [[]]
        namespace = str(directive.get("Namespace", ""))
        for metric in _dicts(directive.get("Metrics")):
            name = metric.get("Name")
            if not isinstance(name, str):
                continue
            raw = document.get(name)
            values = [value for value in (raw if isinstance(raw, list) else [raw]) if _is_number(value)]
            for names in dimension_sets:
                dimensions = tuple((dimension, str(document.get(dimension, ""))) for dimension in names)
                key = SeriesKey(name, dimensions, str(metric.get("Unit", "None")), namespace)
                points.extend(DataPoint(key, float(value)) for value in values)
    return points


def points_in_line(line: str) -> list[DataPoint]:
    if '"_aws"' not in line:
        return []
    return [point for document in json_objects(line) for point in data_points(document)]


def aggregate(
    points: Iterable[DataPoint], into: dict[SeriesKey, Series] | None = None
) -> dict[SeriesKey, Series]:
    series = {} if into is None else into
    for point in points:
        series.setdefault(point.key, Series()).add(point.value)
    return series


def summary_table(series: Mapping[SeriesKey, Series]) -> str:
    header = ("metric", "dimensions", "unit", "count", "sum", "avg", "max")
    rows = [header]
    for key in sorted(series):
        values = series[key]
        timed = key.unit in TIME_UNITS
        rows.append(
            (
                key.name,
                ",".join(f"{name}={value}" for name, value in key.dimensions),
                key.unit,
                str(values.count),
                _number(values.total),
                _number(values.mean) if timed else "",
                _number(values.maximum) if timed else "",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    # Names left-aligned, numbers right-aligned.
    return "\n".join(
        "  ".join(
            cell.ljust(width) if column < 3 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    )


class MetricsCollector:
    """A console listener: keeps the data points of every EMF line it sees, whoever wrote it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._series: dict[SeriesKey, Series] = {}

    def feed(self, _component: str, line: str) -> None:
        points = points_in_line(line)
        if points:
            with self._lock:
                aggregate(points, self._series)

    def series(self) -> dict[SeriesKey, Series]:
        with self._lock:
            return {key: replace(values) for key, values in self._series.items()}

    def table(self) -> str:
        series = self.series()
        return summary_table(series) if series else "no metrics were emitted"


def save_keys(keys: Iterable[SeriesKey], path: Path) -> None:
    """Which series were emitted (not their values), for checks that run without the stack."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(key) for key in sorted(keys)], indent=1))


def load_keys(path: Path) -> set[SeriesKey]:
    return {
        SeriesKey(
            item["name"], tuple(tuple(pair) for pair in item["dimensions"]), item["unit"], item["namespace"]
        )
        for item in json.loads(path.read_text())
    }


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:.1f}"


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _lists(value: Any) -> list[list[Any]]:
    return [item for item in value if isinstance(item, list)] if isinstance(value, list) else []


def _all_str(items: list[Any]) -> bool:
    return all(isinstance(item, str) for item in items)


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
