"""docs/deploy.md keeps up with the template: every parameter is listed, with its current default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.infrastructure

DEPLOY_DOC = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def _documented() -> dict[str, str]:
    """{parameter: default cell} from the doc's parameter tables."""
    rows = re.findall(r"^\| `([A-Za-z0-9]+)` \| ([^|]*) \|", DEPLOY_DOC.read_text(), flags=re.MULTILINE)
    return {name: cell.strip() for name, cell in rows}


def test_deploy_doc_lists_every_parameter(sam_template):
    # Given the template's parameters / When a platform engineer reads docs/deploy.md / Then each is there
    assert set(sam_template["Parameters"]) - set(_documented()) == set()


def test_deploy_doc_defaults_match_template(sam_template):
    # Given the documented defaults / When compared with the template / Then they agree
    documented = _documented()
    wrong = {
        name: (documented[name], spec.get("Default", ""))
        for name, spec in sam_template["Parameters"].items()
        if name in documented
        and documented[name] != (f"`{spec['Default']}`" if str(spec.get("Default", "")) != "" else "(empty)")
    }
    assert wrong == {}
