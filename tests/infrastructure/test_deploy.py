"""`make deploy` without AWS or Docker: fake `aws`, `docker` and `sam` on PATH record their arguments and
refuse options the real tools lack (tests/infrastructure/fake_tools); the template's rule refuses a
missing or stock worker image."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.infrastructure.conftest import REPO_ROOT, parameter_values, rules_pass

pytestmark = pytest.mark.infrastructure

FAKE = Path(__file__).with_name("fake_tools") / "fake.py"
REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


class Account:
    """A fake AWS account and Docker: what the deploy script ran, in order."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.state = root / "state"
        self.state.mkdir()
        self.log = root / "calls.jsonl"
        for tool in ("aws", "docker", "sam"):
            script = self.bin / tool
            script.write_text(
                f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FAKE))} {tool} "$@"\n'
            )
            script.chmod(0o755)

    def deploy(self, *arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        variables = {
            "PATH": f"{self.bin}{os.pathsep}/usr/bin:/bin",
            "HOME": os.environ.get("HOME", "/root"),
            "FAKE_LOG": str(self.log),
            "FAKE_STATE": str(self.state),
        } | (env or {})
        return subprocess.run(
            [sys.executable, "scripts/deploy.py", *arguments],
            cwd=REPO_ROOT,
            env=variables,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [
            [entry["tool"], *entry["argv"]] for entry in map(json.loads, self.log.read_text().splitlines())
        ]


def step(call: list[str]) -> str:
    """A call's tool and (sub)command, without options: "aws ecr create-repository", "docker build"."""
    words = [call[0]]
    skip = False
    for item in call[1:]:
        if skip:
            skip = False
        elif item == "--region":
            skip = True
        elif item.startswith("-"):
            break
        else:
            words.append(item)
    return " ".join(words[:3] if call[0] == "aws" or call[1:2] == ["image"] else words[:2])


def option(call: list[str], name: str) -> list[str]:
    values = []
    for index, item in enumerate(call):
        if item == name:
            values.append(call[index + 1])
    return values


@pytest.fixture
def account(tmp_path: Path) -> Account:
    return Account(tmp_path)


@pytest.fixture(scope="module")
def tag() -> str:
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    try:
        import deploy
    finally:
        sys.path.pop(0)
    return deploy.image_tag()


def test_fake_tools_refuse_options_the_real_ones_lack(account):
    # Given the fakes / When called with a made-up option / Then they fail as the real tools would
    for tool, argv in [
        ("aws", ["ecr", "create-repository", "--repository-name", "x", "--scan-on-push"]),
        ("docker", ["build", "--build-args", "A=1", "."]),
        ("sam", ["deploy", "--parameter-override", "A=1"]),
    ]:
        done = subprocess.run(
            [account.bin / tool, *argv],
            env={"FAKE_LOG": str(account.log), "FAKE_STATE": str(account.state), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
        )
        assert done.returncode != 0 and "option" in done.stderr, (tool, done.stderr)


def test_first_deploy_creates_the_repository_pushes_the_commit_s_image_then_deploys_with_it(account, tag):
    # Given an account with no repository / When make deploy runs
    done = account.deploy()
    # Then each step ran in order
    assert done.returncode == 0, done.stderr
    calls = account.calls()
    assert [step(call) for call in calls] == [
        "aws sts get-caller-identity",
        "aws ecr describe-repositories",
        "aws ecr create-repository",
        "aws ecr put-lifecycle-policy",
        "aws ecr describe-images",
        "aws ecr get-login-password",
        "docker login",
        "docker pull",
        "docker image inspect",
        "docker build",
        "docker push",
        "sam build",
        "sam deploy",
        "aws cloudformation describe-stacks",
    ]
    # in samconfig's region, with a scanned, immutable repository and a lifecycle policy
    assert all(option(call, "--region") == ["us-east-1"] for call in calls if call[0] == "aws")
    create = calls[2]
    assert option(create, "--image-scanning-configuration") == ["scanOnPush=true"]
    assert option(create, "--image-tag-mutability") == ["IMMUTABLE"]
    assert json.loads(option(calls[3], "--lifecycle-policy-text")[0])["rules"]
    # the image built for the task's architecture from the base pinned to its digest, tagged with the commit
    image = f"{REGISTRY}/mistersmith-worker:{tag}"
    build = calls[9]
    assert option(build, "--platform") == ["linux/amd64"]
    (base,) = option(build, "--build-arg")
    assert base.startswith("BASE_IMAGE=public.ecr.aws/docker/library/python@sha256:")
    assert any(
        label.startswith("org.opencontainers.image.base.digest=sha256:") for label in option(build, "--label")
    )
    assert option(build, "-f") == ["fargate_worker/Dockerfile"] and build[-1] == "."
    assert option(build, "-t") == [image] and calls[10][1:] == ["push", image]
    # and sam deploy kept samconfig's overrides and added the image
    deploy = calls[12]
    assert option(deploy, "--config-env") == ["default"]
    overrides = deploy[deploy.index("--parameter-overrides") + 1 :]
    assert overrides == ["Environment=dev", f"WorkerImageUri={image}"]
    # Then the API and the dashboards are named
    assert "https://abc123.execute-api.us-east-1.amazonaws.com/dev/" in done.stdout
    assert "#dashboards/dashboard/mistersmith-dev-us-east-1" in done.stdout


def test_redeploy_of_the_same_commit_pushes_nothing_and_deploys_the_same_image(account, tag):
    # Given a first deploy / When the same commit is deployed again
    assert account.deploy().returncode == 0
    first = len(account.calls())
    done = account.deploy()
    # Then the repository and the image are found, nothing is built or pushed, and the stack gets the same image
    assert done.returncode == 0, done.stderr
    steps = [step(call) for call in account.calls()[first:]]
    assert "aws ecr create-repository" not in steps
    assert not [item for item in steps if item.startswith("docker")]
    deploy = account.calls()[first:][steps.index("sam deploy")]
    assert deploy[-1] == f"WorkerImageUri={REGISTRY}/mistersmith-worker:{tag}"


def test_env_prod_deploys_samconfig_s_prod_environment_with_all_its_overrides(account, tag):
    done = account.deploy(env={"ENV": "prod"})
    assert done.returncode == 0, done.stderr
    sam_calls = [call for call in account.calls() if call[0] == "sam"]
    assert all(option(call, "--config-env") == ["prod"] for call in sam_calls)
    deploy = sam_calls[-1]
    prod = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text())["prod"]["deploy"]["parameters"]
    expected = [
        *shlex.split(prod["parameter_overrides"]),
        f"WorkerImageUri={REGISTRY}/mistersmith-worker:{tag}",
    ]
    assert deploy[deploy.index("--parameter-overrides") + 1 :] == expected
    describe = next(call for call in account.calls() if "describe-stacks" in call)
    assert option(describe, "--stack-name") == ["mistersmith-prod"]


def test_dry_run_prints_the_plan_and_changes_nothing(account):
    done = account.deploy("--dry-run")
    assert done.returncode == 0, done.stderr
    # Only look-ups ran; every step that changes something is printed as planned
    assert {step(call) for call in account.calls()} <= {
        "aws sts get-caller-identity",
        "aws ecr describe-repositories",
        "aws ecr describe-images",
    }
    for planned in (
        "ecr create-repository",
        "docker build",
        "docker push",
        "build --config-env default",
        "deploy --config-env default",
    ):
        assert any(line.startswith("plan") and planned in line for line in done.stdout.splitlines()), planned


def test_make_deploy_runs_the_script_with_env_s_samconfig_environment():
    for arguments, expected in (
        ([], ""),
        (["ENV=dev"], ""),
        (["ENV=prod"], "--config-env prod"),
        (["DRY_RUN=1"], "--dry-run"),
    ):
        done = subprocess.run(
            ["make", "-n", "deploy", *arguments], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        )
        (line,) = [line for line in done.stdout.splitlines() if "scripts/deploy.py" in line]
        assert line.split("scripts/deploy.py", 1)[1].strip() == expected, arguments


BUILT = f"{REGISTRY}/mistersmith-worker:0123abcd"


@pytest.mark.parametrize("image", ["", "public.ecr.aws/docker/library/python:3.12-slim", "python:3.12-slim"])
def test_template_rule_refuses_a_missing_or_stock_worker_image(sam_template, image):
    assert (
        rules_pass(sam_template, parameter_values(sam_template, {"WorkerImageUri": image}))[
            "WorkerImageIsBuilt"
        ]
        is False
    )
    descriptions = [
        item["AssertDescription"] for item in sam_template["Rules"]["WorkerImageIsBuilt"]["Assertions"]
    ]
    assert all("make deploy" in text for text in descriptions)


def test_template_rule_accepts_a_built_worker_image(sam_template):
    assert rules_pass(sam_template, parameter_values(sam_template, {"WorkerImageUri": BUILT}))[
        "WorkerImageIsBuilt"
    ]


def test_dockerfile_builds_from_the_base_image_build_argument():
    lines = (REPO_ROOT / "fargate_worker/Dockerfile").read_text().splitlines()
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0].startswith("ARG BASE_IMAGE=")
    assert instructions[1] == "FROM ${BASE_IMAGE}"
