"""CloudFormation's intrinsic functions evaluated on known values. One evaluator for the local stack
(references to the resources it created) and the infrastructure tests (parameter values alone)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

NO_VALUE = {"Ref": "AWS::NoValue"}
_SUB_VARIABLE = re.compile(r"\$\{([A-Za-z0-9:._]+)\}")


def _no_attributes(logical_id: str, attribute: str) -> Any:
    raise KeyError(f"{logical_id}.{attribute}: no resource attributes are known here")


class Intrinsics:
    """Evaluates Ref, Fn::GetAtt, Fn::Sub, Fn::Join, Fn::Split, Fn::Select, Fn::If, the condition
    functions and the rule functions; `ref` and `get_att` say what names stand for."""

    def __init__(
        self,
        conditions: Mapping[str, Any],
        ref: Callable[[str], Any],
        get_att: Callable[[str, str], Any] = _no_attributes,
    ) -> None:
        self.conditions = conditions
        self.ref = ref
        self.get_att = get_att
        self._decided: dict[str, bool] = {}
        self._functions: dict[str, Callable[[Any], Any]] = {
            "Ref": lambda name: self.ref(name),
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": lambda arg: str(arg[0]).join(str(item) for item in self._list(arg[1])),
            "Fn::Split": lambda arg: str(self.evaluate(arg[1])).split(arg[0]),
            "Fn::Select": lambda arg: self._list(arg[1])[int(self.evaluate(arg[0]))],
            "Fn::If": lambda arg: self.evaluate(arg[1] if self.condition(arg[0]) else arg[2]),
            "Fn::Equals": lambda arg: str(self.evaluate(arg[0])) == str(self.evaluate(arg[1])),
            "Fn::Not": lambda arg: not self.evaluate(arg[0]),
            "Fn::And": lambda arg: all(self.evaluate(item) for item in arg),
            "Fn::Or": lambda arg: any(self.evaluate(item) for item in arg),
            "Condition": self.condition,
            "Fn::Contains": lambda arg: self.evaluate(arg[1]) in self._list(arg[0]),
            "Fn::EachMemberEquals": lambda arg: all(
                item == self.evaluate(arg[1]) for item in self._list(arg[0])
            ),
        }

    def evaluate(self, value: Any) -> Any:
        """`value` with every intrinsic in it evaluated; other data walked through unchanged."""
        if isinstance(value, list):
            return [self.evaluate(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {key: self.evaluate(item) for key, item in value.items()}
        ((key, argument),) = value.items()
        function = self._functions.get(key)
        if function is not None:
            return function(argument)
        if key.startswith("Fn::"):
            raise ValueError(f"{key} is not evaluated here")
        return {key: self.evaluate(argument)}

    def condition(self, name: str) -> bool:
        if name not in self._decided:
            self._decided[name] = bool(self.evaluate(self.conditions[name]))
        return self._decided[name]

    def decide(self, value: Any) -> Any:
        """Picks each Fn::If branch and drops AWS::NoValue, as CloudFormation does under these
        conditions; other intrinsics are left as they are."""
        dropped = object()

        def walk(item: Any) -> Any:
            if isinstance(item, dict):
                if set(item) == {"Fn::If"}:
                    name, when_true, when_false = item["Fn::If"]
                    return walk(when_true if self.condition(name) else when_false)
                if item == NO_VALUE:
                    return dropped
                walked = {key: walk(child) for key, child in item.items()}
                return {key: child for key, child in walked.items() if child is not dropped}
            if isinstance(item, list):
                return [child for child in (walk(entry) for entry in item) if child is not dropped]
            return item

        return walk(value)

    def _list(self, expression: Any) -> list[Any]:
        result = self.evaluate(expression)
        if not isinstance(result, list):
            raise ValueError(f"{expression} is not a list")
        return result

    def _get_att(self, argument: Any) -> Any:
        logical_id, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
        return self.get_att(logical_id, attribute)

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        local = {name: str(self.evaluate(item)) for name, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in local:
                return local[name]
            return str(self._get_att(name) if "." in name else self.ref(name))

        return _SUB_VARIABLE.sub(replace, text)
