"""End to end: a real MCP server (the `mcp` package) behind a local stand-in for the origin that applies
exactly what the plan generates: the AWS WAF 401 challenge, the ALB listener rules (jwt-validation with
the generated issuer, audience and scopes, the open metadata and health rules, the prefix rewrite) and
Cloudflare's response-header transform. Keys come from a JWKS served on 127.0.0.1; tokens are RS256,
the only algorithm the ALB accepts. What the stand-in decides on its own is marked as such: the ALB's
status for a rejected token (401) and its claim matching (every configured value required) are not
documented (README: unverified)."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import jwt
import mcp_types as types
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp.server.lowlevel import Server
from test_estate import SMALL, plan_of

from mcp_estate.cli import main
from mcp_estate.offline.cloudflare_rules import evaluate
from mcp_estate.runtime.probe import probe

HOSTNAME = "mcp.example.travel"
REGION = "us-east-1"
ISSUER, JWKS_URL = "https://login.example.travel/", "https://login.example.travel/jwks.json"
AUDIENCE = f"https://{HOSTNAME}/booking/mcp"
METADATA_PATH = "/.well-known/oauth-protected-resource/booking/mcp"
CHALLENGE = f'Bearer resource_metadata="https://{HOSTNAME}{METADATA_PATH}", scope="mcp:call"'


# -- what the plan generates ----------------------------------------------------------------------------

@dataclass
class Origin:
    waf_rules: list[dict]
    waf_bodies: dict[str, dict]
    listener_rules: list[dict]       # by priority
    edge_rules: list[dict]


@pytest.fixture(scope="module")
def origin() -> Origin:
    raw = json.loads(json.dumps(SMALL))
    raw["auth"]["scopes"] = ["mcp:call"]
    plan = plan_of(raw)
    acl = plan.named(f"mcp-estate-{REGION}-front-waf").inputs
    rules = sorted((r.inputs for r in plan.of_type("aws:lb/listenerRule:ListenerRule")
                    if r.name.startswith((f"mcp-estate-{REGION}-booking-", f"mcp-estate-{REGION}-loyalty-"))),
                   key=lambda rule: rule["priority"])
    [transform] = [r.inputs for r in plan.of_type("cloudflare:index/ruleset:Ruleset")
                   if r.inputs["phase"] == "http_response_headers_transform"]
    return Origin(acl["rules"], {b["key"]: b for b in acl["customResponseBodies"]}, rules, transform["rules"])


# -- the identity provider: keys on 127.0.0.1, tokens signed with them --------------------------------------

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    jwk = {**jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key(), as_dict=True), "kid": "k1", "alg": "RS256",
           "use": "sig"}

    class Keys(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"keys": [jwk]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()


def token(key=KEY, **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "t-42", "scope": "mcp:call booking:read", "iat": now,
            "exp": now + 300, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm="RS256",
                      headers={"kid": "k1"})


# -- the stand-in origin: WAF, then listener rules, then the edge's response transform -------------------

def _starts_with(statement: dict, request: dict) -> bool:
    match = statement["byteMatchStatement"]
    field = match["fieldToMatch"]
    value = request["path"] if "uriPath" in field else request["headers"].get(field["singleHeader"]["name"], "")
    for transformation in match["textTransformations"]:
        value = value.lower() if transformation["type"] == "LOWERCASE" else value
    assert match["positionalConstraint"] == "STARTS_WITH", "the stand-in knows the statements the estate builds"
    return value.startswith(match["searchString"])


def _waf_matches(statement: dict, request: dict) -> bool:
    if "andStatement" in statement:
        return all(_waf_matches(s, request) for s in statement["andStatement"]["statements"])
    if "notStatement" in statement:
        return not _waf_matches(statement["notStatement"]["statement"], request)
    return _starts_with(statement, request)


def _path_matches(rule: dict, path: str) -> bool:
    # ALB path patterns: case-sensitive, `*` any characters, `?` exactly one.
    values = [v for c in rule["conditions"] for v in c["pathPattern"]["values"]]
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in values)


def _claim_ok(claims: dict, wanted: dict) -> bool:
    """The stand-in's reading of the ALB's formats: every configured value must be present (strictest)."""
    value = claims.get(wanted["name"])
    if wanted["format"] == "single-string":
        return isinstance(value, str) and value in wanted["values"]
    if wanted["format"] == "space-separated-values":
        return isinstance(value, str) and set(wanted["values"]) <= set(value.split(" "))
    return isinstance(value, list) and set(wanted["values"]) <= set(value)


def _jwt_valid(config: dict, headers: dict, keys: dict[str, str]) -> bool:
    scheme, _, presented = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    try:
        key = jwt.PyJWKClient(keys[config["jwksEndpoint"]]).get_signing_key_from_jwt(presented).key
        claims = jwt.decode(presented, key, algorithms=["RS256"], issuer=config["issuer"],
                            options={"require": ["iss", "exp"], "verify_aud": False})
    except jwt.PyJWTError:
        return False
    return all(_claim_ok(claims, wanted) for wanted in config.get("additionalClaims", []))


def _edge_expression(expression: str, request: dict, status: int, headers: list[tuple[str, str]]) -> bool:
    """The challenge rule, evaluated on the response as Cloudflare's response phase sees it."""
    response_headers: dict[str, list[str]] = {}
    for name, value in headers:
        response_headers.setdefault(name, []).append(value)
    return evaluate(expression, {"host": HOSTNAME, "path": request["path"], "status": status,
                                 "response_headers": response_headers})


def stand_in(origin: Origin, app, keys: dict[str, str]):
    """ASGI: the request passes the WAF, then the first matching listener rule, as the region does."""

    async def respond(send, status: int, headers: list[tuple[str, str]], body: bytes, request: dict) -> None:
        for rule in origin.edge_rules:
            if _edge_expression(rule["expression"], request, status, headers):
                for name, change in rule["actionParameters"]["headers"].items():
                    assert change["operation"] == "set"
                    headers = [(k, v) for k, v in headers if k.lower() != name.lower()] + [(name, change["value"])]
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers]})
        await send({"type": "http.response.body", "body": body})

    async def asgi(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        request = {"path": scope["path"], "headers": {k.decode().lower(): v.decode() for k, v in scope["headers"]}}
        for rule in sorted(origin.waf_rules, key=lambda r: r["priority"]):
            block = rule.get("action", {}).get("block", {}).get("customResponse")
            if block and _waf_matches(rule["statement"], request):
                body = origin.waf_bodies[block["customResponseBodyKey"]]
                headers = [(h["name"], h["value"]) for h in block["responseHeaders"]]
                return await respond(send, int(block["responseCode"]), [("Content-Type", "application/json"), *headers],
                                     body["content"].encode(), request)
        for rule in origin.listener_rules:
            if not _path_matches(rule, scope["path"]):
                continue
            for action in sorted(rule["actions"], key=lambda a: a.get("order", 0)):
                if action["type"] == "jwt-validation" and not _jwt_valid(action["jwtValidation"], request["headers"],
                                                                         keys):
                    return await respond(send, 401, [], b"", request)   # the ALB's status: unverified
                if action["type"] == "fixed-response":
                    fixed = action["fixedResponse"]
                    return await respond(send, int(fixed["statusCode"]), [("Content-Type", fixed["contentType"])],
                                         fixed["messageBody"].encode(), request)
                if action["type"] == "forward":
                    rewrite = rule["transforms"][0]["urlRewriteConfig"]["rewrite"]
                    path = re.sub(rewrite["regex"], rewrite["replace"].replace("$1", r"\1"), scope["path"])
                    return await app({**scope, "path": path, "raw_path": path.encode()}, receive, send)
        return await respond(send, 404, [("Content-Type", "application/json")], b'{"error":"not found"}', request)
    return asgi


# -- the MCP server ----------------------------------------------------------------------------------------

def booking_server():
    async def list_tools(ctx, params):
        return types.ListToolsResult(tools=[types.Tool.model_validate(
            {"name": "get_booking", "description": "One booking by its reference.",
             "inputSchema": {"type": "object"}})])

    async def call_tool(ctx, params):
        return types.CallToolResult(content=[types.TextContent(type="text", text="ok")])

    mcp_app = Server("booking", version="1.0.0", on_list_tools=list_tools,
                     on_call_tool=call_tool).streamable_http_app(stateless_http=True)

    async def app(scope, receive, send):   # the container: /mcp, and the health path
        if scope["type"] == "http" and scope["path"] == "/healthz":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            return await send({"type": "http.response.body", "body": b"ok"})
        await mcp_app(scope, receive, send)
    return app


@pytest.fixture(scope="module")
def base_url(origin, jwks_url) -> Iterator[str]:
    app = stand_in(origin, booking_server(), {JWKS_URL: jwks_url})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the stand-in origin did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(5)


def get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    import http.client
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    with contextlib.closing(http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)) as connection:
        connection.request("GET", parts.path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()


# -- the tests -----------------------------------------------------------------------------------------------

def test_the_stand_in_applies_the_generated_settings(origin):
    [route] = [r for r in origin.listener_rules if r["actions"][0]["type"] == "jwt-validation"
               and "/booking/mcp" in r["conditions"][0]["pathPattern"]["values"]]
    claims = route["actions"][0]["jwtValidation"]["additionalClaims"]
    assert claims == [{"name": "aud", "format": "single-string", "values": [AUDIENCE]},
                      {"name": "scope", "format": "space-separated-values", "values": ["mcp:call"]}]


def test_a_valid_token_reaches_the_server(base_url):
    result = probe(f"{base_url}/booking/mcp", token=token(), timeout=10)
    assert result.ok, result.failure
    assert [t["name"] for t in result.tools] == ["get_booking"]


def test_a_call_without_a_token_gets_401_naming_the_metadata(base_url):
    result = probe(f"{base_url}/booking/mcp", timeout=10)
    assert result.failure.kind == "http" and result.failure.reason.startswith(
        f"HTTP 401 Unauthorized (WWW-Authenticate: {CHALLENGE})")


@pytest.mark.parametrize("presented", [
    pytest.param(lambda: token(aud="https://mcp.example.travel/loyalty/mcp"), id="another-servers-audience"),
    pytest.param(lambda: token(exp=int(time.time()) - 60), id="expired"),
    pytest.param(lambda: token(iss="https://evil.example/"), id="another-issuer"),
    pytest.param(lambda: token(key=OTHER_KEY), id="signed-by-another-key"),
    pytest.param(lambda: token(scope="booking:read"), id="without-the-required-scope"),
])
def test_a_token_not_minted_for_this_server_gets_401_with_the_challenge(base_url, presented):
    status, headers, _ = get(f"{base_url}/booking/mcp", {"Authorization": f"Bearer {presented()}"})
    assert (status, headers.get("www-authenticate")) == (401, CHALLENGE)


def test_a_token_for_one_server_does_not_open_another(base_url):
    status, headers, _ = get(f"{base_url}/loyalty/mcp", {"Authorization": f"Bearer {token()}"})
    assert status == 401 and headers["www-authenticate"].startswith(
        f'Bearer resource_metadata="https://{HOSTNAME}/.well-known/oauth-protected-resource/loyalty/mcp"')


def test_the_metadata_is_open_and_names_the_resource_and_its_authorization_server(base_url):
    status, headers, body = get(f"{base_url}{METADATA_PATH}")
    assert (status, headers["content-type"]) == (200, "application/json")
    assert json.loads(body) == {"resource": AUDIENCE, "authorization_servers": [ISSUER],
                                "bearer_methods_supported": ["header"], "resource_name": "MCP server booking",
                                "scopes_supported": ["mcp:call"]}


def test_the_health_path_stays_open(base_url):
    assert get(f"{base_url}/booking/healthz")[0] == 200


def test_estate_probe_gets_through_with_a_token_from_the_environment(base_url, monkeypatch, capsys):
    monkeypatch.setenv("MCP_TOKEN", token())
    assert main(["probe", f"{base_url}/booking/mcp", "--token-env", "MCP_TOKEN"]) == 0
    monkeypatch.delenv("MCP_TOKEN")
    assert main(["probe", f"{base_url}/booking/mcp"]) == 1
    assert f"WWW-Authenticate: {CHALLENGE}" in capsys.readouterr().err
