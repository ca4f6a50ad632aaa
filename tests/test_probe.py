"""`estate probe`: a synthetic client that tells an SRE whether an MCP server answers like one, and how fast.

The MCP servers here are real ones from the `mcp` package (2.3.0, which serves both 2026-07-28 and
2025-11-25), on 127.0.0.1 in a thread; the not-MCP and slow servers are a few lines of http.server.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
import pytest
import uvicorn
from mcp.server.lowlevel import Server

from mcp_estate.cli import main
from mcp_estate.runtime.probe import HANDSHAKE, MODERN, _events, manifest_sha256, probe

PAGE = 2
TOOLS = [
    {"name": "search_hotels", "description": "Hotels with rooms free in a city.",
     "inputSchema": {"type": "object", "required": ["city"],
                     "properties": {"city": {"type": "string", "x-mcp-header": "City"},
                                    "nights": {"type": "integer"}}}},
    {"name": "get_booking", "description": "One booking by its reference.",
     "inputSchema": {"type": "object", "properties": {"reference": {"type": "string"}}}},
    {"name": "list_airports", "description": "Airports served.", "inputSchema": {"type": "object"}},
    {"name": "get_fare_rules", "description": "Fare rules of a fare basis.", "inputSchema": {"type": "object"}},
    {"name": "convert_currency", "description": "Today's rate.", "inputSchema": {"type": "object"}},
    {"name": "search_flights", "description": "Flights on a route.",
     "inputSchema": {"type": "object", "properties": {
         "adults": {"type": "integer", "x-mcp-header": "Adults"},
         "flexible": {"type": "boolean", "x-mcp-header": "Flexible"},
         "max_price": {"type": "number", "x-mcp-header": "Max-Price"},
         "route": {"type": "object", "properties": {"from": {"type": "string", "x-mcp-header": "From"}}}}}},
]
NAMES = sorted(tool["name"] for tool in TOOLS)


def _mcp_server() -> Server:
    """Five tools, two a page; tools/call reports progress before answering, so its answer is an event stream."""

    async def list_tools(ctx, params):
        start = int(params.cursor) if params and params.cursor else 0
        page = [types.Tool.model_validate(tool) for tool in TOOLS[start:start + PAGE]]
        return types.ListToolsResult(tools=page, next_cursor=str(start + PAGE) if start + PAGE < len(TOOLS) else None)

    async def call_tool(ctx, params):
        await ctx.session.send_progress_notification("probe", 0.5, related_request_id=ctx.request_id)
        text = json.dumps(params.arguments, ensure_ascii=False, sort_keys=True)
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                    is_error=(params.arguments or {}).get("reference") == "missing")

    return Server("booking", version="3.1.4", on_list_tools=list_tools, on_call_tool=call_tool)


@dataclass
class Running:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)   # method, headers, JSON body of each


def _recording(app, running: Running):
    async def asgi(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        record = {"method": scope["method"], "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
                  "body": b""}
        running.requests.append(record)

        async def receive_recorded():
            message = await receive()
            record["body"] += message.get("body", b"")
            return message
        await app(scope, receive_recorded, send)
    return asgi


def _without_2026(app):
    """A 2025-11-25-only server: the package's session server with its 2026 router out of sight, so a
    2026 request gets a pre-2026 server's answer (HTTP 400, JSON-RPC -32600 "Missing session ID")."""
    async def asgi(scope, receive, send):
        if scope["type"] == "http":
            headers = [(k, v) for k, v in scope["headers"] if (k, v) != (b"mcp-protocol-version", MODERN.encode())]
            scope = {**scope, "headers": headers}
        await app(scope, receive, send)
    return asgi


@contextlib.contextmanager
def _uvicorn(app, running: Running):
    server = uvicorn.Server(uvicorn.Config(_recording(app, running), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    running.url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/mcp"
    try:
        yield running
    finally:
        server.should_exit = True
        thread.join(5)


@pytest.fixture(scope="module")
def stateless():
    with _uvicorn(_mcp_server().streamable_http_app(stateless_http=True), Running("")) as running:
        yield running


@pytest.fixture(scope="module")
def sessions():
    with _uvicorn(_mcp_server().streamable_http_app(), Running("")) as running:
        yield running


@pytest.fixture(scope="module")
def legacy():
    with _uvicorn(_without_2026(_mcp_server().streamable_http_app()), Running("")) as running:
        yield running


class _Plain(http.server.BaseHTTPRequestHandler):
    """Not MCP: `/mcp` an HTML page, `/missing` a 404, `/stall` no answer, `/stall-stream` a stream that stops."""

    release = threading.Event()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.startswith("/stall"):
            if self.path == "/stall-stream":
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                self.wfile.write(b": ping\n\n")
                self.wfile.flush()
            self.release.wait(5)
            return
        status = 404 if self.path == "/missing" else 200
        body = b"<html><body><h1>Welcome to Example Travel</h1></body></html>"
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def plain():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Plain)
    server.daemon_threads, server.block_on_close = True, False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    _Plain.release.set()
    server.shutdown()
    server.server_close()


def _steps(result) -> list[str]:
    return [step.name for step in result.steps]


def _sent(running: Running, rpc_method: str) -> list[dict[str, Any]]:
    return [r for r in running.requests if r["body"] and json.loads(r["body"]).get("method") == rpc_method]


def test_auto_speaks_2026_statelessly_to_a_server_that_offers_it(stateless):
    stateless.requests.clear()
    result = probe(stateless.url)
    assert result.ok, result.failure
    assert (result.protocol_version, result.server_name, result.server_version) == (MODERN, "booking", "3.1.4")
    assert _steps(result) == ["server/discover", "tools/list", "tools/list", "tools/list"]
    assert [tool["name"] for tool in result.tools] == NAMES   # three pages of two, followed to the end
    assert all(step.http_status == 200 and step.latency_ms > 0 for step in result.steps)
    listing = _sent(stateless, "tools/list")[1]
    assert listing["headers"]["mcp-protocol-version"] == MODERN and listing["headers"]["mcp-method"] == "tools/list"
    assert "mcp-session-id" not in listing["headers"]
    assert json.loads(listing["body"])["params"] == {"cursor": "2", "_meta": {
        "io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "mcp-estate-probe", "version": "1.0"}}}


def test_2025_session_is_initialized_used_and_closed(sessions):
    sessions.requests.clear()
    result = probe(sessions.url, protocol=HANDSHAKE)
    assert result.ok, result.failure
    assert (result.protocol_version, result.server_name) == (HANDSHAKE, "booking")
    assert _steps(result) == ["initialize", "notifications/initialized", "tools/list", "tools/list", "tools/list",
                              "DELETE session"]
    assert [tool["name"] for tool in result.tools] == NAMES
    initialize, *rest = sessions.requests
    assert json.loads(initialize["body"])["params"] == {
        "protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": {"name": "mcp-estate-probe", "version": "1.0"}}
    session_ids = {r["headers"].get("mcp-session-id") for r in rest}
    assert len(session_ids) == 1 and None not in session_ids   # every later request is in the session
    assert {r["headers"]["mcp-protocol-version"] for r in rest} == {HANDSHAKE}
    assert rest[-1]["method"] == "DELETE"


def test_auto_falls_back_to_a_session_on_a_server_without_2026(legacy):
    result = probe(legacy.url)
    assert result.ok, result.failure
    assert result.protocol_version == HANDSHAKE
    assert _steps(result)[:3] == ["server/discover", "initialize", "notifications/initialized"]
    assert result.steps[0].http_status == 400


def test_an_explicit_2026_probe_does_not_fall_back(legacy):
    result = probe(legacy.url, protocol=MODERN)
    assert (result.failure.kind, result.failure.step) == ("protocol", "server/discover")
    assert "-32600" in result.failure.reason and "Missing session ID" in result.failure.reason
    assert _steps(result) == ["server/discover"]


@pytest.mark.parametrize("protocol", [MODERN, HANDSHAKE])
def test_tool_call_returns_the_tools_answer_read_past_its_notifications(stateless, sessions, protocol):
    server = stateless if protocol == MODERN else sessions
    server.requests.clear()
    arguments = {"city": "Zürich", "nights": 2}
    result = probe(server.url, protocol=protocol, tool="search_hotels", arguments=arguments)
    assert result.ok, result.failure
    assert result.tool_result["content"][0]["text"] == '{"city": "Zürich", "nights": 2}'
    assert "tools/call" in _steps(result)
    call = _sent(server, "tools/call")[0]
    if protocol == MODERN:   # the server rejects a call whose headers do not mirror its body
        assert call["headers"]["mcp-name"] == "search_hotels"
        assert call["headers"]["mcp-param-city"] == "=?base64?WsO8cmljaA==?="


def test_typed_arguments_travel_in_headers_as_the_2026_revision_spells_them(stateless):
    stateless.requests.clear()
    arguments = {"adults": 2, "flexible": False, "max_price": 99.5, "route": {"from": "ZRH"}}
    result = probe(stateless.url, tool="search_flights", arguments=arguments)
    assert result.ok, result.failure   # the server checks each header against the body
    headers = _sent(stateless, "tools/call")[0]["headers"]
    assert {k: v for k, v in headers.items() if k.startswith("mcp-param-")} == {
        "mcp-param-adults": "2", "mcp-param-flexible": "false", "mcp-param-max-price": "99.5",
        "mcp-param-from": "ZRH"}


def test_an_argument_left_out_sends_no_header(stateless):
    stateless.requests.clear()
    result = probe(stateless.url, tool="search_flights", arguments={"flexible": True})
    assert result.ok, result.failure
    headers = _sent(stateless, "tools/call")[0]["headers"]
    assert {k: v for k, v in headers.items() if k.startswith("mcp-param-")} == {"mcp-param-flexible": "true"}


def _asking_for(version: str, app):
    """The session server, with the client's initialize rewritten to ask for `version`: the server then
    answers with that revision, as a server that only speaks it would."""
    async def asgi(scope, receive, send):
        async def rewritten():
            message = await receive()
            body = message.get("body", b"")
            if b'"initialize"' in body:
                request = json.loads(body)
                request["params"]["protocolVersion"] = version
                message = {**message, "body": json.dumps(request).encode()}
            return message
        await app(scope, rewritten if scope["type"] == "http" else receive, send)
    return asgi


def test_a_server_that_negotiates_an_older_streamable_revision_is_probed_in_it():
    with _uvicorn(_asking_for("2025-06-18", _without_2026(_mcp_server().streamable_http_app())),
                  Running("")) as older:
        result = probe(older.url)
        assert result.ok, result.failure
        assert result.protocol_version == "2025-06-18"
        later = [r for r in older.requests if r["body"] and json.loads(r["body"]).get("method") != "initialize"
                 and "mcp-session-id" in r["headers"]]
        assert later and {r["headers"]["mcp-protocol-version"] for r in later} == {"2025-06-18"}


def test_a_server_that_negotiates_a_pre_streamable_revision_fails_at_initialize():
    with _uvicorn(_asking_for("2024-11-05", _without_2026(_mcp_server().streamable_http_app())),
                  Running("")) as ancient:
        result = probe(ancient.url)
    assert (result.failure.kind, result.failure.step) == ("protocol", "initialize")
    assert "'2024-11-05'" in result.failure.reason
    assert _steps(result)[-1] == "initialize"   # nothing is listed in a revision the probe does not speak


def test_a_tool_answering_is_error_fails_the_probe(stateless):
    result = probe(stateless.url, tool="get_booking", arguments={"reference": "missing"})
    assert (result.failure.kind, result.failure.step) == ("tool", "tools/call")
    assert "isError" in result.failure.reason and "missing" in result.failure.reason


def test_manifest_hash_is_the_same_over_both_protocols(stateless, sessions):
    # The two eras serialise inputSchema keys in different orders; the hash must not see it.
    assert probe(stateless.url).tools_sha256 == probe(sessions.url, protocol=HANDSHAKE).tools_sha256 \
        == manifest_sha256(TOOLS)


def test_manifest_hash_is_sha256_of_the_documented_canonical_json():
    entries = sorted(({"name": t["name"], "description": t["description"], "inputSchema": t["inputSchema"]}
                      for t in TOOLS), key=lambda entry: entry["name"])
    canonical = json.dumps(entries, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert manifest_sha256(TOOLS) == hashlib.sha256(canonical).hexdigest()


def test_manifest_hash_ignores_key_order_tool_order_and_other_fields_but_not_descriptions():
    reordered = [dict(reversed(list(tool.items()))) | {"title": "shown to people"} for tool in reversed(TOOLS)]
    assert manifest_sha256(reordered) == manifest_sha256(TOOLS)
    changed = [dict(tool, description="Hotels, and now it books them.") if tool["name"] == "search_hotels" else tool
               for tool in TOOLS]
    assert manifest_sha256(changed) != manifest_sha256(TOOLS)


def test_a_changed_manifest_fails_before_any_tool_is_called(stateless):
    expected = manifest_sha256(TOOLS[1:])   # what the server served before search_hotels was added
    result = probe(stateless.url, tool="get_booking", arguments={"reference": "ABC123"},
                   expect_tools_sha256=expected)
    assert result.failure.kind == "manifest"
    assert manifest_sha256(TOOLS) in result.failure.reason and expected in result.failure.reason
    assert result.tool_result is None and "tools/call" not in _steps(result)


def test_a_dead_port_is_a_connection_failure():
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]   # bound, never listening: refused
        result = probe(f"http://127.0.0.1:{port}/mcp")
    assert result.failure.kind == "connection"
    assert result.failure.reason == f"connection refused by 127.0.0.1:{port}"


def test_an_html_page_is_not_mcp(plain):
    result = probe(f"{plain}/mcp")
    assert (result.failure.kind, result.failure.step) == ("not-mcp", "server/discover")
    assert "text/html, not JSON-RPC" in result.failure.reason and "Welcome to Example Travel" in result.failure.reason


def test_a_404_is_an_http_failure_after_both_protocols_were_tried(plain):
    result = probe(f"{plain}/missing")
    assert (result.failure.kind, result.failure.step) == ("http", "initialize")
    assert result.failure.reason.startswith("HTTP 404 Not Found: <html>")
    assert [step.http_status for step in result.steps] == [404, 404]


@pytest.mark.parametrize("path", ["/stall", "/stall-stream"])
def test_a_server_slower_than_the_deadline_times_out_on_time(plain, path):
    started = time.monotonic()
    result = probe(f"{plain}{path}", timeout=0.5)
    assert (result.failure.kind, result.failure.step) == ("timeout", "server/discover")
    assert result.failure.reason == "no complete answer within the 0.5 s deadline"
    assert time.monotonic() - started < 1.5


def test_event_stream_framing_does_not_depend_on_how_bytes_arrive():
    stream = b': ping\r\n\r\nevent: message\r\ndata: {"a":\r\ndata: 1}\r\n\r\ndata: {"cut": true}\r\n'
    for size in (1, 2, 7, len(stream)):
        chunks = (stream[i:i + size] for i in range(0, len(stream), size))
        assert list(_events(chunks)) == ['{"a":\n1}']   # the event cut by the end of the stream is dropped


def test_cli_prints_json_and_exits_0(stateless, capsys):
    assert main(["probe", stateless.url, "--format", "json", "--tool", "list_airports", "--args", "{}"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["ok"] is True and printed["protocol_version"] == MODERN
    assert printed["tools_sha256"] == manifest_sha256(TOOLS)
    assert [step["name"] for step in printed["steps"]][-1] == "tools/call"


def test_cli_exits_1_with_both_hashes_on_a_changed_manifest(stateless, capsys):
    expected = "0" * 64
    assert main(["probe", stateless.url, "--expect-tools-sha256", expected]) == 1
    captured = capsys.readouterr()
    assert f"tool manifest sha256 is {manifest_sha256(TOOLS)}, expected {expected}" in captured.err
    assert "tools sha256  " + manifest_sha256(TOOLS) in captured.out


@pytest.mark.parametrize("argv", [["--args", "{}"], ["--tool", "get_booking", "--args", "{not json"],
                                  ["--timeout", "0"], ["--expect-tools-sha256", "abc"]])
def test_cli_exits_2_on_bad_input_without_probing(argv, capsys):
    assert main(["probe", "http://127.0.0.1:9/mcp", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("estate probe: ")
