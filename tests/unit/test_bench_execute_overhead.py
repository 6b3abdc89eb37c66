"""The execute bench's measurement: a variant that times its own span (the processor's process()
alone, without the bench's setting up of the record and checking of it) is recorded by that span."""

from __future__ import annotations

import pytest

from bench import execute_overhead

pytestmark = pytest.mark.unit


def test_a_variant_that_times_its_own_span_is_recorded_by_it_and_the_others_by_the_whole_call(monkeypatch):
    monkeypatch.setattr(execute_overhead, "WARMUPS", 1)
    monkeypatch.setattr(execute_overhead, "REPEATS", 3)
    calls = []

    def own_span() -> tuple[float, float]:
        calls.append("own")
        return 1500.0, 700.0  # far longer than the call itself: only the span reported can give it

    samples, cpu = execute_overhead.measure({"own": own_span, "whole": lambda: None})
    assert calls == ["own"] * 4
    assert samples["own"] == [1500.0] * 3 and cpu["own"] == [700.0] * 3
    assert all(0 <= value < 1500.0 for value in samples["whole"])
