"""The analyze task: line counts, structure, complexity and findings."""

from __future__ import annotations

import pytest

from mistersmith.models import AnalyzePayload, AnalyzeResult, Diagnostic
from mistersmith.work import run_analyze

pytestmark = pytest.mark.unit

# 31 lines: 7 blank (3, 5, 6, 17, 18, 26, 27) and 1 comment-only (4), so 23 code lines.
# Functions: greet, fetch, outer, inner = 4; classes: Greeter = 1.
# Complexity: greet = 1 + if + elif + `or` + for + if = 6;
#   fetch = 1 + comprehension for + comprehension if + 2 except handlers = 5;
#   outer = 1 (inner is measured on its own); inner = 1 + conditional expression = 2. Max 6.
# The only name bound nowhere is missing_name, on line 25.
KNOWN_MODULE = '''\
"""Demo module."""
import os  # imported and unused: not a finding

# a comment-only line


class Greeter:
    def greet(self, name):
        if not name:
            return "nobody"
        elif name == "root" or name == "admin":
            return "admin"
        for letter in name:
            if letter.isdigit():
                raise ValueError(letter)
        return f"hello {name} from {os.sep}"


async def fetch(items):
    try:
        return [i for i in items if i]
    except KeyError:
        return None
    except ValueError:
        return missing_name


def outer():
    def inner(x):
        return x if x else 0
    return inner
'''


def analyze(files: dict[str, str]) -> AnalyzeResult:
    return run_analyze(AnalyzePayload(files=files))


def test_run_analyze_known_module_gives_exact_counts():
    # Given a module whose figures were counted by hand (see above)
    files = {"demo.py": KNOWN_MODULE}

    # When it is analyzed
    result = analyze(files)

    # Then every figure matches
    assert result == AnalyzeResult(
        files=1,
        lines=31,
        code_lines=23,
        functions=4,
        classes=1,
        max_complexity=6,
        findings=[Diagnostic(file="demo.py", line=25, message="undefined name 'missing_name'")],
    )


def test_run_analyze_undefined_name_is_a_finding():
    # Given a function reading a name nothing binds
    files = {"m.py": "import json\n\n\ndef dump(value):\n    return json.dumps(value, cls=Encoder)\n"}

    # When it is analyzed
    result = analyze(files)

    # Then the name is reported at the line where it is read
    assert result.findings == [Diagnostic(file="m.py", line=5, message="undefined name 'Encoder'")]


def test_run_analyze_star_import_skips_undefined_names():
    # Given a module with a star import, which can bind any name
    files = {"m.py": "from os.path import *\n\nprint(join('a', 'b'))\n"}

    # When it is analyzed
    result = analyze(files)

    # Then nothing is reported
    assert result.findings == []


def test_run_analyze_syntax_error_becomes_finding_and_lines_still_count():
    # Given a module broken on its second line
    files = {"bad.py": "x = 1\ndef f(:\n    pass\n"}

    # When it is analyzed
    result = analyze(files)

    # Then the syntax error is a finding at that line, and its lines are counted
    assert [(f.file, f.line) for f in result.findings] == [("bad.py", 2)]
    assert result.findings[0].message.startswith("syntax error")
    assert (result.lines, result.code_lines, result.functions) == (3, 3, 0)


def test_run_analyze_non_python_file_counts_lines_only():
    # Given a text file with two blank lines, one of them only spaces
    files = {"notes.txt": "first\n\n   \n# a heading, not a comment\n"}

    # When it is analyzed
    result = analyze(files)

    # Then it counts 4 lines, 2 of them non-blank, and nothing else
    assert result == AnalyzeResult(
        files=1, lines=4, code_lines=2, functions=0, classes=0, max_complexity=0, findings=[]
    )


def test_run_analyze_several_files_sum_their_figures():
    # Given a python module and a text file
    files = {"a.py": "def f(a, b):\n    return a and b\n", "b.txt": "one\ntwo"}

    # When they are analyzed
    result = analyze(files)

    # Then the figures add up and the complexity is the highest one
    assert (result.files, result.lines, result.code_lines) == (2, 4, 4)
    assert (result.functions, result.max_complexity) == (1, 2)
