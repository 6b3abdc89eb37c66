"""Builds the sandbox's exec helper (mistersmith/work/sandbox_exec.c) as the worker image does
(static, with musl-gcc), for the tests and the bench; with this machine's cc where musl-gcc is
missing."""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import mistersmith.work

SOURCE = Path(mistersmith.work.__file__).with_name("sandbox_exec.c")
# As the image builds it first; then static glibc; then a dynamic one (a machine without libc.a).
BUILDS = (("musl-gcc", "-static"), ("cc", "-static"), ("cc", None))


@functools.cache
def exec_helper() -> str | None:
    """The built helper's path (one build per source version and compiler, shared by runs), None
    without a C compiler."""
    errors = []
    for name, flag in BUILDS:
        compiler = shutil.which(name) or (shutil.which("gcc") if name == "cc" else None)
        if compiler is None:
            continue
        key = hashlib.sha256(SOURCE.read_bytes() + f"{name} {flag}".encode()).hexdigest()[:16]
        target = Path(tempfile.gettempdir()) / f"mistersmith-exec-{key}"
        if os.access(target, os.X_OK):
            return str(target)
        building = target.with_name(f"{target.name}.{os.getpid()}")
        flags = [flag] if flag else []
        built = subprocess.run(
            [compiler, "-O2", "-Wall", "-Werror", *flags, "-o", str(building), str(SOURCE)],
            capture_output=True,
            check=False,
        )
        if built.returncode == 0:
            os.replace(building, target)  # atomic: concurrent test runs never see half a file
            return str(target)
        errors.append(f"{name} {flag or ''}: {built.stderr.decode(errors='replace')}")
    if errors:
        raise RuntimeError("building the exec helper failed: " + "\n".join(errors))
    return None
