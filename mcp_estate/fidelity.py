"""Check each resource's inputs the way the real providers would, before `pulumi up` does.

Nothing offline runs the providers, and three kinds of mistakes pass every SDK check:
- a misspelled nested dict key: the SDK sends it untranslated and the provider drops or rejects
  it at deploy time. Every key is checked against the SDK's own `*Args` input types;
- ECS `containerDefinitions`, an opaque JSON string: checked against botocore's ECS model
  (the API AWS itself validates against), so `readOnlyRootFilesystem` or a string port is caught;
- IAM policy documents: IAM accepts any action string, so an action AWS does not define (or a
  wildcard matching none) is a grant that silently grants nothing.

`inspect_resource` is the `Inspector` that `run_offline` calls on every custom resource.
"""

from __future__ import annotations

import difflib
import importlib
import json
import sys
import typing
from collections import abc
from functools import cache
from typing import Any

import botocore.model
import botocore.session
from pulumi import _types
from pulumi.runtime import rpc

from .iam_actions import matches_no_action, unknown_actions

# Every input that holds an IAM-grammar policy document (JSON string), by resource type.
POLICY_INPUTS = {
    "aws:iam/role:Role": "assumeRolePolicy",
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/policy:Policy": "policy",
    "aws:kms/key:Key": "policy",
    "aws:kms/replicaKey:ReplicaKey": "policy",
    "aws:s3/bucketPolicy:BucketPolicy": "policy",
    "aws:sns/topicPolicy:TopicPolicy": "policy",
    "aws:ecr/repositoryPolicy:RepositoryPolicy": "policy",
}
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
STATEMENT_KEYS = frozenset({"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction",
                            "Resource", "NotResource", "Condition"})


def inspect_resource(type_token: str, name: str, inputs: dict) -> list[str]:
    """The problems the real provider would have with `inputs` (engine names, plain JSON)."""
    problems: list[str] = []
    provider = type_token.startswith("pulumi:providers:")
    _check_object(inputs, _args_class(type_token), "", problems, provider)
    if type_token == TASK_DEFINITION:
        problems += container_definition_problems(rpc.unwrap_rpc_secret(inputs.get("containerDefinitions")))
    if type_token in POLICY_INPUTS:
        key = POLICY_INPUTS[type_token]
        problems += policy_problems(rpc.unwrap_rpc_secret(inputs.get(key)), key)
    return problems


# -- SDK shape -------------------------------------------------------------------------------

@cache
def _args_class(type_token: str) -> type:
    """`aws:ecs/taskDefinition:TaskDefinition` -> `pulumi_aws.ecs.TaskDefinitionArgs`, through the
    token -> class registry the SDK itself uses to rehydrate resources."""
    pkg, mod, cls_name = type_token.split(":")
    provider = type_token.startswith("pulumi:providers:")
    importlib.import_module(f"pulumi_{cls_name if provider else pkg}")   # fills the registry
    if provider:
        info = rpc.get_resource_package(cls_name, "").pkg_info
        fqn, cls_name = info["fqn"], info["class"]
    else:
        info = rpc.get_resource_module(pkg, mod, "").mod_info
        fqn, cls_name = info["fqn"], info["classes"][type_token]
    module = sys.modules[getattr(importlib.import_module(fqn), cls_name).__module__]
    # Codegen names it `XInitArgs` when a nested input type already took `XArgs`.
    return getattr(module, f"{cls_name}InitArgs", None) or getattr(module, f"{cls_name}Args")


# What an input accepts, compiled once from the SDK's type hints: None (a scalar or `Any`: not
# checked), an `*Args` class (an object), or ("list" | "map" | "union", member shape(s)), e.g.
# `str | Sequence[str]` or `str | PolicyDocumentArgs` for the IAM inputs.
Shape = Any


@cache
def _fields(args_cls: type) -> tuple[dict[str, Shape], frozenset[str], dict[str, str]]:
    """(wire name -> shape, required wire names, Python name -> wire name) of an `*Args` type."""
    shapes = {name: _shape(hint) for name, hint in _types.input_type_types(args_cls).items()}
    return (shapes, _types._required_property_names(args_cls),
            _types.input_type_py_to_pulumi_names(args_cls))


@cache
def _shape(hint: Any) -> Shape:
    if _types.is_input_type(hint):
        return hint
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, abc.Sequence):
        return ("list", _shape(args[0]))
    if origin in (dict, abc.Mapping):
        return ("map", _shape(args[1]))
    if not _types._is_union_type(hint):
        return None
    # Drop the `Input` plumbing: Awaitable[T], Output[T], None, TypedDict alternatives.
    members = tuple(_shape(m) for m in args if m is not type(None) and not _types._is_plumbing_arg(m))
    if len(members) == 1:
        return members[0]
    return ("union", members) if any(members) else None   # `str | SomeEnum` is a scalar


def _check(value: Any, shape: Shape, path: str, problems: list[str], provider: bool) -> None:
    value = rpc.unwrap_rpc_secret(value)   # a secret is checked like any value
    if shape is None or value is None or value == rpc.UNKNOWN:
        return
    if provider and isinstance(value, str) and value.startswith(("[", "{")):
        # Provider config reaches the engine as JSON text (the SDK applies `to_json`).
        value = json.loads(value)
    if isinstance(shape, type):
        if not isinstance(value, dict):
            problems.append(f"expected an object at {path}, got {type(value).__name__}")
        else:
            _check_object(value, shape, path, problems, provider)
        return
    kind, member = shape
    if kind == "union":
        _check_union(value, member, path, problems, provider)
    elif kind == "list":
        if not isinstance(value, list):
            problems.append(f"expected a list at {path}, got {type(value).__name__}")
        else:
            for i, item in enumerate(value):
                _check(item, member, f"{path}[{i}]", problems, provider)
    elif not isinstance(value, dict):
        problems.append(f"expected a map at {path}, got {type(value).__name__}")
    else:
        for key, item in value.items():
            _check(item, member, f"{path}[{key}]", problems, provider)


def _check_union(value: Any, members: tuple[Shape, ...], path: str, problems: list[str],
                 provider: bool) -> None:
    """Fine if `value` fits a member (a scalar one takes any scalar); else the closest miss."""
    if None in members and not isinstance(value, (dict, list)):
        return
    attempts = []
    for member in filter(None, members):
        found: list[str] = []
        _check(value, member, path, found, provider)
        if not found:
            return
        attempts.append(found)
    problems += min(attempts, key=len)


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


# -- IAM policy documents --------------------------------------------------------------------

def policy_problems(text: Any, key: str) -> list[str]:
    """Problems of an IAM-grammar policy document (JSON string) held in input `key`."""
    if not isinstance(text, str) or text == rpc.UNKNOWN:
        return []
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        return [f"{key} is not JSON: {error}"]
    if not isinstance(document, dict):
        return [f"{key} must be a JSON object, got {type(document).__name__}"]
    problems = []
    if document.get("Version") != "2012-10-17":
        # Without it IAM assumes 2008-10-17, where `${aws:...}` policy variables are plain text.
        problems.append(f"{key}.Version is {document.get('Version')!r}, not '2012-10-17'")
    statements = document.get("Statement")
    if isinstance(statements, dict):   # IAM accepts a single statement object
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        return problems + [f"{key}.Statement must be a statement or a non-empty list of them"]
    for i, statement in enumerate(statements):
        label = statement.get("Sid", i) if isinstance(statement, dict) else i
        problems += _statement_problems(statement, f"{key}.Statement[{label}]")
    return problems


def _statement_problems(statement: Any, path: str) -> list[str]:
    if not isinstance(statement, dict):
        return [f"{path} must be an object"]
    problems = [_unknown_key(k, path, STATEMENT_KEYS) for k in statement if k not in STATEMENT_KEYS]
    if statement.get("Effect") not in ("Allow", "Deny"):
        problems.append(f"{path}.Effect is {statement.get('Effect')!r}, not 'Allow' or 'Deny'")
    kinds = [k for k in ("Action", "NotAction") if k in statement]
    if len(kinds) != 1:
        return problems + [f"{path} needs exactly one of Action, NotAction"]
    actions = statement[kinds[0]]
    actions = [actions] if isinstance(actions, str) else actions
    if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
        return problems + [f"{path}.{kinds[0]} must be a string or a list of strings"]
    exact = [a for a in actions if "*" not in a and "?" not in a]
    problems += [f"{path}.{kinds[0]}: '{a}' is not an AWS IAM action" for a in unknown_actions(exact)]
    problems += [f"{path}.{kinds[0]}: '{a}' matches no AWS IAM action"
                 for a in actions if a not in exact and matches_no_action(a)]
    return problems
