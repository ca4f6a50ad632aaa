"""How a control is declared: a real `pulumi_policy` policy plus the risks it mitigates.

The CrossGuard pack (`policies/__main__.py`) serves the `policy` objects as they are, and
`estate check` evaluates the very same objects offline: there is one implementation of
every rule. The risks become the policy's `tags`, so they travel with it to Pulumi too.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterable, Union

from pulumi_policy import (EnforcementLevel, PolicyConfigSchema, ResourceValidationArgs, ResourceValidationPolicy,
                           Severity, StackValidationPolicy)
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


def _declare(kind: type, name: str, description: str, risks: Iterable[Risk], severity: Severity,
             remediation: str, config: dict[str, dict] | None) -> Callable:
    """A decorator registering `fn(args, report)` as a mandatory policy of `kind` mitigating `risks`."""
    def register(fn: Callable) -> Callable:
        risk_tuple = tuple(risks)
        CONTROLS.append(Control(kind(
            name=name, description=description, validate=fn, enforcement_level=EnforcementLevel.MANDATORY,
            severity=severity, tags=[r.value for r in risk_tuple], remediation_steps=remediation or None,
            config_schema=_schema(config)), risk_tuple))
        return fn
    return register


def resource_policy(name: str, description: str, *, risks: Iterable[Risk], severity: Severity = Severity.HIGH,
                    remediation: str = "", config: dict[str, dict] | None = None) -> Callable:
    """Declare `fn(args: ResourceValidationArgs, report)` as a mandatory resource policy."""
    return _declare(ResourceValidationPolicy, name, description, risks, severity, remediation, config)


def stack_policy(name: str, description: str, *, risks: Iterable[Risk], severity: Severity = Severity.HIGH,
                 remediation: str = "", config: dict[str, dict] | None = None) -> Callable:
    """Declare `fn(args: StackValidationArgs, report)` as a mandatory stack policy."""
    return _declare(StackValidationPolicy, name, description, risks, severity, remediation, config)


def _schema(properties: dict[str, dict] | None) -> PolicyConfigSchema | None:
    """The JSON schema of a policy's config: Pulumi (and `estate check`) refuse pack config whose
    declared parameters do not match it; parameters a policy does not declare are passed through."""
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


# Condition keys whose values are ARNs: one is pinned when its account is, whatever follows.
ARN_KEYS = frozenset({"aws:sourcearn", "aws:principalarn", "aws:sourcevpcarn", "s3:dataaccesspointarn",
                      "ec2:subnet", "ec2:vpc"})


def pinned_conditions(statement: Mapping) -> dict[str, list]:
    """Condition key (lower case: IAM ignores case) -> the values a statement's condition pins it
    to. Pins nothing: `Null`, `...IfExists` and `ForAllValues:` (they pass requests without the
    key), negated operators (`StringNotEquals`...), and a key with any value that is a pattern
    (`*`, `?`) or a policy variable (`${aws:username}`); an ARN-valued key (aws:SourceArn...) is
    pinned by an ARN whose account is literal (`arn:aws:ecs:eu-west-1:111122223333:*`), and
    aws:SourceIp is not pinned by ranges that together cover the internet."""
    pinned: dict[str, list] = {}
    condition = statement.get("Condition")
    for operator, block in condition.items() if isinstance(condition, Mapping) else ():
        if not isinstance(block, Mapping) or operator == "Null" or operator.endswith("IfExists") \
                or "Not" in operator or operator.lower().startswith("forallvalues:"):
            continue
        for key, value in block.items():
            values = as_list(value)
            if values and all(_pins(key.lower(), v) for v in values) \
                    and not (key.lower() == "aws:sourceip" and is_the_internet(values)):
                pinned.setdefault(key.lower(), []).extend(values)
    return pinned


def _pins(key: str, value: Any) -> bool:
    text = str(value)
    if key in ARN_KEYS:
        fields = text.split(":")
        return len(fields) >= 6 and fields[0] == "arn" and _literal(fields[4]) and fields[4] != ""
    return _literal(text)


def _literal(text: str) -> bool:
    return not any(mark in text for mark in ("*", "?", "${"))


# Every public IPv6 address is in 2000::/3 (global unicast): a range holding it is the internet.
GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")


def is_the_internet(cidrs: Iterable[Any]) -> bool:
    """Whether the address ranges together cover the internet however they are split or spelled:
    all of IPv4 (`0.0.0.0/0`, `0.0.0.0/1` + `128.0.0.0/1`, `10.0.0.0/0`) or all public IPv6
    (`::/0`, `2000::/3`, `2000::/4` + `3000::/4`). Values that are not ranges are ignored."""
    networks: dict[int, list] = {4: [], 6: []}
    for cidr in cidrs:
        try:
            network = ipaddress.ip_network(str(cidr).strip(), strict=False)
        except ValueError:
            continue
        networks[network.version].append(network)
    return any(n.prefixlen == 0 for n in ipaddress.collapse_addresses(networks[4])) \
        or any(GLOBAL_UNICAST.subnet_of(n) for n in ipaddress.collapse_addresses(networks[6]))


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


def environment(args: ResourceValidationArgs, report: Report) -> str | None:
    """The resource's environment: the policy's `environment` config (each shipped pack config sets
    it for its stack), else the resource's `mcp-estate:environment` tag. A tag that disagrees with
    the config is reported: a prod resource must not pass as dev by its tag, nor the other way."""
    configured, tagged = args.get_config().get("environment"), tag(args.props, "environment")
    if configured and tagged and tagged != configured:
        report(f"{args.name} is tagged mcp-estate:environment={tagged}, but the pack config checks a {configured} "
               f"stack: correct the tag, or check it with the {tagged} pack config")
    return configured or tagged


UNKNOWN = object()   # truthy: a value preview cannot know is still a value


def lookup(props: Any, key: str) -> Any:
    """`props.get(key)`, or UNKNOWN where preview cannot know the value yet: a reference to another
    resource's output (a key ARN, a monitor id), which `pulumi up` fills in. Reading such a value
    through the proxy raises, and the whole policy would not run during preview."""
    try:
        return props.get(key) if hasattr(props, "get") else None
    except UnknownValueError:
        return UNKNOWN



def provider_accounts(args: ResourceValidationArgs) -> set[str]:
    """The accounts the resource's provider may deploy to (its allowedAccountIds): a provider's
    inputs are recorded as strings, so the list may arrive as JSON text."""
    value = as_mapping(args.provider.props if args.provider else None).get("allowedAccountIds")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass   # a single account id
    return {str(account) for account in as_list(value)}


def estate_accounts(args: ResourceValidationArgs) -> set[str]:
    """The estate's accounts as a resource policy learns them: the policy's `accountIds` config, else
    the accounts the resource's AWS provider may deploy to (the estate sets allowedAccountIds on every
    regional provider)."""
    return {str(account) for account in as_list(args.get_config().get("accountIds"))} or provider_accounts(args)
