"""The C toolchain (cc in the sandbox, its program in the archive) and the sandbox's `collect`."""

from __future__ import annotations

import io
import shutil
import subprocess
import threading
import time
import zipfile

import pytest

from mistersmith.errors import TaskFailure, TaskStopped
from mistersmith.models import CompilePayload, CompileResult
from mistersmith.work import WorkLimits, perform, run_compile, run_sandboxed
from mistersmith.work import compile as compile_module
from mistersmith.work.limits import Confinement
from tests.unit.test_work_artifacts import Sink

pytestmark = pytest.mark.unit

HAS_CC = shutil.which("cc", path="/usr/local/bin:/usr/bin:/bin") is not None
needs_cc = pytest.mark.skipif(not HAS_CC, reason="no C compiler: `cc` is not on the sandbox's PATH")

# A header by its payload path (through -I.), and one next to the file that includes it.
PROGRAM = {
    "include/greet.h": "void greet(const char *name);\n",
    "src/local.h": '#define NAME "smith"\n',
    "src/greet.c": '#include <stdio.h>\n#include "include/greet.h"\n'
    'void greet(const char *name) { printf("hello, %s\\n", name); }\n',
    "src/main.c": '#include "include/greet.h"\n#include "local.h"\nint main(void) {\n    greet(NAME);\n    return 0;\n}\n',
}


def compile_c(
    files: dict[str, str], sink: Sink | None = None, limits: WorkLimits | None = None
) -> CompileResult:
    return run_compile(CompilePayload(language="c", files=files), sink, limits=limits)


def compile_failure(files: dict[str, str], limits: WorkLimits | None = None) -> TaskFailure:
    with pytest.raises(TaskFailure) as raised:
        compile_c(files, limits=limits)
    return raised.value


def diagnostics_of(failure: TaskFailure) -> list[tuple[str, int]]:
    assert failure.error_type == "CompileError"
    assert failure.result is not None
    result = CompileResult.model_validate(failure.result)
    assert result.ok is False
    return [(d.file, d.line) for d in result.diagnostics]


@needs_cc
def test_good_program_builds_an_archive_with_sources_and_a_runnable_program(tmp_path):
    # Given a program of two C files including headers of the payload
    files = PROGRAM
    sink = Sink()

    # When it is compiled with an artifact sink
    result = compile_c(files, sink)

    # Then it succeeds, and the archive holds the sources and an executable program that runs
    assert result == CompileResult(ok=True, diagnostics=[], artifact_uri="s3://bucket/c-build.zip")
    archive = zipfile.ZipFile(io.BytesIO(sink.stored["c-build.zip"]))
    assert sorted(archive.namelist()) == sorted([*files, "program"])
    assert archive.read("src/greet.c").decode() == files["src/greet.c"]
    program = archive.getinfo("program")
    assert (program.external_attr >> 16) & 0o111
    path = tmp_path / "program"
    path.write_bytes(archive.read(program))
    path.chmod(0o755)
    ran = subprocess.run([str(path)], capture_output=True, text=True, timeout=30, check=True)
    assert ran.stdout == "hello, smith\n"


@needs_cc
def test_the_same_sources_archive_with_fixed_timestamps():
    sink = Sink()
    compile_c({"main.c": "int main(void) { return 0; }\n"}, sink)
    archive = zipfile.ZipFile(io.BytesIO(sink.stored["c-build.zip"]))
    assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


@needs_cc
def test_syntax_error_is_reported_with_its_file_and_line():
    # Given a valid main and a file whose third line lacks a semicolon
    files = {
        "main.c": "int helper(void);\nint main(void) { return helper(); }\n",
        "lib/helper.c": "int helper(void) {\n    int x = 1\n    return x;\n}\n",
    }

    # When they are compiled
    failure = compile_failure(files)

    # Then the task fails as CompileError naming the file (relative) and the line
    # (gcc points at the statement after the missing semicolon, clang at the declaration).
    assert diagnostics_of(failure) in ([("lib/helper.c", 3)], [("lib/helper.c", 2)])
    assert failure.message.startswith("1 error(s) in 1 file(s): lib/helper.c:")


@needs_cc
def test_error_in_a_payload_header_names_the_header():
    # Given a header from the payload with an error on its second line, included by path
    files = {
        "main.c": '#include "include/bad.h"\nint main(void) { return 0; }\n',
        "include/bad.h": "int ok;\nint broken = ;\n",
    }

    # When it is compiled, then the diagnostic names the header relative to the work directory
    assert diagnostics_of(compile_failure(files)) == [("include/bad.h", 2)]


@needs_cc
def test_missing_include_is_a_fatal_error_with_file_and_line():
    failure = compile_failure(
        {"main.c": "int x;\n#include <no_such_header.h>\nint main(void) { return 0; }\n"}
    )
    assert diagnostics_of(failure) == [("main.c", 2)]


@needs_cc
def test_a_warning_alone_does_not_fail():
    # Given a program that compiles with a warning
    files = {"main.c": '#warning "just a warning"\nint main(void) { return 0; }\n'}

    # When it is compiled, then it succeeds with its program in the archive
    sink = Sink()
    assert compile_c(files, sink).ok is True
    assert "program" in zipfile.ZipFile(io.BytesIO(sink.stored["c-build.zip"])).namelist()


@needs_cc
def test_link_error_is_one_compile_error_with_the_compilers_words():
    # Given a program calling a function that no file defines
    files = {"main.c": "int missing(void);\nint main(void) { return missing(); }\n"}

    # When it is compiled
    failure = compile_failure(files)

    # Then the one diagnostic belongs to the whole build and quotes the linker
    assert diagnostics_of(failure) == [("", 0)]
    assert failure.result is not None
    assert "missing" in failure.result["diagnostics"][0]["message"]
    assert failure.message.startswith("1 error(s): the compiler failed with exit code 1")


@needs_cc
def test_a_compile_past_the_timeout_is_killed():
    # Given a file that takes cc many seconds at -O2, and a half-second limit
    functions = "".join(
        f"static int f{i}(int x) {{ int s = 0; for (int j = 0; j < x; j++) {{ s += j * {i} % 7; if (s > {i}) s -= x; }}"
        f" return s + (x > 3 ? f{max(i - 1, 0)}(x - 1) : 0); }}\n"
        for i in range(2000)
    )
    calls = "".join(f"t += f{i}(c);" for i in range(0, 2000, 10))
    files = {"slow.c": f"{functions}int main(int c, char **v) {{ int t = 0; {calls} return t; }}\n"}
    limits = WorkLimits(execute_timeout_seconds=0.5)

    # When it is compiled
    started = time.monotonic()
    with pytest.raises(TaskFailure) as raised:
        compile_c(files, limits=limits)

    # Then the compiler was killed at the limit
    assert raised.value.error_type == "Timeout"
    assert "0.5 s" in raised.value.message
    assert time.monotonic() - started < 5


@needs_cc
def test_a_stopped_compile_raises_task_stopped():
    stop = threading.Event()
    stop.set()
    with pytest.raises(TaskStopped):
        run_compile(
            CompilePayload(language="c", files={"main.c": "int main(void) { return 0; }\n"}), stop=stop
        )


@needs_cc
def test_perform_compiles_c_within_the_workers_limits():
    result = perform(
        "compile", {"language": "C", "files": {"main.c": "int main(void) { return 0; }\n"}}, WorkLimits()
    )
    assert result == {"ok": True, "diagnostics": []}


@needs_cc
def test_a_payload_file_where_the_program_goes_is_refused():
    with pytest.raises(TaskFailure) as raised:
        compile_c({"main.c": "int main(void) { return 0; }\n", "program": "text"})
    assert raised.value.error_type == "InvalidPayload"


def test_c_payload_without_c_files_compiles_trivially():
    assert compile_c({"README.md": "# nothing to build\n"}).ok is True


def test_unknown_language_lists_the_supported_ones():
    with pytest.raises(TaskFailure) as raised:
        run_compile(CompilePayload(language="cobol", files={"main.cbl": "DISPLAY 'HI'."}))
    assert raised.value.error_type == "UnsupportedLanguage"
    assert raised.value.message.endswith("supported: c, python" if HAS_CC else "supported: python")


def test_without_a_c_compiler_c_is_unsupported_and_says_so(monkeypatch):
    # Given an image without cc
    monkeypatch.setattr(compile_module, "_c_compiler", lambda: None)

    # When a C compile arrives
    with pytest.raises(TaskFailure) as raised:
        compile_c({"main.c": "int main(void) { return 0; }\n"})

    # Then the language is unsupported, the message says why, and C is not offered
    assert raised.value.error_type == "UnsupportedLanguage"
    assert "no C compiler" in raised.value.message
    assert raised.value.message.endswith("supported: python")


# The sandbox's `collect`: files the child produced, read back before its directory goes.


def collect(code: str, paths: list[str], *args: str) -> dict[str, bytes]:
    run = run_sandboxed(
        ["python3", "-c", code, *args], timeout_seconds=30, output_limit_bytes=4096, collect=paths
    )
    assert run.exit_code == 0, run.stderr
    return dict(run.files)


def test_collect_reads_back_a_file_the_child_wrote():
    code = "import os, sys\nos.makedirs('out')\nopen(sys.argv[1], 'wb').write(bytes(range(256)) * 4)\n"
    assert collect(code, ["out/data.bin"], "out/data.bin") == {"out/data.bin": bytes(range(256)) * 4}


def test_collect_leaves_out_missing_files_and_directories():
    assert collect("import os\nos.mkdir('d')\n", ["d", "absent"]) == {}


def test_collect_follows_no_link_out_of_the_work_directory(tmp_path):
    # Given a secret outside the work directory, and a child linking to it and to its directory
    secret = tmp_path / "secret.txt"
    secret.write_text("not yours")
    code = (
        "import os, sys\nos.symlink(sys.argv[1], 'file')\nos.symlink(os.path.dirname(sys.argv[1]), 'dir')\n"
    )

    # When both links are collected, then neither is read
    assert collect(code, ["file", "dir/secret.txt"], str(secret)) == {}


def test_a_payload_file_over_the_file_size_limit_is_an_invalid_payload():
    # Given a confinement whose file-size limit is below a payload file's size
    # When the child writes the files, then the run fails at once as the payload's fault
    with pytest.raises(TaskFailure) as failed:
        run_sandboxed(
            ["python3", "-c", ""],
            timeout_seconds=30,
            output_limit_bytes=4096,
            files={"big": "x" * 1024, "small": "y" * 512},
            confinement=Confinement(max_file_bytes=512),
            collect=["big", "small"],
        )
    assert failed.value.error_type == "InvalidPayload"


@pytest.mark.parametrize("path", ["../escape", "/etc/passwd", "", "a/../../b"])
def test_collect_refuses_a_path_outside_the_work_directory(path):
    with pytest.raises(ValueError, match="cannot collect"):
        run_sandboxed(["python3", "-c", ""], timeout_seconds=30, output_limit_bytes=4096, collect=[path])
