"""Artifacts: compile archives and execute outputs longer than the record keeps."""

from __future__ import annotations

import io
import sys
import zipfile
import zipimport

import pytest

from mistersmith.models import CompilePayload, ExecutePayload
from mistersmith.work import WorkLimits, run_compile, run_execute
from mistersmith.work.artifacts import python_archive

pytestmark = pytest.mark.unit


class Sink:
    def __init__(self) -> None:
        self.stored: dict[str, bytes] = {}

    def __call__(self, name: str, data: bytes, content_type: str) -> str:
        self.stored[name] = data
        return f"s3://bucket/{name}"


def test_python_archive_holds_sources_and_importable_bytecode(tmp_path):
    # Given a package compiled into an archive
    archive = python_archive({"pkg/__init__.py": "", "pkg/mod.py": "ANSWER = 42\n"})
    path = tmp_path / "build.zip"
    path.write_bytes(archive)
    # When it is imported from the zip
    module = zipimport.zipimporter(str(path / "pkg")).load_module("mod")
    # Then the code runs, and both the source and its .pyc are inside
    assert module.ANSWER == 42
    names = zipfile.ZipFile(io.BytesIO(archive)).namelist()
    assert "pkg/mod.py" in names
    assert any(
        name.endswith(f".cpython-{sys.version_info.major}{sys.version_info.minor}.pyc") for name in names
    )


def test_python_archive_of_the_same_sources_is_the_same_bytes():
    files = {"a.py": "x = 1\n", "b.txt": "notes"}
    assert python_archive(files) == python_archive(dict(reversed(list(files.items()))))


def test_successful_compile_with_a_sink_names_its_archive():
    sink = Sink()
    result = run_compile(CompilePayload(files={"a.py": "x = 1\n"}), sink)
    assert result.artifact_uri == "s3://bucket/python-build.zip"
    assert zipfile.ZipFile(io.BytesIO(sink.stored["python-build.zip"])).namelist()[0] == "a.py"


def test_execute_output_longer_than_the_inline_limit_goes_to_the_sink_whole():
    # Given a command printing 100 000 bytes and an inline limit of 1 024
    sink = Sink()
    limits = WorkLimits(output_limit_bytes=1 << 20, inline_output_bytes=1024)
    payload = ExecutePayload(command=["python3", "-c", "print('x' * 99_999)"])
    # When it runs
    result = run_execute(payload, limits, artifacts=sink)
    # Then the record keeps the start and the sink the whole output
    assert len(result.stdout) == 1024
    assert result.stdout_uri == "s3://bucket/stdout.txt"
    assert len(sink.stored["stdout.txt"]) == 100_000
    assert result.stderr_uri is None
