"""How a control is declared: a real `pulumi_policy` policy plus the risks it mitigates.

The CrossGuard pack (`policies/__main__.py`) serves the `policy` objects as they are, and
`estate check` evaluates the very same objects offline: there is one implementation of
every rule. The risks become the policy's `tags`, so they travel with it to Pulumi too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterable, Union

from pulumi_policy import (EnforcementLevel, PolicyConfigSchema, ResourceValidationArgs, ResourceValidationPolicy,
                           Severity, StackValidationArgs, StackValidationPolicy)
from pulumi_policy.proxy import UnknownValueError


class Risk(str, Enum):
    """The seed's threat model (design.md §1)."""
    CONFUSED_DEPUTY = "confused deputy"
    CODE_INTEGRITY = "code integrity"
    TOOL_INJECTION = "tool injection"
    COMMAND_EXECUTION = "command execution"
    PROMPT_INJECTION = "prompt injection / abuse"
    DATA_LOSS = "data loss"
    AVAILABILITY = "availability"


Policy = Union[ResourceValidationPolicy, StackValidationPolicy]
Report = Callable[..., None]


@dataclass(frozen=True)
class Control:
    policy: Policy
    risks: tuple[Risk, ...]

    @property
    def name(self) -> str:
        return self.policy.name


CONTROLS: list[Control] = []


def resource_policy(name: str, description: str, *, risks: Iterable[Risk], severity: Severity = Severity.HIGH,
                    remediation: str = "", config: dict[str, dict] | None = None) -> Callable:
    """Declare `fn(args, report)` as a mandatory resource policy mitigating `risks`."""
    def register(fn: Callable[[ResourceValidationArgs, Report], None]) -> Callable:
        risk_tuple = tuple(risks)
        CONTROLS.append(Control(ResourceValidationPolicy(
            name=name, description=description, validate=fn, enforcement_level=EnforcementLevel.MANDATORY,
            severity=severity, tags=[r.value for r in risk_tuple], remediation_steps=remediation or None,
            config_schema=_schema(config)),
            risk_tuple))
        return fn
    return register


def stack_policy(name: str, description: str, *, risks: Iterable[Risk], severity: Severity = Severity.HIGH,
                 remediation: str = "", config: dict[str, dict] | None = None) -> Callable:
    """Declare `fn(args, report)` as a mandatory stack policy mitigating `risks`."""
    def register(fn: Callable[[StackValidationArgs, Report], None]) -> Callable:
        risk_tuple = tuple(risks)
        CONTROLS.append(Control(StackValidationPolicy(
            name=name, description=description, validate=fn, enforcement_level=EnforcementLevel.MANDATORY,
            severity=severity, tags=[r.value for r in risk_tuple], remediation_steps=remediation or None,
            config_schema=_schema(config)),
            risk_tuple))
        return fn
    return register


def _schema(properties: dict[str, dict] | None) -> PolicyConfigSchema | None:
    """The JSON schema of a policy's config: Pulumi refuses pack config a policy does not declare."""
    return PolicyConfigSchema(properties=properties) if properties else None


# Config every environment-dependent policy accepts, for stacks whose resources carry no tag.
ENVIRONMENT_CONFIG = {"environment": {"type": "string", "enum": ["dev", "staging", "prod"]}}


# -- reading props as policies see them -----------------------------------------------------------

def document(value: Any) -> Mapping | None:
    """A policy document given as a JSON string or an object; None when absent or unreadable.
    Props arrive wrapped in pulumi_policy's proxy, whose dicts and lists are a Mapping and a
    Sequence, not a dict and a list."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, Mapping) else None


def as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]


def as_mapping(value: Any) -> Mapping:
    """A nested object of the props, or an empty one when absent (or not an object)."""
    return value if isinstance(value, Mapping) else {}


def statements(policy: Any) -> list[Mapping]:
    """The statements of an IAM-style policy document, whatever shape it came in."""
    doc = document(policy)
    return [s for s in as_list(doc.get("Statement")) if isinstance(s, Mapping)] if doc else []


def allows(policy: Any) -> list[Mapping]:
    """The Allow statements of a policy document: Deny statements only ever narrow access."""
    return [s for s in statements(policy) if s.get("Effect") == "Allow"]


def grants_everyone(statement: Mapping) -> bool:
    """Whether a statement's principal is anyone at all: `"*"`, `{"AWS": "*"}` (or a list holding
    `"*"`), or a NotPrincipal, which names everyone except a few."""
    if "NotPrincipal" in statement:
        return True
    principal = statement.get("Principal")
    if isinstance(principal, Mapping):
        principal = principal.get("AWS")
    return "*" in as_list(principal)


def pinned_conditions(statement: Mapping) -> dict[str, list]:
    """Condition key (lower case: IAM ignores case) -> the values a statement's condition pins it
    to. Pins nothing: `Null`, `...IfExists` (they pass requests without the key), negated operators
    (`StringNotEquals`...) and a "*" value."""
    pinned: dict[str, list] = {}
    condition = statement.get("Condition")
    for operator, block in condition.items() if isinstance(condition, Mapping) else ():
        if not isinstance(block, Mapping) or operator == "Null" or operator.endswith("IfExists") \
                or "Not" in operator:
            continue
        for key, value in block.items():
            if "*" not in as_list(value):
                pinned.setdefault(key.lower(), []).extend(as_list(value))
    return pinned


TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"


def task_containers(args: ResourceValidationArgs, report: Report) -> list[Mapping]:
    """Every container (sidecars included) of an ECS task definition, none for another resource.
    `containerDefinitions` is a JSON string of the ECS API's camelCase objects; one that cannot be
    read is reported, never passed."""
    if args.resource_type != TASK_DEFINITION:
        return []
    value = args.props.get("containerDefinitions")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if isinstance(value, Sequence) and not isinstance(value, str) and all(isinstance(c, Mapping) for c in value):
        return list(value)
    report(f"Task definition {args.name}: containerDefinitions is not a JSON list of containers, "
           "so it cannot be checked")
    return []


def tag(props: Any, key: str) -> str | None:
    tags = props.get("tags") if hasattr(props, "get") else None
    return tags.get(f"mcp-estate:{key}") if hasattr(tags, "get") else None


def environment(args: ResourceValidationArgs) -> str | None:
    """The resource's environment: its `mcp-estate:environment` tag, else the policy's `environment` config."""
    return tag(args.props, "environment") or args.get_config().get("environment")


UNKNOWN = object()   # truthy: a value preview cannot know is still a value


def lookup(props: Any, key: str) -> Any:
    """`props.get(key)`, or UNKNOWN where preview cannot know the value yet: a reference to another
    resource's output (a key ARN, a monitor id), which `pulumi up` fills in. Reading such a value
    through the proxy raises, and the whole policy would not run during preview."""
    try:
        return props.get(key) if hasattr(props, "get") else None
    except UnknownValueError:
        return UNKNOWN
