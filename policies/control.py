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
    # A server (or a prompt steering it) turns the client's model into its own: server-initiated
    # sampling/elicitation requests in a loop, or unapproved tools reached through them.
    SAMPLING_ABUSE = "sampling abuse"


Policy = Union[ResourceValidationPolicy, StackValidationPolicy]
Report = Callable[..., None]


@dataclass(frozen=True)
class Control:
    policy: Policy
    risks: tuple[Risk, ...]
    module: str = ""   # the rules module declaring it (the catalogue orders the pack by it)
    applies_to: frozenset[str] = frozenset()   # a resource policy's types (empty: a stack policy)

    @property
    def every_type(self) -> bool:
        return self.applies_to == EVERY_TYPE

    @property
    def name(self) -> str:
        return self.policy.name


CONTROLS: list[Control] = []

# What a resource policy declares when it judges every resource type, on purpose: a policy about the
# types themselves (production admits only reviewed ones), which a list of types would defeat, since a
# type nobody listed is exactly what it looks for. Every other policy names its types, so a reader sees
# what it judges and a new type reaches no policy by accident.
EVERY_TYPE = frozenset({"*"})


def _declare(kind: type, name: str, description: str, risks: Iterable[Risk], severity: Severity,
             remediation: str, config: dict[str, dict] | None,
             applies_to: frozenset[str] = frozenset(),
             level: EnforcementLevel = EnforcementLevel.MANDATORY) -> Callable:
    """A decorator registering `fn(args, report)` as a policy of `kind` (mandatory unless `level` says
    otherwise) mitigating `risks`."""
    def register(fn: Callable) -> Callable:
        risk_tuple = tuple(risks)
        CONTROLS.append(Control(kind(
            name=name, description=description, validate=_only(applies_to, fn),
            enforcement_level=level, severity=severity,
            tags=[r.value for r in risk_tuple], remediation_steps=remediation or None,
            config_schema=_schema(config)),
            risk_tuple, fn.__module__, applies_to))
        return fn
    return register


def _only(types: frozenset[str], fn: Callable) -> Callable:
    """`fn`, run on resources of `types` only (CrossGuard's Python SDK hands every resource to every
    resource policy; its TypeScript one has `validateResourceOfType`); `fn` itself for a stack policy
    (no types) and for one judging EVERY_TYPE."""
    if not types or types == EVERY_TYPE:
        return fn

    def validate(args: ResourceValidationArgs, report: Report) -> None:
        if args.resource_type in types:
            fn(args, report)
    validate.__name__, validate.__doc__ = fn.__name__, fn.__doc__
    return validate


def resource_policy(name: str, description: str, *, risks: Iterable[Risk], applies_to: Iterable[str],
                    severity: Severity = Severity.HIGH, remediation: str = "",
                    config: dict[str, dict] | None = None) -> Callable:
    """Declare `fn(args: ResourceValidationArgs, report)` as a mandatory resource policy judging the
    resource types `applies_to` (type tokens), and only those; EVERY_TYPE for one judging them all."""
    types = frozenset(applies_to)
    if not types or ("*" in types and types != EVERY_TYPE):
        raise ValueError(f"{name}: a resource policy declares the resource types it applies to (type "
                         f"tokens such as {TASK_DEFINITION!r}), or EVERY_TYPE alone; got {sorted(types)}")
    return _declare(ResourceValidationPolicy, name, description, risks, severity, remediation, config, types)


def stack_policy(name: str, description: str, *, risks: Iterable[Risk], severity: Severity = Severity.HIGH,
                 remediation: str = "", config: dict[str, dict] | None = None,
                 advisory: bool = False) -> Callable:
    """Declare `fn(args: StackValidationArgs, report)` as a mandatory stack policy; `advisory` for one
    whose findings inform review and never fail a preview (the pack config may still raise its level)."""
    level = EnforcementLevel.ADVISORY if advisory else EnforcementLevel.MANDATORY
    return _declare(StackValidationPolicy, name, description, risks, severity, remediation, config, level=level)


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


# -- ECS container definitions as the AWS provider decodes them ------------------------------------
# The provider (terraform-provider-aws internal/service/ecs/container_definitions.go) decodes the
# JSON string with Go's encoding/json into the SDK's ContainerDefinition structs: every JSON value
# of the string in turn into the same slice, object keys matched to the struct fields without
# regard to case (Go's simple case folding: "ſ" is "s", "K" is "k"), the last duplicate winning and
# unknown keys dropped. ECS receives what that produced, so a policy reads the same.

# The ECS field names, canonical spelling (ContainerDefinition and the nested structs policies read).
ECS_FIELDS = (
    "command", "cpu", "credentialSpecs", "dependsOn", "disableNetworking", "dnsSearchDomains", "dnsServers",
    "dockerLabels", "dockerSecurityOptions", "entryPoint", "environment", "environmentFiles", "essential",
    "extraHosts", "firelensConfiguration", "healthCheck", "hostname", "image", "interactive", "links",
    "linuxParameters", "logConfiguration", "memory", "memoryReservation", "mountPoints", "name", "portMappings",
    "privileged", "pseudoTerminal", "readonlyRootFilesystem", "repositoryCredentials", "resourceRequirements",
    "restartPolicy", "secrets", "startTimeout", "stopTimeout", "systemControls", "ulimits", "user",
    "versionConsistency", "volumesFrom", "workingDirectory",
    # linuxParameters, its capabilities, key-value pairs and secrets
    "capabilities", "devices", "initProcessEnabled", "maxSwap", "sharedMemorySize", "swappiness", "tmpfs",
    "add", "drop", "value", "valueFrom", "options", "secretOptions", "logDriver", "type")
# Fields that are Go maps, not structs: their keys are data, matched exactly.
ECS_MAP_FIELDS = frozenset({"dockerLabels", "options"})


def go_fold(name: str) -> str:
    """A JSON key as Go's encoding/json compares it with a field name: each rune upper(lower(r))."""
    return "".join(f if len(f := c.lower().upper()) == 1 else c for c in name)


_CANONICAL = {go_fold(field): field for field in ECS_FIELDS}


class ContainerDefinitionError(ValueError):
    """containerDefinitions that ECS would read differently from a plain JSON reading."""


class _Pairs(list):
    """An object's key-value pairs in order, duplicates kept, as the JSON text holds them."""


def _json_documents(text: str) -> list:
    """Every JSON value of `text`, in order (Go's decoder reads a stream of them)."""
    decoder, documents, at = json.JSONDecoder(object_pairs_hook=_Pairs), [], 0
    while (at := len(text) - len(text[at:].lstrip())) < len(text):
        try:
            value, at = decoder.raw_decode(text, at)
        except ValueError as error:
            raise ContainerDefinitionError(f"containerDefinitions is not JSON ({error})") from None
        documents.append(value)
    return documents


def _canonical(value: Any, path: str, is_map: bool = False) -> Any:
    """`value` with object keys in ECS's canonical spelling; a key given twice (in any case) refused."""
    if isinstance(value, (Mapping, _Pairs)):
        pairs = list(value.items()) if isinstance(value, Mapping) else list(value)
        if is_map:
            return {str(k): _canonical(v, f"{path}.{k}") for k, v in pairs}
        result: dict[str, Any] = {}
        spellings: dict[str, str] = {}
        for key, item in pairs:
            field = _CANONICAL.get(go_fold(str(key)), str(key))
            if field in result:
                raise ContainerDefinitionError(
                    f"{path} sets \"{field}\" twice (as \"{spellings[field]}\" and \"{key}\"); the provider keeps the "
                    "last one, whatever its case: set each field once, spelled as the ECS API does")
            spellings[field] = str(key)
            result[field] = _canonical(item, f"{path}.{field}", field in ECS_MAP_FIELDS)
        return result
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_canonical(item, f"{path}[{i}]") for i, item in enumerate(value)]
    return value


def container_definitions(value: Any) -> list[dict]:
    """The containers of a task definition's containerDefinitions (a JSON string, or a list when a
    program or an export gives one) in canonical ECS spelling; ContainerDefinitionError when it is
    not one JSON list of objects, or sets a field twice in any spelling."""
    if isinstance(value, str):
        documents = _json_documents(value)
        if len(documents) != 1:
            raise ContainerDefinitionError(
                f"containerDefinitions holds {len(documents)} JSON documents; the provider decodes each over "
                "the last: give one list")
        value = documents[0]
    if isinstance(value, (Mapping, _Pairs, str)) or not isinstance(value, Sequence):
        raise ContainerDefinitionError("containerDefinitions is not a JSON list of containers")
    containers = _canonical(value, "containerDefinitions")
    if not all(isinstance(c, dict) for c in containers):
        raise ContainerDefinitionError("containerDefinitions is not a JSON list of container objects")
    return containers


def ecs_containers(args: ResourceValidationArgs, report: Report) -> list[dict]:
    """Every container (sidecars included) of an ECS task definition as ECS reads it, none for
    another resource; a definition ECS could read differently than it looks is reported, never passed."""
    if args.resource_type != TASK_DEFINITION:
        return []
    try:
        return container_definitions(args.props.get("containerDefinitions"))
    except ContainerDefinitionError as error:
        report(f"Task definition {args.name}: {error}, so it cannot be checked")
        return []


# -- address ranges as EC2 reads them ---------------------------------------------------------------

# Addresses no one on the internet connects from: a set of ranges that covers every other one
# admits the whole internet (all of IPv4 but 10.0.0.0/8 is still everyone).
NOT_THE_INTERNET = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
    "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/3",
    "2001:db8::/32"))
EVERYONE = {4: ipaddress.ip_network("0.0.0.0/0"), 6: GLOBAL_UNICAST}


def cidr(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A CIDR as EC2 reads it (host bits ignored, "10.0.0.0/0" is everyone); ValueError when it is none."""
    return ipaddress.ip_network(str(value).strip(), strict=False)


def covers_the_internet(networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Whether the ranges together admit every public IPv4 address or every public IPv6 address,
    however they are split: the reserved and private ranges (NOT_THE_INTERNET) count as covered."""
    networks = list(networks)
    for version, everyone in EVERYONE.items():
        mine = [n for n in networks if n.version == version]
        if not mine:
            continue
        reserved = [n for n in NOT_THE_INTERNET if n.version == version]
        if any(everyone.subnet_of(n) for n in ipaddress.collapse_addresses(mine + reserved)):
            return True
    return False

# The most public addresses a set of ranges may admit: a /8's worth of IPv4 (the widest destination the
# spec lets a server declare; Cloudflare's published ranges hold about 1.5 million addresses, a tenth of
# it) and 1/256 of the public IPv6 space (a /11's worth). More (0.0.0.0/1, ::/1, two public /8s) opens the
# estate to a large part of the internet, whatever it leaves out.
BROAD = {4: 2 ** 24, 6: GLOBAL_UNICAST.num_addresses >> 8}


def _overlap(network, other) -> int:
    if network.version != other.version:
        return 0
    if other.subnet_of(network):
        return other.num_addresses
    return network.num_addresses if network.subnet_of(other) else 0


def public_addresses(networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> dict[int, tuple[int, int]]:
    """IP version -> (how many public addresses the ranges together admit, how many there are): every IPv4
    address outside NOT_THE_INTERNET, every global unicast IPv6 address."""
    networks = list(networks)
    counts = {}
    for version, everyone in EVERYONE.items():
        mine = list(ipaddress.collapse_addresses(n for n in networks if n.version == version))
        reserved = [n for n in NOT_THE_INTERNET if n.version == version and n.subnet_of(everyone)]
        public = everyone.num_addresses - sum(r.num_addresses for r in reserved)
        counts[version] = (sum(_overlap(n, everyone) - sum(_overlap(n, r) for r in reserved) for n in mine), public)
    return counts


def broad_share(networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> float | None:
    """The share of the public addresses the ranges admit when it is more than BROAD allows, else None."""
    counts = public_addresses(networks)
    shares = [covered / public for version, (covered, public) in counts.items() if covered > BROAD[version]]
    return max(shares) if shares else None


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
