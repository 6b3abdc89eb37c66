"""Every permission the code needs, and no more: each entry point's reachable boto3 calls (read from the
adapters and the wiring) against the role that runs it in the SAM-translated template, for the default
parameters and for each parameter that switches a Condition. moto enforces no IAM, so this is where
permissions are proven."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.infrastructure import permissions
from tests.infrastructure.conftest import ALL_ON, Deployment, Template, rules_pass
from tests.infrastructure.test_template_network import BUILT_IMAGE

pytestmark = pytest.mark.infrastructure

# Parameters that only make sense together (the template's Rules refuse one without the others).
COMPANIONS = {
    "VpcId": ("SubnetIds",),
    "HostedZoneId": ("ApiDomainName", "ApiCertificateArn"),
    "ExternalTaskTableName": ("ExternalTaskTableStreamLabel",),
}
# A value for condition parameters with no AllowedValues and none in ALL_ON (and their companions).
SAMPLES = {
    "ExternalTaskTableName": "mistersmith-tasks-dev",
    "ExternalTaskTableStreamLabel": "2026-11-29T00:00:00.000",
}

# Actions in the template's own statements that no boto3 call of the code makes, and why they are there.
NOT_CALLED_BY_CODE = {
    "kms:Decrypt": "SQS decrypts messages for whoever receives them; Lambda's event source receives as the function",
    "kms:GenerateDataKey": "SQS encrypts what the role sends",
    "ecs:GetTaskProtection": "the ECS agent's task-protection endpoint calls it as the task",
    "ecs:UpdateTaskProtection": "the ECS agent's task-protection endpoint calls it as the task",
}


def _condition_parameters(template: Template) -> set[str]:
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if set(value) == {"Ref"} and value["Ref"] in template["Parameters"]:
                found.add(value["Ref"])
            for child in value.values():
                walk(child)
        elif isinstance(value, list):
            for child in value:
                walk(child)

    walk(template["Conditions"])
    return found


def parameter_variants(template: Template) -> list[dict[str, str]]:
    """The defaults, then for each parameter a Condition reads, each value that is not its default."""
    variants: list[dict[str, str]] = [{}]
    for name in sorted(_condition_parameters(template)):
        spec = template["Parameters"][name]
        if "AllowedValues" in spec:
            values = [str(value) for value in spec["AllowedValues"] if str(value) != str(spec.get("Default"))]
        else:
            assert name in ALL_ON or name in SAMPLES, f"give condition parameter {name} a sample value"
            values = [ALL_ON.get(name) or SAMPLES[name]]
        for value in values:
            variants.append(
                {name: value}
                | {other: ALL_ON.get(other) or SAMPLES[other] for other in COMPANIONS.get(name, ())}
            )
    return variants


def _variants() -> list[dict[str, str]]:
    from cfnlint.decode import decode

    template, _ = decode(str(permissions.REPO_ROOT / "template.yaml"))
    assert template is not None
    return parameter_variants(template)


VARIANTS = _variants()


def test_parameter_variants_cover_every_condition_switch(sam_template: Template) -> None:
    # Given the parameters the Conditions read, when variants are built, then each is deployable.
    switched = {name for variant in VARIANTS for name in variant}
    assert _condition_parameters(sam_template) <= switched
    for variant in VARIANTS:
        assert all(rules_pass(sam_template, _values(sam_template, variant)).values()), variant


def _values(template: Template, overrides: dict[str, str]) -> dict[str, Any]:
    from tests.infrastructure.conftest import parameter_values

    return parameter_values(template, BUILT_IMAGE | overrides)


@pytest.mark.parametrize(
    "overrides", VARIANTS, ids=lambda item: ",".join(f"{k}={v}" for k, v in item.items()) or "defaults"
)
def test_each_entry_point_role_allows_every_call_its_code_can_make(
    deployment: Callable[..., Deployment], overrides: dict[str, str]
) -> None:
    # Given the stack with these parameters, when each entry point's reachable calls are checked
    # against its role, then nothing is missing.
    deployed = deployment(**overrides)
    missing = permissions.missing(deployed.resources, deployed.parameters)
    assert set(missing) >= {"IntakeFunction", "RouterFunction", "AnalyzeFunction", permissions.WORKER}
    shown = {
        name: sorted({f"{need.action} on {need.resource}" for need in needs})
        for name, needs in missing.items()
    }
    assert {name: needs for name, needs in shown.items() if needs} == {}


def test_static_scan_finds_the_calls_each_entry_point_is_known_to_make() -> None:
    # Given the code, when it is scanned, then calls known from reading it are found (the scan is not blind).
    found = permissions.static_operations()
    assert ("sqs", "SendMessage") in found["worker"]  # the hand-back on drain
    assert ("sqs", "ReceiveMessage") in found["worker"]
    assert ("s3", "HeadObject") in found["intake"]  # a source_uri's size
    assert ("ecs", "UpdateService") in found["autoscaler"]
    assert ("sqs", "ReceiveMessage") not in found["router"]  # per method, not per adapter
    assert ("ecs", "UpdateService") not in found["worker"]  # per entry point, not the whole layer


def test_role_statements_written_here_grant_only_what_the_code_uses(
    sam_template: Template, default_deployment: Deployment
) -> None:
    # Given the statements this template writes itself (not SAM's policy templates), when their actions
    # are compared with the calls the code makes, then each is used or has its reason above.
    renderer = permissions.Renderer(default_deployment.resources, default_deployment.parameters)
    entries = {entry.role: entry for entry in permissions.entry_points(default_deployment.resources)}
    written: dict[str, list[str]] = {}
    for logical_id, resource in sam_template["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            role = f"{logical_id}Role"
            policies = resource["Properties"].get("Policies", [])
            documents = [policy for policy in policies if isinstance(policy, dict) and "Statement" in policy]
        elif logical_id in entries:
            role = logical_id
            documents = [policy["PolicyDocument"] for policy in resource["Properties"].get("Policies", [])]
        else:
            continue
        for document in documents:
            for statement in document["Statement"]:
                written.setdefault(role, []).extend(permissions._listed(statement["Action"]))
    unused = {}
    for role, actions in written.items():
        entry = entries[role]
        needed = {need.action for need in permissions.needs(entry, default_deployment.resources, renderer)}
        extra = sorted(set(actions) - needed - set(NOT_CALLED_BY_CODE))
        if extra:
            unused[entry.name] = extra
    assert unused == {}


def test_the_routers_stream_mapping_reads_the_task_tables_stream_and_names_failures_in_its_dlq(
    default_deployment: Deployment,
) -> None:
    # Given the router's event source mapping on the task table's stream
    resources = default_deployment.resources
    renderer = permissions.Renderer(resources, default_deployment.parameters)
    (router,) = [entry for entry in permissions.entry_points(resources) if entry.name == "RouterFunction"]
    # When what Lambda does as the router is listed
    found = {(need.action, need.resource) for need in permissions.mapping_needs(router, resources, renderer)}
    # Then it reads that stream and sends given-up batches to RouterDLQ, and the role allows both
    stream = renderer.attribute("TaskTable", "StreamArn")
    dlq = renderer.attribute("RouterDLQ", "Arn")
    assert {(action, stream) for action in permissions.STREAM_MAPPING_ACTIONS} | {
        ("sqs:SendMessage", dlq)
    } <= found
    statements = permissions.role_statements(resources, router.role)
    assert all(permissions.allows(statements, renderer, action, resource) for action, resource in found)
