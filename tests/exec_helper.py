"""Builds the sandbox's exec helper (mistersmith/work/sandbox_exec.c) with this machine's cc, as the
worker image does, for the tests and the bench."""

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


@functools.cache
def exec_helper() -> str | None:
    """The built helper's path (one build per source version, shared by runs), None without cc."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:16]
    target = Path(tempfile.gettempdir()) / f"mistersmith-exec-{digest}"
    if not os.access(target, os.X_OK):
        building = target.with_name(f"{target.name}.{os.getpid()}")
        # Static as in the image; a machine without libc.a gets a dynamic one.
        for flags in (["-static"], []):
            built = subprocess.run(
                [compiler, "-O2", "-Wall", "-Werror", *flags, "-o", str(building), str(SOURCE)],
                capture_output=True,
                check=False,
            )
            if built.returncode == 0:
                break
        else:
            raise RuntimeError(f"building the exec helper failed: {built.stderr.decode(errors='replace')}")
        os.replace(building, target)  # atomic: concurrent test runs never see half a file
    return str(target)
