"""Check each resource's inputs the way the real providers would, before `pulumi up` does.

Nothing offline runs the providers, and these mistakes pass every SDK check:
- a misspelled nested dict key: the SDK sends it untranslated and the provider drops or rejects
  it at deploy time. Every key is checked against the SDK's own `*Args` input types;
- a value of the wrong type (a cooldown given as `"60"`, a flag as `"true"`) or outside the
  values the SDK documents for it ("Valid values are `EC2`, `FARGATE`..."): every scalar is
  checked against the SDK's type hints and documented enums;
- ECS `containerDefinitions`, an opaque JSON string: checked against botocore's ECS model
  (the API AWS itself validates against), so `readOnlyRootFilesystem` or a string port is caught;
- policy documents (`iam_policy`): IAM accepts any action or condition key string, so a
  misspelling is a grant that silently grants nothing, or a condition that never matches;
- Cloudflare rule expressions (`cloudflare_rules`): a field the rule's phase does not have.

`inspect_resource` is the `Inspector` that `run_offline` calls on every custom resource.
"""

from __future__ import annotations

import difflib
import importlib
import json
import re
import sys
import typing
from collections import abc
from dataclasses import dataclass
from functools import cache
from typing import Any, Iterable

import botocore.model
import botocore.session
from pulumi import _types
from pulumi.runtime import rpc

from .cloudflare_rules import EXPRESSION_INPUTS
from .iam_policy import IDENTITY, RESOURCE, TRUST, policy_problems
from .limits import resource_limit_problems

# Every input that holds an IAM-grammar policy document (JSON string), by resource type: the
# input and the kind of policy (identity policies name no principal, the others must).
POLICY_INPUTS = {
    "aws:iam/role:Role": ("assumeRolePolicy", TRUST),
    "aws:iam/rolePolicy:RolePolicy": ("policy", IDENTITY),
    "aws:iam/policy:Policy": ("policy", IDENTITY),
    "aws:iam/userPolicy:UserPolicy": ("policy", IDENTITY),
    "aws:iam/groupPolicy:GroupPolicy": ("policy", IDENTITY),
    "aws:kms/key:Key": ("policy", RESOURCE),
    "aws:kms/replicaKey:ReplicaKey": ("policy", RESOURCE),
    "aws:s3/bucketPolicy:BucketPolicy": ("policy", RESOURCE),
    "aws:sns/topic:Topic": ("policy", RESOURCE),
    "aws:sns/topicPolicy:TopicPolicy": ("policy", RESOURCE),
    "aws:sqs/queue:Queue": ("policy", RESOURCE),
    "aws:sqs/queuePolicy:QueuePolicy": ("policy", RESOURCE),
    "aws:ecr/repositoryPolicy:RepositoryPolicy": ("policy", RESOURCE),
    "aws:ecr/registryPolicy:RegistryPolicy": ("policy", RESOURCE),
    "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate": ("repositoryPolicy", RESOURCE),
    "aws:ec2/vpcEndpoint:VpcEndpoint": ("policy", RESOURCE),
    "aws:secretsmanager/secret:Secret": ("policy", RESOURCE),
    "aws:secretsmanager/secretPolicy:SecretPolicy": ("policy", RESOURCE),
    "aws:cloudwatch/logResourcePolicy:LogResourcePolicy": ("policyDocument", RESOURCE),
    "aws:cloudwatch/eventBusPolicy:EventBusPolicy": ("policy", RESOURCE),
    "aws:dynamodb/resourcePolicy:ResourcePolicy": ("policy", RESOURCE),
    "aws:efs/fileSystemPolicy:FileSystemPolicy": ("policy", RESOURCE),
}
ROLE = "aws:iam/role:Role"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"


def inspect_resource(type_token: str, name: str, inputs: dict) -> list[str]:
    """The problems the real provider would have with `inputs` (engine names, plain JSON)."""
    problems: list[str] = []
    provider = type_token.startswith("pulumi:providers:")
    _check_object(inputs, _args_class(type_token), "", problems, provider)
    if type_token == TASK_DEFINITION:
        problems += container_definition_problems(rpc.unwrap_rpc_secret(inputs.get("containerDefinitions")))
    if type_token in POLICY_INPUTS:
        key, kind = POLICY_INPUTS[type_token]
        problems += _policy_problems(inputs.get(key), key, kind)
    if type_token == ROLE:   # a role's inline policies are identity policies too
        for i, inline in enumerate(inputs.get("inlinePolicies") or []):
            if isinstance(inline, dict):
                problems += _policy_problems(inline.get("policy"), f"inlinePolicies[{i}].policy", IDENTITY)
    if type_token in EXPRESSION_INPUTS:
        problems += EXPRESSION_INPUTS[type_token](inputs)
    return problems + resource_limit_problems(type_token, inputs, name)


def prepare(type_tokens: Iterable[str]) -> None:
    """Compile the input shapes of these types now instead of at their first resource: a worker
    forked from a process that did this inspects from its first region at full speed."""
    seen: set[type] = set()
    pending = [_args_class(token) for token in type_tokens]
    while pending:
        args_cls = pending.pop()
        if args_cls not in seen:
            seen.add(args_cls)
            pending += [nested for shape in _fields(args_cls)[0].values() for nested in _args_classes_in(shape)]


def _args_classes_in(shape: Shape) -> list[type]:
    if isinstance(shape, type):
        return [shape]
    if isinstance(shape, tuple):
        members = shape[1] if shape[0] == "union" else (shape[1],)
        return [nested for member in members for nested in _args_classes_in(member)]
    return []


def _policy_problems(text: Any, key: str, kind: str) -> list[str]:
    text = rpc.unwrap_rpc_secret(text)
    return [] if text == rpc.UNKNOWN else policy_problems(text, key, kind)


# -- SDK shape -------------------------------------------------------------------------------

@cache
def resource_class(type_token: str) -> type:
    """`aws:lambda/function:Function` -> `pulumi_aws.lambda_.Function`, through the token -> class
    registry the SDK itself uses to rehydrate resources (module names differ from the token's)."""
    pkg, mod, cls_name = type_token.split(":")
    provider = type_token.startswith("pulumi:providers:")
    importlib.import_module(f"pulumi_{cls_name if provider else pkg}")   # fills the registry
    if provider:
        info = rpc.get_resource_package(cls_name, "").pkg_info
        fqn, cls_name = info["fqn"], info["class"]
    else:
        info = rpc.get_resource_module(pkg, mod, "").mod_info
        fqn, cls_name = info["fqn"], info["classes"][type_token]
    return getattr(importlib.import_module(fqn), cls_name)


@cache
def _args_class(type_token: str) -> type:
    """`aws:ecs/taskDefinition:TaskDefinition` -> `pulumi_aws.ecs.TaskDefinitionArgs`."""
    resource = resource_class(type_token)
    module = sys.modules[resource.__module__]
    # Codegen names it `XInitArgs` when a nested input type already took `XArgs`.
    return getattr(module, f"{resource.__name__}InitArgs", None) or getattr(module, f"{resource.__name__}Args")


# What an input accepts, compiled once from the SDK's type hints: a `Scalar`, None (`Any`, an
# asset: not checked), an `*Args` class (an object), or ("list" | "map" | "union", member
# shape(s)), e.g. `str | Sequence[str]` or `str | PolicyDocumentArgs` for the IAM inputs.
Shape = Any


@dataclass(frozen=True)
class Scalar:
    kind: type                                 # str, int, float or bool
    allowed: frozenset[str] | None = None      # the values the SDK documents, if it lists them


# How a problem names each scalar kind, and what plain JSON value fits it. Numbers may come
# back from RPC serialization as floats: 3.0 is a fine int, "3" is not.
_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}
_FITS = {str: lambda v: isinstance(v, str), bool: lambda v: isinstance(v, bool),
         int: lambda v: not isinstance(v, bool) and (isinstance(v, int) or
                                                     (isinstance(v, float) and v.is_integer())),
         float: lambda v: not isinstance(v, bool) and isinstance(v, (int, float))}


@cache
def _fields(args_cls: type) -> tuple[dict[str, Shape], frozenset[str], dict[str, str]]:
    """(wire name -> shape, required wire names, Python name -> wire name) of an `*Args` type."""
    py_to_wire = _types.input_type_py_to_pulumi_names(args_cls)
    documented = {py_to_wire.get(py, py): _documented_values(getattr(args_cls, py, None).__doc__)
                  for py in py_to_wire if isinstance(getattr(args_cls, py, None), property)}
    shapes = {name: _with_values(_shape(hint), documented.get(name))
              for name, hint in _types.input_type_types(args_cls).items()}
    return shapes, _types._required_property_names(args_cls), py_to_wire


@cache
def _shape(hint: Any) -> Shape:
    if _types.is_input_type(hint):
        return hint
    if isinstance(hint, type) and issubclass(hint, (str, int, float)):
        # An SDK enum (`str | InstanceType`) is a convenience list: the SDK takes any string.
        return Scalar(next(kind for kind in (bool, str, int, float) if issubclass(hint, kind)))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, abc.Sequence):
        return ("list", _shape(args[0]))
    if origin in (dict, abc.Mapping):
        return ("map", _shape(args[1]))
    if not _types._is_union_type(hint):
        return None
    # Drop the `Input` plumbing: Awaitable[T], Output[T], None, TypedDict alternatives.
    members = tuple(dict.fromkeys(_shape(m) for m in args
                                  if m is not type(None) and not _types._is_plumbing_arg(m)))
    if len(members) == 1:
        return members[0]
    return None if None in members else ("union", members)


def _with_values(shape: Shape, allowed: frozenset[str] | None) -> Shape:
    """`shape` restricted to the documented `allowed` values: a string, or a list of strings."""
    if not allowed:
        return shape
    if shape == Scalar(str):
        return Scalar(str, allowed)
    if isinstance(shape, tuple) and shape[0] == "list" and shape[1] == Scalar(str):
        return ("list", Scalar(str, allowed))
    return shape


# "Valid values are `EC2`, `FARGATE`, and `EXTERNAL`." (AWS), "Available values: "geo", "random"."
# (Cloudflare). Docstrings are prose, so only what is surely a closed list is checked: every such
# phrase of the docstring must end its sentence with quoted values, none of them a pattern
# (`2XX`, `["arm64"]`, `ALLOW-FROM https://...`). Not checked: "valid values are `host` (or ...),
# or any attribute", "Valid values include ...", "For ALBs, valid values are `HTTP` and `HTTPS`,
# with a default...", or a list followed by "`email` and `http` are also valid".
_VALUES_INTRO = re.compile(r"\b(?:valid|available|allowed|possible|supported) values\b(?: at this time)?"
                           r"(?: for this (?:parameter|argument))?(?P<lead> are:?|:)?\s*", re.IGNORECASE)
_QUOTED = re.compile(r"`([^`]+)`|\"([^\"]+)\"")
_SEPARATOR = re.compile(r"\s*(?:,\s*(?:and|or)?|and|or)\s*")
_SENTENCE_END = re.compile(r"\.(\s|$)|\s*$")
_PATTERN_LIKE = re.compile(r"XX|[\[\]{}<>*\s]|\.\.\.")
_OPEN_ENDED = re.compile(r"\b(?:also|are all|other) (?:valid|supported|accepted)\b|comma[- ]separated",
                         re.IGNORECASE)


@cache
def _documented_values(doc: str | None) -> frozenset[str] | None:
    """The values a property's docstring lists as its only valid ones, or None."""
    intros = list(_VALUES_INTRO.finditer(doc or ""))
    if not intros or _OPEN_ENDED.search(doc):
        return None
    values: set[str] = set()
    for intro in intros:
        found = _quoted_list(doc, intro.end()) if intro.group("lead") else None
        if not found or any(_PATTERN_LIKE.search(v) for v in found):
            return None
        values.update(found)
    return frozenset(values)


def _quoted_list(doc: str, at: int) -> list[str] | None:
    """The quoted values listed from `at` to the end of the sentence, or None if the sentence
    goes on after them."""
    found = []
    while quoted := _QUOTED.match(doc, at):
        found.append(quoted.group(1).strip('"') if quoted.group(1) else _underscores(quoted.group(2)))
        at = quoted.end()
        separator = _SEPARATOR.match(doc, at)
        if not separator or not _QUOTED.match(doc, separator.end()):
            break
        at = separator.end()
    return found if found and _SENTENCE_END.match(doc, at) else None


def _underscores(value: str) -> str:
    """Cloudflare's docstrings render `_` inside words as `*` ("ddos*l4"): undo it."""
    return re.sub(r"(?<=\w)\*(?=\w)", "_", value)


def _check(value: Any, shape: Shape, path: str, problems: list[str], provider: bool) -> None:
    value = rpc.unwrap_rpc_secret(value)   # a secret is checked like any value
    if shape is None or value is None or value == rpc.UNKNOWN:
        return
    if provider and isinstance(value, str) and (value.startswith(("[", "{")) or
                                                 (isinstance(shape, Scalar) and shape.kind is not str)):
        # Provider config reaches the engine as JSON text (the SDK applies `to_json`).
        value = _json_or_text(value)
    if isinstance(shape, Scalar):
        problems += _scalar_problems(value, shape, path)
    elif isinstance(shape, type):
        if not isinstance(value, dict):
            problems.append(f"expected an object at {path}, got {type(value).__name__}")
        else:
            _check_object(value, shape, path, problems, provider)
    elif shape[0] == "union":
        _check_union(value, shape[1], path, problems, provider)
    elif shape[0] == "list":
        if not isinstance(value, list):
            problems.append(f"expected a list at {path}, got {type(value).__name__}")
        else:
            for i, item in enumerate(value):
                _check(item, shape[1], f"{path}[{i}]", problems, provider)
    elif not isinstance(value, dict):
        problems.append(f"expected a map at {path}, got {type(value).__name__}")
    else:
        for key, item in value.items():
            _check(item, shape[1], f"{path}[{key}]", problems, provider)


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _scalar_problems(value: Any, shape: Scalar, path: str) -> list[str]:
    if not _FITS[shape.kind](value):
        return [f"{path} must be {_KIND_NAMES[shape.kind]}, got {json.dumps(value)}"]
    if shape.allowed and value not in shape.allowed:
        listed = ", ".join(sorted(shape.allowed))
        return [f"{path} is {value!r}, not one of {listed} (the SDK's documented values)"]
    return []


def _check_union(value: Any, members: tuple[Shape, ...], path: str, problems: list[str],
                 provider: bool) -> None:
    """Fine if `value` fits a member; else the closest miss among the members of its own kind
    (an object's misspelled key, rather than "must be a string")."""
    attempts = []
    for member in members:
        found: list[str] = []
        _check(value, member, path, found, provider)
        if not found:
            return
        attempts.append((_kind(member) != _kind(value), len(found), found))
    problems += min(attempts, key=lambda attempt: attempt[:2])[2]


def _kind(shape_or_value: Any) -> str:
    """"object", "list" or "scalar", for a shape or a plain JSON value."""
    if isinstance(shape_or_value, (dict, type)) and not isinstance(shape_or_value, Scalar):
        return "object"
    if isinstance(shape_or_value, tuple):
        return "object" if shape_or_value[0] == "map" else shape_or_value[0]
    return "list" if isinstance(shape_or_value, list) else "scalar"


def _check_object(value: dict, args_cls: type, path: str, problems: list[str], provider: bool) -> None:
    shapes, required, py_to_wire = _fields(args_cls)
    present = set()
    for key, item in value.items():
        # Provider config JSON carries the Python names of plain dicts; the bridge maps both.
        wire = py_to_wire.get(key, key) if provider else key
        present.add(wire)
        if wire not in shapes:
            problems.append(_unknown_key(key, path, shapes))
        else:
            _check(item, shapes[wire], f"{path}.{wire}" if path else wire, problems, provider)
    at = f" at {path}" if path else ""
    problems += [f"missing required key '{key}'{at}" for key in sorted(required - present)]


def _unknown_key(key: str, path: str, known: abc.Collection[str]) -> str:
    """`unknown key 'x' at path (known: ...)`; past a dozen known keys, only the likeliest ones."""
    at = f" at {path}" if path else ""
    if len(known) <= 12:
        return f"unknown key '{key}'{at} (known: {', '.join(sorted(known))})"
    close = difflib.get_close_matches(key, known, n=3)
    if not close:
        return f"unknown key '{key}'{at} (none of its {len(known)} keys is close)"
    return f"unknown key '{key}'{at} (did you mean: {', '.join(close)})"


# -- ECS container definitions ---------------------------------------------------------------

@cache
def _container_definition_shape() -> botocore.model.StructureShape:
    ecs = botocore.session.get_session().get_service_model("ecs")
    register = ecs.operation_model("RegisterTaskDefinition")
    return register.input_shape.members["containerDefinitions"].member


def container_definition_problems(text: Any) -> list[str]:
    """Problems of an ECS `containerDefinitions` JSON string against the ECS API's model."""
    if not isinstance(text, str) or text == rpc.UNKNOWN:
        return []
    try:
        containers = json.loads(text)
    except json.JSONDecodeError as error:
        return [f"containerDefinitions is not JSON: {error}"]
    if not isinstance(containers, list):
        return [f"containerDefinitions must be a JSON list, got {type(containers).__name__}"]
    problems: list[str] = []
    for i, container in enumerate(containers):
        label = container.get("name", i) if isinstance(container, dict) else i
        _check_shape(container, _container_definition_shape(), f"containerDefinitions[{label}]", problems)
    return problems


# botocore type name -> the JSON (Python) types it accepts; bool is excluded from numbers below.
_JSON_TYPES = {"string": str, "blob": str, "timestamp": (str, int, float), "boolean": bool,
               "integer": int, "long": int, "float": (int, float), "double": (int, float),
               "list": list, "structure": dict, "map": dict}


def _check_shape(value: Any, shape: botocore.model.Shape, path: str, problems: list[str]) -> None:
    expected = _JSON_TYPES[shape.type_name]
    if not isinstance(value, expected) or (isinstance(value, bool) and shape.type_name != "boolean"):
        problems.append(f"{path} must be {shape.type_name}, got {json.dumps(value)}")
    elif shape.type_name == "string" and shape.enum and value not in shape.enum:
        problems.append(f"{path} is {value!r}, not one of {', '.join(shape.enum)}")
    elif shape.type_name == "list":
        for i, item in enumerate(value):
            _check_shape(item, shape.member, f"{path}[{i}]", problems)
    elif shape.type_name == "map":
        for key, item in value.items():
            _check_shape(item, shape.value, f"{path}[{key}]", problems)
    elif shape.type_name == "structure":
        for key, item in value.items():
            if key not in shape.members:
                problems.append(_unknown_key(key, path, shape.members))
            else:
                _check_shape(item, shape.members[key], f"{path}.{key}", problems)
        problems += [f"missing required key '{key}' at {path}"
                     for key in shape.required_members if key not in value]
