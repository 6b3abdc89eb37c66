"""Invokes a function's handler the way `sam local invoke` does: the module found from the template's
CodeUri and Handler, a Lambda context, the event as JSON-decoded data."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from local_stack.console import component
from local_stack.template import ROOT, Template


@dataclass
class LambdaContext:
    function_name: str
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    log_group_name: str = ""
    log_stream_name: str = "local"

    def __post_init__(self) -> None:
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
        self.log_group_name = f"/aws/lambda/{self.function_name}"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


@cache
def load_module(code_uri: str, module_name: str) -> ModuleType:
    """Imports `module_name` from the function's folder under a name unique to that folder."""
    return _import(code_uri, module_name, f"lambda_{code_uri.strip('/').replace('/', '_')}_{module_name}")


def fresh_module(code_uri: str, module_name: str) -> ModuleType:
    """Another copy of a function's module, not the one the local stack runs: overriding its
    dependencies leaves the stack's alone."""
    return _import(code_uri, module_name, f"fresh_{uuid.uuid4().hex}")


def _import(code_uri: str, module_name: str, unique: str) -> ModuleType:
    path = ROOT / code_uri / f"{module_name.replace('.', '/')}.py"
    spec = importlib.util.spec_from_file_location(unique, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    # Lambda puts the function's folder on the path: its modules import their siblings by name.
    folder = str(ROOT / code_uri)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(folder)
    return module


def module_of(template: Template, logical_id: str) -> ModuleType:
    function = template.function(logical_id)
    return load_module(function["CodeUri"], function["Handler"].rpartition(".")[0])


def handler_of(template: Template, logical_id: str) -> Callable[[dict[str, Any], Any], Any]:
    return getattr(
        module_of(template, logical_id), template.function(logical_id)["Handler"].rpartition(".")[2]
    )


def component_name(template: Template, logical_id: str) -> str:
    """The name a function's lines carry locally: its code folder (functions/dead_letter/ -> dead_letter)."""
    return Path(template.function(logical_id)["CodeUri"]).name


def invoke(template: Template, logical_id: str, event: dict[str, Any]) -> Any:
    context = LambdaContext(function_name=logical_id)
    with component(component_name(template, logical_id)), invocation(context):
        return handler_of(template, logical_id)(event, context)


# The functions share one process and one Powertools logger, whose Lambda-context keys are global:
# each line gets those of the invocation that wrote it instead (a context variable, as `component`).
_invocation: ContextVar[dict[str, Any] | None] = ContextVar("local_lambda_invocation", default=None)
_warm: set[str] = set()
_warm_lock = threading.Lock()
INVOCATION_KEYS = (
    "function_name",
    "function_memory_size",
    "function_arn",
    "function_request_id",
    "cold_start",
)


@contextlib.contextmanager
def invocation(context: LambdaContext) -> Iterator[None]:
    """Lines logged inside carry this function's name and request id, and cold_start only on its
    first invocation in this process (as one Lambda execution environment per function would)."""
    with _warm_lock:
        cold = context.function_name not in _warm
        _warm.add(context.function_name)
    keys = dict(
        zip(
            INVOCATION_KEYS,
            (
                context.function_name,
                context.memory_limit_in_mb,
                context.invoked_function_arn,
                context.aws_request_id,
                cold,
            ),
            strict=True,
        )
    )
    token = _invocation.set(keys)
    try:
        yield
    finally:
        _invocation.reset(token)


class InvocationKeys(logging.Filter):
    """Sets the writing invocation's keys on each record (a record's own keys win over the
    logger's appended ones); outside any invocation, none."""

    def filter(self, record: logging.LogRecord) -> bool:
        keys = _invocation.get() or dict.fromkeys(INVOCATION_KEYS)
        record.__dict__.update(keys)
        return True
