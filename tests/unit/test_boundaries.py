"""Architecture rules that review alone would let slip."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_CODE = [ROOT / "layers" / "shared" / "mistersmith", ROOT / "functions", ROOT / "fargate_worker"]
ADAPTERS = ROOT / "layers" / "shared" / "mistersmith" / "adapters"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_adapter_modules_import_boto3_or_botocore():
    # Given all runtime code, when its imports are read, then only adapters reach for the AWS SDK
    offenders = [
        str(path.relative_to(ROOT))
        for folder in RUNTIME_CODE
        for path in folder.rglob("*.py")
        if ADAPTERS not in path.parents and imported_modules(path) & {"boto3", "botocore"}
    ]
    assert offenders == []


def test_no_runtime_module_reads_os_environ_outside_settings():
    offenders = [
        str(path.relative_to(ROOT))
        for folder in RUNTIME_CODE
        for path in folder.rglob("*.py")
        if path.name != "settings.py" and "os.environ" in path.read_text()
    ]
    assert offenders == []
