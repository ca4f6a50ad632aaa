"""The deployment hook against real MCP servers (the `mcp` package) on 127.0.0.1: a good revision
passes, a revision whose tool manifest changed, or whose probe tool fails, is rolled back.

The handler's route to the revision (the ALB node, the test header, the hostname) is kept; only the
final URL is swapped for the local server's, so what the hook sends is what the server receives.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time

import mcp_types as types
import pytest
import uvicorn
from mcp.server.lowlevel import Server
from test_probe_tokens import credentials, token_endpoint  # noqa: F401 (the fixture: a token endpoint on 127.0.0.1)

from mcp_estate.runtime.deployment_hook import (
    FAILED,
    SUCCEEDED,
    TEST_ROUTE_HEADER,
    Config,
    Gate,
    run,
    server_of,
)
from mcp_estate.runtime.probe import HANDSHAKE, MODERN, manifest_sha256, probe
from mcp_estate.runtime.tokens import ClientCredentials

TOOLS = [{"name": "search_flights", "description": "Flights between two airports.",
          "inputSchema": {"type": "object", "properties": {"from": {"type": "string"}}}},
         {"name": "get_fare_rules", "description": "Fare rules of a fare basis.", "inputSchema": {"type": "object"}}]
APPROVED = manifest_sha256(TOOLS)
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mcp-estate-prod/canary-oauth-client-AbCdEf"
EVENT = {"executionDetails": {"serviceArn": "arn:aws:ecs:eu-west-1:123456789012:service/c/booking-1a2b",
                              "targetServiceRevisionArn": "arn:aws:ecs:eu-west-1:123456789012:service-revision/c/b/2",
                              "testTrafficWeights": {}, "productionTrafficWeights": {}},
         "hookDetails": {"server": "booking"}}


def _server(tools: list[dict]) -> Server:
    async def list_tools(ctx, params):
        return types.ListToolsResult(tools=[types.Tool.model_validate(t) for t in tools])

    async def call_tool(ctx, params):
        broken = (params.arguments or {}).get("from") == "XXX"
        return types.CallToolResult(content=[types.TextContent(type="text", text="3 flights")], is_error=broken)

    return Server("booking", version="2.0.0", on_list_tools=list_tools, on_call_tool=call_tool)


@contextlib.contextmanager
def _serving(app):
    seen: list[dict] = []

    async def recording(scope, receive, send):
        if scope["type"] == "http":
            seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await app(scope, receive, send)

    server = uvicorn.Server(uvicorn.Config(recording, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/mcp", seen
    finally:
        server.should_exit = True
        thread.join(5)


@pytest.fixture(scope="module")
def good():
    with _serving(_server(TOOLS).streamable_http_app()) as running:
        yield running


@pytest.fixture(scope="module")
def changed():
    """The new revision added a tool: a manifest nobody approved."""
    extra = {"name": "export_all_bookings", "description": "Every booking.", "inputSchema": {"type": "object"}}
    with _serving(_server([*TOOLS, extra]).streamable_http_app()) as running:
        yield running


class FakeEc2:
    def describe_network_interfaces(self, Filters):
        return {"NetworkInterfaces": [{"PrivateIpAddress": "10.20.0.17"}]}


class NoInterfaces:
    def describe_network_interfaces(self, Filters):
        return {"NetworkInterfaces": []}


class FakeSecrets:
    """The probe credentials secret (the canary's): its JSON, or an error as Secrets Manager raises."""
    def __init__(self, text: str = "{}", error: Exception | None = None):
        self.text, self.error, self.asked = text, error, []

    def get_secret_value(self, SecretId):
        self.asked.append(SecretId)
        if self.error is not None:
            raise self.error
        return {"SecretString": self.text}


def _config(credentials_secret: str | None = None, **gate) -> Config:
    defaults = {"protocols": ["2025-11-25", "2026-07-28"], "tools_sha256": APPROVED}
    return Config(hostname="mcp.example.travel", region="eu-west-1", alb_interfaces="ELB app/x/1",
                  servers={"booking": Gate(**{**defaults, **gate})}, credentials_secret=credentials_secret)


def _to(local_url: str, calls: list[dict]):
    """The real probe, sent to the local server instead of the ALB node."""
    def probe_fn(url, **options):
        calls.append({"url": url, **options})
        return probe(local_url, **options)
    return probe_fn


def test_a_good_revision_passes_every_generation_and_the_probe_tool(good):
    url, seen = good
    calls: list[dict] = []
    answer = run(EVENT, _config(probe_tool="search_flights", probe_arguments={"from": "ZRH"}), FakeEc2(),
                 FakeSecrets(), _to(url, calls))
    assert answer == {"hookStatus": SUCCEEDED}
    assert [c["protocol"] for c in calls] == [MODERN, HANDSHAKE]
    assert {c["url"] for c in calls} == {"https://mcp.example.travel/booking/mcp"}
    assert all(c["tool"] == "search_flights" and c["arguments"] == {"from": "ZRH"} for c in calls)
    assert all(h.get(TEST_ROUTE_HEADER.lower()) == "test" for h in seen)


def test_a_changed_tool_manifest_rolls_the_deployment_back(changed):
    url, _ = changed
    answer = run(EVENT, _config(), FakeEc2(), FakeSecrets(), _to(url, []))
    assert answer == {"hookStatus": FAILED}


def test_the_same_revision_passes_when_no_manifest_is_approved(changed):
    url, _ = changed
    assert run(EVENT, _config(tools_sha256=""), FakeEc2(), FakeSecrets(), _to(url, [])) == {"hookStatus": SUCCEEDED}


def test_a_failing_probe_tool_rolls_back(good):
    url, _ = good
    gate = _config(probe_tool="search_flights", probe_arguments={"from": "XXX"})
    assert run(EVENT, gate, FakeEc2(), FakeSecrets(), _to(url, [])) == {"hookStatus": FAILED}


def test_a_generation_the_server_does_not_speak_rolls_back():
    """A revision that dropped 2026-07-28 while the spec still promises it."""
    with _serving(_server(TOOLS).streamable_http_app()) as (url, _):
        def legacy_only(target, **options):
            return probe(url, **{**options, "protocol": HANDSHAKE}) if options["protocol"] == HANDSHAKE \
                else probe("http://127.0.0.1:9/mcp", **options)   # the discard port: nothing answers
        assert run(EVENT, _config(), FakeEc2(), FakeSecrets(), legacy_only) == {"hookStatus": FAILED}


@pytest.fixture
def idp(token_endpoint, monkeypatch):  # noqa: F811 (the imported fixture)
    """The canary's client credentials point at the local token endpoint (plain HTTP on loopback,
    so past the secret's https check, as in test_probe_tokens.py)."""
    url, seen = token_endpoint
    monkeypatch.setattr(ClientCredentials, "from_secret",
                        classmethod(lambda cls, text, source: credentials(url, secret=json.loads(text)["secret"])))
    return seen


def test_each_deployment_asks_a_fresh_token_for_the_server_and_sends_it_as_a_bearer(good, idp):
    """As the canary: client credentials, the server's URL as RFC 8707 resource; one request per
    invocation, so a token the IdP issued an hour ago is never presented again."""
    url, seen = good
    secrets, before = FakeSecrets('{"secret": "s>cret"}'), len(seen)
    for _ in range(2):
        assert run(EVENT, _config(SECRET_ARN), FakeEc2(), secrets, _to(url, [])) == {"hookStatus": SUCCEEDED}
    assert secrets.asked == [SECRET_ARN, SECRET_ARN]
    assert [(r["grant_type"], r["resource"]) for r in idp] == \
        [("client_credentials", "https://mcp.example.travel/booking/mcp")] * 2
    assert seen[before:] and {h.get("authorization") for h in seen[before:]} == {"Bearer token-for-booking"}


def test_a_refused_client_fails_the_deployment_before_any_probe(good, idp):
    url, _ = good
    calls: list[dict] = []
    secrets = FakeSecrets('{"secret": "wrong"}')
    assert run(EVENT, _config(SECRET_ARN), FakeEc2(), secrets, _to(url, calls)) == {"hookStatus": FAILED}
    assert calls == [] and len(idp) == 1


def test_an_unreadable_credentials_secret_fails_the_deployment(good):
    url, _ = good
    calls: list[dict] = []
    secrets = FakeSecrets(error=PermissionError("AccessDeniedException: kms:Decrypt"))
    assert run(EVENT, _config(SECRET_ARN), FakeEc2(), secrets, _to(url, calls)) == {"hookStatus": FAILED}
    assert calls == []


def test_without_credentials_the_hook_sends_no_token(good):
    """Dev with `auth: {disabled: true}`: the component sets no credentials secret."""
    url, seen = good
    secrets, before = FakeSecrets(error=AssertionError("no secret is read")), len(seen)
    assert run(EVENT, _config(), FakeEc2(), secrets, _to(url, [])) == {"hookStatus": SUCCEEDED}
    assert seen[before:] and not any("authorization" in h for h in seen[before:])


def test_no_alb_node_or_an_unknown_server_fails_closed(good):
    url, _ = good
    assert run(EVENT, _config(), NoInterfaces(), FakeSecrets(), _to(url, [])) == {"hookStatus": FAILED}
    other = {**EVENT, "hookDetails": {"server": "payments"}}
    assert run(other, _config(), FakeEc2(), FakeSecrets(), _to(url, [])) == {"hookStatus": FAILED}


@pytest.mark.parametrize("details", [{"server": "booking"}, json.dumps({"server": "booking"})])
def test_the_server_comes_from_hook_details_as_object_or_text(details):
    assert server_of({"hookDetails": details}) == "booking"


@pytest.mark.parametrize("event", [{}, {"hookDetails": "not json"}, {"hookDetails": {"server": 3}}])
def test_an_event_naming_no_server_raises_so_ecs_rolls_back(event):
    with pytest.raises(ValueError, match="names no server"):
        server_of(event)


def test_generations_map_every_declared_revision_to_a_probe_protocol():
    assert Gate(protocols=["2025-03-26", "2025-06-18"]).generations() == [HANDSHAKE]
    assert Gate(protocols=["2026-07-28"]).generations() == [MODERN]
    assert Gate(protocols=["2025-11-25", "2026-07-28"]).generations() == [MODERN, HANDSHAKE]


def test_config_reads_the_environment_the_component_writes():
    env = {"MCP_HOOK_HOSTNAME": "mcp.example.travel", "MCP_HOOK_REGION": "eu-west-1", "MCP_HOOK_ALB": "ELB app/x/1",
           "MCP_HOOK_SERVERS": json.dumps({"booking": {"protocols": ["2026-07-28"], "tools_sha256": APPROVED,
                                                       "probe_tool": "", "probe_arguments": {}}})}
    config = Config.from_environment(env)
    assert config.servers["booking"] == Gate(protocols=["2026-07-28"], tools_sha256=APPROVED)
    assert config.credentials_secret is None
    assert Config.from_environment({**env, "MCP_HOOK_CREDENTIALS_ARN": SECRET_ARN}).credentials_secret == SECRET_ARN
    assert config.url("booking") == "https://mcp.example.travel/booking/mcp"
