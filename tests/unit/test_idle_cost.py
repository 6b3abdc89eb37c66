"""docs/deploy.md's idle cost per day is what simulator/idle_cost.py computes from the template's defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from simulator.idle_cost import idle_lines, table
from simulator.pricing import NAT_GATEWAY_HOUR, PER_HOUR

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def test_idle_cost_counts_min_tasks_on_demand_and_the_nat_gateway_at_the_recorded_prices():
    lines = {line.item.split(" (")[0]: line.usd_per_day for line in idle_lines()}
    # MinTasks 2, both inside OnDemandBase 2, 1 vCPU and 2 GB on x86, all day
    assert lines["workers on FARGATE"] == pytest.approx(
        2 * 24 * (PER_HOUR["x86"]["vcpu"] + 2 * PER_HOUR["x86"]["gb"])
    )
    assert lines["NAT gateway"] == pytest.approx(24 * NAT_GATEWAY_HOUR)
    assert 0 < lines["autoscaler ticks"] < 0.01


def test_deploy_doc_shows_the_computed_idle_cost():
    text = DOC.read_text()
    match = re.search(r"<!-- idle-cost:begin -->\n(.*?)\n<!-- idle-cost:end -->", text, re.S)
    assert match, "docs/deploy.md has no idle-cost section"
    assert match[1] == table(idle_lines()), "rewrite it with: .venv/bin/python -m simulator.idle_cost"
