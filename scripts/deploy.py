"""`make deploy`: from an AWS account to a running stack in one command.

1. the ECR repository (scan on push, immutable tags, a lifecycle policy), created if it is missing;
2. the worker image, built for the task's CPU architecture from BASE_IMAGE pinned to its digest, tagged
   with the git commit and pushed, unless that tag is already there (a redeploy of the same commit);
3. `sam build` and `sam deploy` of samconfig's environment, its parameter overrides kept and
   WorkerImageUri added;
4. the API URL and the dashboards' links.

`--dry-run` prints the plan (every command) and runs only the read-only look-ups it needs."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "fargate_worker/Dockerfile"
DEFAULT_BASE_IMAGE = "public.ecr.aws/docker/library/python:3.12-slim"
PLATFORMS = {"X86_64": "linux/amd64", "ARM64": "linux/arm64"}
# Untagged layers go after a week; the newest 50 images stay, so a rollback has a tag to go back to.
LIFECYCLE_POLICY = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "untagged images after 7 days",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 7,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "description": "keep the newest 50 images",
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 50},
            "action": {"type": "expire"},
        },
    ]
}


class DeployError(Exception):
    """A step failed; the message says which and what to do."""


@dataclass
class Plan:
    config_env: str
    stack_name: str
    region: str
    overrides: dict[str, str]
    repository: str
    platform: str
    base_image: str
    tag: str
    sam: str
    dry_run: bool


def run(command: list[str], *, plan: Plan, read_only: bool = False, stdin: str | None = None) -> str:
    """Runs a step (printed first); in a dry run only read-only look-ups run, the rest is printed."""
    shown = shlex.join(command) + (" <<< (stdin)" if stdin is not None else "")
    print(f"{'plan' if plan.dry_run and not read_only else 'run '}: {shown}", flush=True)
    if plan.dry_run and not read_only:
        return ""
    done = subprocess.run(  # noqa: S603 - the deploy's own commands, arguments as lists (no shell)
        command, input=stdin, capture_output=True, text=True, cwd=ROOT, check=False
    )
    if done.returncode != 0:
        raise DeployError(f"{shlex.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def succeeds(command: list[str], *, plan: Plan) -> bool:
    """Whether a read-only look-up finds what it asks for (a repository, an image tag)."""
    print(f"look: {shlex.join(command)}", flush=True)
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)  # noqa: S603 - as run()
    return done.returncode == 0


def samconfig(config_env: str, path: Path = ROOT / "samconfig.toml") -> dict[str, str]:
    """The deploy parameters of one samconfig environment, global ones beneath."""
    config = tomllib.loads(path.read_text())
    if config_env not in config:
        known = ", ".join(name for name in config if name != "version")
        raise DeployError(f"samconfig.toml has no [{config_env}] environment (it has: {known})")
    section = config[config_env]
    return {
        **section.get("global", {}).get("parameters", {}),
        **section.get("deploy", {}).get("parameters", {}),
    }


def parse_overrides(text: str) -> dict[str, str]:
    """samconfig's `Key=Value Key2="a b"` overrides, in order."""
    return dict(item.split("=", 1) for item in shlex.split(text))


def template_defaults(path: Path = ROOT / "template.yaml") -> dict[str, str]:
    body = cfn_yaml.load(str(path))
    return {name: str(spec.get("Default", "")) for name, spec in body["Parameters"].items()}


def image_tag() -> str:
    """The git commit; with uncommitted changes, the commit plus a digest of them (tags are immutable)."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"],  # noqa: S607 - git from PATH, as a person runs it
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout.strip()
    diff = subprocess.run(
        ["git", "diff", "HEAD", "--", "fargate_worker", "layers/shared"],  # noqa: S607 - as above
        capture_output=True,
        cwd=ROOT,
        check=True,
    ).stdout
    return f"{commit}-dirty-{hashlib.sha256(diff).hexdigest()[:8]}" if diff else commit


def make_plan(arguments: argparse.Namespace) -> Plan:
    config = samconfig(arguments.config_env)
    overrides = parse_overrides(config.get("parameter_overrides", ""))
    effective = template_defaults() | overrides
    region = arguments.region or config.get("region") or os.environ.get("AWS_REGION")
    if not region:
        raise DeployError("no region: set it in samconfig.toml, or pass --region")
    return Plan(
        config_env=arguments.config_env,
        stack_name=config["stack_name"],
        region=region,
        overrides=overrides,
        repository=effective["WorkerEcrRepositoryName"],
        platform=PLATFORMS[effective["WorkerCpuArchitecture"]],
        base_image=arguments.base_image,
        tag=arguments.tag or image_tag(),
        sam=arguments.sam,
        dry_run=arguments.dry_run,
    )


def ensure_repository(plan: Plan) -> None:
    aws = ["aws", "--region", plan.region]
    if succeeds([*aws, "ecr", "describe-repositories", "--repository-names", plan.repository], plan=plan):
        return
    run(
        [
            *aws,
            "ecr",
            "create-repository",
            "--repository-name",
            plan.repository,
            "--image-scanning-configuration",
            "scanOnPush=true",
            "--image-tag-mutability",
            "IMMUTABLE",
        ],
        plan=plan,
    )
    run(
        [
            *aws,
            "ecr",
            "put-lifecycle-policy",
            "--repository-name",
            plan.repository,
            "--lifecycle-policy-text",
            json.dumps(LIFECYCLE_POLICY, separators=(",", ":")),
        ],
        plan=plan,
    )


def push_image(plan: Plan, registry: str) -> str:
    """The image URI of this commit in ECR, built and pushed unless the tag is already there."""
    image = f"{registry}/{plan.repository}:{plan.tag}"
    aws = ["aws", "--region", plan.region]
    tag_exists = [*aws, "ecr", "describe-images", "--repository-name", plan.repository]
    if succeeds([*tag_exists, "--image-ids", f"imageTag={plan.tag}"], plan=plan):
        print(f"{image} is already in ECR: not built again", flush=True)
        return image
    password = run([*aws, "ecr", "get-login-password"], plan=plan)
    run(["docker", "login", "--username", "AWS", "--password-stdin", registry], plan=plan, stdin=password)
    # The base is pinned to the digest it has now, and the digest is kept as a label of the image.
    run(["docker", "pull", "--platform", plan.platform, plan.base_image], plan=plan)
    inspect = ["docker", "image", "inspect", "--format", "{{index .RepoDigests 0}}", plan.base_image]
    pinned = run(inspect, plan=plan).strip() or f"{plan.base_image}@sha256:<digest>"
    digest = pinned.rpartition("@")[2]
    run(
        [
            "docker",
            "build",
            "--platform",
            plan.platform,
            "--build-arg",
            f"BASE_IMAGE={pinned}",
            "--label",
            f"org.opencontainers.image.base.name={plan.base_image}",
            "--label",
            f"org.opencontainers.image.base.digest={digest}",
            "--label",
            f"org.opencontainers.image.revision={plan.tag}",
            "-f",
            DOCKERFILE,
            "-t",
            image,
            ".",
        ],
        plan=plan,
    )
    run(["docker", "push", image], plan=plan)
    return image


def deploy_stack(plan: Plan, image: str) -> None:
    # sam replaces samconfig's overrides with the command line's: pass them all, the image last.
    overrides = [f"{name}={value}" for name, value in plan.overrides.items() if name != "WorkerImageUri"]
    run([plan.sam, "build", "--config-env", plan.config_env], plan=plan)
    run(
        [
            plan.sam,
            "deploy",
            "--config-env",
            plan.config_env,
            "--region",
            plan.region,
            "--parameter-overrides",
            *overrides,
            f"WorkerImageUri={image}",
        ],
        plan=plan,
    )


def show_outputs(plan: Plan) -> None:
    query = [
        "aws",
        "--region",
        plan.region,
        "cloudformation",
        "describe-stacks",
        "--stack-name",
        plan.stack_name,
        "--query",
        "Stacks[0].Outputs",
        "--output",
        "json",
    ]
    text = run(query, plan=plan)
    if plan.dry_run:
        return
    outputs = {item["OutputKey"]: item["OutputValue"] for item in json.loads(text or "[]")}
    console = f"https://{plan.region}.console.aws.amazon.com/cloudwatch/home?region={plan.region}#dashboards/dashboard"
    print(f"\nAPI:        {outputs.get('ApiUrl', '(no ApiUrl output)')}")
    if "DashboardName" in outputs:
        print(f"dashboard:  {console}/{outputs['DashboardName']}")
        print(f"sizing:     {console}/{outputs['DashboardName']}-sizing")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/deploy.py", description=__doc__.split("\n\n")[0])
    environment = os.environ.get("ENV", "")
    parser.add_argument(
        "--config-env",
        default="default" if environment in ("", "dev") else environment,
        help="samconfig.toml environment (default: $ENV, dev meaning [default])",
    )
    parser.add_argument("--region", help="overrides samconfig's region")
    parser.add_argument("--base-image", default=os.environ.get("BASE_IMAGE") or DEFAULT_BASE_IMAGE)
    parser.add_argument("--tag", help="image tag (default: the git commit)")
    parser.add_argument("--sam", default=os.environ.get("SAM", "sam"), help="the sam command")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    arguments = parser.parse_args(argv)
    try:
        plan = make_plan(arguments)
        print(
            f"deploying stack {plan.stack_name} ([{plan.config_env}]) to {plan.region}; "
            f"worker image {plan.repository}:{plan.tag} for {plan.platform}",
            flush=True,
        )
        account = run(
            [
                "aws",
                "--region",
                plan.region,
                "sts",
                "get-caller-identity",
                "--query",
                "Account",
                "--output",
                "text",
            ],
            plan=plan,
            read_only=True,
        ).strip()
        registry = f"{account}.dkr.ecr.{plan.region}.amazonaws.com"
        ensure_repository(plan)
        image = push_image(plan, registry)
        deploy_stack(plan, image)
        show_outputs(plan)
    except DeployError as error:
        print(f"deploy failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
