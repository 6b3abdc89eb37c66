"""Records which boto3 operations each entry point makes, for the permission tests (each distinct
call once) and the AWS-call benchmark (every call, when MISTERSMITH_BOTO_CALLS_EVERY is set).

Python imports this at start-up in every process that has this folder on PYTHONPATH (tests/conftest.py
puts it there, so the local stack's worker processes load it); tests/conftest.py also loads it into the
test process, where the functions run. It does nothing unless MISTERSMITH_BOTO_CALLS names a file."""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import Any

RECORD_VARIABLE = "MISTERSMITH_BOTO_CALLS"
EVERY_VARIABLE = "MISTERSMITH_BOTO_CALLS_EVERY"
_seen: set[tuple[str, str, str]] = set()
_lock = threading.Lock()


def entry_point() -> str | None:
    """The function whose code runs (the local stack's component), or "worker" in a worker process."""
    if any("fargate_worker" in argument for argument in sys.argv[:1]):
        return "worker"
    console = sys.modules.get("local_stack.console")
    return console.current_component() if console is not None else None


def _record(model: Any, **_: Any) -> None:
    entry = entry_point()
    if entry is None:  # the tests' own calls, or the local stack playing AWS's event sources
        return
    call = (entry, model.service_model.service_name, model.name)
    with _lock:
        if call in _seen and not os.environ.get(EVERY_VARIABLE):
            return
        _seen.add(call)
        with open(os.environ[RECORD_VARIABLE], "a") as calls:
            calls.write(json.dumps(dict(zip(("entry", "service", "operation"), call, strict=True))) + "\n")


def install() -> None:
    """Every botocore session created from now on calls `_record` before each operation."""
    try:
        import botocore.handlers
    except ImportError:  # a Python without botocore (another venv, the sandbox's) makes no AWS calls
        return

    if ("before-call", _record) not in botocore.handlers.BUILTIN_HANDLERS:
        botocore.handlers.BUILTIN_HANDLERS.append(("before-call", _record))


if os.environ.get(RECORD_VARIABLE):
    install()
