"""The `compile` task: a toolchain per language turns source files into diagnostics and, when there
are none, into an archive that goes to the bucket (`artifact_uri` names it).

Python: every `.py` file is byte-compiled in memory with `compile()` (no .pyc is written);
other files in a python compile are ignored, so a payload without `.py` files compiles
trivially. Syntax warnings are not reported. The archive holds the sources and their .pyc files.

C: every `.c` file is compiled and linked into one program by the image's `cc`, in the sandbox
(see `_c_build`). The archive holds the sources and the program.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from mistersmith.errors import TaskFailure, TaskStopped
from mistersmith.models import CompilePayload, CompileResult, Diagnostic
from mistersmith.work.artifacts import ArtifactSink, program_archive, python_archive
from mistersmith.work.limits import WorkLimits
from mistersmith.work.sandbox import SAFE_PATH, run_sandboxed

# How many diagnostics the failure message spells out; all of them are in the result.
_SUMMARY_DIAGNOSTICS = 3


@dataclass(frozen=True)
class Build:
    """What a toolchain made of the files: its errors, or (with none) how to make the archive to keep."""

    diagnostics: list[Diagnostic]
    archive: Callable[[], bytes] | None = None


def _always_available() -> str | None:
    return None


@dataclass(frozen=True)
class Toolchain:
    """One language: `build(files, limits, stop)` compiles the files within the worker's limits,
    and `unavailable()` says why this worker cannot (its image lacks the compiler), or None."""

    build: Callable[[Mapping[str, str], WorkLimits, threading.Event | None], Build]
    unavailable: Callable[[], str | None] = _always_available


def _python_build(files: Mapping[str, str], _limits: WorkLimits, _stop: threading.Event | None) -> Build:
    return Build(_python_diagnostics(files), lambda: python_archive(files))


def _python_diagnostics(files: Mapping[str, str]) -> list[Diagnostic]:
    diagnostics = []
    for path in sorted(files):
        if not path.endswith(".py"):
            continue
        try:
            with warnings.catch_warnings(action="ignore"):
                compile(files[path], path, "exec", dont_inherit=True)
        except SyntaxError as exc:
            diagnostics.append(Diagnostic(file=path, line=exc.lineno or 0, message=exc.msg))
        except ValueError as exc:  # Python 3.11 reports NUL bytes in the source this way.
            diagnostics.append(Diagnostic(file=path, line=0, message=str(exc)))
        except RecursionError:
            diagnostics.append(Diagnostic(file=path, line=0, message="too deeply nested to compile"))
    return diagnostics


# Where the C toolchain writes the program, in the work directory and in the archive.
_C_PROGRAM = "program"
_NO_C_COMPILER = f"this worker's image has no C compiler (no `cc` on {SAFE_PATH})"
# gcc and clang: `file:line[:column]: [fatal ]error: message`; warnings and notes are not errors.
_C_ERROR = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?:\d+:)? (?:fatal )?error: (?P<message>.*)$", re.M)
# Past this the output is no help, and the diagnostics stay well within a DynamoDB item.
_COMPILER_OUTPUT_BYTES = 64 << 10
# Floors for a normal compile: cc1 alone maps about 64 MiB, and cc runs cc1, as, collect2 and ld.
_COMPILER_MEMORY_BYTES = 512 << 20
_COMPILER_PROCESSES = 8
# How much of a failing compiler's stderr is kept when it names no file and line.
_UNPARSED_STDERR_CHARS = 4000


def _c_compiler() -> str | None:
    # Looked up on the sandbox's PATH, the one cc itself searches for as and ld.
    return shutil.which("cc", path=SAFE_PATH)


def _c_unavailable() -> str | None:
    return _NO_C_COMPILER if _c_compiler() is None else None


def _c_build(files: Mapping[str, str], limits: WorkLimits, stop: threading.Event | None) -> Build:
    """Compiles and links every `.c` file into one program in a single sandboxed run of
    `cc -O2 -I. -o program ./a.c ./b.c ... -lm` (argv, no shell).

    One run rather than a .o per file, so that link errors (a missing `main` or function) are
    compile errors too: the payload must be a whole program. `-I.` lets any file include a
    header by its payload path. The timeout is the worker's `execute_timeout_seconds`, its
    ceiling for any sandboxed child; past it the compiler's process group is killed (`Timeout`).
    The confinement is the worker's, with only the compiler allowed to start and memory and
    process limits raised to what a normal compile needs when they are lower.
    Without `.c` files there is nothing to build: the compile succeeds with the sources alone.

    The Fargate image installs gcc (and libc6-dev) in fargate_worker/Dockerfile; where no `cc` is
    on the safe PATH the language is unsupported.
    """
    sources = sorted(path for path in files if path.endswith(".c"))
    if not sources:
        return Build([], lambda: program_archive(files, {}))
    if any(path == _C_PROGRAM or path.startswith(f"{_C_PROGRAM}/") for path in files):
        raise TaskFailure(
            "InvalidPayload", f"file path {_C_PROGRAM!r} is where the C toolchain puts the program"
        )
    compiler = _c_compiler()
    if compiler is None:
        raise TaskFailure("UnsupportedLanguage", f"language 'c' is not supported here: {_NO_C_COMPILER}")
    base = limits.confinement
    confinement = replace(
        base,
        # The allowlist is for users' commands; here only our compiler starts (its cc1, as and ld go unchecked).
        allowed_executables=(compiler,),
        memory_bytes=max(base.memory_bytes, _COMPILER_MEMORY_BYTES),
        max_processes=max(base.max_processes, _COMPILER_PROCESSES),
    )
    timeout = limits.execute_timeout_seconds
    # "./" keeps a file named like an option ("-o...") a file.
    command = [compiler, "-O2", "-I.", "-o", _C_PROGRAM, *(f"./{path}" for path in sources), "-lm"]
    run = run_sandboxed(
        command,
        timeout_seconds=timeout,
        output_limit_bytes=min(limits.output_limit_bytes, _COMPILER_OUTPUT_BYTES),
        files=files,
        stop=stop,
        confinement=confinement,
        collect=[_C_PROGRAM],
    )
    if run.stopped:
        raise TaskStopped("the compile was stopped before it finished")
    if run.timed_out:
        raise TaskFailure("Timeout", f"compile did not finish within {timeout:g} s; the compiler was killed")
    if run.exit_code != 0:
        return Build(_c_diagnostics(run.stderr, run.exit_code))
    program = run.files.get(_C_PROGRAM)
    if program is None:
        limit = confinement.max_file_bytes
        message = f"the compiler succeeded but left no {_C_PROGRAM!r} of at most {limit} bytes"
        return Build([Diagnostic(file="", line=0, message=message)])
    return Build([], lambda: program_archive(files, {_C_PROGRAM: program}))


def _c_diagnostics(stderr: str, exit_code: int) -> list[Diagnostic]:
    diagnostics = [
        Diagnostic(file=os.path.normpath(match["file"]), line=int(match["line"]), message=match["message"])
        for match in _C_ERROR.finditer(stderr)
    ]
    if diagnostics:
        return diagnostics
    # A link error, or a compiler that crashed or was killed: what it said is all there is.
    said = stderr.strip()[:_UNPARSED_STDERR_CHARS]
    message = f"the compiler failed with exit code {exit_code}" + (f": {said}" if said else "")
    return [Diagnostic(file="", line=0, message=message)]


TOOLCHAINS: dict[str, Toolchain] = {
    "python": Toolchain(_python_build),
    "c": Toolchain(_c_build, _c_unavailable),
}


def run_compile(
    payload: CompilePayload,
    artifacts: ArtifactSink | None = None,
    *,
    limits: WorkLimits | None = None,
    stop: threading.Event | None = None,
) -> CompileResult:
    """Compiles the payload's files with the toolchain of its language, within `limits`.

    Raises TaskFailure `UnsupportedLanguage` for a language without a toolchain or whose
    compiler this worker lacks, and `CompileError` with `result` = CompileResult(ok=False,
    diagnostics=...) when any file fails; a toolchain that runs a compiler also raises
    `Timeout`, TaskStopped, and whatever `run_sandboxed` raises.
    """
    language = payload.language.strip().lower()
    toolchain = TOOLCHAINS.get(language)
    missing = None if toolchain is None else toolchain.unavailable()
    if toolchain is None or missing is not None:
        supported = ", ".join(
            sorted(name for name, chain in TOOLCHAINS.items() if chain.unavailable() is None)
        )
        where = f" here: {missing}" if missing else ""
        raise TaskFailure(
            "UnsupportedLanguage",
            f"language {payload.language!r} is not supported{where}; supported: {supported}",
        )
    build = toolchain.build(payload.files or {}, limits or WorkLimits(), stop)
    if build.diagnostics:
        result = CompileResult(ok=False, diagnostics=build.diagnostics)
        raise TaskFailure("CompileError", _summary(build.diagnostics), result=result.model_dump())
    if artifacts is None or build.archive is None:
        return CompileResult(ok=True, diagnostics=[])
    uri = artifacts(f"{language}-build.zip", build.archive(), "application/zip")
    return CompileResult(ok=True, diagnostics=[], artifact_uri=uri)


def _summary(diagnostics: list[Diagnostic]) -> str:
    files = len({diagnostic.file for diagnostic in diagnostics if diagnostic.file})
    # A diagnostic without a file (a link error, say) is the whole build's.
    shown = "; ".join(
        f"{d.file}:{d.line}: {d.message}" if d.file else d.message for d in diagnostics[:_SUMMARY_DIAGNOSTICS]
    )
    more = len(diagnostics) - _SUMMARY_DIAGNOSTICS
    where = f" in {files} file(s)" if files else ""
    return f"{len(diagnostics)} error(s){where}: {shown}" + (f"; and {more} more" if more > 0 else "")
