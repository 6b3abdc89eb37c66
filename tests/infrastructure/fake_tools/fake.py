"""Stands in for `aws`, `docker` and `sam` in the deploy tests: records each call (argv, and stdin where
the real tool reads it), answers as the real tool would for an account held in a state folder, and
refuses any option the real tool does not have, as the real tools do.

Options come from the real CLIs' help: `aws <service> <command> help` of awscli 1.46.3,
`sam build --help` / `sam deploy --help` of SAM CLI 1.170.0, and the Docker CLI reference."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

AWS_GLOBAL = {
    "--debug": 0, "--endpoint-url": 1, "--no-verify-ssl": 0, "--no-paginate": 0, "--output": 1,
    "--query": 1, "--profile": 1, "--region": 1, "--color": 1, "--no-sign-request": 0,
    "--ca-bundle": 1, "--cli-read-timeout": 1, "--cli-connect-timeout": 1,
}  # fmt: skip
# 0: a switch; 1: one value; -1: values up to the next option.
AWS_COMMANDS = {
    ("sts", "get-caller-identity"): {"--cli-input-json": 1},
    ("ecr", "describe-repositories"): {
        "--registry-id": 1, "--repository-names": -1, "--max-items": 1, "--page-size": 1, "--starting-token": 1,
    },
    ("ecr", "create-repository"): {
        "--registry-id": 1, "--repository-name": 1, "--tags": -1, "--image-tag-mutability": 1,
        "--image-tag-mutability-exclusion-filters": -1, "--image-scanning-configuration": 1,
        "--encryption-configuration": 1,
    },
    ("ecr", "put-lifecycle-policy"): {"--registry-id": 1, "--repository-name": 1, "--lifecycle-policy-text": 1},
    ("ecr", "describe-images"): {
        "--registry-id": 1, "--repository-name": 1, "--image-ids": -1, "--filter": 1, "--max-items": 1,
        "--page-size": 1, "--starting-token": 1,
    },
    ("ecr", "get-login-password"): {},
    ("cloudformation", "describe-stacks"): {"--stack-name": 1, "--max-items": 1, "--starting-token": 1},
}  # fmt: skip
DOCKER_COMMANDS = {
    ("login",): {"--username": 1, "-u": 1, "--password": 1, "-p": 1, "--password-stdin": 0},
    ("pull",): {"--platform": 1, "--quiet": 0, "-q": 0, "--all-tags": 0, "-a": 0, "--disable-content-trust": 0},
    ("image", "inspect"): {"--format": 1, "-f": 1, "--platform": 1},
    ("build",): {
        "--platform": 1, "--build-arg": 1, "--label": 1, "--file": 1, "-f": 1, "--tag": 1, "-t": 1, "--pull": 0,
        "--no-cache": 0, "--target": 1, "--iidfile": 1, "--progress": 1, "--quiet": 0, "-q": 0,
    },
    ("push",): {"--all-tags": 0, "-a": 0, "--quiet": 0, "-q": 0, "--platform": 1, "--disable-content-trust": 0},
}  # fmt: skip
SAM_COMMON = {"--config-env": 1, "--config-file": 1, "--debug": 0, "--profile": 1, "--region": 1,
              "--parameter-overrides": -1, "--beta-features": 0, "--save-params": 0, "--help": 0}  # fmt: skip
SAM_COMMANDS = {
    ("build",): SAM_COMMON | {
        "--cached": 0, "--no-cached": 0, "--parallel": 0, "--use-container": 0, "-u": 0, "--build-dir": 1,
        "-b": 1, "--base-dir": 1, "-s": 1, "--cache-dir": 1, "--template-file": 1, "-t": 1, "--manifest": 1,
        "-m": 1, "--skip-pull-image": 0, "--use-buildkit": 0, "--build-in-source": 0, "--exclude": 1,
    },
    ("deploy",): SAM_COMMON | {
        "--stack-name": 1, "--capabilities": -1, "--confirm-changeset": 0, "--no-confirm-changeset": 0,
        "--resolve-s3": 0, "--no-resolve-s3": 0, "--s3-bucket": 1, "--s3-prefix": 1, "--image-repository": 1,
        "--image-repositories": -1, "--resolve-image-repos": 0, "--tags": -1, "--no-execute-changeset": 0,
        "--fail-on-empty-changeset": 0, "--no-fail-on-empty-changeset": 0, "--disable-rollback": 0,
        "--template-file": 1, "-t": 1, "--guided": 0, "-g": 0, "--role-arn": 1, "--kms-key-id": 1,
        "--notification-arns": -1, "--force-upload": 0, "--use-json": 0, "--on-failure": 1, "--no-progressbar": 0,
    },
}  # fmt: skip
ACCOUNT = "123456789012"
PASSWORD = "ecr-password"  # noqa: S105 - what the fake registry accepts, not a secret
DIGEST = "sha256:" + "ab" * 32


def refuse(message: str, code: int = 2) -> None:
    print(message, file=sys.stderr)
    sys.exit(code)


def parse(argv: list[str], options: dict[str, int]) -> tuple[dict[str, list[str]], list[str]]:
    """Options (each a list of its values) and positional arguments; an unknown option is refused."""
    found: dict[str, list[str]] = {}
    positional: list[str] = []
    index = 0
    while index < len(argv):
        item = argv[index]
        index += 1
        if not item.startswith("-") or item == "-":
            positional.append(item)
            continue
        name, has_value, inline = item.partition("=")
        if name not in options:
            refuse(f"unknown option: {name}")
        values = found.setdefault(name, [])
        arity = options[name]
        if has_value:
            values.append(inline)
        elif arity == 1:
            if index >= len(argv):
                refuse(f"option {name} needs a value")
            values.append(argv[index])
            index += 1
        elif arity == -1:
            while index < len(argv) and not argv[index].startswith("--"):
                values.append(argv[index])
                index += 1
    return found, positional


def state(name: str) -> set[str]:
    path = Path(os.environ["FAKE_STATE"]) / f"{name}.json"
    return set(json.loads(path.read_text())) if path.exists() else set()


def remember(name: str, value: str) -> None:
    path = Path(os.environ["FAKE_STATE"]) / f"{name}.json"
    path.write_text(json.dumps(sorted(state(name) | {value})))


Options = dict[str, list[str]]


def describe_repositories(options: Options) -> None:
    (name,) = options["--repository-names"]
    if name not in state("repositories"):
        refuse(f"An error occurred (RepositoryNotFoundException): repository {name} not found", 254)
    print(json.dumps({"repositories": [{"repositoryName": name}]}))


def create_repository(options: Options) -> None:
    remember("repositories", options["--repository-name"][0])
    print(json.dumps({"repository": {"repositoryName": options["--repository-name"][0]}}))


def describe_images(options: Options) -> None:
    (image_id,) = options["--image-ids"]
    tag = image_id.removeprefix("imageTag=")
    if f"{options['--repository-name'][0]}:{tag}" not in state("images"):
        refuse("An error occurred (ImageNotFoundException): no such image", 254)
    print(json.dumps({"imageDetails": [{"imageTags": [tag]}]}))


def describe_stacks(options: Options) -> None:
    region = options["--region"][0]
    stack = options["--stack-name"][0]
    outputs = [
        {"OutputKey": "ApiUrl", "OutputValue": f"https://abc123.execute-api.{region}.amazonaws.com/dev/"},
        {"OutputKey": "DashboardName", "OutputValue": f"{stack}-{region}"},
    ]
    print(json.dumps(outputs))


AWS_ANSWERS = {
    ("sts", "get-caller-identity"): lambda options: print(ACCOUNT),
    ("ecr", "describe-repositories"): describe_repositories,
    ("ecr", "create-repository"): create_repository,
    ("ecr", "put-lifecycle-policy"): lambda options: json.loads(options["--lifecycle-policy-text"][0]),
    ("ecr", "describe-images"): describe_images,
    ("ecr", "get-login-password"): lambda options: print(PASSWORD),
    ("cloudformation", "describe-stacks"): describe_stacks,
}


def aws(argv: list[str]) -> None:
    head: list[str] = []
    rest = list(argv)
    # Global options may come before the service and command.
    while rest and rest[0].startswith("--"):
        name = rest.pop(0)
        if name not in AWS_GLOBAL:
            refuse(f"Unknown options: {name}", 252)
        head += [name, rest.pop(0)] if AWS_GLOBAL[name] else [name]
    command = tuple(rest[:2])
    if command not in AWS_COMMANDS:
        refuse(f"aws: unknown command {' '.join(command)}", 252)
    options, positional = parse(head + rest[2:], AWS_GLOBAL | AWS_COMMANDS[command])
    if positional:
        refuse(f"Unknown options: {' '.join(positional)}", 252)
    AWS_ANSWERS[command](options)


def docker(argv: list[str]) -> None:
    command = tuple(argv[:2]) if argv[:1] == ["image"] else tuple(argv[:1])
    if command not in DOCKER_COMMANDS:
        refuse(f"docker: '{' '.join(command)}' is not a docker command")
    _, positional = parse(argv[len(command) :], DOCKER_COMMANDS[command])
    if command == ("login",) and sys.stdin.read().strip() != PASSWORD:
        refuse("Error response from daemon: login attempt failed", 1)
    elif command == ("image", "inspect"):
        (image,) = positional
        print(f"{image.rsplit(':', 1)[0]}@{DIGEST}")
    elif command == ("push",):
        (image,) = positional
        repository_and_tag = image.split("/", 1)[1]
        remember("images", repository_and_tag)


def sam(argv: list[str]) -> None:
    command = tuple(argv[:1])
    if command not in SAM_COMMANDS:
        refuse(f"Error: No such command '{' '.join(command)}'.")
    parse(argv[1:], SAM_COMMANDS[command])


def main() -> None:
    tool, argv = sys.argv[1], sys.argv[2:]
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write(json.dumps({"tool": tool, "argv": argv}) + "\n")
    {"aws": aws, "docker": docker, "sam": sam}[tool](argv)


if __name__ == "__main__":
    main()
