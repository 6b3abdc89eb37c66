"""The compile task: python sources byte-compiled in memory, errors as diagnostics."""

from __future__ import annotations

import pytest

from mistersmith.errors import TaskFailure
from mistersmith.models import CompilePayload, CompileResult, Diagnostic
from mistersmith.work import run_compile

pytestmark = pytest.mark.unit


def compile_failure(files: dict[str, str]) -> TaskFailure:
    with pytest.raises(TaskFailure) as raised:
        run_compile(CompilePayload(language="python", files=files))
    return raised.value


def test_run_compile_valid_python_returns_ok():
    # Given two valid modules
    files = {"app/main.py": "import os\nprint(os.sep)\n", "app/__init__.py": ""}
    payload = CompilePayload(language="python", files=files)

    # When they are compiled
    result = run_compile(payload)

    # Then the compile succeeds without diagnostics or artifact
    assert result == CompileResult(ok=True, diagnostics=[], artifact_uri=None)


def test_run_compile_syntax_error_reports_file_and_line():
    # Given a module whose third line is broken
    files = {"pkg/broken.py": "x = 1\ny = 2\ndef f(:\n    pass\n"}

    # When it is compiled
    failure = compile_failure(files)

    # Then the task fails as CompileError with the file and line in the result and the message
    assert failure.error_type == "CompileError"
    assert failure.result is not None
    result = CompileResult.model_validate(failure.result)
    assert result.ok is False
    assert [(d.file, d.line) for d in result.diagnostics] == [("pkg/broken.py", 3)]
    assert "pkg/broken.py:3" in failure.message


def test_run_compile_errors_in_several_files_reports_each():
    # Given two broken modules and a valid one
    files = {"b.py": "if True\n    pass\n", "ok.py": "x = 1\n", "a.py": "x = 1\n\nprint(x))\n"}

    # When they are compiled
    failure = compile_failure(files)

    # Then each broken file has its diagnostic, in path order
    assert failure.result is not None
    diagnostics = [Diagnostic.model_validate(d) for d in failure.result["diagnostics"]]
    assert [(d.file, d.line) for d in diagnostics] == [("a.py", 3), ("b.py", 1)]
    assert all(d.message for d in diagnostics)
    assert "2 error(s) in 2 file(s)" in failure.message


def test_run_compile_non_python_files_are_ignored():
    # Given a valid module next to a text file that is not python
    payload = CompilePayload(language="python", files={"main.py": "x = 1\n", "README.md": "# not (python\n"})

    # When they are compiled
    result = run_compile(payload)

    # Then only the module is compiled
    assert result.ok is True


def test_run_compile_unknown_language_raises_unsupported_language():
    # Given a language without a toolchain
    payload = CompilePayload(language="cobol", files={"main.cbl": "DISPLAY 'HI'."})

    # When it is compiled
    with pytest.raises(TaskFailure) as raised:
        run_compile(payload)

    # Then it is refused with the supported languages listed
    assert raised.value.error_type == "UnsupportedLanguage"
    assert "cobol" in raised.value.message
    assert "python" in raised.value.message
