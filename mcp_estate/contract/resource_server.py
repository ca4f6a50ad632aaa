"""Each MCP server as an OAuth 2.1 resource server: the values every layer derives from the spec.

A server's canonical URL (`https://<hostname>/<server>/mcp`) is its RFC 8707 resource indicator and
so the `aud` its tokens carry; its Protected Resource Metadata (RFC 9728) lives at the path-inserted
well-known URL (`/.well-known/oauth-protected-resource/<server>/mcp`, RFC 9728 §3.1, the first URL
MCP clients try); a 401 names that URL in `WWW-Authenticate: Bearer resource_metadata="..."`
(RFC 9728 §5.1, which MCP clients follow). The ALB, AWS WAF, Cloudflare, the pack config and the
spec's limits all read these functions, so they cannot disagree (README: Who may call what).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .rollout import Strategy
from .spec import MAX_ROUTE_PRIORITY, EstateSpec, Server

METADATA_PREFIX = "/.well-known/oauth-protected-resource"
CHALLENGE_HEADER = "WWW-Authenticate"
# docs/decisions/0001: ECS owns the production rule of these strategies and rewrites its actions.
ECS_OWNED_RULE = frozenset({"CANARY", "LINEAR"})


@dataclass(frozen=True)
class ResourceServer:
    """What the estate publishes and checks for one server, when `auth` is on (plain data)."""
    server: str
    path: str                      # the MCP endpoint's path on the estate's hostname
    resource: str                  # canonical URL: the token's `aud`, the RFC 8707 `resource`
    metadata_path: str             # where the PRM is served, on the estate's hostname
    metadata_url: str
    issuer: str
    jwks_url: str
    scopes: tuple[str, ...]        # every call needs all of them (estate's, then the server's)
    scopes_supported: tuple[str, ...]   # advertised: the above and every tool's
    authorization_servers: tuple[str, ...]
    at_alb: bool                   # the ALB validates the JWT (else only the server does)

    @property
    def challenge(self) -> str:
        """The `WWW-Authenticate` value of a 401 (MCP: SHOULD carry the scopes a call needs)."""
        scope = f', scope="{" ".join(self.scopes)}"' if self.scopes else ""
        return f'Bearer resource_metadata="{self.metadata_url}"{scope}'

    @property
    def metadata_document(self) -> str:
        """The RFC 9728 §2 document, compact: the ALB's fixed response holds 1,024 characters."""
        document = {"resource": self.resource, "authorization_servers": list(self.authorization_servers),
                    "bearer_methods_supported": ["header"], "resource_name": f"MCP server {self.server}"}
        if self.scopes_supported:
            document["scopes_supported"] = list(self.scopes_supported)
        return json.dumps(document, separators=(",", ":"))


def strategy_of(spec: EstateSpec, server: Server) -> Strategy:
    return (server.rollout or spec.rollout.in_region).strategy


def resource_server(spec: EstateSpec, server: Server) -> ResourceServer | None:
    """The server's token settings; None when the estate's `auth` is disabled (dev only)."""
    auth = spec.auth
    if auth is None or auth.disabled:
        return None
    host, path = spec.domain.hostname, server.mcp_path
    scopes = tuple(dict.fromkeys([*auth.scopes, *server.auth.scopes]))
    tool_scopes = [s for name in sorted(server.auth.tool_scopes) for s in server.auth.tool_scopes[name]]
    return ResourceServer(
        server=server.name, path=path, resource=f"https://{host}{path}", metadata_path=f"{METADATA_PREFIX}{path}",
        metadata_url=f"https://{host}{METADATA_PREFIX}{path}", issuer=auth.issuer, jwks_url=auth.jwks_url,
        scopes=scopes, scopes_supported=tuple(dict.fromkeys([*scopes, *tool_scopes])),
        authorization_servers=tuple(auth.advertised_servers),
        at_alb=server.auth.token_validation == "alb")


def companion_priorities(server: Server) -> tuple[int, int]:
    """ALB priorities of the server's open health rule and metadata rule, beside its route.

    When the ALB validates tokens, the route rule covers only the MCP paths, and the health path
    and the metadata get their own rules next to it (their paths never overlap the route's, so
    their order does not matter). Above the route where there is room, else below it."""
    route = server.priority
    if route + 2 <= MAX_ROUTE_PRIORITY:
        return route + 1, route + 2
    return route - 1, route - 2
