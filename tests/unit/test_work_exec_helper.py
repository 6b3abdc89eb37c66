"""The sandbox's exec helper (mistersmith/work/sandbox_exec.c): the image builds and installs it
where the worker looks; children start through it with the same limits and failures as through
the forked route, and without it the worker falls back to that route, saying so."""

from __future__ import annotations

import re
import resource
import sys
from pathlib import Path

import pytest

from mistersmith.errors import TaskFailure
from mistersmith.work.limits import EXEC_HELPER, Confinement
from mistersmith.work.sandbox import run_sandboxed
from tests.exec_helper import SOURCE, exec_helper

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the helper is Linux only")


def test_the_image_builds_the_helper_from_the_package_source_and_installs_it_where_the_worker_looks():
    dockerfile = (ROOT / "fargate_worker" / "Dockerfile").read_text()
    # The package is copied to mistersmith/ in the image; the helper is built from its source there.
    assert re.search(r"^COPY layers/shared/mistersmith mistersmith$", dockerfile, re.MULTILINE)
    source = SOURCE.relative_to(ROOT / "layers" / "shared").as_posix()
    # Static with musl (its start-up is a cost of every run; static glibc's was 0.27 ms), installed by apt.
    build = rf"musl-gcc -O2 -static -Wall -Werror -o {re.escape(EXEC_HELPER)} {re.escape(source)}$"
    assert re.search(build, dockerfile, re.MULTILINE)
    assert re.search(r"^\s+musl-tools \\$", dockerfile, re.MULTILINE)


def routes() -> list[object]:
    helper = exec_helper()
    return [
        pytest.param(helper, id="exec-helper", marks=pytest.mark.skipif(helper is None, reason="no cc")),
        pytest.param(None, id="forked"),
    ]


def run(code: str, confinement: Confinement) -> str:
    result = run_sandboxed(
        ["python3", "-c", code], timeout_seconds=30, output_limit_bytes=4096, confinement=confinement
    )
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("helper", routes())
def test_each_route_gives_the_child_its_limits(helper):
    confinement = Confinement(allowed_executables=("python3",), cpu_seconds=7, exec_helper=helper)
    code = "import resource; print(*resource.getrlimit(resource.RLIMIT_CPU), *resource.getrlimit(resource.RLIMIT_CORE))"
    assert run(code, confinement).split() == ["7", "8", "0", "0"]
    assert resource.getrlimit(resource.RLIMIT_CPU)[0] == resource.RLIM_INFINITY  # the worker keeps its own


@pytest.mark.parametrize("helper", routes())
def test_each_route_fails_a_program_that_cannot_be_executed_as_the_payload_s_fault(helper, tmp_path):
    # Given an allowed executable without execute permission
    program = tmp_path / "program"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o644)
    confinement = Confinement(allowed_executables=(str(program),), exec_helper=helper)
    # When a task runs it, then it fails CommandNotExecutable (not a worker fault)
    with pytest.raises(TaskFailure) as failure:
        run_sandboxed([str(program)], timeout_seconds=30, output_limit_bytes=4096, confinement=confinement)
    assert failure.value.error_type == "CommandNotExecutable"


def test_without_the_helper_children_are_forked_and_the_worker_says_so(tmp_path, caplog):
    # Given a worker whose image lacks the helper / When it runs a child, then the child runs
    confinement = Confinement(allowed_executables=("python3",), exec_helper=str(tmp_path / "missing"))
    assert run("print('ran')", confinement) == "ran"
    # And the worker logs that it falls back, naming the path it looked at
    assert "sandbox exec helper not found" in caplog.text
    assert str(tmp_path / "missing") in str([record.__dict__ for record in caplog.records])
