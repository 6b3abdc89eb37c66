"""Artifacts: what a task produces beyond its inline result, handed to a sink (the bucket)."""

from __future__ import annotations

import importlib.util
import io
import marshal
import stat
import zipfile
from collections.abc import Callable, Mapping

# (name, data, content type) -> the URI the artifact can be fetched from.
ArtifactSink = Callable[[str, bytes, str], str]

# Fixed timestamps keep the archive of the same sources byte-for-byte the same.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def python_archive(files: Mapping[str, str]) -> bytes:
    """A zip of the sources and their byte-compiled .pyc files (importable with zipimport)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in sorted(files.items()):
            archive.writestr(zipfile.ZipInfo(path, _EPOCH), text)
            if path.endswith(".py"):
                code = compile(text, path, "exec", dont_inherit=True)
                source_size = len(text.encode()) & 0xFFFFFFFF
                # PEP 552 header: magic, flags (timestamp-based), mtime 0, source size.
                header = (
                    importlib.util.MAGIC_NUMBER
                    + (0).to_bytes(4, "little") * 2
                    + source_size.to_bytes(4, "little")
                )
                pyc = importlib.util.cache_from_source(path)
                archive.writestr(zipfile.ZipInfo(pyc, _EPOCH), header + marshal.dumps(code))
    return buffer.getvalue()


def program_archive(files: Mapping[str, str], programs: Mapping[str, bytes]) -> bytes:
    """A zip of the sources, as the compiler read them, and the built executables (mode 0755)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        # Surrogate escapes are the undecodable bytes of an unpacked source archive, as the sandbox wrote them.
        entries = [(path, text.encode("utf-8", "surrogateescape"), 0o644) for path, text in files.items()]
        entries += [(path, data, 0o755) for path, data in programs.items()]
        for path, data, mode in sorted(entries):
            info = zipfile.ZipInfo(path, _EPOCH)
            # Unix attributes, so that unzip restores the executable bit on any host.
            info.create_system = 3
            info.external_attr = (stat.S_IFREG | mode) << 16
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()
