"""samconfig.toml: every environment's overrides name real parameters with values the template allows."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.infrastructure

SAMCONFIG = Path(__file__).resolve().parents[2] / "samconfig.toml"


def _environments() -> dict[str, dict]:
    """The named environments that deploy (the file's other top-level keys, like version, are not)."""
    config = tomllib.loads(SAMCONFIG.read_text())
    return {name: value for name, value in config.items() if isinstance(value, dict) and "deploy" in value}


@pytest.mark.parametrize("environment", sorted(_environments()))
def test_samconfig_overrides_valid_parameter_values(sam_template, environment):
    # Given an environment's deploy overrides
    config = _environments()[environment]
    overrides = dict(
        item.split("=", 1) for item in shlex.split(config["deploy"]["parameters"]["parameter_overrides"])
    )
    # When sam deploy passes them to CloudFormation
    parameters = sam_template["Parameters"]
    # Then each names a template parameter and satisfies its allowed values and pattern
    for name, value in overrides.items():
        assert name in parameters, name
        spec = parameters[name]
        if "AllowedValues" in spec:
            assert value in [str(v) for v in spec["AllowedValues"]], (name, value)
        if "AllowedPattern" in spec:
            assert re.fullmatch(spec["AllowedPattern"], value), (name, value)
    assert overrides["Environment"] == {"default": "dev"}.get(environment, environment)


def test_samconfig_deploys_with_iam_capability_only():
    # Given every environment / When deployed / Then CloudFormation may create the template's (unnamed) IAM roles
    for name, config in _environments().items():
        assert config["deploy"]["parameters"]["capabilities"] == "CAPABILITY_IAM", name
