"""Where in the stack file a finding comes from: the spec field that made the resource.

Resources carry the contract tags (`mcp-estate:server`, `mcp-estate:region`,
`mcp-estate:residency-group`); the most specific one names the spec field (a server, else a
region, else a group), and `stackfile.field_lines` gives that field's line. A resource without
those tags (estate-wide, or Cloudflare's, which take no tags) points at the estate object.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

from mcp_estate.contract.names import GROUP_TAG, REGION_TAG, SERVER_TAG
from mcp_estate.contract.stackfile import ESTATE_KEY


class Location(NamedTuple):
    field: str    # a spec path as problems name it, e.g. `servers[booking]`; ESTATE_KEY for the whole
    line: int


def spec_field(tags: Mapping[str, str], lines: Mapping[str, int]) -> str | None:
    """The spec path of the server, region or group a resource's tags name, if the file has it."""
    if (server := tags.get(SERVER_TAG)) and f"servers[{server}]" in lines:
        return f"servers[{server}]"
    if region := tags.get(REGION_TAG):
        suffix = f".regions[{region}]"
        found = next((path for path in lines if path.endswith(suffix) and path.count("[") == 2), None)
        if found:
            return found
    if (group := tags.get(GROUP_TAG)) and f"residency_groups[{group}]" in lines:
        return f"residency_groups[{group}]"
    return None


def resource_locations(resources: list[dict[str, Any]], lines: Mapping[str, int]) -> dict[str, Location]:
    """Each exported resource's URN mapped to the spec field (and line) it comes from."""
    fallback = Location(ESTATE_KEY, min(lines.values(), default=2) - 1)
    located = {}
    for resource in resources:
        tags = (resource.get("inputs") or {}).get("tags") or {}
        field = spec_field(tags if isinstance(tags, dict) else {}, lines)
        located[resource["urn"]] = Location(field, lines[field]) if field else fallback
    return located
