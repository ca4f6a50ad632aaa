"""What each MCP revision sends to a server over Streamable HTTP: JSON-RPC methods, HTTP methods, headers.

Method lists: the `ClientRequest` and `ClientNotification` unions of `schema/<revision>/schema.ts`
in modelcontextprotocol/modelcontextprotocol (commit b0f60ba5): what a client may POST. HTTP
methods: `basic/transports` of each revision; 2026-07-28 is POST only (GET and DELETE answer
405), earlier revisions add GET (the server's SSE stream) and DELETE (ending a session).
Only 2026-07-28 mirrors the method and name into headers (`Mcp-Method`, `Mcp-Name`; SEP-2243),
and servers of that revision MUST reject a header that differs from the body, which is what
makes an edge decision on the header sound.
"""

from __future__ import annotations

from typing import Iterable

_LEGACY_REQUESTS = ("initialize", "ping", "completion/complete", "logging/setLevel", "prompts/get",
                    "prompts/list", "resources/list", "resources/templates/list", "resources/read",
                    "resources/subscribe", "resources/unsubscribe", "tools/call", "tools/list")
_LEGACY_NOTIFICATIONS = ("notifications/cancelled", "notifications/progress", "notifications/initialized",
                         "notifications/roots/list_changed")
_TASKS = ("tasks/get", "tasks/result", "tasks/list", "tasks/cancel", "notifications/tasks/status")

CLIENT_METHODS: dict[str, frozenset[str]] = {
    "2025-03-26": frozenset(_LEGACY_REQUESTS + _LEGACY_NOTIFICATIONS),
    "2025-06-18": frozenset(_LEGACY_REQUESTS + _LEGACY_NOTIFICATIONS),
    "2025-11-25": frozenset(_LEGACY_REQUESTS + _LEGACY_NOTIFICATIONS + _TASKS),
    "2026-07-28": frozenset(("server/discover", "completion/complete", "prompts/get", "prompts/list",
                             "resources/list", "resources/templates/list", "resources/read",
                             "subscriptions/listen", "tools/call", "tools/list", "notifications/cancelled")),
}
HTTP_METHODS: dict[str, frozenset[str]] = {
    "2025-03-26": frozenset(("POST", "GET", "DELETE")),
    "2025-06-18": frozenset(("POST", "GET", "DELETE")),
    "2025-11-25": frozenset(("POST", "GET", "DELETE")),
    "2026-07-28": frozenset(("POST",)),
}
CORS_PREFLIGHT = "OPTIONS"     # browser clients' preflight carries no MCP header
HEADER_REVISION = "2026-07-28"  # the revision that sends Mcp-Method/Mcp-Name and checks them against the body
# Header names as Cloudflare's `http.request.headers` map keys them: lowercase.
METHOD_HEADER, NAME_HEADER, VERSION_HEADER = "mcp-method", "mcp-name", "mcp-protocol-version"


def client_methods(protocols: Iterable[str]) -> list[str]:
    return sorted(set().union(*(CLIENT_METHODS[p] for p in protocols)))


def http_methods(protocols: Iterable[str]) -> list[str]:
    return sorted(set().union(*(HTTP_METHODS[p] for p in protocols)) | {CORS_PREFLIGHT})


def legacy(protocols: Iterable[str]) -> list[str]:
    """The served revisions whose clients send no Mcp-Method/Mcp-Name headers."""
    return sorted(p for p in protocols if p != HEADER_REVISION)
