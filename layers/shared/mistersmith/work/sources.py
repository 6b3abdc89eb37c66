"""Source archives: a task's files as a zip or a tar (plain or gzip) in the bucket, the claim check
for inputs too big for a payload.

The archive's size is checked before it is read, and every member is checked before it is kept:
paths must stay inside the work directory, only regular files and directories are accepted (no
links or devices), and the unpacked bytes and the file count have limits that hold even when an
archive's headers lie about sizes.
"""

from __future__ import annotations

# What zipfile and tarfile import on first use (cp437 member names, compressed tars), imported in
# the worker: the sandboxed child that unpacks may not be able to read the interpreter's library.
import bz2  # noqa: F401
import codecs
import encodings.cp437  # noqa: F401
import errno
import gzip  # noqa: F401
import io
import lzma  # noqa: F401
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from mistersmith.errors import TaskFailure
from mistersmith.models import MAX_SOURCE_FILES, checked_relative_path

# (source_uri, most bytes it may have) -> the archive; raises TaskFailure when missing or too big.
SourceFetcher = Callable[[str, int], bytes]


def source_files(
    uri: str,
    fetch: SourceFetcher,
    *,
    archive_limit_bytes: int,
    unpacked_limit_bytes: int,
    text_only: bool,
) -> dict[str, str]:
    """The archive at `uri` as a payload's `files`.

    With `text_only`, a member that is not UTF-8 is refused; otherwise undecodable bytes are kept
    as surrogate escapes, which the sandbox writes back byte for byte."""
    members = unpack(fetch(uri, archive_limit_bytes), unpacked_limit_bytes=unpacked_limit_bytes)
    files = {}
    for path, data in members.items():
        try:
            files[path] = data.decode("utf-8", "strict" if text_only else "surrogateescape")
        except UnicodeDecodeError:
            raise TaskFailure("InvalidSource", f"{path} in {uri} is not UTF-8 text") from None
    if not files:
        raise TaskFailure("InvalidSource", f"{uri} holds no files")
    return files


def unpack(data: bytes, *, unpacked_limit_bytes: int) -> dict[str, bytes]:
    """The regular files of a zip or tar archive, by normalised relative path."""
    budget = _Budget(unpacked_limit_bytes)
    members = _zip_members(data) if zipfile.is_zipfile(io.BytesIO(data)) else _tar_members(data)
    files: dict[str, bytes] = {}
    try:
        for name, size, stream in members:
            path = _checked(name)
            if path in files:
                raise TaskFailure("InvalidSource", f"the archive holds {path} twice")
            if len(files) == MAX_SOURCE_FILES:
                raise TaskFailure("InvalidSource", f"the archive holds more than {MAX_SOURCE_FILES} files")
            files[path] = budget.read(stream, size, path)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        raise TaskFailure("InvalidSource", f"the archive is damaged: {error}") from None
    return files


# Members are copied to disk through a buffer of this size: the archive's size never meets memory.
_COPY_BYTES = 1 << 16


def unpack_into(data: bytes, directory: Path, *, unpacked_limit_bytes: int, text_only: bool) -> int:
    """Unpacks the regular files of a zip or tar archive into `directory` (normalised relative
    paths), streaming each member through a bounded buffer; the number of files.

    With `text_only`, a member that is not UTF-8 is refused (`InvalidSource`). Raises TaskFailure
    `InvalidSource` (a damaged archive, a member path that cannot be used, none or too many files)
    and `SourceTooLarge` (more than `unpacked_limit_bytes` unpacked)."""
    budget = _Budget(unpacked_limit_bytes)
    members = _zip_members(data) if zipfile.is_zipfile(io.BytesIO(data)) else _tar_members(data)
    seen: set[str] = set()
    try:
        for name, size, stream in members:
            path = _checked(name)
            if path in seen:
                raise TaskFailure("InvalidSource", f"the archive holds {path} twice")
            if len(seen) == MAX_SOURCE_FILES:
                raise TaskFailure("InvalidSource", f"the archive holds more than {MAX_SOURCE_FILES} files")
            seen.add(path)
            _copy_member(stream, size, directory / path, path, budget, text_only)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
        raise TaskFailure("InvalidSource", f"the archive is damaged: {error}") from None
    except OSError as error:
        if error.errno not in _UNUSABLE_PATH_ERRNOS:
            raise
        raise TaskFailure(
            "InvalidSource", f"a member of the archive cannot be written: {error.strerror}"
        ) from None
    if not seen:
        raise TaskFailure("InvalidSource", "the archive holds no files")
    return len(seen)


_UNUSABLE_PATH_ERRNOS = frozenset(
    {
        errno.ENAMETOOLONG,
        errno.EILSEQ,
        errno.EINVAL,
        errno.EEXIST,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ELOOP,
        errno.EFBIG,
    }
)


def _copy_member(
    stream: IO[bytes], size: int, target: Path, path: str, budget: _Budget, text_only: bool
) -> None:
    if size > budget.left:
        budget.exceeded(path)
    decoder = codecs.getincrementaldecoder("utf-8")() if text_only else None
    target.parent.mkdir(parents=True, exist_ok=True)
    # "x": a member cannot replace a file or a link already there.
    with open(target, "xb") as out:
        while chunk := stream.read(min(_COPY_BYTES, budget.left + 1)):
            if len(chunk) > budget.left:
                budget.exceeded(path)
            budget.left -= len(chunk)
            if decoder is not None:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    raise TaskFailure("InvalidSource", f"{path} in the archive is not UTF-8 text") from None
            out.write(chunk)
    if decoder is not None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise TaskFailure("InvalidSource", f"{path} in the archive is not UTF-8 text") from None


class _Budget:
    """The unpacked bytes still allowed; it trusts what is read, never a header's claims."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit

    def read(self, stream: IO[bytes], declared_size: int, path: str) -> bytes:
        if declared_size > self.left:
            self.exceeded(path)
        data = stream.read(self.left + 1)
        if len(data) > self.left:
            self.exceeded(path)
        self.left -= len(data)
        return data

    def exceeded(self, path: str) -> None:
        raise TaskFailure(
            "SourceTooLarge", f"the archive unpacks to more than {self.limit} bytes (at {path})"
        )


def _checked(name: str) -> str:
    try:
        path = checked_relative_path(name)
    except ValueError as error:
        raise TaskFailure("InvalidSource", f"the archive is refused: {error}") from None
    if path == "." or "\0" in path:
        raise TaskFailure("InvalidSource", f"the archive is refused: member name {name!r}")
    return path


def _zip_members(data: bytes) -> Iterator[tuple[str, int, IO[bytes]]]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            # Zips written without a file type (e.g. by Python's writestr) hold plain files.
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind and kind != stat.S_IFREG:
                raise TaskFailure("InvalidSource", f"{info.filename} in the archive is not a regular file")
            with archive.open(info) as stream:
                yield info.filename, info.file_size, stream


def _tar_members(data: bytes) -> Iterator[tuple[str, int, IO[bytes]]]:
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115 - closed below
    except tarfile.TarError:
        raise TaskFailure("InvalidSource", "the source is neither a zip nor a tar archive") from None
    with archive:
        for member in archive:
            if member.isdir():
                continue
            if not member.isfile():
                raise TaskFailure("InvalidSource", f"{member.name} in the archive is not a regular file")
            stream = archive.extractfile(member)
            if stream is None:
                raise TaskFailure("InvalidSource", f"{member.name} in the archive cannot be read")
            yield member.name, member.size, stream
