"""`estate check`: evaluate the CrossGuard pack's own policy objects offline, over an export.

The input is the `deployment.resources` of a `pulumi stack export` (or of `estate plan --out`).
Each resource is handed to the policies exactly as Pulumi's analyzer does: resource policies
get the resource's *inputs*, stack policies every resource's *outputs*, both deserialized and
wrapped in `pulumi_policy`'s unknown-checking proxy, with the policy's config from the pack
config (`--policy-pack-config` format, shared with `pulumi preview --policy-pack`).

Also as in the analyzer: resource references reach policies as the referenced resource's id
(its urn when it has none), and resources read with `get` (`external: true`) are not given to
resource policies (the engine registers no new state for them) but are part of the stack policies'
view. Encrypted secrets cannot be read offline: the export must be made with `--show-secrets`.

As in the analyzer, a policy that reads a value unknown at preview time does not pass or fail:
it yields an advisory "can't run" entry. A policy that raises fails the whole `pulumi preview`;
here it becomes a mandatory violation naming the error, so one broken policy cannot hide the
other policies' results and the check still fails closed.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import jsonschema
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)
from pulumi_policy.deserialize import (
    SPECIAL_ARCHIVE_SIG,
    SPECIAL_ASSET_SIG,
    SPECIAL_SECRET_SIG,
    SPECIAL_SIG_KEY,
    deserialize_properties,
)
from pulumi_policy.policy import _NotApplicableError  # what `args.not_applicable()` raises
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from mcp_estate import policies
from mcp_estate.contract.names import ENVIRONMENT_TAG
from mcp_estate.policies.catalogue import CONTROLS
from mcp_estate.policies.control import Control

MANDATORY, ADVISORY, DISABLED = "mandatory", "advisory", "disabled"
LEVELS = (MANDATORY, ADVISORY, DISABLED, "remediate")
CONFIG_DIR = Path(policies.__file__).resolve().parent / "config"
# The signature of a resource reference in exported state (pulumi/sdk/go/common/resource/properties.go).
SPECIAL_RESOURCE_SIG = "5cf8f73096256a8f31e491e813e4eb8e"


class CheckInputError(Exception):
    """An export or a pack config that cannot be evaluated; the message names the file and the fix."""


@dataclass(frozen=True)
class Violation:
    policy: str
    enforcement_level: str
    urn: str | None
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "enforcement_level": self.enforcement_level, "urn": self.urn,
                "message": self.message}


@dataclass(frozen=True)
class CheckResult:
    """What one evaluation found, and over what: the counts the reports print."""
    violations: list[Violation]
    policies: int
    resources: int
    seconds: float

    def count(self, level: str) -> int:
        return sum(v.enforcement_level == level for v in self.violations)

    @property
    def passed(self) -> bool:
        return self.count(MANDATORY) == 0


# -- evaluation ---------------------------------------------------------------------------------

def enforcement_level(control: Control, pack_config: dict[str, Any]) -> str:
    """The level in force: the policy's own entry, else `all`, else the policy's default.
    `remediate` counts as mandatory, as in the analyzer (no control here remediates)."""
    for key in (control.name, "all"):
        entry = pack_config.get(key)
        level = entry.get("enforcementLevel") if isinstance(entry, dict) else entry
        if level:
            return MANDATORY if level == "remediate" else str(level)
    default = control.policy.enforcement_level or EnforcementLevel.MANDATORY
    return MANDATORY if default == EnforcementLevel.REMEDIATE else default.value


def policy_config(control: Control, pack_config: dict[str, Any]) -> dict[str, Any]:
    entry = pack_config.get(control.name)
    return {k: v for k, v in entry.items() if k != "enforcementLevel"} if isinstance(entry, dict) else {}


def evaluated_resources(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The export entries policies see: custom resources, not providers, not pending deletion."""
    return [r for r in resources if r.get("custom") and not r["type"].startswith("pulumi:providers:")
            and not r.get("delete")]


def evaluate(resources: list[dict[str, Any]], pack_config: dict[str, Any] | None = None,
             controls: Iterable[Control] = CONTROLS) -> list[Violation]:
    """Every violation the controls report over `resources` (export entries)."""
    pack_config = pack_config or {}
    export = _Export(resources)
    violations: list[Violation] = []
    for control in controls:
        level = enforcement_level(control, pack_config)
        if level == DISABLED:
            continue
        config = policy_config(control, pack_config)
        if isinstance(control.policy, ResourceValidationPolicy):
            for resource in export.analyzed:
                violations += _run(control, level, export.resource_args(resource, config), resource["urn"])
        else:
            violations += _run(control, level, export.stack_args(config), None)
    return violations


def run_check(resources: list[dict[str, Any]], pack_config: dict[str, Any] | None = None,
              controls: Iterable[Control] = CONTROLS) -> CheckResult:
    """`evaluate`, with the counts and the time the reports print."""
    controls = list(controls)
    started = time.perf_counter()
    violations = evaluate(resources, pack_config, controls)
    return CheckResult(violations, sum(enforcement_level(c, pack_config or {}) != DISABLED for c in controls),
                       len(evaluated_resources(resources)), time.perf_counter() - started)


def _run(control: Control, level: str, args: Any, subject: str | None) -> list[Violation]:
    """One policy over one resource (`subject`) or over the stack (`subject` None)."""
    found: list[Violation] = []

    def report(message: str, urn: str | None = None) -> None:   # the analyzer's checks, same errors
        if message and not isinstance(message, str):
            raise TypeError("Expected message to be a string")
        if urn is not None and not isinstance(urn, str):
            raise TypeError("Expected urn to be a string")
        found.append(Violation(control.name, level, urn or subject, message or control.policy.description))

    try:
        result = control.policy.validate(args, report)
        if inspect.isawaitable(result):
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(result)
            finally:
                loop.close()
    except UnknownValueError as unknown:   # as the analyzer: an advisory note, not a pass or a failure
        return found + [Violation(control.name, ADVISORY, subject,
                                  f"can't run policy '{control.name}' during preview: {unknown.message}")]
    except _NotApplicableError:   # what it reported before saying so stands, as in the analyzer
        return found
    except Exception as error:  # noqa: BLE001 - reported, failing closed (see the module docstring)
        return found + [Violation(control.name, MANDATORY, subject,
                                  f"policy '{control.name}' failed: {type(error).__name__}: {error}")]
    return found


class _Export:
    """The export's resources as the analyzer hands them to policies. Each policy gets its own
    unknown-checking proxies (a policy cannot change what the next one reads); the deserialization
    behind them is done once per resource."""

    def __init__(self, resources: list[dict[str, Any]]):
        self.custom = evaluated_resources(resources)
        self.analyzed = [r for r in self.custom if not r.get("external")]
        self.providers = {f"{r['urn']}::{r.get('id', '')}": r for r in resources
                          if r["type"].startswith("pulumi:providers:")}
        self.plain: dict[tuple[str, str], dict] = {}
        self.opts: dict[str, PolicyResourceOptions] = {}

    def props(self, resource: dict[str, Any], key: str) -> Any:
        if (resource["urn"], key) not in self.plain:
            self.plain[resource["urn"], key] = plain_properties(resource, key)
        return unknown_checking_proxy(self.plain[resource["urn"], key])

    def resource_args(self, resource: dict[str, Any], config: dict[str, Any]) -> ResourceValidationArgs:
        return _LazyResourceArgs(self, resource, config)

    def stack_args(self, config: dict[str, Any]) -> StackValidationArgs:
        """Every resource with its outputs, parent and dependencies linked, as the analyzer builds them."""
        view = {r["urn"]: _LazyPolicyResource(self, r) for r in self.custom}
        for r in self.custom:
            resource = view[r["urn"]]
            resource.parent = view.get(r.get("parent") or "")
            resource.dependencies = [view[d] for d in r.get("dependencies") or [] if d in view]
            resource.property_dependencies = {k: [view[d] for d in urns if d in view]
                                              for k, urns in (r.get("propertyDependencies") or {}).items()}
        return StackValidationArgs(list(view.values()), config)

    def options(self, resource: dict[str, Any]) -> PolicyResourceOptions:
        """Shared by every policy: the options are plain values no policy can change."""
        if resource["urn"] not in self.opts:
            self.opts[resource["urn"]] = _options(resource)
        return self.opts[resource["urn"]]

    def provider(self, resource: dict[str, Any]) -> PolicyProviderResource | None:
        provider = self.providers.get(resource.get("provider", ""))
        if provider is None:
            return None
        return PolicyProviderResource(provider["type"], self.props(provider, "inputs"), provider["urn"],
                                      _name(provider["urn"]))


class _LazyProps:
    """Props and provider built when a policy first reads them: most policies look at the
    resource type and stop, and a 15,000-resource export times 40-odd policies is too many
    proxies to build for nothing. `_key` says which of the export's properties the analyzer
    gives this kind of policy."""

    _key: str

    @property
    def props(self) -> Any:
        if self._props is None:
            self._props = self._export.props(self._resource, self._key)
        return self._props

    @props.setter
    def props(self, value: Any) -> None:
        self._props = value

    @property
    def provider(self) -> PolicyProviderResource | None:
        if self._provider is None:
            self._provider = self._export.provider(self._resource)
        return self._provider

    @provider.setter
    def provider(self, value: PolicyProviderResource | None) -> None:
        self._provider = value


class _LazyResourceArgs(_LazyProps, ResourceValidationArgs):
    """A resource policy's arguments: the resource's inputs."""

    _key = "inputs"

    def __init__(self, export: _Export, resource: dict[str, Any], config: dict[str, Any]):
        self._export, self._resource = export, resource
        super().__init__(resource["type"], None, resource["urn"], _name(resource["urn"]), export.options(resource),
                         None, config)


class _LazyPolicyResource(_LazyProps, PolicyResource):
    """A resource of a stack policy's view: its outputs."""

    _key = "outputs"

    def __init__(self, export: _Export, resource: dict[str, Any]):
        self._export, self._resource = export, resource
        super().__init__(resource["type"], None, resource["urn"], _name(resource["urn"]), export.options(resource),
                         None, None, [], {})


def plain_properties(resource: dict[str, Any], key: str) -> dict[str, Any]:
    """A resource's exported `inputs` or `outputs` as the analyzer gives them to policies."""
    urn = resource["urn"]
    value = resource.get(key) or {}
    if not isinstance(value, dict):
        raise CheckInputError(f"{urn}: `{key}` must be an object")
    try:
        return deserialize_properties(_analyzed(value, urn))
    except (AssertionError, KeyError, TypeError, ValueError) as error:
        raise CheckInputError(f"{urn}: `{key}` holds a value Pulumi cannot decode ({error})") from None


def _analyzed(value: Any, urn: str) -> Any:
    """Exported encodings turned into what the analyzer sends: a secret {sig, plaintext: JSON}
    (as `--show-secrets` writes it) into its value, a resource reference into its id (its urn
    when it has none, as a component). Assets and archives are decoded by pulumi_policy."""
    if isinstance(value, list):
        return [_analyzed(v, urn) for v in value]
    if not isinstance(value, dict):
        return value
    signature = value.get(SPECIAL_SIG_KEY)
    if signature is None or signature in (SPECIAL_ASSET_SIG, SPECIAL_ARCHIVE_SIG):
        return {k: _analyzed(v, urn) for k, v in value.items()}
    if signature == SPECIAL_SECRET_SIG:
        return {SPECIAL_SIG_KEY: SPECIAL_SECRET_SIG, "value": _analyzed(_secret_value(value, urn), urn)}
    if signature == SPECIAL_RESOURCE_SIG:
        if not isinstance(value.get("urn"), str):
            raise CheckInputError(f"{urn}: a resource reference without a `urn` cannot be decoded")
        return value["id"] if isinstance(value.get("id"), str) and value["id"] else value["urn"]
    raise CheckInputError(f"{urn}: unknown value signature {signature!r}: pass an unmodified "
                          "`pulumi stack export --show-secrets`")


def _secret_value(secret: dict[str, Any], urn: str) -> Any:
    if "value" in secret:
        return secret["value"]
    if "ciphertext" in secret:
        raise CheckInputError(f"{urn}: the export holds encrypted secrets (`ciphertext`), but Pulumi's policy "
                              "analyzer reads them in plaintext: export with `pulumi stack export --show-secrets`")
    if not isinstance(secret.get("plaintext"), str):
        raise CheckInputError(f"{urn}: a secret without `plaintext` or `ciphertext` cannot be decoded")
    try:
        return json.loads(secret["plaintext"])
    except ValueError:
        raise CheckInputError(f"{urn}: a secret's `plaintext` is not JSON") from None


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _options(resource: dict[str, Any]) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=bool(resource.get("protect")), ignore_changes=[], delete_before_replace=None, aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[],
        parent=resource.get("parent") or None)


# -- inputs: export files and pack configs --------------------------------------------------------

def read_export(path: Path) -> list[dict[str, Any]]:
    """The `deployment.resources` of a `pulumi stack export` or `estate plan --out` file."""
    try:
        document = json.loads(path.read_text())
    except OSError as error:
        raise CheckInputError(f"{path}: cannot read the export: {error.strerror}") from None
    except ValueError as error:
        raise CheckInputError(f"{path}: not JSON ({error}): pass the output of `pulumi stack export` "
                              "or `estate plan --out`") from None
    deployment = document.get("deployment") if isinstance(document, dict) else None
    if not isinstance(deployment, dict):
        raise CheckInputError(f"{path}: no `deployment` object: pass the output of `pulumi stack export` "
                              "or `estate plan --out`")
    resources = deployment.get("resources") or []   # a stack that was never deployed has none
    if not isinstance(resources, list):
        raise CheckInputError(f"{path}: `deployment.resources` must be a list")
    for index, resource in enumerate(resources):
        if not (isinstance(resource, dict) and isinstance(resource.get("urn"), str)
                and isinstance(resource.get("type"), str)):
            raise CheckInputError(f"{path}: `deployment.resources[{index}]` needs a `urn` and a `type`")
    for resource in resources:   # what cannot be decoded is refused now, not halfway through the check
        for key in ("inputs", "outputs"):
            try:
                plain_properties(resource, key)
            except CheckInputError as error:
                raise CheckInputError(f"{path}: {error}") from None
    return resources


def export_environment(resources: list[dict[str, Any]]) -> str | None:
    """The environment the resources are tagged with (`mcp-estate:environment`), None if untagged.
    Asked only when no `--config` is given: with one, the config decides whatever the tags say."""
    found = {str(tags.get(ENVIRONMENT_TAG)) for r in evaluated_resources(resources)
             if isinstance(tags := (r.get("inputs") or {}).get("tags"), dict) and tags.get(ENVIRONMENT_TAG)}
    if len(found) > 1:
        raise CheckInputError(f"the resources are tagged with several environments ({', '.join(sorted(found))}), "
                              "so no one pack config applies: pass the one to enforce with "
                              "--config policies/config/<environment>.json")
    return found.pop() if found else None


def read_pack_config(path: Path, controls: Iterable[Control] = CONTROLS) -> dict[str, Any]:
    """A `--policy-pack-config` file: {"policy" or "all": level | {"enforcementLevel": level, ...}}."""
    try:
        config = json.loads(path.read_text())
    except OSError as error:
        raise CheckInputError(f"{path}: cannot read the pack config: {error.strerror}") from None
    except ValueError as error:
        raise CheckInputError(f"{path}: not JSON ({error})") from None
    if not isinstance(config, dict):
        raise CheckInputError(f'{path}: must be an object, e.g. {{"policy-name": "advisory"}}')
    known = {c.name for c in controls} | {"all"}
    for name, entry in config.items():
        if name not in known:
            raise CheckInputError(f"{path}: '{name}' is not a policy of the pack (`estate controls` lists them)")
        level = entry.get("enforcementLevel", MANDATORY) if isinstance(entry, dict) else entry
        if level not in LEVELS:
            raise CheckInputError(f"{path}: '{name}': the enforcement level must be one of {', '.join(LEVELS)}")
    for control in controls:
        _validate_config(path, control, policy_config(control, config))
    return config


def _validate_config(path: Path, control: Control, config: dict[str, Any]) -> None:
    """A policy's parameters against its config schema, as Pulumi validates them before a run."""
    declared = control.policy.config_schema
    schema = {"type": "object", "properties": dict(declared.properties) if declared else {}}
    if declared and declared.required:
        schema["required"] = list(declared.required)
    try:
        jsonschema.validate(config, schema)
    except jsonschema.ValidationError as error:
        where = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)
        raise CheckInputError(f"{path}: '{control.name}'{where}: {error.message}") from None


def pack_config_for(config_path: Path | None, environment: str | None,
                    controls: Iterable[Control] = CONTROLS) -> dict[str, Any]:
    """The explicit `--config`, else policies/config/<environment>.json, else none (every policy at
    its own level: all mandatory)."""
    if config_path is None and environment is not None:
        config_path = CONFIG_DIR / f"{environment}.json"
        if not config_path.is_file():
            return {}
    return read_pack_config(config_path, controls) if config_path is not None else {}
