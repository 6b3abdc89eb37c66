"""The template passes the linters, as written and as SAM transforms it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.infrastructure.conftest import ALL_ON, translate

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


def test_translated_template_every_option_on_cfn_lint_reports_nothing(sam_template, cfn_lint, tmp_path):
    # Given the template transformed with every optional piece on (SAM then adds CodeDeploy resources)
    path = tmp_path / "all-on.json"
    path.write_text(json.dumps(translate(sam_template, ALL_ON), indent=1))
    # When cfn-lint checks it with the custom rules
    findings = cfn_lint(path, custom_rules=True)
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


def _checkov() -> str | None:
    """checkov lives in its own venv (it pins an old boto3); fall back to one on PATH."""
    local = REPO_ROOT / ".venv-checkov" / "bin" / "checkov"
    return str(local) if local.exists() else shutil.which("checkov")


@pytest.mark.skipif(_checkov() is None, reason="checkov not installed (make .venv-checkov/.installed)")
def test_checkov_template_reports_no_failure(template_path):
    # Given template.yaml and checkov, offline
    command = [
        _checkov(),
        "-f",
        str(template_path),
        "--framework",
        "cloudformation",
        "--skip-download",
        "--quiet",
        "--compact",
        "--output",
        "json",
    ]
    # When checkov scans it
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, check=False)
    # Then no check fails
    report = json.loads(result.stdout)
    failed = [(c["check_id"], c["resource"]) for c in report.get("results", {}).get("failed_checks", [])]
    assert (result.returncode, failed) == (0, [])


def test_checkov_skips_each_give_a_reason(sam_template):
    # Given every checkov check skipped in the template / When a reviewer reads it / Then each says why
    skips = [
        (name, skip)
        for name, resource in sam_template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    assert [(name, skip["id"]) for name, skip in skips if len(str(skip.get("comment", ""))) < 20] == []


def test_cfn_lint_ignores_each_give_a_reason(template_path):
    # Given every cfn-lint check ignored in the template / When a reviewer reads it
    lines = template_path.read_text().splitlines()
    ignored = [i for i, line in enumerate(lines) if "ignore_checks:" in line]
    # Then the line above names each ignored check and why
    for i in ignored:
        checks = lines[i].split("[", 1)[1].rstrip("]").replace(" ", "").split(",")
        comment = lines[i - 1].strip()
        assert comment.startswith("#") and all(check in comment for check in checks), lines[i - 1 : i + 1]
