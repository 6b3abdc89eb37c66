"""template.yaml as the local stack reads it: parameters, resources and the intrinsics they use."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml

from local_stack.intrinsics import Intrinsics

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"


@dataclass
class Template:
    """The parsed template, with a resolver for the intrinsics the local stack needs."""

    body: dict[str, Any]
    parameters: dict[str, str]
    region: str = "us-east-1"
    account: str = "123456789012"
    stack_name: str = "mistersmith-local"
    # Physical names or ids of created resources: {logical id: value}, and {logical id: {attr: value}}.
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._intrinsics = Intrinsics(self.body.get("Conditions", {}), ref=self._ref, get_att=self._get_att)

    @classmethod
    def load(cls, path: Path = TEMPLATE_PATH, overrides: dict[str, str] | None = None) -> Template:
        body = cfn_yaml.load(str(path))
        parameters = {name: str(spec.get("Default", "")) for name, spec in body.get("Parameters", {}).items()}
        return cls(body=body, parameters=parameters | (overrides or {}))

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.body["Resources"]

    def of_type(self, resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for logical_id, resource in self.resources.items():
            if resource["Type"] == resource_type:
                yield logical_id, resource.get("Properties", {})

    def function(self, logical_id: str) -> dict[str, Any]:
        """A function's properties with the template's Globals.Function filled in beneath them."""
        globals_ = self.body.get("Globals", {}).get("Function", {})
        properties = self.resources[logical_id]["Properties"]
        merged = {**globals_, **properties}
        environment = {
            **globals_.get("Environment", {}).get("Variables", {}),
            **properties.get("Environment", {}).get("Variables", {}),
        }
        merged["Environment"] = {"Variables": environment}
        return merged

    def function_environment(self, logical_id: str) -> dict[str, str]:
        variables = self.function(logical_id)["Environment"]["Variables"]
        return {name: str(self.resolve(value)) for name, value in variables.items()}

    def resolve(self, value: Any) -> Any:
        """Resolves the intrinsics in `value` against the parameters and the resources created so far."""
        return self._intrinsics.evaluate(value)

    def present(self, items: list[Any]) -> list[Any]:
        """The items of a list that exist under the parameters: `Fn::If` decided, and what came out
        as AWS::NoValue left out (other intrinsics stay unresolved)."""
        return list(self._intrinsics.decide(items))

    def condition(self, name: str) -> bool:
        return self._intrinsics.condition(name)

    def _ref(self, name: str) -> str | list[str]:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": "",
        }
        if name in self.parameters and self.body["Parameters"][name]["Type"] == "CommaDelimitedList":
            return self.parameters[name].split(",")
        for source in (pseudo, self.parameters, self.refs):
            if name in source:
                return source[name]
        raise KeyError(f"{name} is not a parameter or a resource the local stack has created")

    def _get_att(self, logical_id: str, attribute: str) -> str:
        try:
            return self.attributes[logical_id][attribute]
        except KeyError:
            raise KeyError(f"{logical_id}.{attribute} is not known to the local stack") from None
