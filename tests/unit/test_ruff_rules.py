"""mistersmith/ruff_rules.py, which validates analyze payloads, matches the pinned ruff binary."""

from __future__ import annotations

import pytest

from mistersmith import ruff_rules
from scripts.ruff_rules import TARGET, render

pytestmark = pytest.mark.unit


def test_ruff_rules_module_is_what_the_installed_ruff_generates():
    # Given the rules module in the tree and the one the installed ruff would give
    # When they are compared / Then they are the same (after a ruff bump: python scripts/ruff_rules.py)
    assert TARGET.read_text() == render(), "stale: run .venv/bin/python scripts/ruff_rules.py"


@pytest.mark.parametrize(
    "selector", ["ALL", "F", "F4", "F401", "E", "E9", "W", "C90", "C901", "PL", "PLR", "PLR0912"]
)
def test_rule_selectors_accept_what_ruff_parses(selector):
    assert selector in ruff_rules.rule_selectors()


@pytest.mark.parametrize("selector", ["", "C", "P", "PLX", "F999", "f401", "E1000", "RUF9999"])
def test_rule_selectors_refuse_what_selects_no_stable_rule(selector):
    assert selector not in ruff_rules.rule_selectors()
