"""How a control is declared: a real `pulumi_policy` policy plus the risks it mitigates.

The CrossGuard pack (`policies/__main__.py`) serves the `policy` objects as they are, and
`estate check` evaluates the very same objects offline: there is one implementation of
every rule. The risks become the policy's `tags`, so they travel with it to Pulumi too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterable, Union

from pulumi_policy import (EnforcementLevel, ResourceValidationArgs, ResourceValidationPolicy, Severity,
                           StackValidationArgs, StackValidationPolicy)


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
                    remediation: str = "") -> Callable:
    """Declare `fn(args, report)` as a mandatory resource policy mitigating `risks`."""
    def register(fn: Callable[[ResourceValidationArgs, Report], None]) -> Callable:
        risk_tuple = tuple(risks)
        CONTROLS.append(Control(ResourceValidationPolicy(
            name=name, description=description, validate=fn, enforcement_level=EnforcementLevel.MANDATORY,
            severity=severity, tags=[r.value for r in risk_tuple], remediation_steps=remediation or None),
            risk_tuple))
        return fn
    return register


def stack_policy(name: str, description: str, *, risks: Iterable[Risk], severity: Severity = Severity.HIGH,
                 remediation: str = "") -> Callable:
    """Declare `fn(args, report)` as a mandatory stack policy mitigating `risks`."""
    def register(fn: Callable[[StackValidationArgs, Report], None]) -> Callable:
        risk_tuple = tuple(risks)
        CONTROLS.append(Control(StackValidationPolicy(
            name=name, description=description, validate=fn, enforcement_level=EnforcementLevel.MANDATORY,
            severity=severity, tags=[r.value for r in risk_tuple], remediation_steps=remediation or None),
            risk_tuple))
        return fn
    return register


# -- reading props as policies see them -----------------------------------------------------------

def document(value: Any) -> dict | None:
    """A policy document given as a JSON string or an object; None when absent or unreadable."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    return value if isinstance(value, dict) else None


def as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def statements(policy: Any) -> list[dict]:
    """The statements of an IAM-style policy document, whatever shape it came in."""
    doc = document(policy)
    return [s for s in as_list(doc.get("Statement")) if isinstance(s, dict)] if doc else []


def tag(props: Any, key: str) -> str | None:
    tags = props.get("tags") if hasattr(props, "get") else None
    return tags.get(f"mcp-estate:{key}") if hasattr(tags, "get") else None
