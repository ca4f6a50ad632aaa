"""The MCP surface a server exposes: protocol revisions, approved tools, per-tool limits.

The edge (Cloudflare) and the origin (ALB, AWS WAF) enforce it on the `Mcp-Method` and `Mcp-Name`
headers the 2026-07-28 revision sends on every POST; the canary checks the served tools against it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from .fields import Strict, ToolName

ProtocolRevision = Literal["2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"]


class Limits(Strict):
    per_traveller_per_minute: int = Field(120, ge=1, description="Calls per traveller (token) per minute")
    per_ip_per_minute: int = Field(600, ge=1, description="Calls per client IP per minute")


class ProbeTool(Strict):
    """A tool the deployment hook calls on every new revision: it must be read-only (the server
    annotates it `readOnlyHint: true`), since it runs against production data before any traveller."""
    name: ToolName
    arguments: dict[str, Any] = Field(default_factory=dict, description="Its arguments, as JSON")


class Surface(Strict):
    protocols: list[ProtocolRevision] = Field(default_factory=lambda: ["2025-11-25", "2026-07-28"],
                                              min_length=1, description="MCP revisions the server serves")
    tools: list[ToolName] | None = Field(None, description="The approved tools: calls of any other tool are "
                                                           "refused at the edge and the origin")
    limits: Limits = Field(default_factory=Limits, description="Default limits of every tool")
    tool_limits: dict[ToolName, Limits] = Field(default_factory=dict, description="Limits per tool")
    max_body_kb: int = Field(256, ge=1, le=8192, description="Largest request body the edge lets through")
    probe_tool: ProbeTool | None = Field(None, description="A read-only tool the deployment hook calls on each "
                                                           "new revision before traffic shifts")
