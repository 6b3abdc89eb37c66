"""The `compile` task: a toolchain per language turns source files into diagnostics.

Python: every `.py` file is byte-compiled in memory with `compile()` (no .pyc is written);
other files in a python compile are ignored, so a payload without `.py` files compiles
trivially. Syntax warnings are not reported. On success, with an artifact sink, the sources and
their .pyc files go to the bucket as one zip, and `artifact_uri` names it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

from mistersmith.errors import TaskFailure
from mistersmith.models import CompilePayload, CompileResult, Diagnostic
from mistersmith.work.artifacts import ArtifactSink, python_archive

Toolchain = Callable[[Mapping[str, str]], list[Diagnostic]]

# How many diagnostics the failure message spells out; all of them are in the result.
_SUMMARY_DIAGNOSTICS = 3


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


TOOLCHAINS: dict[str, Toolchain] = {"python": _python_diagnostics}


ARCHIVERS: dict[str, Callable[[Mapping[str, str]], bytes]] = {"python": python_archive}


def run_compile(payload: CompilePayload, artifacts: ArtifactSink | None = None) -> CompileResult:
    """Compiles the payload's files with the toolchain of its language.

    Raises TaskFailure `UnsupportedLanguage` for a language without a toolchain, and
    `CompileError` with `result` = CompileResult(ok=False, diagnostics=...) when any file fails.
    """
    language = payload.language.strip().lower()
    toolchain = TOOLCHAINS.get(language)
    if toolchain is None:
        raise TaskFailure(
            "UnsupportedLanguage",
            f"language {payload.language!r} is not supported; supported: {', '.join(sorted(TOOLCHAINS))}",
        )
    diagnostics = toolchain(payload.files)
    if diagnostics:
        result = CompileResult(ok=False, diagnostics=diagnostics)
        raise TaskFailure("CompileError", _summary(diagnostics), result=result.model_dump())
    archiver = ARCHIVERS.get(language)
    if artifacts is None or archiver is None:
        return CompileResult(ok=True, diagnostics=[])
    uri = artifacts(f"{language}-build.zip", archiver(payload.files), "application/zip")
    return CompileResult(ok=True, diagnostics=[], artifact_uri=uri)


def _summary(diagnostics: list[Diagnostic]) -> str:
    files = len({diagnostic.file for diagnostic in diagnostics})
    shown = "; ".join(f"{d.file}:{d.line}: {d.message}" for d in diagnostics[:_SUMMARY_DIAGNOSTICS])
    more = len(diagnostics) - _SUMMARY_DIAGNOSTICS
    return f"{len(diagnostics)} error(s) in {files} file(s): {shown}" + (
        f"; and {more} more" if more > 0 else ""
    )
