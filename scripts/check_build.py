"""After `sam build`: what our Makefile builds (the layer, the intake) carries bytecode for the
functions' Python (Lambda cannot write it); every function's handler imports from its build folder
with only its layers and the Lambda runtime's boto3 beside it, on the functions' Python
(python3.12); and the layer's ruff binary, found as the analyze task finds it, is executable and
runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from local_stack.template import ROOT, Template

BUILD = ROOT / ".aws-sam" / "build"
RUNTIME_BOTO3 = ROOT / ".aws-sam" / "runtime-boto3"
# The Lambda runtime ships boto3; this stands in for it.
BOTO3_PIN = "boto3==1.44.5"


def main() -> int:
    template = Template.load()
    runtime = template.body["Globals"]["Function"]["Runtime"]
    interpreter = shutil.which(runtime)
    if interpreter is None:
        print(f"{runtime} is not on PATH: cannot check the build", file=sys.stderr)
        return 1
    if not RUNTIME_BOTO3.exists():
        subprocess.run(  # noqa: S603 - our own pip, fixed arguments
            [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(RUNTIME_BOTO3), BOTO3_PIN],
            check=True,
        )
    layers = [str(path / "python") for path in BUILD.iterdir() if (path / "python").is_dir()]
    # What our Makefile builds carries bytecode; checked before the imports below, which would write it.
    made = [name for name, resource in template.resources.items() if _built_by_makefile(resource)]
    failures = sum(not _compiled(BUILD / name, runtime) for name in made)
    for name, _ in template.of_type("AWS::Serverless::Function"):
        module, _, attribute = template.function(name)["Handler"].rpartition(".")
        paths = [str(BUILD / name), *layers, str(RUNTIME_BOTO3)]
        # -I: no site-packages and no user paths, only what Lambda would have.
        code = f"import sys; sys.path[:0] = {paths!r}; import {module}; assert callable({module}.{attribute})"
        result = subprocess.run([interpreter, "-I", "-c", code], capture_output=True, text=True)  # noqa: S603
        status = "ok" if result.returncode == 0 else "FAILED"
        failures += result.returncode != 0
        print(f"{name:<22} {module}.{attribute} on {runtime}: {status}")
        if result.returncode:
            print(result.stderr[-2000:], file=sys.stderr)
    failures += not _ruff_runs(interpreter, layers)
    return 1 if failures else 0


def _built_by_makefile(resource: dict[str, Any]) -> bool:
    return (resource.get("Metadata") or {}).get("BuildMethod") == "makefile"


def _compiled(folder: Path, runtime: str) -> bool:
    """Every module in the build folder has bytecode for `runtime` (python3.12: cpython-312) beside it."""
    tag = "cpython-" + runtime.removeprefix("python").replace(".", "")
    sources = list(folder.rglob("*.py"))
    missing = [
        path for path in sources if not (path.parent / "__pycache__" / f"{path.stem}.{tag}.pyc").exists()
    ]
    status = "ok" if sources and not missing else f"FAILED: {len(missing)} of {len(sources)} without it"
    print(f"{'bytecode in ' + folder.name:<22} {tag}: {status}")
    for path in missing[:5]:
        print(f"  no bytecode: {path.relative_to(folder)}", file=sys.stderr)
    return bool(sources) and not missing


def _ruff_runs(interpreter: str, layers: list[str]) -> bool:
    """The ruff binary that `mistersmith.work.analyze` finds in the layer (python/bin/ruff) runs."""
    code = (
        f"import os, subprocess, sys; sys.path[:0] = {layers!r}; from ruff import find_ruff_bin; "
        "path = find_ruff_bin(); assert os.access(path, os.X_OK), path + ' is not executable'; "
        "print(path, subprocess.run([path, '--version'], capture_output=True, text=True, check=True).stdout)"
    )
    result = subprocess.run([interpreter, "-I", "-c", code], capture_output=True, text=True)  # noqa: S603
    print(f"{'ruff in the layer':<22} {result.stdout.strip() if result.returncode == 0 else 'FAILED'}")
    if result.returncode:
        print(result.stderr[-2000:], file=sys.stderr)
    return result.returncode == 0


if __name__ == "__main__":
    sys.exit(main())
