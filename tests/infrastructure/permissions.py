"""What each entry point may call in AWS, read from the code, and what its role allows, read from the
SAM-translated template; the permission tests compare the two.

The code side is a name-based call graph (over-approximate on purpose: a method is reachable when any
reachable code names it). From an entry point's module (a function's handler module, or the worker's
package) it follows every name the reachable code uses to the functions and classes of that name in
the shared layer and the entry point's own code. Adapter classes the reachable code constructs, and
their reachable methods, give the boto3 operations (`self._sqs.send_message(...)`); the constructor's
`settings.<field>` argument gives the environment variable, hence the template resource, they touch."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session

REPO_ROOT = Path(__file__).resolve().parents[2]
LAYER = REPO_ROOT / "layers/shared/mistersmith"
ADAPTERS = LAYER / "adapters"
WORKER_PACKAGE = REPO_ROOT / "fargate_worker"
WORKER = "worker"
WORKER_CONTAINER = "worker"

# Fake physical values: policies and environment variables are rendered with the same ones.
PARTITION, REGION, ACCOUNT, STACK = "aws", "us-east-1", "123456789012", "mistersmith-dev"

# Operations whose IAM action is not the service prefix plus the API name.
ACTION_OF = {
    ("s3", "HeadObject"): "s3:GetObject",
    ("sqs", "DeleteMessageBatch"): "sqs:DeleteMessage",
    ("sqs", "SendMessageBatch"): "sqs:SendMessage",
    ("sqs", "ChangeMessageVisibilityBatch"): "sqs:ChangeMessageVisibility",
}

# AWS managed policies that SAM attaches (the translator leaves only their ARNs).
MANAGED_POLICIES: dict[str, list[dict[str, Any]]] = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*",
        }
    ],
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": [
        {
            "Effect": "Allow",
            "Action": [
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
                "xray:GetSamplingStatisticSummaries",
            ],
            "Resource": "*",
        }
    ],
    "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole": [
        {
            "Effect": "Allow",
            "Action": [
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
            ],
            "Resource": "*",
        }
    ],
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole": [
        {
            "Effect": "Allow",
            "Action": [
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
            ],
            "Resource": "*",
        }
    ],
}


@dataclass(frozen=True)
class Call:
    """One boto3 operation an adapter method makes, on the client of `service`."""

    service: str
    operation: str  # the botocore API name, e.g. SendMessage
    index: str | None = None  # a DynamoDB index the call names


@dataclass(frozen=True)
class Construction:
    """An adapter built in reachable code, with the settings fields its arguments come from."""

    adapter: str
    fields: tuple[str, ...]


@dataclass
class Reach:
    """What one entry point's code can do: adapters built and boto3 calls made (by adapter)."""

    functions: set[str] = field(default_factory=set)
    constructions: set[Construction] = field(default_factory=set)
    calls: dict[str, set[Call]] = field(default_factory=dict)


@dataclass(frozen=True)
class Need:
    """An IAM action on a resource ARN, and why."""

    action: str
    resource: str
    because: str


# ---------------------------------------------------------------- the code


@dataclass
class _Function:
    qualname: str
    node: ast.FunctionDef | ast.AsyncFunctionDef
    module: str
    owner: str | None  # the class it is a method of


@dataclass
class _Module:
    name: str
    tree: ast.Module
    constants: dict[str, str]


def _modules(paths: list[Path]) -> list[_Module]:
    modules = []
    for path in paths:
        tree = ast.parse(path.read_text(), str(path))
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name) and isinstance(node.value.value, str)
        }
        modules.append(_Module(str(path.relative_to(REPO_ROOT)), tree, constants))
    return modules


def _names_used(node: ast.AST, module_names: set[str]) -> tuple[set[str], set[str]]:
    """(bare names, attribute names) the code mentions: calls, and functions passed as callbacks.
    `module.f` counts as the bare name f too, so that `wiring.lifecycle` reaches the function and
    `self.lifecycle` does not. Annotations and a function's own parameters and locals name nothing
    it runs."""
    names: set[str] = set()
    attributes: set[str] = set()
    local: set[str] = set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        arguments = node.args
        local = {
            item.arg
            for item in [
                *arguments.posonlyargs,
                *arguments.args,
                *arguments.kwonlyargs,
                arguments.vararg,
                arguments.kwarg,
            ]
            if item is not None
        }
        local |= {
            child.id
            for child in ast.walk(node)
            if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store)
        }
    for child in _walk_code(node):
        if isinstance(child, ast.Name) and child.id not in local:
            names.add(child.id)
        elif isinstance(child, ast.Attribute):
            receiver = child.value
            attributes.add(child.attr)
            if isinstance(receiver, ast.Name) and receiver.id in module_names:
                names.add(child.attr)
    return names, attributes


def _walk_code(node: ast.AST) -> Iterator[ast.AST]:
    """ast.walk without annotations."""
    pending = [node]
    while pending:
        current = pending.pop()
        yield current
        for name, value in ast.iter_fields(current):
            if name in ("annotation", "returns"):
                continue
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, ast.AST):
                    pending.append(child)


@cache
def _botocore_session() -> Any:
    return botocore.session.get_session()


@cache
def api_name(service: str, method: str) -> str:
    """The API name of a boto3 client method (send_message -> SendMessage), offline."""
    model = _botocore_session().get_service_model(service)
    for operation in model.operation_names:
        if botocore.xform_name(operation) == method:
            return operation
    raise AssertionError(f"{service} has no operation {method!r}")


def _client_service(expression: ast.AST, providers: dict[str, str]) -> str | None:
    """The service of a client an expression builds: client("sqs"), x.client("s3"), or a provider
    function of this module that does."""
    for child in ast.walk(expression):
        if not isinstance(child, ast.Call):
            continue
        name = child.func.attr if isinstance(child.func, ast.Attribute) else getattr(child.func, "id", "")
        if name == "client" and child.args and isinstance(child.args[0], ast.Constant):
            return str(child.args[0].value)
        if name in providers:
            return providers[name]
    return None


def _adapter_calls(module: _Module) -> dict[str, dict[str, set[Call]]]:
    """class -> method -> boto3 calls, for one adapter module."""
    providers: dict[str, str] = {}
    for node in module.tree.body:
        if isinstance(node, ast.FunctionDef) and (service := _client_service(node, providers)):
            providers[node.name] = service
    found: dict[str, dict[str, set[Call]]] = {}
    for node in module.tree.body:
        if isinstance(node, ast.ClassDef):
            methods = [item for item in node.body if isinstance(item, ast.FunctionDef)]
            clients = _client_attributes(methods, providers)
            found[node.name] = {
                method.name: _method_calls(method, module, clients, providers) for method in methods
            }
    return found


def _client_attributes(methods: list[ast.FunctionDef], providers: dict[str, str]) -> dict[str, str]:
    """self.<attribute> -> the service of the client assigned to it, or built by a property of
    that name (a cached_property made on first use)."""
    clients: dict[str, str] = {}
    for method in methods:
        decorators = {getattr(item, "id", getattr(item, "attr", "")) for item in method.decorator_list}
        if decorators & {"property", "cached_property"} and (service := _client_service(method, providers)):
            clients[method.name] = service
        for child in ast.walk(method):
            if isinstance(child, ast.Assign) and (service := _client_service(child.value, providers)):
                clients |= {
                    target.attr: service for target in child.targets if isinstance(target, ast.Attribute)
                }
    return clients


def _method_calls(
    method: ast.FunctionDef, module: _Module, clients: dict[str, str], providers: dict[str, str]
) -> set[Call]:
    calls: set[Call] = set()
    for child in ast.walk(method):
        if not (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)):
            continue
        receiver, name = child.func.value, child.func.attr
        service = None
        if isinstance(receiver, ast.Attribute) and receiver.attr in clients:
            service = clients[receiver.attr]
        elif isinstance(receiver, ast.Call):
            service = _client_service(receiver, providers)
        if service is None:
            continue
        if name in ("generate_presigned_url", "get_paginator"):
            # The operation is the argument: a paginator's pages, or a URL's holder, authorized as this role.
            name = str(ast.literal_eval(child.args[0]))
        operation = api_name(service, name)
        # Only queries read an index here (a scan without IndexName reads the table).
        indexes = _indexes_named(method, module) if operation == "Query" else ()
        calls |= {Call(service, operation, index) for index in indexes or (None,)}
    return calls


def _indexes_named(method: ast.FunctionDef, module: _Module) -> tuple[str, ...]:
    """The DynamoDB indexes a method's request names: IndexName=X (or "IndexName": X) with X a
    constant, or, when X is computed, every module constant named *_INDEX the method mentions."""
    for child in ast.walk(method):
        pairs: list[tuple[Any, ast.AST]] = []
        if isinstance(child, ast.keyword):
            pairs = [(child.arg, child.value)]
        elif isinstance(child, ast.Dict):
            pairs = [
                (key.value, value)
                for key, value in zip(child.keys, child.values, strict=True)
                if isinstance(key, ast.Constant)
            ]
        for key, value in pairs:
            if key != "IndexName":
                continue
            if isinstance(value, ast.Constant):
                return (str(value.value),)
            if isinstance(value, ast.Name):
                return (module.constants[value.id],)
            mentioned = {node.id for node in ast.walk(method) if isinstance(node, ast.Name)}
            return tuple(
                sorted(
                    module.constants[name]
                    for name in mentioned & module.constants.keys()
                    if name.endswith("_INDEX")
                )
            )
    return ()


def entry_modules(code_uri: str | None) -> list[Path]:
    """The entry point's own code: a function's folder, or the worker package."""
    own = WORKER_PACKAGE if code_uri is None else REPO_ROOT / code_uri
    return sorted(own.glob("*.py"))


def reach(code_uri: str | None) -> Reach:
    """Follows the entry point's code from every function of its own modules (the framework may
    call any of them: routes, record handlers) through the shared layer."""
    own = _modules(entry_modules(code_uri))
    shared = _modules(sorted(LAYER.rglob("*.py")))
    adapters = {
        module.name: _adapter_calls(module)
        for module in shared
        if module.name.startswith(str(ADAPTERS.relative_to(REPO_ROOT)))
    }
    adapter_methods = {
        cls: methods for per_module in adapters.values() for cls, methods in per_module.items()
    }
    functions, classes = _definitions(own + shared)
    module_names = {Path(module.name).stem for module in own + shared} - {"__init__"}
    result = Reach()
    seen_names: set[str] = set()
    seen_attributes: set[str] = set()
    # A method is reached through its name only once its class (or a subclass) is named somewhere
    # reached: `pool.submit(...)` in the worker does not reach Intake.submit.
    referenced: set[str] = set()
    pending: list[ast.AST] = [module.tree for module in own]
    while pending:
        node = pending.pop()
        for construction in _constructions(node, adapter_methods):
            result.constructions.add(construction)
        names, attributes = _names_used(node, module_names)
        seen_names |= names
        seen_attributes |= attributes
        pending += _reference_classes(names, classes, referenced)
        reached = [
            function for name in seen_names for function in functions.get(name, []) if function.owner is None
        ]
        reached += [
            function
            for name in seen_attributes | {"__init__"}
            for function in functions.get(name, [])
            if function.owner in referenced
        ]
        for function in reached:
            if f"{function.module}:{function.qualname}" not in result.functions:
                result.functions.add(f"{function.module}:{function.qualname}")
                pending.append(function.node)
    for construction in result.constructions:
        methods = adapter_methods[construction.adapter]
        result.calls[construction.adapter] = {
            call for method, calls in methods.items() if method in seen_attributes for call in calls
        }
    return result


def _definitions(modules: list[_Module]) -> tuple[dict[str, list[_Function]], dict[str, list[ast.ClassDef]]]:
    """Functions and methods by name, and classes by name, in these modules."""
    functions: dict[str, list[_Function]] = {}
    classes: dict[str, list[ast.ClassDef]] = {}
    for module in modules:
        for node in module.tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                functions.setdefault(node.name, []).append(_Function(node.name, node, module.name, None))
            elif isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, []).append(node)
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        functions.setdefault(item.name, []).append(
                            _Function(f"{node.name}.{item.name}", item, module.name, node.name)
                        )
    return functions, classes


def _reference_classes(
    names: set[str], classes: dict[str, list[ast.ClassDef]], referenced: set[str]
) -> list[ast.AST]:
    """Marks the classes `names` name (and their bases) referenced; returns their class-level code
    (defaults and decorators run at import; __init__ is reached on construction)."""
    code: list[ast.AST] = []
    new_classes = [cls for name in names - referenced for cls in classes.get(name, [])]
    while new_classes:
        cls = new_classes.pop()
        referenced.add(cls.name)
        code += [item for item in cls.body if not isinstance(item, ast.FunctionDef)]
        new_classes += [
            base_class
            for base in cls.bases
            if isinstance(base, ast.Name) and base.id not in referenced
            for base_class in classes.get(base.id, [])
        ]
    return code


def _constructions(node: ast.AST, adapter_methods: dict[str, Any]) -> Iterator[Construction]:
    for child in ast.walk(node):
        if not isinstance(child, ast.Call):
            continue
        name = child.func.attr if isinstance(child.func, ast.Attribute) else getattr(child.func, "id", "")
        if name in adapter_methods:
            fields = tuple(
                argument.attr if isinstance(argument, ast.Attribute) else ast.unparse(argument)
                for argument in child.args
            )
            yield Construction(name, fields)


# ---------------------------------------------------------------- the template


class Renderer:
    """Renders intrinsics to strings with fake physical names and ARNs, the same for both sides."""

    def __init__(self, resources: dict[str, Any], parameters: dict[str, Any]) -> None:
        self.resources = resources
        self.parameters = parameters

    def render(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)):
            return str(value)
        if isinstance(value, list):
            return ",".join(self.render(item) for item in value)
        ((function, argument),) = value.items()
        if function == "Ref":
            return self.ref(argument)
        if function == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self.attribute(logical_id, attribute)
        if function == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            return re.sub(
                r"\$\{([^}!]+)\}",
                lambda match: self._sub(match[1], variables),
                text,
            )
        if function == "Fn::Join":
            return str(argument[0]).join(self.render(item) for item in argument[1])
        raise AssertionError(f"cannot render {function}")

    def _sub(self, name: str, variables: dict[str, Any]) -> str:
        if name in variables:
            return self.render(variables[name])
        if "." in name:
            return self.attribute(*name.split(".", 1))
        return self.ref(name)

    def ref(self, name: str) -> str:
        pseudo = {
            "AWS::Partition": PARTITION,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": STACK,
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            value = self.parameters[name]
            return ",".join(value) if isinstance(value, list) else str(value)
        kind = self.resources[name]["Type"]
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{self.name(name)}"
        if kind == "AWS::ECS::Service":
            cluster = self.render(self.resources[name]["Properties"]["Cluster"])
            return f"arn:{PARTITION}:ecs:{REGION}:{ACCOUNT}:service/{cluster}/{self.name(name)}"
        return self.name(name)

    def name(self, logical_id: str) -> str:
        properties = self.resources[logical_id].get("Properties", {})
        for key in ("QueueName", "TableName", "BucketName", "Name", "ServiceName"):
            if key in properties:
                return self.render(properties[key])
        return logical_id.lower()

    def attribute(self, logical_id: str, attribute: str) -> str:
        if logical_id not in self.resources:
            raise AssertionError(f"{logical_id} is not in this deployment")
        kind = self.resources[logical_id]["Type"]
        name = self.name(logical_id)
        if attribute in ("QueueName", "Name"):
            return name
        if attribute == "QueueUrl":
            return self.ref(logical_id)
        if attribute == "StreamArn":
            return f"{table_arn(name)}/stream/2026-11-29T00:00:00.000"
        if attribute != "Arn":
            return f"{logical_id}.{attribute}"
        arns = {
            "AWS::SQS::Queue": f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{name}",
            "AWS::DynamoDB::Table": table_arn(name),
            "AWS::DynamoDB::GlobalTable": table_arn(name),
            "AWS::S3::Bucket": f"arn:{PARTITION}:s3:::{name}",
            "AWS::Events::EventBus": f"arn:{PARTITION}:events:{REGION}:{ACCOUNT}:event-bus/{name}",
            "AWS::KMS::Key": f"arn:{PARTITION}:kms:{REGION}:{ACCOUNT}:key/{name}",
            "AWS::Logs::LogGroup": f"arn:{PARTITION}:logs:{REGION}:{ACCOUNT}:log-group:{name}:*",
            "AWS::ECS::Cluster": f"arn:{PARTITION}:ecs:{REGION}:{ACCOUNT}:cluster/{name}",
            "AWS::IAM::Role": f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}",
        }
        return arns.get(kind, f"arn:{PARTITION}:{kind}:{REGION}:{ACCOUNT}:{name}")


def table_arn(name: str) -> str:
    return f"arn:{PARTITION}:dynamodb:{REGION}:{ACCOUNT}:table/{name}"


@dataclass(frozen=True)
class EntryPoint:
    name: str  # the function's logical id, or "worker"
    code_uri: str | None
    role: str  # the logical id of the role it runs as
    environment: dict[str, Any]


def entry_points(resources: dict[str, Any]) -> list[EntryPoint]:
    """Every function (its handler) and the worker container, with its role and environment."""
    found = []
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::Lambda::Function":
            properties = resource["Properties"]
            code_uri = _function_code_uri(logical_id)
            found.append(
                EntryPoint(
                    logical_id,
                    code_uri,
                    properties["Role"]["Fn::GetAtt"][0],
                    properties.get("Environment", {}).get("Variables", {}),
                )
            )
        if resource["Type"] == "AWS::ECS::TaskDefinition":
            properties = resource["Properties"]
            container = next(
                item for item in properties["ContainerDefinitions"] if item["Name"] == WORKER_CONTAINER
            )
            environment = {item["Name"]: item["Value"] for item in container.get("Environment", [])}
            found.append(EntryPoint(WORKER, None, properties["TaskRoleArn"]["Fn::GetAtt"][0], environment))
    return found


@cache
def _function_code_uris() -> dict[str, str]:
    from cfnlint.decode import decode

    template, _ = decode(str(REPO_ROOT / "template.yaml"))
    assert template is not None
    return {
        logical_id: str(resource["Properties"]["CodeUri"])
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def _function_code_uri(logical_id: str) -> str:
    return _function_code_uris()[logical_id]


def role_statements(resources: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """Every statement that applies to a role: inline policies (SAM policy templates expanded),
    AWS managed policies, and AWS::IAM::Policy resources attached to it."""
    properties = resources[role]["Properties"]
    statements: list[dict[str, Any]] = []
    for policy in properties.get("Policies", []):
        statements += _listed(policy["PolicyDocument"]["Statement"])
    for arn in properties.get("ManagedPolicyArns", []):
        assert arn in MANAGED_POLICIES, f"{role}: add the statements of managed policy {arn} here"
        statements += MANAGED_POLICIES[arn]
    for resource in resources.values():
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role} in resource["Properties"]["Roles"]:
            statements += _listed(resource["Properties"]["PolicyDocument"]["Statement"])
    return statements


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _pattern(text: str) -> re.Pattern[str]:
    """IAM's wildcards: * any run of characters, ? one character; case-insensitive for actions."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text))


def allows(statements: list[dict[str, Any]], renderer: Renderer, action: str, resource: str) -> bool:
    for statement in statements:
        assert "NotAction" not in statement and "NotResource" not in statement, statement
        if statement["Effect"] != "Allow":
            continue
        actions = _listed(statement["Action"])
        if not any(_pattern(item.lower()).fullmatch(action.lower()) for item in actions):
            continue
        if any(
            _pattern(renderer.render(item)).fullmatch(resource) for item in _listed(statement["Resource"])
        ):
            return True
    return False


# ---------------------------------------------------------------- what each entry point needs


# What Lambda does as the function for an event source mapping (the function's code makes none of it).
STREAM_MAPPING_ACTIONS = (
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
)
QUEUE_MAPPING_ACTIONS = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")


def mapping_needs(entry: EntryPoint, resources: dict[str, Any], renderer: Renderer) -> list[Need]:
    """What the function's event source mappings read (a stream, a queue) and where they send a
    batch they give up on, all as the function's role."""
    result: list[Need] = []
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        if (
            resource["Type"] != "AWS::Lambda::EventSourceMapping"
            or _function_of(properties, resources) != entry.name
        ):
            continue
        source = renderer.render(properties["EventSourceArn"])
        because = f"{logical_id} reads {source}"
        actions = STREAM_MAPPING_ACTIONS if ":dynamodb:" in source else QUEUE_MAPPING_ACTIONS
        result += [Need(action, source, because) for action in actions]
        destination = properties.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if destination:
            queue = renderer.render(destination)
            result.append(Need("sqs:SendMessage", queue, f"{logical_id} names failed batches in {queue}"))
            key = _queue_key(resources, renderer, _queue_url(queue))
            if key:
                result.append(
                    Need("kms:GenerateDataKey", key, f"{logical_id}'s destination is KMS-encrypted")
                )
    return result


def _function_of(mapping: dict[str, Any], resources: dict[str, Any]) -> str | None:
    """The function a mapping invokes, through the alias SAM's AutoPublishAlias puts in between."""
    target = mapping.get("FunctionName", {}).get("Ref")
    if target in resources and resources[target]["Type"] == "AWS::Lambda::Alias":
        target = resources[target]["Properties"]["FunctionName"].get("Ref")
    return target if isinstance(target, str) else None


def _queue_url(arn: str) -> str:
    return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{arn.rsplit(':', 1)[1]}"


def needs(entry: EntryPoint, resources: dict[str, Any], renderer: Renderer) -> list[Need]:
    """The actions and resources an entry point's reachable boto3 calls and its event source
    mappings need with these parameters."""
    found = reach(entry.code_uri)
    result: list[Need] = mapping_needs(entry, resources, renderer)
    for construction in sorted(found.constructions, key=str):
        if not found.calls.get(construction.adapter):
            continue  # no boto3 (the ECS agent's endpoint, say)
        values = []
        for setting in construction.fields:
            variable = setting.upper()
            assert variable in entry.environment, (
                f"{entry.name} builds {construction.adapter} from {setting}, but its environment has no {variable}"
            )
            values.append(renderer.render(entry.environment[variable]))
        for call in sorted(found.calls.get(construction.adapter, set()), key=str):
            result += _call_needs(call, values, construction.adapter, resources, renderer)
    return result


def _call_needs(
    call: Call, values: list[str], adapter: str, resources: dict[str, Any], renderer: Renderer
) -> list[Need]:
    action = ACTION_OF.get((call.service, call.operation), f"{call.service}:{call.operation}")
    because = f"{adapter} calls {call.service} {call.operation}"
    if call.service == "sqs":
        name = values[0].rsplit("/", 1)[1]
        queue = f"arn:{PARTITION}:sqs:{REGION}:{ACCOUNT}:{name}"
        found = [Need(action, queue, because)]
        key = _queue_key(resources, renderer, values[0])
        if key and action == "sqs:SendMessage":
            found.append(Need("kms:GenerateDataKey", key, because + " on a KMS-encrypted queue"))
        if key and action == "sqs:ReceiveMessage":
            found.append(Need("kms:Decrypt", key, because + " on a KMS-encrypted queue"))
        return found
    if call.service == "dynamodb":
        resource = table_arn(values[0]) + (f"/index/{call.index}" if call.index else "")
        return [Need(action, resource, because)]
    if call.service == "s3":
        bucket = f"arn:{PARTITION}:s3:::{values[0]}"
        found = [Need(action, f"{bucket}/any-key", because)]
        if action == "s3:GetObject":
            # Without ListBucket a missing key answers 403, not 404: "not found" could not be told.
            found.append(Need("s3:ListBucket", bucket, because + " (a missing key must answer 404)"))
        return found
    if call.service == "events":
        return [Need(action, f"arn:{PARTITION}:events:{REGION}:{ACCOUNT}:event-bus/{values[0]}", because)]
    if call.service == "ecs":
        cluster, service = values[:2]
        return [Need(action, f"arn:{PARTITION}:ecs:{REGION}:{ACCOUNT}:service/{cluster}/{service}", because)]
    return [Need(action, "*", because)]


def _queue_key(resources: dict[str, Any], renderer: Renderer, url: str) -> str | None:
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::SQS::Queue" and renderer.ref(logical_id) == url:
            key = resource["Properties"].get("KmsMasterKeyId")
            if isinstance(key, dict) and "Ref" in key:
                return renderer.attribute(key["Ref"], "Arn")
    return None


def missing(resources: dict[str, Any], parameters: dict[str, Any]) -> dict[str, list[Need]]:
    """entry point -> what its code needs and its role does not allow."""
    renderer = Renderer(resources, parameters)
    result = {}
    for entry in entry_points(resources):
        statements = role_statements(resources, entry.role)
        result[entry.name] = [
            need
            for need in needs(entry, resources, renderer)
            if not allows(statements, renderer, need.action, need.resource)
        ]
    return result


def static_operations() -> dict[str, set[tuple[str, str]]]:
    """entry point (function code folder name, or "worker") -> (service, API name) it can call."""
    result = {}
    for code_uri in {*(_function_code_uris().values()), None}:
        found = reach(code_uri)
        name = WORKER if code_uri is None else Path(code_uri).name
        result[name] = {(call.service, call.operation) for calls in found.calls.values() for call in calls}
    return result
