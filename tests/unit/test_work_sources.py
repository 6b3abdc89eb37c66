"""Source archives (`source_uri`): unpacking with path, type and size checks, and perform() on them."""

from __future__ import annotations

import hashlib
import io
import stat
import tarfile
import zipfile

import pytest
from pydantic import ValidationError

from mistersmith.errors import TaskFailure
from mistersmith.models import AnalyzePayload, CompilePayload, ExecutePayload
from mistersmith.work import WorkLimits, perform
from mistersmith.work.sources import unpack

pytestmark = pytest.mark.unit

URI = "s3://bucket-a/uploads/src"
LIMITS = WorkLimits(execute_timeout_seconds=30)


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def tar_of(members: dict[str, bytes], *, mode: str = "w:gz", links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


def fetcher(archive: bytes):
    def fetch(uri: str, limit_bytes: int) -> bytes:
        assert uri == URI
        return archive

    return fetch


def refused(data: bytes, *, limit: int = 1 << 20) -> TaskFailure:
    with pytest.raises(TaskFailure) as raised:
        unpack(data, unpacked_limit_bytes=limit)
    return raised.value


@pytest.mark.parametrize("pack", [zip_of, tar_of, lambda members: tar_of(members, mode="w")])
def test_unpack_reads_zip_tar_and_tar_gz_with_normalised_paths(pack):
    # Given an archive with nested files and a directory entry
    archive = pack({"pkg/a.py": b"x = 1\n", "./pkg/sub/../b.py": b"y = 2\n"})
    # When it is unpacked / Then every regular file is there under its normalised path
    assert unpack(archive, unpacked_limit_bytes=1 << 20) == {"pkg/a.py": b"x = 1\n", "pkg/b.py": b"y = 2\n"}


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/../../escape.py", "a\\..\\b"])
@pytest.mark.parametrize("pack", [zip_of, tar_of])
def test_unpack_refuses_a_member_that_would_leave_the_work_directory(pack, name):
    # Given an archive with a path outside the work directory / When it is unpacked / Then refused
    failure = refused(pack({"ok.py": b"", name: b"root::0:0"}))
    assert failure.error_type == "InvalidSource"
    assert "stay inside the work directory" in failure.message


def test_unpack_refuses_a_symlink_in_a_tar():
    # Given a tar holding a link to the worker's files / When it is unpacked / Then it is refused
    failure = refused(tar_of({"a.py": b""}, links={"creds": "/proc/self/environ"}))
    assert failure.error_type == "InvalidSource"
    assert "creds" in failure.message and "not a regular file" in failure.message


def test_unpack_refuses_a_symlink_in_a_zip():
    # Given a zip member whose mode says symlink
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd")
    # When it is unpacked / Then it is refused
    assert "not a regular file" in refused(buffer.getvalue()).message


@pytest.mark.parametrize("pack", [zip_of, tar_of])
def test_unpack_stops_at_the_unpacked_size_limit(pack):
    # Given 2 MB of zeros, which compress to a few KB
    archive = pack({"zeros.bin": bytes(2 << 20)})
    assert len(archive) < 64 << 10
    # When it is unpacked with a 1 MB limit / Then it is refused, not unpacked
    failure = refused(archive, limit=1 << 20)
    assert failure.error_type == "SourceTooLarge"
    assert "1048576" in failure.message


def test_unpack_counts_bytes_read_even_when_a_header_understates_them():
    # Given a zip whose header claims a 1-byte member that really holds 2 MB
    archive = bytearray(zip_of({"zeros.bin": bytes(2 << 20)}))
    for header in (b"PK\x03\x04", b"PK\x01\x02"):
        start = archive.find(header)
        size_at = start + (22 if header == b"PK\x03\x04" else 24)
        archive[size_at : size_at + 4] = (1).to_bytes(4, "little")
    # When it is unpacked / Then it fails: over the limit or damaged, but never 2 MB kept
    assert refused(bytes(archive), limit=1 << 20).error_type in {"SourceTooLarge", "InvalidSource"}


def test_unpack_refuses_more_files_than_a_payload_may_have():
    # Given 1001 files / When unpacked / Then refused with the limit named
    failure = refused(zip_of({f"f{n}.py": b"" for n in range(1001)}))
    assert "more than 1000 files" in failure.message


@pytest.mark.parametrize("data", [b"not an archive", zip_of({"a.py": b"x"})[:30]])
def test_unpack_refuses_what_is_not_an_archive(data):
    assert refused(data).error_type == "InvalidSource"


def test_payloads_take_files_or_a_source_uri_never_both():
    # Given compile and analyze payloads / Then one source is required, and only one
    assert CompilePayload.model_validate({"source_uri": URI}).files is None
    for bad in ({}, {"files": {"a.py": ""}, "source_uri": URI}):
        with pytest.raises(ValidationError):
            AnalyzePayload.model_validate(bad)
    # execute may have neither
    assert ExecutePayload.model_validate({"command": ["python3"]}).source_uri is None
    with pytest.raises(ValidationError):
        CompilePayload.model_validate({"source_uri": "https://example.com/src.zip"})


def test_perform_compiles_and_analyzes_an_archive():
    # Given an archive of two Python files, one with a syntax error on line 2
    archive = zip_of({"good.py": b"def f():\n    return 1\n", "bad.py": b"x = 1\ny = (\n"})
    # When analyze and compile run on it
    analysis = perform("analyze", {"source_uri": URI}, LIMITS, sources=fetcher(archive))
    with pytest.raises(TaskFailure) as compiled:
        perform("compile", {"source_uri": URI}, LIMITS, sources=fetcher(archive))
    # Then they see the archive's files
    assert analysis["files"] == 2 and analysis["functions"] == 1
    assert compiled.value.error_type == "CompileError"
    assert compiled.value.result["diagnostics"][0]["file"] == "bad.py"
    assert compiled.value.result["diagnostics"][0]["line"] == 2


def test_perform_execute_gets_archive_files_byte_for_byte():
    # Given an archive with a binary file that is not UTF-8
    blob = bytes(range(256))
    archive = tar_of({"data/blob.bin": blob})
    command = [
        "python3",
        "-c",
        "import hashlib; print(hashlib.sha256(open('data/blob.bin','rb').read()).hexdigest())",
    ]
    # When a command reads it
    result = perform("execute", {"command": command, "source_uri": URI}, LIMITS, sources=fetcher(archive))
    # Then it sees exactly those bytes
    assert result["stdout"].strip() == hashlib.sha256(blob).hexdigest()


def test_perform_compile_refuses_an_archive_member_that_is_not_text():
    failure_archive = zip_of({"a.py": b"\xff\xfe"})
    with pytest.raises(TaskFailure) as raised:
        perform("compile", {"source_uri": URI}, LIMITS, sources=fetcher(failure_archive))
    assert raised.value.error_type == "InvalidSource"
    assert "a.py" in raised.value.message and "UTF-8" in raised.value.message


def test_perform_passes_its_archive_limit_to_the_fetcher():
    # Given a fetcher that refuses archives over the limit it is given
    seen = []

    def fetch(uri: str, limit_bytes: int) -> bytes:
        seen.append(limit_bytes)
        raise TaskFailure("SourceTooLarge", f"{uri} is over {limit_bytes}")

    # When a task with a small archive limit runs / Then the limit reaches the fetcher and the task fails
    limits = WorkLimits(source_archive_bytes=4096)
    with pytest.raises(TaskFailure) as raised:
        perform("analyze", {"source_uri": URI}, limits, sources=fetch)
    assert seen == [4096]
    assert raised.value.error_type == "SourceTooLarge"
