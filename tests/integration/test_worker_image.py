"""The worker runs from the layout its Dockerfile produces: the COPY, ENV, WORKDIR and CMD instructions
are replayed into a temporary folder, with a Python 3.12 venv holding only the image's requirements
(no repository on sys.path), and the worker started from it completes a task of each type on the
local stack."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mistersmith.models import canonical_json
from tests.conftest import own_workers
from tests.dockerfile import REPO_ROOT, command, environment, instructions

pytestmark = pytest.mark.integration

PYTHON_312 = sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3.12")) or [
    Path(found) for found in [shutil.which("python3.12")] if found
]


def clean_environment() -> dict[str, str]:
    """This process's variables without what would put the repository on a child's sys.path."""
    return {
        name: value
        for name, value in os.environ.items()
        if name not in ("PYTHONPATH", "VIRTUAL_ENV") and not name.startswith("MISTERSMITH_BOTO")
    }


class Layout:
    """The image's file system under `root`: container paths map to root/<path>."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.workdir = Path("/")

    def path(self, container_path: str) -> Path:
        absolute = self.workdir / container_path
        return self.root / absolute.relative_to("/")

    def replay(self, venv_python: Path) -> None:
        for name, arguments in instructions():
            if name == "WORKDIR":
                self.workdir = Path(arguments)
                self.path(".").mkdir(parents=True, exist_ok=True)
            elif name == "COPY":
                source, target = arguments.split()
                destination = self.path(target)
                destination.parent.mkdir(parents=True, exist_ok=True)
                if (REPO_ROOT / source).is_dir():
                    shutil.copytree(
                        REPO_ROOT / source,
                        destination,
                        ignore=shutil.ignore_patterns("__pycache__"),
                        dirs_exist_ok=True,
                    )
                else:
                    shutil.copy2(REPO_ROOT / source, destination)
            elif name == "RUN" and arguments.startswith("pip install"):
                requirements = arguments.split("-r", 1)[1].split()[0]
                subprocess.run(
                    [
                        venv_python,
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        "-r",
                        requirements,
                    ],
                    cwd=self.path("."),
                    env=clean_environment(),
                    check=True,
                    timeout=600,
                    capture_output=True,
                )

    def environment(self) -> dict[str, str]:
        """The image's ENV with its container paths moved under root."""
        return {
            name: str(self.root / value.lstrip("/")) if value.startswith("/") else value
            for name, value in environment().items()
        }


@pytest.fixture(scope="module")
def layout() -> Iterator[tuple[Layout, Path]]:
    if not PYTHON_312:
        pytest.fail("the worker image runs Python 3.12: install it (pyenv install 3.12)")
    # An image's files are readable by every user, the sandbox's children included: not under
    # pytest's temporary folders, which are 0700.
    root = Path(tempfile.mkdtemp(prefix="mistersmith-image-"))
    root.chmod(0o755)
    try:
        venv = root / "venv"
        subprocess.run([PYTHON_312[0], "-m", "venv", venv], env=clean_environment(), check=True, timeout=120)
        built = Layout(root / "fs")
        built.replay(venv / "bin" / "python")
        yield built, venv / "bin"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_worker_image_layout_has_no_repository_on_its_path(layout):
    built, bin_dir = layout
    done = subprocess.run(
        [
            bin_dir / "python",
            "-c",
            "import sys, fargate_worker, mistersmith; print(sys.path); print(mistersmith.__file__)",
        ],
        cwd=built.path("."),
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"} | built.environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(REPO_ROOT) not in done.stdout
    assert done.stdout.splitlines()[-1].startswith(str(built.root))


def test_worker_from_the_image_layout_completes_a_task_of_each_type(layout, stack, wait_terminal):
    built, bin_dir = layout
    run = uuid.uuid4().hex[:8]
    messages = {
        f"image-execute-{run}": {
            "task_type": "execute",
            "payload": {"command": ["python3", "-c", "print(6 * 7)"]},
        },
        f"image-compile-{run}": {
            "task_type": "compile",
            "payload": {"language": "python", "files": {"a.py": "x = 1\n"}},
        },
        f"image-compile-c-{run}": {
            "task_type": "compile",
            "payload": {"language": "c", "files": {"main.c": "int main(void) { return 0; }\n"}},
        },
        f"image-analyze-{run}": {
            "task_type": "analyze",
            "payload": {"files": {"a.py": "def f(x):\n    return x\n"}},
        },
    }
    program = command()
    assert program[0] == "python"
    # The stack's variables as the task definition sets them, the image's ENV, and nothing of this repository.
    env = clean_environment() | stack.worker_env | built.environment()
    env |= {"PATH": f"{bin_dir}:/usr/bin:/bin", "WORKER_ID": f"image-{run}"}
    with own_workers(stack) as started:
        worker = subprocess.Popen(
            [bin_dir / program[0], *program[1:]],
            cwd=built.path("."),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(worker)
        sqs = stack.client("sqs")
        for task_id, body in messages.items():
            # Straight to the work queue: the worker runs every type it is handed (analyze included).
            sqs.send_message(
                QueueUrl=stack.template.refs["WorkQueue"], MessageBody=canonical_json({"id": task_id} | body)
            )
        records = {task_id: wait_terminal(task_id, timeout=90) for task_id in messages}
    assert {task_id: record["status"] for task_id, record in records.items()} == dict.fromkeys(
        messages, "SUCCEEDED"
    )
    assert records[f"image-execute-{run}"]["result"]["stdout"].strip() == "42"
