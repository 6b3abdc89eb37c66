"""The `compile` task: a toolchain per language turns source files into diagnostics and, when there
are none, into an archive that goes to the bucket (`artifact_uri` names it).

All of it happens in a sandboxed child (`run_in_sandbox`): the files (or the source archive,
unpacked there), the compilation and the archive, under the run's uid, filter and budgets; the
worker only gets back the diagnostics and the archive's bytes.

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
import stat
import subprocess
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mistersmith.errors import TaskFailure
from mistersmith.models import CompilePayload, CompileResult, Diagnostic
from mistersmith.work.artifacts import ArtifactSink, program_archive, python_archive
from mistersmith.work.limits import Confinement, WorkLimits
from mistersmith.work.sandbox import SAFE_PATH, SourceArchive, child_environment, run_in_sandbox

# How many diagnostics the failure message spells out; all of them are in the result.
_SUMMARY_DIAGNOSTICS = 3


# Where the child leaves the archive for the worker to collect.
_BUILD_ARCHIVE = ".mistersmith-build.zip"


@dataclass(frozen=True)
class Build:
    """What a toolchain made of the files: its errors, or (with none) how to make the archive to keep."""

    diagnostics: list[Diagnostic]
    archive: Callable[[], bytes] | None = None


def _always_available() -> str | None:
    return None


def _same_confinement(confinement: Confinement) -> Confinement:
    return confinement


@dataclass(frozen=True)
class Toolchain:
    """One language: `build(files, workdir)` compiles the files (read from `workdir`, where the
    sandboxed child runs it); `unavailable()` says why this worker cannot (its image lacks the
    compiler), or None; `confinement(worker's)` is what its child runs under."""

    build: Callable[[Mapping[str, bytes], Path], Build]
    unavailable: Callable[[], str | None] = _always_available
    confinement: Callable[[Confinement], Confinement] = _same_confinement


def _python_build(files: Mapping[str, bytes], _workdir: Path) -> Build:
    texts: dict[str, str] = {}
    diagnostics = []
    for path, data in sorted(files.items()):
        try:
            texts[path] = data.decode("utf-8")
        except UnicodeDecodeError:
            diagnostics.append(Diagnostic(file=path, line=0, message="the file is not UTF-8 text"))
    diagnostics += _python_diagnostics(texts)
    return Build(diagnostics, lambda: python_archive(texts))


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


def _c_confinement(base: Confinement) -> Confinement:
    # Only the interpreter of the child starts from the parent; it runs our compiler itself.
    return replace(
        base,
        memory_bytes=max(base.memory_bytes, _COMPILER_MEMORY_BYTES),
        max_processes=max(base.max_processes, _COMPILER_PROCESSES),
    )


def _c_build(files: Mapping[str, bytes], workdir: Path) -> Build:
    """Compiles and links every `.c` file into one program in a single run of
    `cc -O2 -I. -o program ./a.c ./b.c ... -lm` (argv, no shell), from the sandboxed child.

    One run rather than a .o per file, so that link errors (a missing `main` or function) are
    compile errors too: the payload must be a whole program. `-I.` lets any file include a
    header by its payload path. The child's timeout is the worker's `execute_timeout_seconds`;
    its memory and process budgets are raised to what a normal compile needs when lower.
    Without `.c` files there is nothing to build: the compile succeeds with the sources alone.

    The Fargate image installs gcc (and libc6-dev) in fargate_worker/Dockerfile; where no `cc` is
    on the safe PATH the language is unsupported.
    """
    texts = {path: data.decode("utf-8", "surrogateescape") for path, data in files.items()}
    sources = sorted(path for path in files if path.endswith(".c"))
    if not sources:
        return Build([], lambda: program_archive(texts, {}))
    if any(path == _C_PROGRAM or path.startswith(f"{_C_PROGRAM}/") for path in files):
        raise TaskFailure(
            "InvalidPayload", f"file path {_C_PROGRAM!r} is where the C toolchain puts the program"
        )
    compiler = _c_compiler()
    if compiler is None:
        raise TaskFailure("UnsupportedLanguage", f"language 'c' is not supported here: {_NO_C_COMPILER}")
    # "./" keeps a file named like an option ("-o...") a file.
    command = [compiler, "-O2", "-I.", "-o", _C_PROGRAM, *(f"./{path}" for path in sources), "-lm"]
    # Our compiler on the sources, from the sandboxed child: the run's budgets bound it.
    run = subprocess.run(  # noqa: S603
        command, cwd=workdir, env=child_environment(workdir), capture_output=True, check=False
    )
    stderr = run.stderr[:_COMPILER_OUTPUT_BYTES].decode("utf-8", "replace")
    if run.returncode != 0:
        return Build(_c_diagnostics(stderr, run.returncode))
    program = workdir / _C_PROGRAM
    info = program.lstat() if program.exists() else None
    if info is None or not stat.S_ISREG(info.st_mode):
        message = f"the compiler succeeded but left no {_C_PROGRAM!r}"
        return Build([Diagnostic(file="", line=0, message=message)])
    return Build([], lambda: program_archive(texts, {_C_PROGRAM: program.read_bytes()}))


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
    "c": Toolchain(_c_build, _c_unavailable, _c_confinement),
}


def run_compile(
    payload: CompilePayload,
    artifacts: ArtifactSink | None = None,
    *,
    limits: WorkLimits | None = None,
    stop: threading.Event | None = None,
    archive: SourceArchive | None = None,
) -> CompileResult:
    """Compiles the payload's files (or `archive`, unpacked) with the toolchain of its language,
    in a sandboxed child within `limits`.

    Raises TaskFailure `UnsupportedLanguage` for a language without a toolchain or whose
    compiler this worker lacks, and `CompileError` with `result` = CompileResult(ok=False,
    diagnostics=...) when any file fails; and what `run_in_sandbox` raises (`Timeout`, a
    budget's failure, TaskStopped, `InvalidPayload` for files that cannot be written).
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
    limits = limits or WorkLimits()
    call = run_in_sandbox(
        _build_in_child,
        (language, artifacts is not None),
        timeout_seconds=limits.execute_timeout_seconds,
        # Never the network, whatever execute may: a build needs none.
        confinement=toolchain.confinement(replace(limits.confinement, allow_network=False)),
        stop=stop,
        files=payload.files,
        archive=archive,
        collect=[_BUILD_ARCHIVE],
    )
    diagnostics = [Diagnostic.model_validate(item) for item in call.value["diagnostics"]]
    if diagnostics:
        result = CompileResult(ok=False, diagnostics=diagnostics)
        raise TaskFailure("CompileError", _summary(diagnostics), result=result.model_dump())
    if artifacts is None:
        return CompileResult(ok=True, diagnostics=[])
    data = call.files.get(_BUILD_ARCHIVE)
    if data is None:
        limit = limits.confinement.max_file_bytes
        raise TaskFailure("ArtifactTooLarge", f"the build's archive is over the {limit}-byte file limit")
    uri = artifacts(f"{language}-build.zip", data, "application/zip")
    return CompileResult(ok=True, diagnostics=[], artifact_uri=uri)


def _build_in_child(argument: tuple[str, bool], workdir: Path) -> dict[str, Any]:
    """In the sandboxed child: the toolchain on the files in `workdir`; the archive is left there."""
    language, keep = argument
    build = TOOLCHAINS[language].build(_read_sources(workdir), workdir)
    if keep and not build.diagnostics and build.archive is not None:
        (workdir / _BUILD_ARCHIVE).write_bytes(build.archive())
    return {"diagnostics": [diagnostic.model_dump() for diagnostic in build.diagnostics]}


def _read_sources(workdir: Path) -> dict[str, bytes]:
    """The regular files under `workdir` by relative path (links are not followed)."""
    files: dict[str, bytes] = {}
    pending = [workdir]
    while pending:
        directory = pending.pop()
        for entry in os.scandir(directory):
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                files[Path(entry.path).relative_to(workdir).as_posix()] = Path(entry.path).read_bytes()
    return files


def _summary(diagnostics: list[Diagnostic]) -> str:
    files = len({diagnostic.file for diagnostic in diagnostics if diagnostic.file})
    # A diagnostic without a file (a link error, say) is the whole build's.
    shown = "; ".join(
        f"{d.file}:{d.line}: {d.message}" if d.file else d.message for d in diagnostics[:_SUMMARY_DIAGNOSTICS]
    )
    more = len(diagnostics) - _SUMMARY_DIAGNOSTICS
    where = f" in {files} file(s)" if files else ""
    return f"{len(diagnostics)} error(s){where}: {shown}" + (f"; and {more} more" if more > 0 else "")
