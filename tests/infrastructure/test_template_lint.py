"""The template passes the linters, as written and as SAM transforms it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.infrastructure

REPO_ROOT = Path(__file__).resolve().parents[2]


def _sam_cli() -> str | None:
    """SAM CLI lives in its own venv (it pins boto3); fall back to one on PATH."""
    local = REPO_ROOT / ".venv-sam" / "bin" / "sam"
    return str(local) if local.exists() else shutil.which("sam")


def test_template_yaml_cfn_lint_reports_nothing(template_path, cfn_lint):
    # Given template.yaml as written (cfn-lint applies the SAM transform itself)
    # When cfn-lint checks it
    findings = cfn_lint(template_path)
    # Then it reports nothing
    assert findings == []


def test_translated_template_cfn_lint_reports_nothing(translated_template_path, cfn_lint):
    # Given the template after the offline SAM transform, where cfn-lint sees the real Lambda resources
    # When cfn-lint checks it with the project's custom rules
    findings = cfn_lint(translated_template_path, custom_rules=True)
    # Then it reports nothing
    assert findings == []


def test_custom_rules_misspelled_capacity_provider_reported(cfn_template, cfn_lint, tmp_path):
    # Given the translated template with a capacity provider typo that cfn-lint's own rules miss
    broken = json.loads(json.dumps(cfn_template).replace('"FARGATE_SPOT"', '"FARGATE_SPOTT"'))
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    # When cfn-lint checks it with the custom rules
    findings = cfn_lint(path, custom_rules=True)
    # Then the custom rule reports it
    assert any("FARGATE or FARGATE_SPOT" in finding for finding in findings), findings


def test_custom_rules_old_function_runtime_reported(cfn_template, cfn_lint, tmp_path):
    # Given the translated template with a function on an older Python
    broken = json.loads(json.dumps(cfn_template).replace('"python3.12"', '"python3.11"'))
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(broken))
    # When cfn-lint checks it with the custom rules
    findings = cfn_lint(path, custom_rules=True)
    # Then the custom rule reports it
    assert any("Python 3.12 or newer" in finding for finding in findings), findings


@pytest.mark.skipif(_sam_cli() is None, reason="SAM CLI not installed (pip install -r requirements-sam.txt)")
@pytest.mark.parametrize("extra_args", [[], ["--lint"]], ids=["validate", "validate-lint"])
def test_sam_validate_template_passes(template_path, extra_args):
    # Given template.yaml and the SAM CLI (both modes: plain validate catches bad event types that --lint misses)
    command = [
        _sam_cli(),
        "validate",
        "--region",
        "us-east-1",
        "--template-file",
        str(template_path),
        *extra_args,
    ]
    # When SAM validates it offline
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT, check=False)
    # Then it is valid
    assert result.returncode == 0, result.stdout + result.stderr
