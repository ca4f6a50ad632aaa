"""How `estate check` and `estate controls` print: a table for people, JSON for scripts, SARIF 2.1.0
for GitHub code scanning, and the risk-to-control matrix in Markdown (the README shows it verbatim).
Pure functions of the check's result and the controls: no evaluation happens here.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

from pulumi_policy import StackValidationPolicy

from mcp_estate.policies.control import EVERY_TYPE, Control, Risk

from .check import ADVISORY, DISABLED, MANDATORY, CheckResult, Violation, enforcement_level
from .locations import Location

Locations = Mapping[str, Location]   # URN -> the spec field (and stack-file line) it comes from

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
SEVERITY_ORDER = ("critical", "high", "medium", "low")
# GitHub ranks security alerts by this number: >= 9 critical, 7-8.9 high, 4-6.9 medium, < 4 low.
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0"}
SARIF_LEVEL = {MANDATORY: "error", ADVISORY: "warning", DISABLED: "none"}


def _severity(control: Control | None) -> str:
    severity = control.policy.severity if control else None
    return severity.value if severity else "medium"


def _resource_name(urn: str | None) -> str:
    return urn.rsplit("::", 1)[-1] if urn else "(stack)"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


# -- table ----------------------------------------------------------------------------------------

def table(result: CheckResult, controls: Iterable[Control], locations: Locations | None = None) -> str:
    """Violations grouped by enforcement (mandatory first), then by policy in severity order; with
    `locations`, each names the spec field (and stack-file line) it comes from."""
    locations = locations or {}
    by_name = {c.name: c for c in controls}
    lines: list[str] = []
    for level in (MANDATORY, ADVISORY):
        found = [v for v in result.violations if v.enforcement_level == level]
        if not found:
            continue
        lines.append(f"{level.upper()} ({_plural(len(found), 'violation')})")
        per_policy = Counter(v.policy for v in found)
        order = sorted(per_policy, key=lambda p: (SEVERITY_ORDER.index(_severity(by_name.get(p))), p))
        for policy in order:
            control = by_name.get(policy)
            risks = ", ".join(r.value for r in control.risks) if control else ""
            lines.append(f"  {policy}  [{_severity(control)}] x{per_policy[policy]}  ({risks})")
            for v in sorted((v for v in found if v.policy == policy), key=lambda v: (v.urn or "", v.message)):
                message = v.message.replace("\n", "\n      ")
                where = locations.get(v.urn or "")
                at = f" (from {where.field}, line {where.line})" if where else ""
                lines.append(f"    - {_resource_name(v.urn)}{at}: {message}")
        lines.append("")
    if not lines:
        lines = ["no violations", ""]
    lines.append(f"{result.count(MANDATORY)} mandatory, {result.count(ADVISORY)} advisory violations "
                 f"({result.policies} {'policy' if result.policies == 1 else 'policies'}, "
                 f"{_plural(result.resources, 'resource')}, {result.seconds:.1f} s)")
    return "\n".join(lines)


# -- JSON -----------------------------------------------------------------------------------------

def as_json(result: CheckResult, locations: Locations | None = None) -> str:
    locations = locations or {}

    def located(violation: Violation) -> dict[str, Any]:
        where = locations.get(violation.urn or "")
        return violation.as_json() | ({"spec_field": where.field, "line": where.line} if where else {})
    return json.dumps({"violations": [located(v) for v in result.violations]}, indent=2)


# -- SARIF ----------------------------------------------------------------------------------------

def artifact_uri(path: Path) -> str:
    """The file a result points at, relative to the working directory (the repository root in CI)."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return resolved.as_uri()


def sarif(result: CheckResult, controls: Iterable[Control], pack_config: dict[str, Any], artifact: str,
          locations: Locations | None = None) -> str:
    """A SARIF 2.1.0 log with one run: a rule per control, a result per violation located at `artifact`,
    on the line of the spec field that made the resource (`locations`), else line 1."""
    locations = locations or {}
    controls = list(controls)
    index = {c.name: i for i, c in enumerate(controls)}
    driver = {"name": "mcp-estate", "version": _version(), "semanticVersion": _version(),
              "rules": [_rule(c, enforcement_level(c, pack_config)) for c in controls]}
    if home := _home_page():
        driver["informationUri"] = home
    log = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [{
        "tool": {"driver": driver},
        "results": [_result(v, index[v.policy], artifact, locations.get(v.urn or ""))
                    for v in result.violations]}]}
    return json.dumps(log, indent=2)


def _rule(control: Control, level: str) -> dict[str, Any]:
    policy = control.policy
    rule: dict[str, Any] = {
        "id": control.name,
        "shortDescription": {"text": policy.description.split(". ")[0].rstrip(".")},
        "fullDescription": {"text": policy.description},
        "help": {"text": policy.remediation_steps or policy.description},
        "defaultConfiguration": {"level": SARIF_LEVEL[level]} | ({"enabled": False} if level == DISABLED else {}),
        "properties": {"tags": [r.value for r in control.risks],
                       "security-severity": SECURITY_SEVERITY[_severity(control)]}}
    if policy.url:
        rule["helpUri"] = policy.url
    return rule


def _result(violation: Violation, rule_index: int, artifact: str, where: Location | None) -> dict[str, Any]:
    location: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": artifact},
                                                     "region": {"startLine": where.line if where else 1}}}
    logical = [{"fullyQualifiedName": violation.urn, "kind": "resource"}] if violation.urn else []
    if where:
        logical.append({"fullyQualifiedName": where.field, "kind": "member"})
    if logical:
        location["logicalLocations"] = logical
    identity = "\0".join((violation.policy, violation.urn or "", violation.message))
    return {"ruleId": violation.policy, "ruleIndex": rule_index, "level": SARIF_LEVEL[violation.enforcement_level],
            "message": {"text": violation.message}, "locations": [location],
            # The identity is the policy, the resource and the message, not the line: a finding keeps its
            # alert when an unrelated edit moves its spec field down the file.
            "partialFingerprints": {"primaryLocationLineHash": hashlib.sha256(identity.encode()).hexdigest()[:32]}}


def _version() -> str:
    return metadata.version("mcp-estate")


def _home_page() -> str | None:
    meta = metadata.metadata("mcp-estate")
    urls = [u.split(",", 1)[-1].strip() for u in meta.get_all("Project-URL") or []]
    return meta.get("Home-page") or (urls[0] if urls else None)


# -- the risk-to-control matrix -------------------------------------------------------------------

def controls_matrix(controls: Iterable[Control]) -> str:
    """Markdown: which controls mitigate each risk, then every control with its severity and purpose."""
    controls = sorted(controls, key=lambda c: c.name)
    lines = ["| Risk | Controls | Count |", "| --- | --- | ---: |"]
    for risk in Risk:
        names = [f"`{c.name}`" for c in controls if risk in c.risks]
        lines.append(f"| {risk.value} | {', '.join(names) or '**none**'} | {len(names)} |")
    lines += ["", f"{_plural(len(controls), 'control')}:", "",
              "| Control | Severity | Mitigates | Applies to | What it checks |", "| --- | --- | --- | --- | --- |"]
    for c in controls:
        lines.append(f"| `{c.name}` | {_severity(c)} | {', '.join(r.value for r in c.risks)} | {_applies_to(c)} | "
                     f"{c.policy.description.replace('|', chr(92) + '|')} |")
    return "\n".join(lines)


def _applies_to(control: Control) -> str:
    """The resource types a control judges: a stack policy judges the stack as a whole."""
    if isinstance(control.policy, StackValidationPolicy):
        return "the stack"
    if not control.applies_to or control.applies_to == EVERY_TYPE:
        return "every type"
    return ", ".join(f"`{token}`" for token in sorted(control.applies_to))
