"""The probe and the canary present bearer tokens: a client-credentials token per server from the
canary's secret, or a token from an environment variable for `estate probe`."""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest
from conftest import shipped_plan

from mcp_estate.runtime import canary_handler
from mcp_estate.runtime.probe import ProbeInputError, ProbeResult, probe
from mcp_estate.runtime.tokens import ClientCredentials, TokenError

BOOKING = "https://mcp.example.travel/booking/mcp"


@pytest.fixture
def token_endpoint() -> Iterator[tuple[str, list[dict]]]:
    """A token endpoint on 127.0.0.1 (ephemeral port) answering `token-for-<resource's last part>`."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            form = dict(urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
            seen.append({"authorization": self.headers["Authorization"], **form})
            ok = self.headers["Authorization"] == "Basic " + base64.b64encode(b"canary:s%3Ecret").decode()
            body = {"access_token": f"token-for-{form['resource'].split('/')[-2]}", "token_type": "Bearer"} \
                if ok else {"error": "invalid_client"}
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/oauth2/token", seen
    server.shutdown()


def credentials(url: str, secret: str = "s>cret") -> ClientCredentials:
    # The endpoint is plain HTTP on loopback: built directly, past the secret's https check.
    return ClientCredentials(token_url=url, client_id="canary", client_secret=secret, scope="mcp:probe")


def test_a_token_is_asked_for_the_server_with_client_credentials_and_the_resource(token_endpoint):
    url, seen = token_endpoint
    assert credentials(url).token_for(BOOKING, timeout=5) == "token-for-booking"
    assert seen == [{"authorization": "Basic " + base64.b64encode(b"canary:s%3Ecret").decode(),
                     "grant_type": "client_credentials", "resource": BOOKING, "scope": "mcp:probe"}]


def test_a_refused_client_is_reported_with_the_endpoints_answer(token_endpoint):
    url, _ = token_endpoint
    with pytest.raises(TokenError, match=r"answered HTTP 401: .*invalid_client"):
        credentials(url, secret="wrong").token_for(BOOKING, timeout=5)


@pytest.mark.parametrize("text, fragment", [
    ("not json", "is not JSON: store {token_url, client_id, client_secret, scope}"),
    ('{"token_url": "https://login.example.travel/token", "client_id": "c"}', "lacks client_secret, scope"),
    ('{"token_url": "http://login.example.travel/token", "client_id": "c", "client_secret": "s", "scope": ""}',
     "is not https: the client secret would travel in clear"),
])
def test_an_unusable_secret_names_what_to_store(text, fragment):
    with pytest.raises(TokenError, match=fragment.replace("{", r"\{").replace("}", r"\}")):
        ClientCredentials.from_secret(text, "secret canary-oauth-client")


def test_a_token_that_could_split_the_header_is_refused_before_anything_is_sent():
    with pytest.raises(ProbeInputError, match="not a bearer token"):
        probe("http://127.0.0.1:9/booking/mcp", token="abc\r\nX-Injected: 1")


class FakeSecrets:
    def __init__(self, text: str):
        self.text, self.asked = text, []

    def get_secret_value(self, SecretId: str) -> dict:   # noqa: N803 (boto3's name)
        self.asked.append(SecretId)
        return {"SecretString": self.text}


def canary_config(secret: str | None) -> canary_handler.Config:
    return canary_handler.Config(hostname="mcp.example.travel", region="us-east-1", alb_interfaces="ELB app/x/y",
                                 servers={"booking": "", "loyalty": ""}, credentials_secret=secret)


def test_the_canary_presents_each_server_its_own_token(token_endpoint, monkeypatch):
    url, seen = token_endpoint
    monkeypatch.setattr(ClientCredentials, "from_secret", classmethod(lambda cls, text, source: credentials(url)))
    calls = []

    def fake_probe(url: str, **kwargs) -> ProbeResult:
        calls.append((url, kwargs.get("token")))
        return ProbeResult(url=url, protocol_requested="auto")
    probe_fn = canary_handler.with_tokens(canary_config("arn:secret"), fake_probe, FakeSecrets("{}"))
    for server in ("booking", "loyalty", "booking"):
        probe_fn(f"https://mcp.example.travel/{server}/mcp", timeout=1)
    assert calls == [(BOOKING, "token-for-booking"), ("https://mcp.example.travel/loyalty/mcp", "token-for-loyalty"),
                     (BOOKING, "token-for-booking")]
    assert len(seen) == 2   # one token per server and run


def test_without_a_token_the_canarys_probe_fails_at_the_token_step():
    probe_fn = canary_handler.with_tokens(canary_config("arn:secret"), pytest.fail, FakeSecrets("not json"))
    result = probe_fn(BOOKING, timeout=1)
    assert (result.failure.kind, result.failure.step) == ("auth", "token")
    assert "cannot read arn:secret" in result.failure.reason and "is not JSON" in result.failure.reason


def test_without_credentials_the_canary_probes_as_before():
    def fake_probe(url, **kwargs):
        return ProbeResult(url=url, protocol_requested="auto")
    assert canary_handler.with_tokens(canary_config(None), fake_probe, None) is fake_probe


def test_the_canary_may_read_exactly_its_credentials_secret_and_reach_the_token_endpoint():
    plan = shipped_plan("prod")
    policy = json.loads(plan.named("mcp-estate-us-east-1-canary-policy").inputs["policy"])
    read = [s for s in policy["Statement"] if s["Sid"] in ("ReadProbeCredentials", "DecryptProbeCredentials")]
    assert [s["Action"] for s in read] == ["secretsmanager:GetSecretValue", "kms:Decrypt"]
    assert read[0]["Resource"].startswith(
        "arn:aws:secretsmanager:us-east-1:777788889999:secret:mcp-estate-prod/canary-oauth-client")
    assert read[1]["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}}
    variables = plan.named("mcp-estate-us-east-1-canary-function").inputs["environment"]["variables"]
    assert variables["MCP_CANARY_CREDENTIALS_ARN"] == read[0]["Resource"]
    egress = plan.named("mcp-estate-us-east-1-canary-to-token-203-0-113-0-24").inputs
    assert (egress["cidrIpv4"], egress["fromPort"], egress["toPort"]) == ("203.0.113.0/24", 443, 443)
