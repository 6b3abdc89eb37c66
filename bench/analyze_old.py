"""Frozen copy of the `analyze` task as it was before ruff and cppcheck (main at b3bc260), kept
for bench/analyze.py to measure against in the same run. Only its imports changed: it has its own
result types, so later changes to mistersmith.models cannot alter what it does.

The `analyze` task: size, structure and a few findings for a set of source files.

Counting rules:
- lines: newline-separated lines (\\n, \\r\\n or \\r), a final line without a newline included.
- code_lines: for `.py` files, non-blank lines that carry a token other than a comment
  (docstrings and other strings count as code); when the file cannot be tokenized, non-blank
  lines not starting with `#`. For other files, non-blank lines.
- functions: `def` and `async def`, methods and nested functions included (not lambdas);
  classes: `class` statements, nested ones included.
- max_complexity: the highest McCabe cyclomatic complexity of any function, 0 without functions.
  A function's complexity is 1 plus its decision points: each `if` / `elif`, `for`, `async for`
  and `while` (their `else` does not count), `except` handler, conditional expression, `match`
  case and `assert`; each boolean operator operand after the first; and per comprehension each
  `for` and each `if`. Nested functions and classes are measured on their own and add nothing
  to the enclosing function; lambdas belong to the function they appear in.
- findings: a syntax error in a `.py` file (which still counts its lines), and each name read
  somewhere in a module but bound nowhere in it (assigned, imported, a parameter, a `def` or
  `class`, an `except ... as`, a `match` capture, declared `global` / `nonlocal`) and not a
  builtin. Scopes are ignored, so this misses some mistakes but reports no false ones in
  ordinary code; modules with `from x import *` are skipped.
"""

from __future__ import annotations

import ast
import builtins
import io
import tokenize
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Diagnostic:
    file: str
    line: int
    message: str


@dataclass
class AnalyzeResult:
    files: int
    lines: int
    code_lines: int
    functions: int
    classes: int
    max_complexity: int
    findings: list[Diagnostic]


# Names every module or class body can read without binding them.
_IMPLICIT_NAMES = frozenset(dir(builtins)) | {
    "__file__",
    "__cached__",
    "__path__",
    "__annotations__",
    "__builtins__",
    "__module__",
    "__qualname__",
    "__class__",
}
_NON_CODE_TOKENS = frozenset(
    {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENDMARKER,
        tokenize.ENCODING,
    }
)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_ONE_DECISION = (
    ast.If,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.ExceptHandler,
    ast.IfExp,
    ast.match_case,
    ast.Assert,
)
# Python 3.12 type parameters (`def f[T]()`) bind names too.
_TYPE_PARAMS = frozenset({"TypeVar", "ParamSpec", "TypeVarTuple"})


@dataclass
class _FileStats:
    lines: int = 0
    code_lines: int = 0
    functions: int = 0
    classes: int = 0
    max_complexity: int = 0
    findings: list[Diagnostic] = field(default_factory=list)


def run_analyze(files: dict[str, str]) -> AnalyzeResult:
    """Counts lines, code lines, functions and classes, the highest function complexity and
    findings over the files (the module docstring has the exact rules)."""
    stats = [_analyze_file(path, files[path]) for path in sorted(files)]
    return AnalyzeResult(
        files=len(stats),
        lines=sum(s.lines for s in stats),
        code_lines=sum(s.code_lines for s in stats),
        functions=sum(s.functions for s in stats),
        classes=sum(s.classes for s in stats),
        max_complexity=max((s.max_complexity for s in stats), default=0),
        findings=[finding for s in stats for finding in s.findings],
    )


def _analyze_file(path: str, text: str) -> _FileStats:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = _split_lines(text)
    stats = _FileStats(lines=len(lines))
    if not path.endswith(".py"):
        stats.code_lines = sum(1 for line in lines if line.strip())
        return stats
    stats.code_lines = _python_code_lines(text, lines)
    try:
        with warnings.catch_warnings(action="ignore"):
            tree = ast.parse(text, filename=path)
    except SyntaxError as exc:
        stats.findings.append(Diagnostic(file=path, line=exc.lineno or 0, message=f"syntax error: {exc.msg}"))
        return stats
    except ValueError as exc:  # Python 3.11 reports NUL bytes in the source this way.
        stats.findings.append(Diagnostic(file=path, line=0, message=f"syntax error: {exc}"))
        return stats
    except RecursionError:
        stats.findings.append(Diagnostic(file=path, line=0, message="too deeply nested to analyze"))
        return stats
    for node in ast.walk(tree):
        if isinstance(node, _FUNCTIONS):
            stats.functions += 1
            stats.max_complexity = max(stats.max_complexity, _complexity(node))
        elif isinstance(node, ast.ClassDef):
            stats.classes += 1
    stats.findings.extend(
        Diagnostic(file=path, line=line, message=f"undefined name {name!r}")
        for name, line in _undefined_names(tree)
    )
    return stats


def _split_lines(text: str) -> list[str]:
    if not text:
        return []
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    return lines


def _python_code_lines(text: str, lines: list[str]) -> int:
    significant: set[int] = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type not in _NON_CODE_TOKENS:
                significant.update(range(token.start[0], token.end[0] + 1))
    except (tokenize.TokenError, SyntaxError, ValueError):  # ValueError: 3.12 on lone surrogates
        return sum(1 for line in lines if line.strip() and not line.lstrip().startswith("#"))
    return sum(1 for number, line in enumerate(lines, start=1) if line.strip() and number in significant)


def _complexity(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    return 1 + sum(_decisions(node) for node in _own_nodes(function))


def _own_nodes(function: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.AST]:
    """The nodes of a function's body, without those of functions and classes defined in it."""
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        if isinstance(node, _SCOPES):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _decisions(node: ast.AST) -> int:
    if isinstance(node, _ONE_DECISION):
        return 1
    if isinstance(node, ast.BoolOp):
        return len(node.values) - 1
    if isinstance(node, ast.comprehension):
        return 1 + len(node.ifs)
    return 0


def _undefined_names(tree: ast.Module) -> list[tuple[str, int]]:
    bound: set[str] = set(_IMPLICIT_NAMES)
    first_read: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and any(alias.name == "*" for alias in node.names):
            return []  # A star import can bind any name.
        bound.update(_bound_names(node))
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            first_read[node.id] = min(node.lineno, first_read.get(node.id, node.lineno))
    return sorted(
        ((name, line) for name, line in first_read.items() if name not in bound),
        key=lambda item: (item[1], item[0]),
    )


def _bound_names(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
        yield node.id
    elif isinstance(node, _SCOPES):
        yield node.name
    elif isinstance(node, ast.arg):
        yield node.arg
    elif isinstance(node, ast.alias):
        yield node.asname or node.name.partition(".")[0]
    elif isinstance(node, (ast.Global, ast.Nonlocal)):
        yield from node.names
    elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
        yield node.name
    elif isinstance(node, ast.MatchMapping) and node.rest:
        yield node.rest
    elif type(node).__name__ in _TYPE_PARAMS:
        yield node.name  # type: ignore[attr-defined]
