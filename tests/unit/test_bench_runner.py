"""`make bench`'s runner (bench/__main__.py): every benchmark runs even when one misses its goal,
and with --write-readme each one's output and the goals land in the README's marked blocks."""

from __future__ import annotations

import textwrap

import pytest

from bench.__main__ import main, markers

pytestmark = pytest.mark.unit


@pytest.fixture
def fake_benches(tmp_path, monkeypatch):
    package = tmp_path / "fakebench"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "quick.py").write_text('print("quick 1.0 ms (goal <= 2 ms): met")\n')
    (package / "lenient.py").write_text('print("lenient   7.4   goal <= 6: MISSED")\n')
    (package / "broken.py").write_text('raise RuntimeError("no moto")\n')
    (package / "slow.py").write_text(
        textwrap.dedent(
            """
            import sys
            print("slow 3.0x (goal >= 10x): MISSED")
            sys.exit(1)
            """
        )
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    readme = tmp_path / "README.md"
    names = ("quick", "slow", "lenient", "broken", "goals")
    blocks = "".join(f"{begin}\nold\n{end}\n" for begin, end in map(markers, names))
    readme.write_text(f"# Performance\n{blocks}after\n")
    return readme


def test_every_bench_runs_and_the_readme_gets_each_output_and_the_goals(fake_benches, capsys):
    # Given benchmarks that miss a goal (exiting 1, or 0), one that crashes and one that meets its goal
    benches = ("slow", "lenient", "broken", "quick")
    # When all run with --write-readme
    status = main(["--write-readme"], package="fakebench", benches=benches, readme=fake_benches)
    # Then none stops the others, the status says a goal was missed, and the README holds every output
    text = fake_benches.read_text()
    assert status == 1
    assert "old" not in text
    assert "quick 1.0 ms (goal <= 2 ms): met\n```" in text
    assert "RuntimeError: no moto" in text
    assert "| `slow` | slow 3.0x (goal >= 10x): MISSED |" in text
    assert "| `lenient` | lenient 7.4 goal <= 6: MISSED |" in text
    assert "| `quick` | quick 1.0 ms (goal <= 2 ms): met |" in text
    assert "| `broken` | failed: exit status 1 |" in text
    assert text.count("failed: exit status") == 2  # the crash's block and its goal row; a miss is no failure
    assert text.endswith("after\n")
    assert "missed or failed: slow, lenient, broken" in capsys.readouterr().out


def test_an_unknown_benchmark_name_is_refused(fake_benches):
    with pytest.raises(SystemExit):
        main(["nope"], package="fakebench", benches=("quick",), readme=fake_benches)
    assert "old" in fake_benches.read_text()
