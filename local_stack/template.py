"""template.yaml as the local stack reads it: parameters, resources and the intrinsics they use."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"
_SUB_VARIABLE = re.compile(r"\$\{([A-Za-z0-9:._]+)\}")


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
        """Resolves Ref, Fn::Sub, Fn::GetAtt, Fn::If (on parameter conditions) and Fn::Join."""
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {key: self.resolve(item) for key, item in value.items()}
        ((key, argument),) = value.items()
        handler = self._intrinsics().get(key)
        return handler(argument) if handler else {key: self.resolve(argument)}

    def _intrinsics(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": lambda arg: str(arg[0]).join(
                str(self.resolve(item)) for item in self.resolve(arg[1])
            ),
            "Fn::If": lambda arg: self.resolve(arg[1] if self.condition(arg[0]) else arg[2]),
        }

    def present(self, items: list[Any]) -> list[Any]:
        """The items of a list that exist under the parameters: `Fn::If` items decided, and those
        that came out as AWS::NoValue left out (their other properties stay unresolved)."""
        chosen = []
        for item in items:
            while isinstance(item, dict) and list(item) == ["Fn::If"]:
                condition, if_true, if_false = item["Fn::If"]
                item = if_true if self.condition(condition) else if_false
            if item != {"Ref": "AWS::NoValue"}:
                chosen.append(item)
        return chosen

    def condition(self, name: str) -> bool:
        return bool(self._evaluate(self.body.get("Conditions", {})[name]))

    def _evaluate(self, expression: Any) -> Any:
        if not isinstance(expression, dict):
            return expression
        ((key, argument),) = expression.items()
        if key == "Fn::Equals":
            left, right = (str(self._evaluate(self.resolve(item))) for item in argument)
            return left == right
        if key == "Fn::Not":
            return not self._evaluate(argument[0])
        if key == "Fn::And":
            return all(self._evaluate(item) for item in argument)
        if key == "Fn::Or":
            return any(self._evaluate(item) for item in argument)
        if key == "Condition":
            return self.condition(argument)
        return self.resolve(expression)

    def _ref(self, name: str) -> str | list[str]:
        if self.body.get("Parameters", {}).get(name, {}).get("Type") == "CommaDelimitedList":
            return self.parameters[name].split(",")  # as CloudFormation hands a list parameter to Fn::Join
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": "",
        }
        for source in (pseudo, self.parameters, self.refs):
            if name in source:
                return source[name]
        raise KeyError(f"{name} is not a parameter or a resource the local stack has created")

    def _get_att(self, argument: Any) -> str:
        logical_id, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
        try:
            return self.attributes[logical_id][attribute]
        except KeyError:
            raise KeyError(f"{logical_id}.{attribute} is not known to the local stack") from None

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        local = {name: str(self.resolve(item)) for name, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in local:
                return local[name]
            return self._get_att(name) if "." in name else str(self._ref(name))

        return _SUB_VARIABLE.sub(replace, text)
