"""Template fixtures: template.yaml as written, and as SAM transforms it offline (no AWS, no Docker)."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from cfnlint.api import Runner
from cfnlint.config import ConfigMixIn
from cfnlint.decode import decode
from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform

from local_stack.intrinsics import Intrinsics

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
CUSTOM_RULES_PATH = Path(__file__).with_name("cfn_custom_rules.txt")

# The translator only needs a region name; nothing is called.
TRANSLATE_REGION = "us-east-1"

Template = dict[str, Any]


class _OfflinePolicyLoader(ManagedPolicyLoader):
    """Resolves no managed-policy names: the template uses ARNs and policy templates only."""

    def __init__(self) -> None:  # the base class wants an IAM client
        pass

    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="session")
def template_path() -> Path:
    return TEMPLATE_PATH


@pytest.fixture(scope="session")
def sam_template() -> Template:
    """template.yaml decoded with its intrinsic tags (!Ref, !Sub, ...) as CloudFormation dicts."""
    template, errors = decode(str(TEMPLATE_PATH))
    assert not errors, [str(error) for error in errors]
    assert template is not None
    return template


def translate(sam_template: Template, parameter_values: dict[str, Any] | None = None) -> Template:
    """Runs the SAM transform offline: code locations become s3:// placeholders, as `sam package` makes them."""
    fragment = copy.deepcopy(sam_template)
    for logical_id, resource in fragment["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function" and "CodeUri" in properties:
            properties["CodeUri"] = f"s3://placeholder-bucket/{logical_id}.zip"
        if resource["Type"] == "AWS::Serverless::LayerVersion":
            properties["ContentUri"] = f"s3://placeholder-bucket/{logical_id}.zip"
    # decode() yields str subclasses with line marks; plain JSON types are what the translator expects.
    fragment = json.loads(json.dumps(fragment))
    with mock.patch.dict(os.environ, {"AWS_DEFAULT_REGION": TRANSLATE_REGION}):
        return transform(fragment, dict(parameter_values or {}), _OfflinePolicyLoader())


@pytest.fixture(scope="session")
def cfn_template(sam_template: Template) -> Template:
    """The CloudFormation template that `sam deploy` would submit, with default parameters."""
    return translate(sam_template)


@pytest.fixture(scope="session")
def resources(cfn_template: Template) -> dict[str, Any]:
    return cfn_template["Resources"]


@pytest.fixture(scope="session")
def translated_template_path(cfn_template: Template, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("translated") / "template.json"
    path.write_text(json.dumps(cfn_template, indent=1))
    return path


@pytest.fixture(scope="session")
def cfn_lint() -> Callable[..., list[str]]:
    """Returns lint(path, custom_rules=False) -> list of findings as text, via cfn-lint's Python API."""

    def lint(path: Path, custom_rules: bool = False) -> list[str]:
        args = ["--template", str(path), "--regions", TRANSLATE_REGION]
        if custom_rules:
            args += ["--custom-rules", str(CUSTOM_RULES_PATH)]
        return [str(match) for match in Runner(ConfigMixIn(args)).run()]

    return lint


@pytest.fixture(scope="session")
def parameter_defaults(sam_template: Template) -> dict[str, Any]:
    return {name: spec.get("Default") for name, spec in sam_template["Parameters"].items()}


@pytest.fixture(scope="session")
def function_environment(resources: dict[str, Any]) -> Callable[[str], dict[str, Any]]:
    """Returns env(function logical id) -> the Lambda's environment variables after Globals merged in."""

    def env(logical_id: str) -> dict[str, Any]:
        return resources[logical_id]["Properties"]["Environment"]["Variables"]

    return env


def containers(deployment: Deployment) -> dict[str, dict[str, Any]]:
    """The task definition's containers by name, as deployed with those parameters."""
    definitions = deployment.resources["WorkerTaskDefinition"]["Properties"]["ContainerDefinitions"]
    return {container["Name"]: container for container in definitions}


@pytest.fixture(scope="session")
def worker_container(default_deployment: Deployment) -> dict[str, Any]:
    return containers(default_deployment)["worker"]


def iter_role_statements(resources: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yields (where, statement) for every inline IAM statement in the template's roles and policies."""
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        documents: list[tuple[str, Any]] = []
        if resource["Type"] == "AWS::IAM::Role":
            documents = [
                (policy["PolicyName"], policy["PolicyDocument"]) for policy in properties.get("Policies", [])
            ]
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents = [(logical_id, properties["PolicyDocument"])]
        for policy_name, document in documents:
            statements = document["Statement"]
            for statement in statements if isinstance(statements, list) else [statements]:
                yield f"{logical_id}/{policy_name}", statement


@pytest.fixture(scope="session")
def role_statements(resources: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return list(iter_role_statements(resources))


# ---------------------------------------------------------------- parameters, conditions and rules

# Every optional piece switched on at once (with an existing VPC, so that the network parameters count).
ALL_ON = {
    "VpcId": "vpc-0123456789abcdef0",
    "SubnetIds": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
    "UseVpcEndpoints": "true",
    "LoadBalancerSecurityGroupId": "sg-0123456789abcdef0",
    "AlarmEmail": "oncall@example.com",
    "CpuMemoryScaleOut": "true",
    "WorkerDeploymentStrategy": "BLUE_GREEN",
    "LambdaCanaryDeploys": "true",
    "ReplicaRegions": "us-west-2,eu-west-1,ap-southeast-2",
    "HostedZoneId": "Z0123456789ABCDEFGHIJ",
    "ApiDomainName": "api.mistersmith.example.com",
    "ApiCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000",
    "FailoverRole": "PRIMARY",
}


def parameter_values(sam_template: Template, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Parameter values as CloudFormation sees them: defaults under overrides, lists split on commas."""
    values: dict[str, Any] = {}
    for name, spec in sam_template["Parameters"].items():
        value = (overrides or {}).get(name, spec.get("Default", ""))
        if spec["Type"] == "CommaDelimitedList" and isinstance(value, str):
            value = value.split(",")
        values[name] = value
    return values


def intrinsics(template: Template, parameters: dict[str, Any]) -> Intrinsics:
    """The template's intrinsics evaluated on parameter values alone (nothing has been created)."""
    return Intrinsics(template.get("Conditions", {}), ref=parameters.__getitem__)


def evaluate_conditions(template: Template, parameters: dict[str, Any]) -> dict[str, bool]:
    evaluator = intrinsics(template, parameters)
    return {name: evaluator.condition(name) for name in template.get("Conditions", {})}


def rules_pass(template: Template, parameters: dict[str, Any]) -> dict[str, bool]:
    """Each rule of the template: does a deploy with these parameters get past it?"""
    evaluator = intrinsics(template, parameters)
    results = {}
    for name, rule in template.get("Rules", {}).items():
        applies = "RuleCondition" not in rule or evaluator.evaluate(rule["RuleCondition"])
        results[name] = not applies or all(evaluator.evaluate(item["Assert"]) for item in rule["Assertions"])
    return results


@dataclass(frozen=True)
class Deployment:
    """The stack CloudFormation would create for some parameter values: transformed, conditions applied."""

    parameters: dict[str, Any]
    conditions: dict[str, bool]
    template: Template

    @property
    def resources(self) -> dict[str, Any]:
        return self.template["Resources"]

    @property
    def outputs(self) -> dict[str, Any]:
        return self.template.get("Outputs", {})


def deploy(sam_template: Template, overrides: dict[str, Any] | None = None) -> Deployment:
    translated = translate(sam_template, overrides)
    parameters = parameter_values(translated, overrides)
    evaluator = intrinsics(translated, parameters)
    conditions = evaluate_conditions(translated, parameters)
    kept = {
        logical_id: evaluator.decide(resource)
        for logical_id, resource in translated["Resources"].items()
        if conditions.get(resource.get("Condition", ""), True)
    }
    outputs = {
        name: evaluator.decide(output)
        for name, output in translated.get("Outputs", {}).items()
        if conditions.get(output.get("Condition", ""), True)
    }
    return Deployment(parameters, conditions, {**translated, "Resources": kept, "Outputs": outputs})


@pytest.fixture(scope="session")
def deployment(sam_template: Template) -> Callable[..., Deployment]:
    """Returns deployment(**overrides) -> the stack with those parameters (cached per set of values)."""
    cache: dict[tuple[tuple[str, str], ...], Deployment] = {}

    def make(**overrides: str) -> Deployment:
        key = tuple(sorted(overrides.items()))
        if key not in cache:
            cache[key] = deploy(sam_template, overrides)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def default_deployment(deployment: Callable[..., Deployment]) -> Deployment:
    return deployment()


@pytest.fixture(scope="session")
def all_on_deployment(deployment: Callable[..., Deployment]) -> Deployment:
    return deployment(**ALL_ON)
