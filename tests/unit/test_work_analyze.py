"""The analyze task: ruff and cppcheck findings from a sandboxed child, counts, budgets and options."""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tokenize
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mistersmith.errors import TaskFailure
from mistersmith.models import AnalyzePayload, AnalyzeResult
from mistersmith.work import WorkLimits, perform, run_analyze
from mistersmith.work import analyze as analyze_module
from mistersmith.work.analyze_child import count
from mistersmith.work.limits import Confinement

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
needs_cppcheck = pytest.mark.skipif(
    shutil.which("cppcheck", path="/usr/local/bin:/usr/bin:/bin") is None,
    reason="cppcheck is not installed (apt-get install cppcheck; .ci/run does)",
)

# 11 branches (if + 10 elif): McCabe complexity 12.
GRADE = (
    "def grade(score):\n    if score > 90:\n        return 'A'\n"
    + "".join(f"    elif score > {90 - 5 * i}:\n        return '{i}'\n" for i in range(1, 11))
    + "    return 'F'\n"
)
# An unused import (line 1), a shell=True call (line 6), an undefined name (line 10), grade (line 13).
PROBLEMS = (
    "import json\nimport subprocess\n\n\ndef run(command):\n    return subprocess.run(command, shell=True)\n"
    "\n\ndef report(value):\n    return missing_name(value)\n\n\n" + GRADE
)
KNOWN_PROBLEMS = {"problems.py": PROBLEMS, "broken.py": "def f(:\n    pass\n"}
# (code, file, line, column, end line, end column, severity, fix available), sorted by file and place.
EXPECTED = [
    ("invalid-syntax", "broken.py", 1, 7, 1, 8, "error", False),
    ("invalid-syntax", "broken.py", 1, 8, 2, 1, "error", False),
    ("F401", "problems.py", 1, 8, 1, 12, "warning", True),
    ("S602", "problems.py", 6, 12, 6, 26, "warning", False),
    ("F821", "problems.py", 10, 12, 10, 24, "warning", False),
    ("C901", "problems.py", 13, 5, 13, 10, "warning", False),
]


def places(result: AnalyzeResult | dict[str, Any]) -> list[tuple[Any, ...]]:
    findings = result.model_dump()["findings"] if isinstance(result, AnalyzeResult) else result["findings"]
    keys = ("code", "file", "line", "column", "end_line", "end_column", "severity", "fix_available")
    return [tuple(finding[key] for key in keys) for finding in findings]


def analyze(files: dict[str, str], **options: Any) -> AnalyzeResult:
    return run_analyze(AnalyzePayload(files=files, **options))


def test_run_analyze_known_problems_are_found_with_code_and_position():
    # Given modules with an unused import, a shell=True call, an undefined name, a function of
    # complexity 12 and a syntax error
    # When they are analyzed with the default rules
    result = analyze(KNOWN_PROBLEMS)

    # Then each is a ruff finding with its rule code and exact place, and nothing else is
    assert places(result) == EXPECTED
    assert all(finding.tool == "ruff" for finding in result.findings)
    assert result.findings[-1].message == "`grade` is too complex (12 > 10)"
    assert (result.max_complexity, result.findings_total, result.findings_uri) == (12, 6, None)
    assert result.analyzers == {"ruff": "0.17.5"}


def test_perform_analyze_worker_path_finds_the_known_problems():
    # Given the payload as the worker receives it (a dict, validated by perform)
    payload = {"files": KNOWN_PROBLEMS}

    # When the worker performs it with its default limits
    result = perform("analyze", payload, WorkLimits(output_limit_bytes=1 << 20))

    # Then the same findings come back as a plain dict, the shape the record keeps
    assert places(result) == EXPECTED
    assert result["files"] == 2


def _nobody_can_reach(path: Path) -> bool:
    return all(os.stat(step).st_mode & 0o001 for step in [path, *path.parents])


def test_analyze_as_non_root_user_lambda_path_finds_the_known_problems(tmp_path):
    # Given the analysis run as the Lambda runs it: a user that is not root, so the sandbox
    # gives its child no uid of its own (a root test process hands it to nobody)
    site = Path(sysconfig.get_paths()["purelib"])
    interpreter = sys.executable if os.geteuid() != 0 else shutil.which("python3", path="/usr/bin:/bin")
    if os.geteuid() == 0 and not (interpreter and _nobody_can_reach(site) and _nobody_can_reach(ROOT)):
        pytest.skip("nobody cannot reach this checkout's packages or a system python3")
    script = (
        "import json, os, sys\n"
        f"sys.path[:0] = [{str(ROOT / 'layers' / 'shared')!r}, {str(site)!r}]\n"
        "from mistersmith.work import WorkLimits, perform\n"
        "result = perform('analyze', json.loads(sys.stdin.read()), WorkLimits())\n"
        "print(json.dumps({'uid': os.getuid(), 'result': result}))\n"
    )
    as_nobody = {"user": "nobody", "group": "nogroup", "extra_groups": []} if os.geteuid() == 0 else {}

    # When it runs in a process of that user
    done = subprocess.run(
        [interpreter, "-I", "-c", script],
        input=json.dumps({"files": KNOWN_PROBLEMS}),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
        **as_nobody,
    )

    # Then it finds every known problem, as a user that is not root
    assert done.returncode == 0, done.stderr[-3000:]
    # The last line: log lines (the Lambda has no exec helper, and says so) come before it
    answer = json.loads(done.stdout.splitlines()[-1])
    assert answer["uid"] != 0
    assert places(answer["result"]) == EXPECTED


def test_run_analyze_counts_lines_code_lines_functions_and_classes():
    # Given a module whose figures were counted by hand: 14 lines, 3 blank, 2 comment-only
    # (a "#" line inside a string is code), 2 def (an async method and a function nested in it; the
    # words in strings and comments do not count), 2 classes
    source = (
        '"""Module.\n'
        "# not a comment: inside the docstring\n"
        '"""\n'
        "# a comment\n"
        "\n"
        "class A:\n"
        "    async def m(self):  # def class\n"
        "        def inner(): return 'def x(): class'\n"
        "        return inner\n"
        "\n"
        "    # another comment\n"
        "class B: pass\n"
        "\n"
        "text = 'class C'\n"
    )

    # When it is analyzed
    result = analyze({"m.py": source})

    # Then every figure matches
    assert (result.files, result.lines, result.code_lines) == (1, 14, 9)
    assert (result.functions, result.classes) == (2, 2)


def test_count_matches_the_tokenizer_on_tricky_strings():
    # Given strings the scan must end where Python ends them: escapes, raw and f-strings,
    # an unterminated one that ends at its line, a triple-quoted one never closed; names that
    # end in a keyword
    source = (
        "a = 'it\\'s # not a comment'\n"
        "b = r'\\' # still the string'\n"
        'c = f"{a!r} # no"  # yes\n'
        "d = 'open\n"
        "# a comment again\n"
        "def f(): pass\n"
        "undef = subclass = 1\n"
        "e = '''never closed\n"
        "def g(): pass\n"
    )

    # When it is counted
    figures = count("t.py", source)

    # Then one line is comment-only and only f is a function
    assert figures == {"lines": 9, "code_lines": 8, "functions": 1, "classes": 0}


def _tokenizer_figures(text: str) -> dict[str, int]:
    """The figures as Python's own tokenizer and parser give them: a code line is non-blank and
    holds part of a token that is not a comment."""
    significant: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in (
            tokenize.COMMENT,
            tokenize.NL,
            tokenize.NEWLINE,
            tokenize.INDENT,
            tokenize.DEDENT,
        ):
            significant.update(range(token.start[0], token.end[0] + 1))
    lines = text.split("\n")[: text.count("\n") + (not text.endswith("\n"))]
    nodes = list(ast.walk(ast.parse(text)))
    return {
        "lines": len(lines),
        "code_lines": sum(
            1 for number, line in enumerate(lines, 1) if line.strip() and number in significant
        ),
        "functions": sum(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) for node in nodes),
        "classes": sum(isinstance(node, ast.ClassDef) for node in nodes),
    }


@pytest.mark.parametrize("module", ["argparse", "dataclasses", "inspect", "tokenize", "textwrap", "typing"])
def test_count_matches_the_tokenizer_on_standard_library_modules(module):
    # Given a standard-library module: docstrings, comments, strings holding "#", "def" and quotes
    text = Path(sysconfig.get_paths()["stdlib"], f"{module}.py").read_text(encoding="utf-8")

    # When it is counted / Then every figure is the tokenizer's and the parser's
    assert count(f"{module}.py", text) == _tokenizer_figures(text)


def test_run_analyze_non_python_file_counts_lines_only():
    # Given a text file with two blank lines, one of them only spaces
    files = {"notes.txt": "first\n\n   \n# a heading, not a comment\n"}

    # When it is analyzed
    result = analyze(files)

    # Then it counts 4 lines, 2 of them non-blank, and runs no analyzer
    assert result == AnalyzeResult(
        files=1,
        lines=4,
        code_lines=2,
        functions=0,
        classes=0,
        max_complexity=0,
        findings=[],
        findings_total=0,
        analyzers={},
    )


def test_run_analyze_line_endings_count_alike():
    # Given the same three lines with \n, \r\n and \r endings
    sources = {
        name: "x = 1\n\n# c\n".replace("\n", ending)
        for name, ending in [("a", "\n"), ("b", "\r\n"), ("c", "\r")]
    }

    # When each is analyzed
    results = [analyze({f"{name}.py": text}) for name, text in sources.items()]

    # Then each has 3 lines and 1 code line
    assert {(result.lines, result.code_lines) for result in results} == {(3, 1)}


def test_run_analyze_select_and_ignore_choose_the_rules():
    # Given the known problems, with only the security rules selected and S602 ignored
    # When they are analyzed
    only_security = analyze({"problems.py": PROBLEMS}, select=["S"])
    without_s602 = analyze({"problems.py": PROBLEMS}, ignore=["S602", "C90"])

    # Then the selection decides the findings; the complexity is measured either way
    assert [f.code for f in only_security.findings] == ["S602"]
    assert [f.code for f in without_s602.findings] == ["F401", "F821"]
    assert only_security.max_complexity == without_s602.max_complexity == 12


def test_run_analyze_target_version_decides_what_syntax_is_an_error():
    # Given a match statement, which Python 3.10 introduced
    files = {"m.py": "def f(x):\n    match x:\n        case 1:\n            return 1\n    return 0\n"}

    # When it is analyzed for 3.9 and for 3.12
    old, new = analyze(files, target_version="3.9"), analyze(files, target_version="3.12")

    # Then only the 3.9 analysis reports it, at the match
    assert [(f.code, f.line) for f in old.findings] == [("invalid-syntax", 2)]
    assert new.findings == []


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"select": ["F999"]}, "select"),
        ({"select": ["P"]}, "select"),
        ({"ignore": ["NOPE1"]}, "ignore"),
        ({"select": []}, "select"),
        ({"target_version": "2.7"}, "target_version"),
    ],
    ids=["unknown-code", "not-a-linter-prefix", "unknown-ignore", "empty-select", "old-python"],
)
def test_analyze_payload_unknown_rule_codes_and_versions_are_refused(options, field):
    # Given an analyze payload with a selector or version ruff does not know
    # When it is validated / Then the error names the field
    with pytest.raises(ValidationError) as raised:
        AnalyzePayload(files={"a.py": ""}, **options)
    assert raised.value.errors()[0]["loc"][0] == field


def test_analyze_payload_known_selectors_are_accepted():
    payload = AnalyzePayload(files={"a.py": ""}, select=["ALL", "E9", "PLR0912", "S"], ignore=["D", "ANN"])
    assert payload.select == ["ALL", "E9", "PLR0912", "S"]


def test_run_analyze_findings_past_the_inline_budget_go_to_the_bucket():
    # Given 300 unused imports and a record that keeps 4 KiB of findings
    files = {"many.py": "".join(f"import module_{i}\n" for i in range(300))}
    uploads: dict[str, bytes] = {}

    def sink(name: str, data: bytes, content_type: str) -> str:
        uploads[name] = data
        return f"s3://bucket/artifacts/{name}"

    # When they are analyzed
    limits = WorkLimits(inline_output_bytes=4096)
    result = run_analyze(AnalyzePayload(files=files), limits, None, sink)

    # Then the record holds the first findings, the count, and where all of them are
    assert 0 < len(result.findings) < 300
    assert result.findings_total == 300
    assert result.findings_uri == "s3://bucket/artifacts/findings.json"
    everything = json.loads(uploads["findings.json"])
    assert [f["line"] for f in everything] == list(range(1, 301))
    assert everything[: len(result.findings)] == result.model_dump()["findings"]


def test_run_analyze_over_the_time_budget_fails_with_timeout():
    # Given a time budget no analysis can meet
    limits = WorkLimits(execute_timeout_seconds=0.001)

    # When it runs / Then it ends with the budget's error type
    with pytest.raises(TaskFailure) as raised:
        run_analyze(AnalyzePayload(files=KNOWN_PROBLEMS), limits)
    assert raised.value.error_type == "Timeout"


def test_run_analyze_source_over_the_memory_budget_fails_with_memory_limit_exceeded():
    # Given a 25 MB module: ruff holds about 0.8 GB for a second or two parsing it, far past the smallest
    # memory budget (128 MiB), so the 0.25 s budget poll sees it
    source = "".join(
        f"def f{i}(a):\n    if a:\n        return {i}\n    return None\n\n\n" for i in range(400_000)
    )
    limits = WorkLimits(confinement=Confinement(memory_bytes=16 << 20))

    # When it is analyzed / Then it ends with the budget's error type, not as a worker fault
    with pytest.raises(TaskFailure) as raised:
        run_analyze(AnalyzePayload(files={"big.py": source}), limits)
    assert raised.value.error_type == "MemoryLimitExceeded"


def test_run_analyze_over_the_output_budget_fails_with_output_limit_exceeded():
    # Given an output budget smaller than the analysis's summary
    limits = WorkLimits(output_limit_bytes=64, inline_output_bytes=64)

    # When it runs / Then it ends with the budget's error type
    with pytest.raises(TaskFailure) as raised:
        run_analyze(AnalyzePayload(files=KNOWN_PROBLEMS), limits)
    assert raised.value.error_type == "OutputLimitExceeded"


def test_perform_analyze_over_a_budget_is_a_task_failure_not_retried():
    # Given the worker's entry point and a budget the analysis overruns
    # When it performs the task / Then it raises TaskFailure, which the processor records as FAILED
    with pytest.raises(TaskFailure):
        perform("analyze", {"files": KNOWN_PROBLEMS}, WorkLimits(execute_timeout_seconds=0.001))


def test_run_analyze_files_from_an_archive_with_undecodable_bytes_are_analyzed():
    # Given a module unpacked from an archive (after validation, as perform does) whose comment
    # held a byte that is not UTF-8 (a lone surrogate)
    payload = AnalyzePayload(files={"legacy.py": ""})
    payload = payload.model_copy(update={"files": {"legacy.py": "# caf\udce9\nimport os\n"}})

    # When it is analyzed
    result = run_analyze(payload)

    # Then the file keeps its bytes: ruff reports that it is not UTF-8 (E902), the task succeeds
    assert [(f.code, f.line) for f in result.findings] == [("E902", 1)]
    assert result.lines == 2


def test_run_analyze_files_of_every_kind_of_text_reach_the_child_whole():
    # Given ASCII, non-ASCII (two and four bytes a character) and undecodable texts side by side,
    # each with an unused import on its own line
    texts = {
        "a.py": "import os\n",
        "b.py": "# café 😀 naïve\n\nimport os\n",
        "c.py": "# caf\udce9\nimport os\n",
        "d.py": "# 漢字\n\n\nimport os\n",
        "e.py": "\n\n\n\nimport os\n",
    }
    payload = AnalyzePayload(files={name: "" for name in texts}).model_copy(update={"files": texts})

    # When they are analyzed together
    result = run_analyze(payload)

    # Then each file arrives as it was: every import is found where it is (the undecodable one
    # is E902), and the line counts add up
    found = [(f.file, f.code, f.line) for f in result.findings]
    assert found == [
        ("a.py", "F401", 1),
        ("b.py", "F401", 3),
        ("c.py", "E902", 1),
        ("d.py", "F401", 4),
        ("e.py", "F401", 5),
    ]
    assert result.lines == 1 + 3 + 2 + 4 + 5


def test_run_analyze_python_without_ruff_fails_with_analyzer_unavailable(monkeypatch):
    # Given a process where ruff cannot be found
    monkeypatch.setattr(analyze_module, "_ruff", lambda: (None, None))

    # When Python files are analyzed / Then the failure says which analyzer is missing
    with pytest.raises(TaskFailure) as raised:
        analyze({"a.py": "x = 1\n"})
    assert (raised.value.error_type, "ruff" in raised.value.message) == ("AnalyzerUnavailable", True)


def test_run_analyze_c_without_cppcheck_fails_with_analyzer_unavailable(monkeypatch):
    monkeypatch.setattr(analyze_module, "_cppcheck", lambda: None)
    with pytest.raises(TaskFailure) as raised:
        analyze({"main.c": "int main(void) { return 0; }\n"})
    assert (raised.value.error_type, "cppcheck" in raised.value.message) == ("AnalyzerUnavailable", True)


@needs_cppcheck
def test_run_analyze_c_file_gets_cppcheck_findings_with_position():
    # Given a C program that writes past an array, with a header it includes
    files = {
        "main.c": '#include "size.h"\n\nint main(void) {\n    int a[SIZE];\n    a[SIZE] = 1;\n    return a[0];\n}\n',
        "size.h": "#define SIZE 2\n",
    }

    # When it is analyzed
    result = analyze(files)

    # Then cppcheck reports the out-of-bounds write where it is, and both files count lines
    assert ("cppcheck", "arrayIndexOutOfBounds", "main.c", 5, 6, "error") in [
        (f.tool, f.code, f.file, f.line, f.column, f.severity) for f in result.findings
    ]
    assert (result.files, result.lines) == (2, 8)
    assert set(result.analyzers) == {"cppcheck"}


def test_run_analyze_settings_among_the_files_do_not_change_the_rules():
    # Given a payload that brings its own ruff configuration, ignoring everything
    files = {"pyproject.toml": '[tool.ruff.lint]\nignore = ["ALL"]\n', "ruff.toml": 'lint.ignore = ["ALL"]\n'}
    files["a.py"] = "import os\n"

    # When it is analyzed / Then the request's rules apply
    assert [f.code for f in analyze(files).findings] == ["F401"]


def _json_blocks(markdown: str) -> list[Any]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", markdown, flags=re.DOTALL)]


@needs_cppcheck
def test_analyze_doc_shows_the_sample_event_and_the_result_it_gets():
    # Given docs/analyze.md's request and result, and the sample event
    request, result = _json_blocks((ROOT / "docs" / "analyze.md").read_text())
    event = json.loads((ROOT / "events" / "intake_submit_analyze.json").read_text())

    # When the documented request is analyzed
    # Then it is the event's body, and the documented result is what it gets
    assert request == json.loads(event["body"])
    assert perform("analyze", request["payload"], WorkLimits()) == result
