"""A plan export as reviewable text: one line per leaf value, each naming its resource and path.

A golden snapshot of this text fails on any change to any input, option or computed output of
any resource, and its diff reads like `pulumi preview --diff`: every changed line says which
resource and which property changed (`mcp-estate-eu-west-1-booking-service inputs.desiredCount = 2`).
JSON held in strings (policy documents, container definitions, dashboards) is expanded, so a
changed IAM action is one line, not one opaque string.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcp_estate.offline.diff import property_leaves

OPTIONS = ("custom", "protect", "retainOnDelete")


def plan_text(resources: list[dict[str, Any]], root: Path) -> str:
    """The export's `deployment.resources` as sorted lines; paths under `root` made relative to
    it (the Lambda's source files), so the text is the same in any checkout."""
    names = {r["urn"]: _label(r["urn"]) for r in resources}
    assert len(set(names.values())) == len(names), "two resources share a name: labels would be ambiguous"
    lines = []
    for resource in resources:
        name = names[resource["urn"]]
        lines.append(f"== {resource['type']} {name}")
        lines += [f"{name} {option} = {json.dumps(resource[option])}" for option in OPTIONS]
        related = {"parent": resource.get("parent"), "provider": resource.get("provider", "").rsplit("::", 1)[0]}
        lines += [f"{name} {key} = {names.get(urn, urn)}" for key, urn in related.items() if urn]
        lines += sorted(f"{name} dependsOn {names.get(urn, urn)}" for urn in resource["dependencies"])
        inputs = resource.get("inputs", {})
        computed = {k: v for k, v in resource.get("outputs", {}).items() if inputs.get(k) != v}
        lines += sorted(f"{name} {path} = {value}" for path, value, _ in property_leaves(inputs, "inputs"))
        lines += sorted(f"{name} {path} = {value}" for path, value, _ in property_leaves(computed, "outputs"))
    return "\n".join(lines).replace(str(root) + "/", "") + "\n"


def _label(urn: str) -> str:
    return urn.rsplit("::", 1)[1]

