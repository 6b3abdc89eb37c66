"""What an analyze task's sandboxed child runs: it writes the files under `src/`, runs ruff on the
Python files and cppcheck on the C files, and counts lines, `def`s and `class`es meanwhile.

It runs as `python -I -S analyze_child.py` by path, so it imports the standard library only.
stdin: the request with the files (a line of JSON, then the files' texts; built by
`mistersmith.work.analyze`), so that the worker's interpreter neither writes nor reads them. stdout: one JSON object, the
result's figures and the first findings that fit in `inline_bytes`; when there are more, every
finding (up to `report_bytes` of them) is also in `findings.json` in the work directory. A
failure is `{"error": {"type", "message"}}` with exit code 3.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any, BinaryIO

SOURCE_DIR = "src"
REPORT = "findings.json"
FAILED = 3
# Figures and framing of the stdout object, besides its findings.
_SUMMARY_BYTES = 2048
_RUFF_SYNTAX_ERROR = "invalid-syntax"
_C901 = "C901"
# `name` is too complex (12 > 0): the C901 message, the only place ruff gives the number.
_COMPLEXITY = re.compile(r"\((\d+) > \d+\)$")
# Rust's allocator and Python say this when the address-space budget is reached.
_OUT_OF_MEMORY = ("memory allocation of", "MemoryError", "Cannot allocate memory", "std::bad_alloc")

# Strings, comments and the keywords `def` and `class`, in one pass (the prefix letters of a
# string do not change where it ends; an unterminated one ends at its line's end or,
# triple-quoted, at the end of the file). Each loop is unrolled (a run of plain characters, then
# one escape or lone quote) and stops only where what follows it matches, so the scan never
# backtracks and stays linear. Every alternative starts with a literal character, so that the
# search jumps from one such character to the next; a keyword is one not preceded by a word
# character. No possessive quantifiers: Python 3.11.2's re mismatches them around a lookahead.
_TOKENS = re.compile(
    r"""
    \#[^\n]*
  | '''[^'\\]*(?:(?:\\[\s\S]?|'(?!''))[^'\\]*)*(?:'''|\Z)
  | \"\"\"[^"\\]*(?:(?:\\[\s\S]?|"(?!""))[^"\\]*)*(?:\"\"\"|\Z)
  | '[^'\\\n]*(?:\\[\s\S]?[^'\\\n]*)*'?
  | "[^"\\\n]*(?:\\[\s\S]?[^"\\\n]*)*"?
  | d(?<!\w.)ef\b
  | c(?<!\w.)lass\b
    """,
    re.VERBOSE,
)
# The start of a line (each one follows a "\n") that is not blank, as str.strip() sees it, and,
# for code, does not start with "#". Only the "\n" is matched (a string CPython keeps one of)
# and the lookahead fails or succeeds without backtracking on most lines.
_TEXT_LINE = re.compile(r"\n(?=[^\S\n]*\S)")
_CODE_LINE = re.compile(r"\n(?=[^\S\n]*[^\s#])")
_COMMENT_LINE = re.compile(r"\n[^\S\n]*\#")


class Failure(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def main() -> int:
    request, raw = read_request(sys.stdin.buffer)
    try:
        summary = analyze(request, raw)
    except Failure as failure:
        json.dump({"error": {"type": failure.error_type, "message": str(failure)}}, sys.stdout)
        return FAILED
    except MemoryError:
        sys.stdout.write(
            '{"error": {"type": "MemoryLimitExceeded", "message": "the analysis ran out of memory"}}'
        )
        return FAILED
    json.dump(summary, sys.stdout)
    return 0


def read_request(stdin: BinaryIO) -> tuple[dict[str, Any], dict[str, memoryview]]:
    """The request from stdin: a line of JSON whose `files` are [path, length] (the text is the
    next `length` characters after it, ASCII) or [path, text]; and the bytes of each of the
    former, as they came (read once, into one buffer: they are written as they are)."""
    request: dict[str, Any] = json.loads(stdin.readline())
    body = memoryview(stdin.read(sum(text for _, text in request["files"] if isinstance(text, int))))
    files: dict[str, str] = {}
    raw: dict[str, memoryview] = {}
    offset = 0
    for path, text in request["files"]:
        if isinstance(text, int):
            raw[path] = body[offset : offset + text]
            files[path] = str(raw[path], "ascii")
            offset += text
        else:
            files[path] = text
    request["files"] = files
    return request, raw


def analyze(request: dict[str, Any], raw: dict[str, memoryview]) -> dict[str, Any]:
    root = os.path.join(os.getcwd(), SOURCE_DIR)
    files: dict[str, str] = request["files"]
    paths = sorted(files)
    write_files(root, files, paths, raw)
    python = [path for path in paths if path.endswith((".py", ".pyi"))]
    c_sources = [path for path in paths if path.endswith(".c")]
    threshold = request["max_complexity"]
    # The tools run while this process counts; each writes its output when it is done.
    tools: dict[str, Tool] = {}
    if python:
        if request["ruff_version"] is None:
            tools["ruff"] = Tool([request["ruff"], "--version"], root)
        select = [*request["select"], _C901]
        tools["ruff findings"] = Tool(ruff_check(request, python, select, request["ignore"], threshold), root)
    if c_sources:
        cppcheck = request["cppcheck"]
        tools["cppcheck"] = Tool([cppcheck, "--version"], root)
        tools["cppcheck findings"] = Tool(cppcheck_command(cppcheck, c_sources), root, output="stderr")
    figures = {"files": len(paths), "lines": 0, "code_lines": 0, "functions": 0, "classes": 0}
    for path in paths:
        for name, value in count(path, files[path]).items():
            figures[name] += value
    outputs = {name: tool.output() for name, tool in tools.items()}
    findings: list[dict[str, Any]] = []
    analyzers: dict[str, str] = {}
    max_complexity = 0
    if python:
        analyzers["ruff"] = request["ruff_version"] or outputs["ruff"].strip().removeprefix("ruff ")
        wanted = reports_complexity(request["select"], request["ignore"])
        for item in json.loads(outputs["ruff findings"]):
            complexity = _COMPLEXITY.search(item["message"]) if item["code"] == _C901 else None
            if complexity is not None:
                max_complexity = max(max_complexity, int(complexity[1]))
            if complexity is None or wanted:
                findings.append(ruff_finding(item, root))
        if max_complexity == 0:
            # No function over the threshold: ask again with none, for the highest number.
            complexities = Tool(ruff_check(request, python, [_C901], [], 0), root).output()
            numbers = (_COMPLEXITY.search(item["message"]) for item in json.loads(complexities))
            max_complexity = max((int(match[1]) for match in numbers if match), default=0)
    if c_sources:
        analyzers["cppcheck"] = outputs["cppcheck"].strip().removeprefix("Cppcheck ")
        findings += cppcheck_findings(outputs["cppcheck findings"])
    findings.sort(key=lambda f: (f["file"], f["line"], f["column"] or 0, f["code"]))
    encoded = [json.dumps(finding) for finding in findings]
    inline = fitting(encoded, request["inline_bytes"])
    summary = figures | {
        "max_complexity": max_complexity,
        "findings": findings[:inline],
        "findings_total": len(findings),
        "analyzers": analyzers,
    }
    if inline < len(findings):
        # Each finding on its own line: the report can be cut at a line without breaking JSON.
        kept = fitting(encoded, request["report_bytes"])
        with open(REPORT, "w", encoding="utf-8") as report:
            report.write("[\n" + ",\n".join(encoded[:kept]) + "\n]\n")
    return summary


def write_files(root: str, files: dict[str, str], paths: list[str], raw: dict[str, memoryview]) -> None:
    """Writes each file under `root` as the payload's text, line endings normalised to \\n
    (the counts are taken on that text too); undecodable bytes of an archive come back as they were.
    A text that came `raw` and needs no change is written from those bytes."""
    made: set[str] = set()
    for path in paths:
        target = os.path.normpath(os.path.join(root, path))
        if not target.startswith(root + os.sep) or "\0" in path:
            raise Failure("InvalidPayload", f"file path {path!r} leaves the work directory")
        text = files[path]
        data: bytes | memoryview | None = raw.get(path)
        if "\r" in text:  # a search for one character: far cheaper than two replaces finding nothing
            text = files[path] = text.replace("\r\n", "\n").replace("\r", "\n")
            data = None
        try:
            if data is None:
                data = text.encode("utf-8", "surrogateescape")
            directory = os.path.dirname(target)
            if directory not in made:
                os.makedirs(directory, exist_ok=True)
                made.add(directory)
            with open(target, "xb") as file:
                file.write(data)
        except UnicodeEncodeError as error:
            raise Failure(
                "InvalidPayload", f"file {path!r} is not valid Unicode text: {error.reason}"
            ) from None
        except OSError as error:
            raise Failure("InvalidPayload", f"file {path!r} cannot be written: {error.strerror}") from None


def count(path: str, text: str) -> dict[str, int]:
    """lines, code_lines and, for Python, functions and classes of one file (\\n line endings)."""
    if not text:
        return {"lines": 0}
    lines = text.count("\n") + (not text.endswith("\n"))
    framed = "\n" + text  # so that the first line follows a newline too
    if not path.endswith((".py", ".pyi")):
        return {"lines": lines, "code_lines": len(_TEXT_LINE.findall(framed))}
    tokens = _TOKENS.findall(text)
    # Lines that start with "#" inside a string are code: only strings hold a newline among the
    # tokens, and the NUL between them keeps a comment token from looking like a line's start.
    in_strings = len(_COMMENT_LINE.findall("\0".join(tokens)))
    return {
        "lines": lines,
        "code_lines": len(_CODE_LINE.findall(framed)) + in_strings,
        "functions": tokens.count("def"),
        "classes": tokens.count("class"),
    }


class Tool:
    """One tool started at once, its output read when wanted; a Failure naming the budget or the
    tool when it did not finish well. cppcheck reports on stderr, the others on stdout."""

    def __init__(self, command: list[str], cwd: str, output: str = "stdout") -> None:
        self.name = os.path.basename(command[0])
        self.reports_on_stderr = output == "stderr"
        try:
            # Our tools, an argv list and no shell: from the payload only file names reach them.
            self.process = subprocess.Popen(  # noqa: S603
                command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        except OSError as error:
            raise Failure("AnalyzerFailed", f"{self.name} could not start: {error}") from None

    def output(self) -> str:
        stdout, stderr = self.process.communicate()
        said = stderr.decode("utf-8", "replace")
        if self.process.returncode != 0:
            if any(marker in said for marker in _OUT_OF_MEMORY):
                raise Failure(
                    "MemoryLimitExceeded", f"{self.name} ran out of memory within the task's budget"
                )
            message = f"{self.name} failed with exit code {self.process.returncode}: {said.strip()[:2000]}"
            raise Failure("AnalyzerFailed", message)
        return said if self.reports_on_stderr else stdout.decode("utf-8", "replace")


def ruff_check(
    request: dict[str, Any], files: list[str], select: list[str], ignore: list[str], max_complexity: int
) -> list[str]:
    return [
        request["ruff"],
        "check",
        # Settings come from the request only, never from a pyproject.toml or ruff.toml among the files.
        "--isolated",
        "--no-cache",
        "--exit-zero",
        "--output-format=json",
        f"--target-version={request['target_version']}",
        # C901 is always selected (an exact code is ruff's most specific selector, so it runs
        # whatever else is ignored): the numbers it reports give max_complexity.
        f"--select={','.join(select)}",
        *(f"--ignore={code}" for code in ignore if code != _C901),
        f"--config=lint.mccabe.max-complexity = {max_complexity}",
        # "./" keeps a file named like an option a file; named files skip ruff's default excludes.
        "--",
        *(f"./{path}" for path in files),
    ]


def reports_complexity(select: list[str], ignore: list[str]) -> bool:
    """Whether the request's own selection turns C901 on, as ruff resolves it: the most specific
    selector that names it wins (ALL, then the linter C90, then the code), `ignore` on a tie."""
    enabled = False
    for selector in ("ALL", "C90", _C901):
        if selector in select:
            enabled = True
        if selector in ignore:
            enabled = False
    return enabled


def ruff_finding(item: dict[str, Any], root: str) -> dict[str, Any]:
    code = item["code"] or _RUFF_SYNTAX_ERROR
    return {
        "tool": "ruff",
        "code": code,
        "file": relative(item["filename"], root),
        "line": item["location"]["row"],
        "column": item["location"]["column"],
        "end_line": item["end_location"]["row"],
        "end_column": item["end_location"]["column"],
        "message": item["message"],
        "severity": "error" if code == _RUFF_SYNTAX_ERROR else "warning",
        "fix_available": item["fix"] is not None,
    }


def relative(path: str, root: str) -> str:
    """`path` relative to `root`; ruff names the files as absolute paths under it."""
    if path.startswith(root + os.sep):
        return path[len(root) + 1 :]
    return os.path.relpath(path, root)


def cppcheck_command(cppcheck: str, files: list[str]) -> list[str]:
    return [
        cppcheck,
        "--quiet",
        "--language=c",
        "--enable=warning,style,performance,portability",
        "--inline-suppr",
        # Tab-separated fields, the message last: it is the only one that may hold a tab.
        "--template={file}\\t{line}\\t{column}\\t{severity}\\t{id}\\t{message}",
        "-I.",
        *(f"./{path}" for path in files),
    ]


def cppcheck_findings(report: str) -> list[dict[str, Any]]:
    findings = []
    for line in report.splitlines():
        fields = line.split("\t", 5)
        if len(fields) != 6 or not fields[1].isdigit():
            continue  # a line of a multi-line message, or a note without a place
        file, row, column, severity, code, message = fields
        findings.append(
            {
                "tool": "cppcheck",
                "code": code,
                "file": os.path.normpath(file),
                "line": int(row),
                "column": int(column) if column.isdigit() else None,
                "end_line": None,
                "end_column": None,
                "message": message,
                "severity": severity,
                "fix_available": False,
            }
        )
    return findings


def fitting(encoded: list[str], budget: int) -> int:
    """How many of the first findings (each as JSON) fit in `budget` bytes of JSON."""
    used = _SUMMARY_BYTES
    for index, finding in enumerate(encoded):
        used += len(finding) + 2
        if used > budget:
            return index
    return len(encoded)


if __name__ == "__main__":
    sys.exit(main())
