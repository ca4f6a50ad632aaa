"""The deployment hook's Lambda handler: probe a new revision through the test listener rule, before
any production traffic reaches it, and tell ECS whether the deployment may go on.

ECS invokes it at the POST_TEST_TRAFFIC_SHIFT stage of a CANARY or LINEAR deployment of an MCP
server (components/deployment_gate.py): the new revision's tasks are running in the alternate
target group and the test listener rule forwards to them, while the production rule still sends
every traveller to the old revision. The function reaches the region's ALB as the canary does (a
node's private address, the estate hostname as SNI and Host; see canary_handler.py) and sends the
test route header, which only the test rule matches, and only from inside the VPC. It probes:

- the handshake of each protocol generation the server serves (`surface.protocols`): the 2026-07-28
  `server/discover` for `2026-07-28`, the `initialize` session for any earlier revision;
- `tools/list`, whose manifest must hash to the approved `tools_sha256` when one is declared;
- the read-only `surface.probe_tool` with its arguments, when one is declared (a tool error fails).

Every probe passing answers `{"hookStatus": "SUCCEEDED"}`; any failure `FAILED`, and ECS rolls the
deployment back to the last good revision. An exception is also a rollback (ECS treats a function
error or an answer without a valid hookStatus so), which is why no error is swallowed into SUCCEEDED.

The event: ECS documents `serviceArn`, `targetServiceRevisionArn`, `testTrafficWeights` and
`productionTrafficWeights`, and AWS's sample reads them under `executionDetails`; both places are
read. Which server the deployment is of comes from `hookDetails` (`{"server": "<name>"}`), which the
service's lifecycle hook configuration sets, so no name has to be parsed out of an auto-named service.

Tokens: with `auth` on, the server validates tokens itself (ECS owns its route rule, so the ALB
cannot: docs/decisions/0001), and the hook presents one exactly as the canary does: a
client-credentials token for the server's URL (RFC 8707 `resource`) from the estate's probe
credentials secret (`monitoring.probe_credentials_secret`, mcp_estate/runtime/tokens.py), asked for
on each invocation, so it is never older than the IdP's lifetime. No token (the secret unreadable,
the IdP refusing or unreachable) fails the deployment: a revision nobody could check does not ship.

Environment (set by the component): MCP_HOOK_HOSTNAME, MCP_HOOK_REGION, MCP_HOOK_ALB (the ALB's
interface description), MCP_HOOK_SERVERS (JSON: server -> `Gate` fields) and, with `auth` on,
MCP_HOOK_CREDENTIALS_ARN (the probe credentials secret's ARN in the region).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import boto3

from mcp_estate.contract.names import TEST_ROUTE_HEADER, TEST_ROUTE_VALUE

from .canary_handler import alb_address, resolving
from .probe import HANDSHAKE, MODERN, ProbeResult, probe
from .tokens import ServerTokens, TokenError

PROBE_TIMEOUT_SECONDS = 20.0
SUCCEEDED, FAILED = "SUCCEEDED", "FAILED"

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)


@dataclass(frozen=True)
class Gate:
    """What a new revision of one server must pass."""
    protocols: list[str]
    tools_sha256: str = ""                              # "" when none is approved
    probe_tool: str = ""                                # "" when none is declared
    probe_arguments: dict[str, Any] = field(default_factory=dict)

    def generations(self) -> list[str]:
        """The probe's protocol per generation served: 2026-07-28 stateless, or an earlier handshake
        (the probe offers 2025-11-25 and accepts any Streamable HTTP revision the server picks)."""
        wanted = {MODERN if revision == MODERN else HANDSHAKE for revision in self.protocols}
        return sorted(wanted, reverse=True)


@dataclass(frozen=True)
class Config:
    hostname: str
    region: str
    alb_interfaces: str
    servers: dict[str, Gate]
    credentials_secret: str | None = None   # the probe credentials secret (the canary's), with `auth` on

    @classmethod
    def from_environment(cls, env: dict[str, str]) -> Config:
        servers = {name: Gate(**fields) for name, fields in json.loads(env["MCP_HOOK_SERVERS"]).items()}
        return cls(hostname=env["MCP_HOOK_HOSTNAME"], region=env["MCP_HOOK_REGION"],
                   alb_interfaces=env["MCP_HOOK_ALB"], servers=servers,
                   credentials_secret=env.get("MCP_HOOK_CREDENTIALS_ARN"))

    def url(self, server: str) -> str:
        return f"https://{self.hostname}/{server}/mcp"


def handler(event: dict, context: Any) -> dict:
    """The Lambda entry point: ECS reads `hookStatus` from the result."""
    config = Config.from_environment(dict(os.environ))
    secrets = boto3.client("secretsmanager", region_name=config.region) if config.credentials_secret else None
    return run(event, config, boto3.client("ec2", region_name=config.region), secrets, probe)


def run(event: dict, config: Config, ec2: Any, secrets: Any, probe_fn: Callable[..., ProbeResult]) -> dict:
    server = server_of(event)
    gate = config.servers.get(server)
    if gate is None:
        return _answer(FAILED, server, event, [f"no gate is configured for server '{server}'"])
    address = alb_address(ec2, config.alb_interfaces)
    if address is None:
        return _answer(FAILED, server, event, [f"no in-use network interface described '{config.alb_interfaces}'"])
    token = None
    if config.credentials_secret:
        tokens = ServerTokens(secrets, config.credentials_secret, PROBE_TIMEOUT_SECONDS)
        try:
            token = tokens.token_for(config.url(server))
        except TokenError as error:
            return _answer(FAILED, server, event, [f"token failed (auth): {error}"])
    with resolving(config.hostname, address):
        failures = check(gate, config.url(server), probe_fn, token)
    return _answer(FAILED if failures else SUCCEEDED, server, event, failures)


def check(gate: Gate, url: str, probe_fn: Callable[..., ProbeResult], token: str | None) -> list[str]:
    """Why the revision behind `url` fails its gate; empty when it passes."""
    failures = []
    headers = {TEST_ROUTE_HEADER: TEST_ROUTE_VALUE}
    for protocol in gate.generations():
        result = probe_fn(url, protocol=protocol, headers=headers, token=token, timeout=PROBE_TIMEOUT_SECONDS,
                          expect_tools_sha256=gate.tools_sha256 or None, tool=gate.probe_tool or None,
                          arguments=gate.probe_arguments if gate.probe_tool else None)
        if result.failure is not None:
            failure = result.failure
            failures.append(f"{protocol}: {failure.step} failed ({failure.kind}): {failure.reason}")
    return failures


def server_of(event: dict) -> str:
    """The server named in the hook's details (a JSON object, or its text)."""
    details = event.get("hookDetails")
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError:
            details = None
    server = details.get("server") if isinstance(details, dict) else None
    if not isinstance(server, str):
        raise ValueError(f"the hook event names no server in hookDetails: {sorted(event)}")
    return server


def _answer(status: str, server: str, event: dict, failures: list[str]) -> dict:
    execution = event.get("executionDetails") if isinstance(event.get("executionDetails"), dict) else event
    log.info("mcp.deployment_hook", extra={
        "server": server, "hook_status": status, "failures": failures,
        "service_arn": execution.get("serviceArn"), "revision_arn": execution.get("targetServiceRevisionArn")})
    return {"hookStatus": status}
