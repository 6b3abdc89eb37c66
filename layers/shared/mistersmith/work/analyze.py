"""The `analyze` task: size, structure and findings for a set of source files, from the field's own
analyzers run in a sandboxed child (never in this interpreter).

The child (`analyze_child.py`) runs under the task's budgets: the wall clock and CPU time of
`execute_timeout_seconds`, the confinement's memory, and `output_limit_bytes` of output.

Where each figure comes from:
- lines: newline-separated lines (\\n, \\r\\n or \\r), a final line without a newline included.
- code_lines: non-blank lines; in `.py` / `.pyi` files, without the lines that hold only a comment
  (a one-pass scan of comments and strings: a `#` line inside a string is code).
- functions and classes: the `def` and `class` keywords outside strings and comments of the
  Python files (methods and nested ones included, lambdas not), by the same scan.
- max_complexity: ruff's mccabe complexity (C901) of the most complex function; a nested
  function adds to the one around it, boolean operators and comprehensions add nothing.
- findings: ruff on `.py` / `.pyi` files (`select`, default F, E, C90, B, S, minus `ignore`, for
  `target_version`, with a C901 threshold of 10; a file with a syntax error gets only its syntax
  errors, code `invalid-syntax`), and cppcheck on `.c` files (warning, style, performance and
  portability checks; its headers through `#include`). Other files get line counts only.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import stat
import sys
import threading
from dataclasses import replace
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from mistersmith.errors import TaskFailure, TaskStopped
from mistersmith.models import AnalyzePayload, AnalyzeResult
from mistersmith.work import analyze_child
from mistersmith.work.artifacts import ArtifactSink
from mistersmith.work.limits import WorkLimits
from mistersmith.work.sandbox import SAFE_PATH, SandboxResult, budget_failure, run_sandboxed

MAX_COMPLEXITY = 10
# Passed as the child's program text: the child's uid need not be able to read the worker's files.
_CHILD_SOURCE = Path(analyze_child.__file__).read_text(encoding="utf-8")
# More findings than this stay out of the bucket's report as well (they are still counted).
_REPORT_BYTES = 16 << 20
# Floors for the child's Python and its tools: ruff maps 25 MiB and runs a thread per core.
_MIN_MEMORY_BYTES = 128 << 20
_CHILD_PROCESSES = (os.cpu_count() or 1) + 4


def run_analyze(
    payload: AnalyzePayload,
    limits: WorkLimits | None = None,
    stop: threading.Event | None = None,
    artifacts: ArtifactSink | None = None,
) -> AnalyzeResult:
    """Analyzes the payload's files in a sandboxed child (the module docstring says how).

    When not every finding fits in the record (`inline_output_bytes`), the result holds the first
    ones and `findings_uri` names all of them in the bucket.
    Raises TaskFailure: `Timeout`, `MemoryLimitExceeded` or `OutputLimitExceeded` when the
    analysis overruns that budget, `AnalyzerUnavailable` when this process lacks ruff (Python
    files) or cppcheck (C files), `AnalyzerFailed` when a tool fails; TaskStopped on `stop`;
    and whatever `run_sandboxed` raises.
    """
    limits = limits or WorkLimits()
    files = payload.files or {}
    request = {
        "ruff": _tool(_ruff()[0], "ruff", any(p.endswith((".py", ".pyi")) for p in files)),
        "ruff_version": _ruff()[1],
        "cppcheck": _tool(_cppcheck(), "cppcheck", any(p.endswith(".c") for p in files)),
        "select": payload.select,
        "ignore": payload.ignore,
        "target_version": "py" + payload.target_version.replace(".", ""),
        "max_complexity": MAX_COMPLEXITY,
        "inline_bytes": min(limits.inline_output_bytes, limits.output_limit_bytes),
        "report_bytes": min(_REPORT_BYTES, limits.confinement.max_file_bytes),
    }
    run = _run_child(_child_input(request, files), limits, stop)
    summary = _summary(run, limits)
    report = run.files.get(analyze_child.REPORT)
    if report is not None and artifacts is not None:
        summary["findings_uri"] = artifacts("findings.json", report, "application/json")
    return AnalyzeResult.model_validate(summary)


def _child_input(request: dict[str, Any], files: dict[str, str]) -> str:
    """The child's stdin: the request as one line of JSON, its `files` a list of [path, length],
    then the texts of those files one after another, so that megabytes of source are neither
    escaped here nor parsed there. Only ASCII texts go raw: one other character would make the
    whole string 2 or 4 bytes a character in this process. The others (and an archive's
    undecodable bytes, lone surrogates that stdin cannot carry) are [path, text], escaped in the JSON."""
    listed: list[list[Any]] = []
    texts: list[str] = []
    for path, text in files.items():
        if text.isascii():  # a flag of the string: no scan
            listed.append([path, len(text)])
            texts.append(text)
        else:
            listed.append([path, text])
    # One join: the only copy of the texts this process makes (the sandbox encodes it once more).
    return "".join([json.dumps(request | {"files": listed}), "\n", *texts])


def _run_child(stdin: str, limits: WorkLimits, stop: threading.Event | None) -> SandboxResult:
    """The one place the analysis starts its sandboxed child."""
    base = limits.confinement
    interpreter = _interpreter()
    confinement = replace(
        base,
        # Only our interpreter starts; it runs ruff and cppcheck, never anything named in the payload.
        allowed_executables=(interpreter,),
        memory_bytes=max(base.memory_bytes, _MIN_MEMORY_BYTES),
        max_processes=max(base.max_processes, _CHILD_PROCESSES),
    )
    # -I: neither the environment nor the work directory can put a module in the child's way.
    return run_sandboxed(
        [interpreter, "-I", "-S", "-c", _CHILD_SOURCE],
        timeout_seconds=limits.execute_timeout_seconds,
        output_limit_bytes=limits.output_limit_bytes,
        stdin=stdin,
        stop=stop,
        confinement=confinement,
        collect=[analyze_child.REPORT],
    )


def _summary(run: SandboxResult, limits: WorkLimits) -> dict[str, Any]:
    if run.stopped:
        raise TaskStopped("the analysis was stopped before it finished")
    if run.timed_out:
        timeout = limits.execute_timeout_seconds
        raise TaskFailure("Timeout", f"the analysis did not finish within {timeout:g} s; it was killed")
    failure = budget_failure(run, "the analysis")
    if failure is not None:
        raise failure
    if run.truncated:
        raise TaskFailure(
            "OutputLimitExceeded", f"the analyzers wrote more than {limits.output_limit_bytes} bytes"
        )
    try:
        summary: dict[str, Any] = json.loads(run.stdout)
    except ValueError:
        summary = {}
    if run.exit_code == analyze_child.FAILED and "error" in summary:
        raise TaskFailure(summary["error"]["type"], summary["error"]["message"])
    if run.exit_code != 0 or not summary:
        if "MemoryError" in run.stderr:
            raise TaskFailure(
                "MemoryLimitExceeded", "the analysis ran out of memory within the task's budget"
            )
        said = run.stderr.strip()[-2000:]
        raise TaskFailure("AnalyzerFailed", f"the analysis failed with exit code {run.exit_code}: {said}")
    return summary


def _tool(path: str | None, name: str, needed: bool) -> str | None:
    if needed and path is None:
        raise TaskFailure("AnalyzerUnavailable", f"{name} is not installed where this task runs")
    return path


@cache
def _ruff() -> tuple[str | None, str | None]:
    """The ruff binary and its version: the installed ruff package's (in a Lambda layer, python/bin/ruff),
    else a ruff on the sandbox's PATH, whose version the child asks it for."""
    try:
        # ruff's own lookup (its scripts directory, or python/bin beside the package in a layer).
        find_ruff_bin = importlib.import_module("ruff").find_ruff_bin
        return os.path.realpath(find_ruff_bin()), version("ruff")
    except (ImportError, FileNotFoundError, PackageNotFoundError):
        return shutil.which("ruff", path=SAFE_PATH), None


@cache
def _cppcheck() -> str | None:
    return shutil.which("cppcheck", path=SAFE_PATH)


@cache
def _interpreter() -> str:
    """Our own interpreter, unless the child gets a uid of its own that cannot reach it (a Python
    under /root, say): then python3 on the sandbox's PATH."""
    own = os.path.realpath(sys.executable)
    if os.geteuid() != 0 or _others_can_run(own):
        return own
    return shutil.which("python3", path=SAFE_PATH) or own


def _others_can_run(path: str) -> bool:
    return all(os.stat(step).st_mode & stat.S_IXOTH for step in [path, *map(str, Path(path).parents)])
