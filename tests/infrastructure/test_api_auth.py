"""The API's auth as SAM transforms the template: IAM (SigV4) by default, an API key and usage plan
with ApiAuth=API_KEY, /health open in both; stage throttling from parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.infrastructure

OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
MODES = {"AWS_IAM": [{"AWS_IAM": []}], "API_KEY": [{"api_key": []}]}
KEY_RESOURCES = {"IntakeApiUsagePlan", "IntakeApiKey", "IntakeApiUsagePlanKey"}


def methods(resources: dict) -> dict[tuple[str, str], dict]:
    paths = resources["IntakeApi"]["Properties"]["Body"]["paths"]
    return {(path, method): operation for path, ops in paths.items() for method, operation in ops.items()}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_api_every_route_but_health_requires_the_modes_auth(deployment, mode):
    # Given the API as deployed with ApiAuth=mode
    routes = methods(deployment(ApiAuth=mode).resources)
    # When the security of each route is read
    health = routes.pop(("/health", "get"))
    # Then /health is open and every other route demands the mode's credentials
    assert health["security"] == [{"NONE": []}]
    assert routes
    assert {route: operation.get("security") for route, operation in routes.items()} == {
        route: MODES[mode] for route in routes
    }


def test_api_auth_switch_is_the_use_api_key_auth_condition(resources):
    # Given the transformed template before parameters are known
    routes = methods(resources)
    del routes[("/health", "get")]
    # Then each closed route's security is chosen by UseApiKeyAuth, nothing else
    expected = {"Fn::If": ["UseApiKeyAuth", MODES["API_KEY"], MODES["AWS_IAM"]]}
    assert all(operation["security"] == expected for operation in routes.values())


def test_api_security_schemes_are_sigv4_and_the_x_api_key_header(resources):
    schemes = resources["IntakeApi"]["Properties"]["Body"]["securityDefinitions"]
    assert schemes["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert schemes["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_api_every_route_invokes_the_function_with_its_own_permission(deployment, mode):
    for route, operation in methods(deployment(ApiAuth=mode).resources).items():
        integration = operation["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy", route
        assert "IntakeFunction" in integration["uri"]["Fn::Sub"], route
        assert "credentials" not in integration, route


def test_api_iam_mode_creates_no_api_key_or_usage_plan(default_deployment):
    assert KEY_RESOURCES.isdisjoint(default_deployment.resources)


def test_api_key_mode_usage_plan_holds_the_key_for_the_stage_with_the_throttle(deployment):
    # Given the API-key mode
    resources = deployment(ApiAuth="API_KEY").resources
    # Then one enabled key is in a usage plan on the API's stage, throttled by the parameters
    plan = resources["IntakeApiUsagePlan"]["Properties"]
    assert plan["ApiStages"] == [{"ApiId": {"Ref": "IntakeApi"}, "Stage": {"Ref": "IntakeApiStage"}}]
    assert plan["Throttle"] == {
        "RateLimit": {"Ref": "ApiThrottlingRateLimit"},
        "BurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
    }
    assert resources["IntakeApiKey"]["Properties"]["Enabled"] is True
    link = resources["IntakeApiUsagePlanKey"]["Properties"]
    assert link == {
        "KeyId": {"Ref": "IntakeApiKey"},
        "KeyType": "API_KEY",
        "UsagePlanId": {"Ref": "IntakeApiUsagePlan"},
    }


def test_api_stage_throttles_every_method_with_the_parameters(resources):
    (settings,) = resources["IntakeApiStage"]["Properties"]["MethodSettings"]
    assert (settings["ResourcePath"], settings["HttpMethod"]) == ("/*", "*")
    assert settings["ThrottlingRateLimit"] == {"Ref": "ApiThrottlingRateLimit"}
    assert settings["ThrottlingBurstLimit"] == {"Ref": "ApiThrottlingBurstLimit"}


def test_api_auth_and_throttle_parameter_defaults(parameter_defaults):
    assert parameter_defaults["ApiAuth"] == "AWS_IAM"
    assert (
        0
        < int(parameter_defaults["ApiThrottlingRateLimit"])
        <= int(parameter_defaults["ApiThrottlingBurstLimit"])
    )


def test_api_routes_match_the_openapi_document(resources):
    # Given the routes API Gateway serves and the app's OpenAPI document in docs/
    served = {(path.replace("{id}", "{task_id}"), method) for path, method in methods(resources)}
    document = json.loads(OPENAPI.read_text())
    # When they are compared / Then every documented route is served and nothing else is
    assert served == {(path, method) for path, ops in document["paths"].items() for method in ops}
