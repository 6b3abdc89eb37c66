"""Schemathesis against the local API: every operation of docs/openapi.json, at least 100 examples
each with a fixed seed, every check (the exceptions and their reasons in schemathesis.toml beside
this file: authentication, which the local stack does not do, and what no schema can express)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from local_stack.template import ROOT

pytestmark = pytest.mark.integration

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = "20261129"


def test_schemathesis_finds_nothing_against_the_local_api(stack, tmp_path):
    # Given the API's OpenAPI document and the running local stack
    command = [
        str(SCHEMATHESIS), "--config-file", str(CONFIG), "run", str(ROOT / "docs" / "openapi.json"),
        "--url", stack.api_url, "--max-examples", "100", "--seed", SEED, "--workers", "1",
        "--report", "junit", "--report-dir", str(tmp_path),
    ]  # fmt: skip
    # When schemathesis generates requests for every operation and checks each answer
    run = subprocess.run(command, capture_output=True, text=True, timeout=280, check=False)
    # Then no check fails
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "10 passed" in run.stdout or "passed" in run.stdout
