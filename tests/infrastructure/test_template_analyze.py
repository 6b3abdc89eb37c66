"""What the analyze task needs from the template: ruff's binary in the layer, built for the
functions' architecture, and an analyzer time budget inside the function's timeout."""

from __future__ import annotations

import re

import pytest

from tests.infrastructure.conftest import REPO_ROOT

pytestmark = pytest.mark.infrastructure


def test_shared_layer_is_built_by_its_makefile_for_the_functions_architecture(sam_template):
    # Given the layer's build and the functions' architecture
    layer = sam_template["Resources"]["SharedLayer"]
    architectures = sam_template["Globals"]["Function"]["Architectures"]
    makefile = (REPO_ROOT / "layers" / "shared" / "Makefile").read_text()

    # Then the Makefile (pip --target keeps ruff's binary executable) fetches wheels for that architecture
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    assert "build-SharedLayer:" in makefile
    arch = re.search(r"^ARCH \?= (\S+)$", makefile, re.M)
    assert arch is not None
    assert [arch[1]] == architectures == layer["Properties"]["CompatibleArchitectures"]
    assert layer["Metadata"]["BuildArchitecture"] == arch[1]


def test_intake_is_built_by_the_layers_makefile_for_its_bytecode(sam_template):
    # Given the intake function's build (SAM's python builder writes no bytecode, Lambda cannot)
    intake = sam_template["Resources"]["IntakeFunction"]
    folder = REPO_ROOT / intake["Properties"]["CodeUri"]
    makefile = folder / "Makefile"
    # Then it is the layer's Makefile (one recipe, one architecture), with a target for the intake
    assert intake["Metadata"]["BuildMethod"] == "makefile"
    assert makefile.resolve() == (REPO_ROOT / "layers" / "shared" / "Makefile").resolve()
    assert "build-IntakeFunction:" in makefile.read_text()
    assert intake["Metadata"]["BuildArchitecture"] == sam_template["Globals"]["Function"]["Architectures"][0]


def test_analyze_function_budget_ends_before_its_timeout(sam_template):
    # Given the analyze function's timeout and the analyzers' time budget
    function = sam_template["Resources"]["AnalyzeFunction"]["Properties"]
    budget = function["Environment"]["Variables"]["EXECUTE_TIMEOUT_SECONDS"]
    # Then an analyzer overrun ends FAILED Timeout while the function still runs
    assert 0 < budget < function["Timeout"]
