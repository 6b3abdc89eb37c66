"""Turns on the boto_calls recorder for this process and the processes it starts."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

BOTO_CALLS_DIR = Path(__file__).with_name("boto_calls")


def record_boto_calls(*, every: bool = False) -> Path:
    """Every boto3 operation the functions (in this process) and workers (child processes, through
    sitecustomize on PYTHONPATH) make is written to the returned file: each distinct call once, or
    every call when `every`."""
    path = Path(tempfile.mkdtemp(prefix="mistersmith-boto-calls-")) / "calls.jsonl"
    atexit.register(_remove_if_ours, path.parent, os.getpid())
    os.environ["MISTERSMITH_BOTO_CALLS"] = str(path)
    if every:
        os.environ["MISTERSMITH_BOTO_CALLS_EVERY"] = "1"
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(BOTO_CALLS_DIR), os.environ.get("PYTHONPATH")])
    )
    spec = importlib.util.spec_from_file_location("boto_calls", BOTO_CALLS_DIR / "sitecustomize.py")
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return path


def _remove_if_ours(directory: Path, creator: int) -> None:
    """At exit of the process that made it (not of a fork that inherited the hook)."""
    if os.getpid() == creator:
        shutil.rmtree(directory, ignore_errors=True)
