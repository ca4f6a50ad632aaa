"""`estate probe URL`: a synthetic MCP client that checks one server end to end, as a user's client would.

It speaks both protocol generations in use on Streamable HTTP:

* **2026-07-28, stateless.** `server/discover`, then every request is a self-contained POST: its
  `params._meta` carries `io.modelcontextprotocol/protocolVersion`, `.../clientCapabilities` and
  `.../clientInfo`, and its headers `MCP-Protocol-Version`, `Mcp-Method` (the JSON-RPC method),
  `Mcp-Name` (`tools/call`: the tool name) and one `Mcp-Param-<token>` per argument the tool's
  `inputSchema` marks `"x-mcp-header": "<token>"`; header values that are not plain printable ASCII
  travel as `=?base64?<UTF-8 bytes in base64>?=`. No session.
* **2025-11-25, sessions.** `initialize` (protocolVersion, capabilities, clientInfo) ->
  `notifications/initialized` -> requests carrying the `Mcp-Session-Id` the server returned and
  `MCP-Protocol-Version` -> `DELETE` with the session id to end the session (a 405 answer is
  accepted: the spec lets a server refuse it). The session is ended even when a later step fails.

`--protocol auto` sends `server/discover` first and falls back to `initialize` on evidence of a
pre-2026 server: a JSON-RPC error in the answer (a 2025 server says "Missing session ID" or
method-not-found), a bare HTTP 400/404/405, or a discover result whose `supportedVersions` lacks
2026-07-28. It stops with an error when the server is 2026-only on versions this probe does not
speak (-32022 whose `data.supported` names no handshake version).

Sources. The wire format is what the `mcp` package 2.3.0 (PyPI's newest when written) implements
on both ends: `mcp.client.session` (the per-request stamp), `mcp.client._probe.negotiate_auto` (the
fallback above), `mcp.server._streamable_http_modern` and `mcp.shared.inbound` (what a server
checks), and the spec's `server/discover` page and spec PR #2727 (the body, not the status, tells a
2026 rejection from a legacy server). Where they differ the probe accepts both: the spec page puts
`serverInfo` in the discover result, the package in its `_meta["io.modelcontextprotocol/serverInfo"]`.

Why not the `mcp` package's client: it hides what a probe reports (per-step latency, HTTP
statuses, which request failed and how), it is async and pulls pydantic, starlette, uvicorn and
OpenTelemetry into a canary that needs none of them, and a canary sharing the servers' own SDK
would share its bugs too. This module is standard library only, so the deployed canary imports it
with no dependency at all. A bearer `token` goes in `Authorization` on every request (servers
behind the estate's `auth`; mcp_estate/runtime/tokens.py gets one), and a caller may add `headers`
(the deployment hook's test-route header); a 401 is reported with the `WWW-Authenticate` challenge it
carried. Not supported: proxies (`HTTPS_PROXY`), redirects (reported, not followed: probe the final URL).

Time. `timeout` is one deadline for the whole probe: every socket operation waits at most the
time left, and the probe fails with a timeout once it is spent (name resolution is the OS's and
is not bounded by it). Each step's latency is the wall time of its HTTP exchange, from opening
the connection to the last byte of the answer: the probe opens one connection per request, as a
cold client does, so TCP and TLS set-up are included.

The tool manifest hash (`tools_sha256`, also `manifest_sha256(tools)`): SHA-256, in lowercase hex,
of the UTF-8 bytes of `json.dumps(entries, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
where `entries` is `[{"name", "description", "inputSchema"}]` for each listed tool (an absent
`description` or `inputSchema` is `null`), sorted by name, then by the entry's own canonical JSON.
It changes when a tool is added, removed or renamed, or its description or input schema changes;
not with key order, tool order or pagination, nor with other tool fields (title, annotations,
outputSchema, icons, `_meta`). Numbers are rendered as Python's `json` renders them.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import itertools
import json
import math
import re
import socket
import ssl
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, NamedTuple
from urllib.parse import urlsplit, urlunsplit

from .tokens import BEARER_TOKEN


class ProbeInputError(ValueError):
    """The probe was asked something it cannot do (a bad URL, protocol, arguments or timeout)."""


MODERN, HANDSHAKE = "2026-07-28", "2025-11-25"
PROTOCOLS = ("auto", MODERN, HANDSHAKE)
# What a server may answer `initialize` with and still run Streamable HTTP (introduced 2025-03-26).
STREAMABLE_HANDSHAKE_VERSIONS = ("2025-03-26", "2025-06-18", HANDSHAKE)
FAILURE_KINDS = ("connection", "timeout", "http", "not-mcp", "protocol", "tool", "manifest")
CLIENT_INFO = {"name": "mcp-estate-probe", "version": "1.0"}
MAX_ANSWER_BYTES = 8 * 1024 * 1024     # a manifest is kilobytes: more is a broken or hostile server

_META_VERSION = "io.modelcontextprotocol/protocolVersion"
_META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
_META_CLIENT = "io.modelcontextprotocol/clientInfo"
_META_SERVER = "io.modelcontextprotocol/serverInfo"
_UNSUPPORTED_VERSION = -32022
_FALLBACK_STATUSES = (400, 404, 405)   # a pre-2026 server's bare answer to `server/discover`
_BASE_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
                 "User-Agent": f"{CLIENT_INFO['name']}/{CLIENT_INFO['version']}"}
_SESSION_ID = re.compile(r"[\x21-\x7e]+")   # the spec's session id alphabet: visible ASCII
_HEADER_SAFE = re.compile(r"[\x20-\x7e]*")
_BASE64_SENTINEL = re.compile(r"=\?base64\?.*\?=")


@dataclass
class Step:
    """One HTTP exchange: the JSON-RPC method (or the session DELETE), its wall time, its status."""

    name: str
    latency_ms: float
    http_status: int | None = None


@dataclass
class Failure:
    """Why a probe failed: `kind` is one of FAILURE_KINDS, `step` the exchange it failed in."""

    kind: str
    step: str
    reason: str


@dataclass
class ProbeResult:
    """What one probe saw; `failure` is None when every step succeeded."""

    url: str
    protocol_requested: str
    protocol_version: str | None = None
    server_name: str | None = None
    server_version: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)   # manifest entries, canonical order
    tools_sha256: str | None = None
    tool_result: dict[str, Any] | None = None
    steps: list[Step] = field(default_factory=list)
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data: `json.dumps(result.as_dict())`."""
        return {"ok": self.ok, **asdict(self)}

    def as_text(self) -> str:
        """The human report: what the probe learned, then every step with its latency."""
        server = _snippet(f"{self.server_name or '-'} {self.server_version or ''}")
        lines = [f"{self.url}: {'ok' if self.ok else 'FAILED'}",
                 f"  protocol      {self.protocol_version or '-'} (asked: {self.protocol_requested})",
                 f"  server        {server}"]
        if self.tools_sha256 is not None:
            names = _snippet(", ".join(t["name"] for t in self.tools), 2000)
            lines += [f"  tools ({len(self.tools)})".ljust(16) + names,
                      f"  tools sha256  {self.tools_sha256}"]
        if self.tool_result is not None:
            lines.append(f"  tool result   {_snippet(_text_of(self.tool_result), 120) or '(no text content)'}")
        lines += [f"  {step.name:<28}{step.latency_ms:>9.1f} ms  HTTP {step.http_status or '-'}"
                  for step in self.steps]
        return "\n".join(lines)


def manifest(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The hashed entries of listed tools, in canonical order (see the module docstring)."""
    entries = [{"name": tool.get("name"), "description": tool.get("description"),
                "inputSchema": tool.get("inputSchema")} for tool in tools]
    return sorted(entries, key=lambda entry: (entry["name"], _canonical(entry)))


def manifest_sha256(tools: list[dict[str, Any]]) -> str:
    """The SHA-256 of a tool list, stable across key order, tool order and pagination."""
    return hashlib.sha256(_canonical(manifest(tools)).encode("utf-8")).hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def probe(url: str, *, protocol: str = "auto", tool: str | None = None, arguments: dict[str, Any] | None = None,
          expect_tools_sha256: str | None = None, timeout: float = 10.0,
          headers: dict[str, str] | None = None, token: str | None = None) -> ProbeResult:
    """Probe the MCP server at `url`: discover or initialize, list every tool, optionally call `tool`.

    Returns the result, failed or not (`result.ok`, `result.failure`); raises ProbeInputError (a ValueError) only for
    invalid arguments. `tool` is called on every probe: choose a read-only one. A manifest that does
    not match `expect_tools_sha256` fails the probe before `tool` is called. `headers` go on every
    request (the deployment hook's route to the new revision, a bearer token); the protocol's own win.
    """
    expected = None if expect_tools_sha256 is None else expect_tools_sha256.lower()
    _check_arguments(url, protocol, tool, arguments, expected, timeout)
    if token is not None and not BEARER_TOKEN.match(token):
        raise ProbeInputError("the token is not a bearer token (RFC 6750: letters, digits and -._~+/, then optional "
                              "'='): check the variable or secret it came from")
    result = ProbeResult(url=url, protocol_requested=protocol)
    client = _Client(url, timeout, result.steps, modern=protocol != HANDSHAKE, headers=headers or {})
    if token is not None:
        client.auth_headers = {"Authorization": f"Bearer {token}"}
    try:
        discovered = _discover(client, fallback=protocol == "auto") if client.modern else None
        if discovered is not None:
            _probe_stateless(client, result, discovered, tool, arguments or {}, expected)
        else:
            _probe_session(client, result, tool, arguments or {}, expected)
    except _Failed as failed:
        result.failure = Failure(failed.kind, failed.step, _snippet(failed.reason, 1000))
    return result


def _check_arguments(url: str, protocol: str, tool: str | None, arguments: dict[str, Any] | None,
                     expected: str | None, timeout: float) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProbeInputError(f"url '{url}' is not an http(s) URL: use e.g. https://mcp.example.com/booking/mcp")
    if parts.username is not None:
        raise ProbeInputError("url carries credentials: the probe sends none, remove them from the URL")
    if protocol not in PROTOCOLS:
        raise ProbeInputError(f"protocol '{protocol}' is not one of {', '.join(PROTOCOLS)}")
    if arguments is not None and tool is None:
        raise ProbeInputError("arguments without a tool: name the tool to call with --tool")
    if arguments is not None and not isinstance(arguments, dict):
        raise ProbeInputError(f"the tool's arguments must be a JSON object, not {type(arguments).__name__}")
    if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ProbeInputError(f"expected tools sha256 '{expected}' is not 64 hex digits")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ProbeInputError(f"timeout {timeout} is not a positive number of seconds")


def _discover(client: _Client, *, fallback: bool) -> dict[str, Any] | None:
    """The `server/discover` result, or None when `fallback` and the server is a pre-2026 one."""
    try:
        discovered = client.request("server/discover", {}).result
    except _Failed as failed:
        if fallback and _legacy_evidence(failed):
            client.modern = False
            return None
        raise
    versions = discovered.get("supportedVersions")
    if isinstance(versions, list) and MODERN in versions:
        return discovered
    if fallback:
        client.modern = False
        return None
    raise _Failed("protocol", f"supportedVersions is {versions!r}, without {MODERN}", step="server/discover")


def _legacy_evidence(failed: _Failed) -> bool:
    """Whether a failed `server/discover` says "pre-2026 server" rather than "broken" or "incompatible"."""
    if failed.rpc_code == _UNSUPPORTED_VERSION:
        supported = failed.rpc_data.get("supported") if isinstance(failed.rpc_data, dict) else None
        return not isinstance(supported, list) or any(v in STREAMABLE_HANDSHAKE_VERSIONS for v in supported)
    return failed.rpc_code is not None or (failed.kind == "http" and failed.status in _FALLBACK_STATUSES)


def _probe_stateless(client: _Client, result: ProbeResult, discovered: dict[str, Any], tool: str | None,
                     arguments: dict[str, Any], expected: str | None) -> None:
    result.protocol_version = MODERN
    meta = discovered.get("_meta") if isinstance(discovered.get("_meta"), dict) else {}
    _set_server(result, discovered.get("serverInfo") or meta.get(_META_SERVER))
    _list_and_call(client, result, tool, arguments, expected)


def _probe_session(client: _Client, result: ProbeResult, tool: str | None, arguments: dict[str, Any],
                   expected: str | None) -> None:
    initialized = client.request("initialize", {"protocolVersion": HANDSHAKE, "capabilities": {},
                                                "clientInfo": CLIENT_INFO})
    version = initialized.result.get("protocolVersion")
    if version not in STREAMABLE_HANDSHAKE_VERSIONS:
        raise _Failed("protocol", f"the server chose protocolVersion {version!r}, which is not one of "
                      f"{', '.join(STREAMABLE_HANDSHAKE_VERSIONS)}", step="initialize")
    session_id = initialized.headers.get("Mcp-Session-Id")
    if session_id is not None and not _SESSION_ID.fullmatch(session_id):
        raise _Failed("protocol", "the Mcp-Session-Id header is not visible ASCII", step="initialize")
    result.protocol_version = version
    _set_server(result, initialized.result.get("serverInfo"))
    client.session_headers = {"MCP-Protocol-Version": version}
    if session_id is not None:
        client.session_headers["Mcp-Session-Id"] = session_id
    try:
        client.notify("notifications/initialized")
        _list_and_call(client, result, tool, arguments, expected)
    except _Failed:
        if session_id is not None:
            client.end_session(quiet=True)   # do not leave a session behind; the first failure is the news
        raise
    if session_id is not None:
        client.end_session(quiet=False)


def _set_server(result: ProbeResult, info: Any) -> None:
    if isinstance(info, dict):
        result.server_name, result.server_version = info.get("name"), info.get("version")


def _list_and_call(client: _Client, result: ProbeResult, tool: str | None, arguments: dict[str, Any],
                   expected: str | None) -> None:
    tools = _list_tools(client)
    result.tools, result.tools_sha256 = manifest(tools), manifest_sha256(tools)
    if expected is not None and result.tools_sha256 != expected:
        # Before any call: a changed manifest may mean the chosen tool no longer does what it did.
        raise _Failed("manifest", f"tool manifest sha256 is {result.tools_sha256}, expected {expected}",
                      step="tools/list")
    if tool is not None:
        result.tool_result = _call_tool(client, tools, tool, arguments)


def _list_tools(client: _Client) -> list[dict[str, Any]]:
    """Every tool, following `nextCursor` until the server gives none."""
    tools: list[dict[str, Any]] = []
    cursor, seen = None, set()
    while True:
        page = client.request("tools/list", {} if cursor is None else {"cursor": cursor}).result
        listed = page.get("tools")
        if not isinstance(listed, list) or not all(isinstance(t, dict) and isinstance(t.get("name"), str)
                                                   for t in listed):
            raise _Failed("protocol", "the result's `tools` is not a list of named tools", step="tools/list")
        tools += listed
        cursor = page.get("nextCursor")
        if cursor is None:
            return tools
        if not isinstance(cursor, str) or cursor in seen:
            raise _Failed("protocol", f"nextCursor {cursor!r} repeats or is not a string: the pagination "
                          "never ends", step="tools/list")
        seen.add(cursor)


def _call_tool(client: _Client, tools: list[dict[str, Any]], name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    listed = next((t for t in tools if t["name"] == name), None)
    if listed is None:
        raise _Failed("tool", f"tool '{name}' is not in the server's manifest", step="tools/call")
    called = client.request("tools/call", {"name": name, "arguments": arguments},
                            input_schema=listed.get("inputSchema")).result
    if called.get("isError") is True:
        raise _Failed("tool", f"tool '{name}' answered isError: {_snippet(_text_of(called))}", step="tools/call")
    if called.get("resultType", "complete") != "complete":
        raise _Failed("tool", f"tool '{name}' answered resultType {called.get('resultType')!r}: it needs input "
                      "from the client; probe a tool that does not", step="tools/call")
    return called


def _text_of(called: dict[str, Any]) -> str:
    content = called.get("content") if isinstance(called.get("content"), list) else []
    return " ".join(str(item.get("text", "")) for item in content if isinstance(item, dict))


class _Failed(Exception):
    """A probe failure on its way to `Failure`; `rpc_code`/`rpc_data` when the server sent a JSON-RPC error."""

    def __init__(self, kind: str, reason: str, *, step: str = "", status: int | None = None,
                 rpc_code: int | None = None, rpc_data: Any = None):
        super().__init__(reason)
        self.kind, self.reason, self.step, self.status = kind, reason, step, status
        self.rpc_code, self.rpc_data = rpc_code, rpc_data


class _Reply(NamedTuple):
    result: dict[str, Any]
    headers: http.client.HTTPMessage


class _Client:
    """The HTTP side of one probe: one connection per exchange, every socket wait bounded by the deadline."""

    def __init__(self, url: str, timeout: float, steps: list[Step], *, modern: bool, headers: dict[str, str]):
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port or (443 if self._https else 80)
        self._target = urlunsplit(("", "", parts.path or "/", parts.query, ""))
        self._timeout, self._deadline = timeout, time.monotonic() + timeout
        self._steps = steps
        self._ids = itertools.count(1)
        self.modern = modern                      # stamp 2026-07-28 `_meta` and headers on requests
        self.session_headers: dict[str, str] = {}  # the handshake era's, once initialized
        self._headers = headers                   # the caller's, on every exchange
        self.auth_headers: dict[str, str] = {}     # the bearer token, on every request

    def request(self, method: str, params: dict[str, Any], *, input_schema: Any = None) -> _Reply:
        """Send a JSON-RPC request and return its result, stamped for the protocol in use."""
        request_id = next(self._ids)
        if self.modern:
            meta = {_META_VERSION: MODERN, _META_CAPABILITIES: {}, _META_CLIENT: CLIENT_INFO}
            params, headers = {**params, "_meta": meta}, _modern_headers(method, params, input_schema)
        else:
            headers = self.session_headers
        payload = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        return self._exchange(method, "POST", payload, headers,
                              lambda response, sock: self._reply(method, request_id, response, sock))

    def notify(self, method: str) -> None:
        self._exchange(method, "POST", {"jsonrpc": "2.0", "method": method}, self.session_headers,
                       lambda response, sock: self._expect_success(response, sock, accepted=()))

    def end_session(self, *, quiet: bool) -> None:
        """DELETE the session; a 405 means the server keeps sessions until they expire, which it may."""
        try:
            self._exchange("DELETE session", "DELETE", None, self.session_headers,
                           lambda response, sock: self._expect_success(response, sock, accepted=(405,)))
        except _Failed:
            if not quiet:
                raise

    def _exchange(self, step: str, verb: str, payload: dict[str, Any] | None, headers: dict[str, str],
                  read: Callable[[http.client.HTTPResponse, socket.socket], Any]) -> Any:
        started, status, connection = time.monotonic(), None, None
        try:
            connection = self._connection()
            connection.connect()
            sock = connection.sock    # kept: the connection drops it when the answer says `Connection: close`
            body = None if payload is None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
            connection.request(verb, self._target, body=body,
                               headers={**_BASE_HEADERS, **self._headers, **headers, **self.auth_headers})
            sock.settimeout(self._left())
            response = connection.getresponse()
            status = response.status
            return read(response, sock)
        except _Failed as failed:
            failed.step = failed.step or step
            raise
        except (OSError, http.client.HTTPException) as error:
            raise _Failed(*self._transport_failure(error), step=step) from None
        finally:
            if connection is not None:
                connection.close()
            self._steps.append(Step(step, round((time.monotonic() - started) * 1000, 1), status))

    def _connection(self) -> http.client.HTTPConnection:
        if self._https:
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._left(),
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self._host, self._port, timeout=self._left())

    def _left(self) -> float:
        """Seconds until the deadline; TimeoutError once it has passed."""
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def _transport_failure(self, error: OSError | http.client.HTTPException) -> tuple[str, str]:
        where = f"{self._host}:{self._port}"
        if isinstance(error, TimeoutError):
            return "timeout", f"no complete answer within the {self._timeout:g} s deadline"
        if isinstance(error, socket.gaierror):
            return "connection", f"cannot resolve {self._host}: {error.strerror}"
        if isinstance(error, ConnectionRefusedError):
            return "connection", f"connection refused by {where}"
        if isinstance(error, ssl.SSLCertVerificationError):
            return "connection", f"TLS certificate of {where} not trusted: {error.verify_message}"
        if isinstance(error, ssl.SSLError):
            return "connection", f"TLS with {where} failed: {error.reason or error}"
        if isinstance(error, http.client.RemoteDisconnected):
            return "connection", f"{where} closed the connection without answering"
        if isinstance(error, http.client.HTTPException):
            return "not-mcp", f"{where} does not answer in HTTP ({type(error).__name__})"
        return "connection", f"{where}: {error.strerror or error}"

    def _reply(self, method: str, request_id: int, response: http.client.HTTPResponse,
               sock: socket.socket) -> _Reply:
        if response.status >= 300:
            raise self._status_failure(response, sock)
        content_type = response.headers.get_content_type()
        if response.status == 202:
            raise _Failed("protocol", "HTTP 202 Accepted: no response to the request")
        if content_type == "text/event-stream":
            message = self._from_stream(method, request_id, response, sock)
        else:
            body = self._read(response, sock)
            message = _json(body)
            if not _is_response(message):
                raise _Failed("not-mcp", f"the answer is {content_type}, not JSON-RPC: {_snippet(body)}")
        if "error" in message:
            raise _rpc_failure(message["error"], response.status)
        if message.get("id") != request_id:
            raise _Failed("protocol", f"the response's id is {message.get('id')!r}, not the request's {request_id}")
        if not isinstance(message.get("result"), dict):
            raise _Failed("protocol", "the response's result is not an object")
        return _Reply(message["result"], response.headers)

    def _from_stream(self, method: str, request_id: int, response: http.client.HTTPResponse,
                     sock: socket.socket) -> dict[str, Any]:
        """Read a `text/event-stream` answer until the response to `request_id` (notifications are skipped)."""
        for data in _events(self._chunks(response, sock)):
            message = _json(data.encode("utf-8"))
            if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
                raise _Failed("not-mcp", f"an event of the stream is not JSON-RPC: {_snippet(data.encode())}")
            if _is_response(message) and message.get("id") == request_id:
                return message
        raise _Failed("protocol", f"the event stream ended before the response to {method}")

    def _expect_success(self, response: http.client.HTTPResponse, sock: socket.socket,
                        accepted: tuple[int, ...]) -> None:
        if response.status >= 300 and response.status not in accepted:
            raise self._status_failure(response, sock)
        self._read(response, sock)

    def _status_failure(self, response: http.client.HTTPResponse, sock: socket.socket) -> _Failed:
        status = response.status
        if 300 <= status < 400:
            return _Failed("http", f"HTTP {status} redirect to {response.headers.get('Location')}: the probe "
                           "does not follow redirects, probe the final URL", status=status)
        body = self._read(response, sock)
        message = _json(body)
        if _is_response(message) and "error" in message:
            return _rpc_failure(message["error"], status)
        challenge = response.headers.get("WWW-Authenticate") if status in (401, 403) else None
        told = f" (WWW-Authenticate: {_snippet(challenge, 300)})" if challenge else ""
        return _Failed("http", f"HTTP {status} {response.reason}{told}: {_snippet(body)}", status=status)

    def _read(self, response: http.client.HTTPResponse, sock: socket.socket) -> bytes:
        return b"".join(self._chunks(response, sock))

    def _chunks(self, response: http.client.HTTPResponse, sock: socket.socket) -> Iterator[bytes]:
        """The answer's body as it arrives, each wait bounded by the deadline, in all MAX_ANSWER_BYTES."""
        received = 0
        while True:
            sock.settimeout(self._left())
            chunk = response.read1(65536)
            if not chunk:
                return
            received += len(chunk)
            if received > MAX_ANSWER_BYTES:
                raise _Failed("protocol", f"the answer exceeds {MAX_ANSWER_BYTES // 2**20} MiB")
            yield chunk


def _modern_headers(method: str, params: dict[str, Any], input_schema: Any) -> dict[str, str]:
    """The 2026-07-28 routing headers: they mirror the body so intermediaries route without parsing it."""
    headers = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    if method == "tools/call":
        headers["Mcp-Name"] = _header_value(params["name"])
        for path, token in _header_params(input_schema):
            value = _value_at(params["arguments"], path)
            if isinstance(value, bool):
                headers[f"Mcp-Param-{token}"] = "true" if value else "false"
            elif isinstance(value, (str, int, float)):
                headers[f"Mcp-Param-{token}"] = _header_value(str(value))
    return headers


def _header_params(schema: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """(argument path, token) of each property reached by `properties` alone that carries `x-mcp-header`."""
    properties = schema.get("properties") if isinstance(schema, dict) else None
    for name, sub in properties.items() if isinstance(properties, dict) else ():
        if isinstance(sub, dict) and isinstance(sub.get("x-mcp-header"), str):
            yield (*path, name), sub["x-mcp-header"]
        yield from _header_params(sub, (*path, name))


def _value_at(arguments: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        arguments = arguments.get(key) if isinstance(arguments, dict) else None
    return arguments


def _header_value(value: str) -> str:
    """`value` as is when it survives an HTTP header unchanged, else the spec's base64 sentinel form."""
    if _HEADER_SAFE.fullmatch(value) and value == value.strip() and not _BASE64_SENTINEL.fullmatch(value):
        return value
    return f"=?base64?{base64.b64encode(value.encode('utf-8')).decode('ascii')}?="


def _events(chunks: Iterator[bytes]) -> Iterator[str]:
    """The `data` of each complete server-sent event, per the WHATWG event-stream format.

    An event is complete at its blank line; one cut short by the end of the stream is dropped, as
    an EventSource client drops it.
    """
    pending, data = b"", []
    for chunk in itertools.chain(chunks, [None]):
        if chunk is None:   # the end: a line ending in CR was complete, an unterminated one is dropped
            lines = [pending] if pending.endswith(b"\r") else []
        else:               # hold back a last line that may be incomplete, or a CR whose LF is still coming
            lines = (pending + chunk).splitlines(keepends=True)
            pending = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
        for line in lines:
            text = line.rstrip(b"\r\n").decode("utf-8", "replace")
            if not text:
                if data:
                    yield "\n".join(data)
                data = []
                continue
            name, _, value = text.partition(":")
            if name == "data":
                data.append(value[1:] if value.startswith(" ") else value)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:   # not JSON, or not UTF-8
        return None


def _is_response(message: Any) -> bool:
    return isinstance(message, dict) and message.get("jsonrpc") == "2.0" and ("result" in message
                                                                              or "error" in message)


def _rpc_failure(error: Any, status: int) -> _Failed:
    if not (isinstance(error, dict) and isinstance(error.get("code"), int)):
        return _Failed("protocol", f"malformed JSON-RPC error: {_snippet(_canonical(error).encode())}")
    reason = f"JSON-RPC error {error['code']}: {error.get('message')}"
    if "data" in error:
        reason += f" {_snippet(_canonical(error['data']).encode())}"
    if status != 200:
        reason += f" (HTTP {status})"
    return _Failed("protocol", reason, status=status, rpc_code=error["code"], rpc_data=error.get("data"))


def _snippet(body: bytes | str, limit: int = 200) -> str:
    """One printable line of what a server sent: no control characters reach the operator's terminal."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = "".join(c if c.isprintable() else " " for c in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
