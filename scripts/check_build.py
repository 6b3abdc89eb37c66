"""After `sam build`: every function's handler imports from its build folder with only its layers
and the Lambda runtime's boto3 beside it, on the functions' Python (python3.12)."""

from __future__ import annotations

import shutil
import subprocess
import sys

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
    failures = 0
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
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
