"""`python -m local_stack invoke FUNCTION -e EVENT`: what `sam local invoke` does, without Docker, against
the running local stack (`make local`): the handler imported from its CodeUri, the stack's variables
from `.local/env`, the event from a file; the return value as JSON on stdout, the function's log and
metric lines on stderr."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from local_stack.lambda_runtime import component_name, invoke
from local_stack.template import Template

ENV_FILE = Path(".local/env")


def read_env(path: Path) -> dict[str, str]:
    """The variables of a file written by `LocalStack.write_env` (shell-quoted NAME=value lines)."""
    values = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            (assignment,) = shlex.split(line)
            name, _, value = assignment.partition("=")
            values[name] = value
    return values


def function_id(template: Template, name: str) -> str:
    """A function's logical id from itself or its code folder's name (intake, dead_letter, ...)."""
    functions = {
        logical_id: component_name(template, logical_id)
        for logical_id, _ in template.of_type("AWS::Serverless::Function")
    }
    for logical_id, short in functions.items():
        if name in (logical_id, short):
            return logical_id
    known = ", ".join(f"{short} ({logical_id})" for logical_id, short in sorted(functions.items()))
    raise SystemExit(f"no function {name!r} in template.yaml; one of: {known}")


def run(function: str, event_path: Path, env_file: Path = ENV_FILE) -> int:
    if not env_file.exists():
        print(f"{env_file} not found: start the local stack first (make local)", file=sys.stderr)
        return 2
    event = json.loads(event_path.read_text())
    os.environ.update(read_env(env_file))
    template = Template.load()
    logical_id = function_id(template, function)
    # The handler's modules are imported inside: their loggers bind to stderr, as Lambda's log stream.
    with contextlib.redirect_stdout(sys.stderr):
        result: Any = invoke(template, logical_id, event)
    print(json.dumps(result, indent=2, default=str))
    return 0
