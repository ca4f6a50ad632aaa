"""`estate check`: evaluate the CrossGuard pack's own policy objects offline, over an export.

The input is the `deployment.resources` of a `pulumi stack export` (or of `estate plan --out`).
Each resource is handed to the policies exactly as Pulumi's analyzer does: resource policies
get the resource's *inputs*, stack policies every resource's *outputs*, both deserialized and
wrapped in `pulumi_policy`'s unknown-checking proxy, with the policy's config from the pack
config (`--policy-pack-config` format, shared with `pulumi preview --policy-pack`).
"""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass
from typing import Any, Iterable

from pulumi_policy import (EnforcementLevel, PolicyCustomTimeouts, PolicyProviderResource, PolicyResource,
                           PolicyResourceOptions, ResourceValidationArgs, ResourceValidationPolicy,
                           StackValidationArgs)
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from policies.catalogue import CONTROLS
from policies.control import Control

MANDATORY, ADVISORY, DISABLED = "mandatory", "advisory", "disabled"


@dataclass(frozen=True)
class Violation:
    policy: str
    enforcement_level: str
    urn: str | None
    message: str

    def as_json(self) -> dict[str, Any]:
        return {"policy": self.policy, "enforcement_level": self.enforcement_level, "urn": self.urn,
                "message": self.message}


def enforcement_level(control: Control, pack_config: dict[str, Any]) -> str:
    """The level in force: the policy's own entry, else `all`, else the policy's default."""
    for key in (control.name, "all"):
        entry = pack_config.get(key)
        level = entry.get("enforcementLevel") if isinstance(entry, dict) else entry
        if level:
            return str(level)
    default = control.policy.enforcement_level or EnforcementLevel.MANDATORY
    return default.value


def policy_config(control: Control, pack_config: dict[str, Any]) -> dict[str, Any]:
    entry = pack_config.get(control.name)
    return {k: v for k, v in entry.items() if k != "enforcementLevel"} if isinstance(entry, dict) else {}


def evaluate(resources: list[dict[str, Any]], pack_config: dict[str, Any] | None = None,
             controls: Iterable[Control] = CONTROLS) -> list[Violation]:
    """Every violation the controls report over `resources` (export entries)."""
    pack_config = pack_config or {}
    custom = [r for r in resources if r.get("custom") and not r["type"].startswith("pulumi:providers:")]
    providers = {f"{r['urn']}::{r.get('id', '')}": r for r in resources if r["type"].startswith("pulumi:providers:")}
    stack_view = _stack_resources(custom, providers)
    violations: list[Violation] = []
    for control in controls:
        level = enforcement_level(control, pack_config)
        if level == DISABLED:
            continue
        config = policy_config(control, pack_config)

        def report(message: str, urn: str | None = None, *, default_urn: str | None = None) -> None:
            violations.append(Violation(control.name, level, urn or default_urn, message))

        if isinstance(control.policy, ResourceValidationPolicy):
            for resource in custom:
                args = ResourceValidationArgs(
                    resource["type"], _props(resource.get("inputs")), resource["urn"], _name(resource["urn"]),
                    _options(resource), _provider(resource, providers), config)
                _run(control, args, lambda m, u=None, r=resource: report(m, u, default_urn=r["urn"]), report)
        else:
            _run(control, StackValidationArgs(stack_view, config), report, report)
    return violations


def _run(control: Control, args: Any, report, report_unknown) -> None:
    try:
        result = control.policy.validate(args, report)
        if inspect.isawaitable(result):
            asyncio.new_event_loop().run_until_complete(result)
    except UnknownValueError as unknown:   # as the analyzer: an advisory note, not a pass or a failure
        report_unknown(f"can't run during preview: {unknown.message}")


def _props(value: Any) -> Any:
    return unknown_checking_proxy(deserialize_properties(value or {}))


def _name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def _options(resource: dict[str, Any]) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=bool(resource.get("protect")), ignore_changes=[], delete_before_replace=None, aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[],
        parent=resource.get("parent") or None)


def _provider(resource: dict[str, Any], providers: dict[str, dict]) -> PolicyProviderResource | None:
    provider = providers.get(resource.get("provider", ""))
    if provider is None:
        return None
    return PolicyProviderResource(provider["type"], _props(provider.get("inputs")), provider["urn"],
                                  _name(provider["urn"]))


def _stack_resources(custom: list[dict], providers: dict[str, dict]) -> list[PolicyResource]:
    return [PolicyResource(r["type"], _props(r.get("outputs")), r["urn"], _name(r["urn"]), _options(r),
                           _provider(r, providers), None, [], {}) for r in custom]
