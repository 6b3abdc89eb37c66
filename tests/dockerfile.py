"""fargate_worker/Dockerfile read as instructions (continuations joined, comments dropped), for the tests
that check the image's contents and rebuild its layout without Docker."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO_ROOT / "fargate_worker" / "Dockerfile"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = pending + stripped
        pending = ""
        name, _, arguments = whole.partition(" ")
        found.append((name.upper(), " ".join(arguments.split())))
    return found


def apt_packages(path: Path = DOCKERFILE) -> tuple[list[str], list[str]]:
    """(options, packages) of every `apt-get install` in the Dockerfile's RUN instructions."""
    options: list[str] = []
    packages: list[str] = []
    for name, arguments in instructions(path):
        if name != "RUN":
            continue
        for command in arguments.split("&&"):
            words = shlex.split(command)
            if words[:2] == ["apt-get", "install"]:
                options += [word for word in words[2:] if word.startswith("-")]
                packages += [word for word in words[2:] if not word.startswith("-")]
    return options, packages


def environment(path: Path = DOCKERFILE) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, arguments in instructions(path):
        if name == "ENV":
            for item in shlex.split(arguments):
                key, _, value = item.partition("=")
                values[key] = value
    return values


def command(path: Path = DOCKERFILE) -> list[str]:
    (cmd,) = [arguments for name, arguments in instructions(path) if name == "CMD"]
    return json.loads(cmd)
