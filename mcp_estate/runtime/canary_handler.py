"""The canary's Lambda handler: probe every MCP server of a region by two paths, publish what it saw.

Runs on a schedule in the region's private subnets (components/canary.py). Each server is probed
twice with `mcp_estate.runtime.probe`, at the same URL, `https://<hostname>/<server>/mcp`:

- `alb`: straight to the region's ALB, bypassing Cloudflare. The ALB is internet-facing, yet its
  nodes also have private addresses in the VPC, which the function reaches without NAT; it finds
  them by the network interfaces ELB creates for the ALB (described `ELB app/<name>/<id>`) and
  connects to one as `curl --resolve` would: the hostname still goes in SNI and in `Host`, and the
  certificate is verified against it (the ALB serves the hostname's certificate, so nothing is
  relaxed, and a wrong origin certificate fails the probe as it would fail Cloudflare);
- `edge`: through the global hostname, i.e. through Cloudflare, as a user's client would (this
  needs the region's NAT gateways).

The probe's manifest check is done here, not in the probe: a tool manifest that differs from the
approved hash is reported as `ToolsManifestMismatch`, apart from `Success` (reachability and
protocol), so a changed manifest alarms without rolling back deployments (only `Success` through
the ALB is wired into them).

Metrics, namespace `MCPEstate/Canary`, dimensions `Server`, `Region`, `Path` (`alb` | `edge`):
`Success` (0/1), `ToolCount`, `ToolsManifestMismatch` (0/1, only for servers with an approved hash),
and, for successful probes, `Latency` (ms) with a fourth dimension `Step`: each exchange of the
probe (`server/discover`, `initialize`, `tools/list`...) and `total`.

Environment (set by the component): MCP_CANARY_HOSTNAME, MCP_CANARY_REGION, MCP_CANARY_ALB (the
ALB's interface description), MCP_CANARY_SERVERS (JSON: server -> approved tools sha256 or ""), and,
with `auth` on, MCP_CANARY_CREDENTIALS_ARN: the secret holding the canary's OAuth client credentials.
Each run then asks the token endpoint for one token per server (its URL as the RFC 8707 resource)
and presents it on both paths; a server whose token cannot be had fails its probes (step `token`).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import boto3

from mcp_estate.contract.names import CANARY_NAMESPACE as NAMESPACE
from mcp_estate.contract.names import CANARY_SUCCESS_METRIC

from .probe import Failure, ProbeResult, probe
from .tokens import ServerTokens, TokenError

PROBE_TIMEOUT_SECONDS = 10.0   # per probe; the two paths run one after the other, servers in parallel
MAX_PARALLEL_PROBES = 8
METRICS_PER_CALL = 20          # PutMetricData's historical limit, accepted everywhere

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)


@dataclass(frozen=True)
class Config:
    hostname: str
    region: str
    alb_interfaces: str            # description of the ALB's network interfaces: "ELB app/<name>/<id>"
    servers: dict[str, str]        # server -> approved tools sha256, "" when none is declared
    credentials_secret: str | None = None   # the secret of the canary's client credentials

    @classmethod
    def from_environment(cls, env: dict[str, str]) -> Config:
        return cls(hostname=env["MCP_CANARY_HOSTNAME"], region=env["MCP_CANARY_REGION"],
                   alb_interfaces=env["MCP_CANARY_ALB"], servers=json.loads(env["MCP_CANARY_SERVERS"]),
                   credentials_secret=env.get("MCP_CANARY_CREDENTIALS_ARN"))

    def url(self, server: str) -> str:
        return f"https://{self.hostname}/{server}/mcp"


def handler(event: dict, context: Any) -> dict:
    """The Lambda entry point (EventBridge schedule): the summary is also the function's result."""
    config = Config.from_environment(dict(os.environ))
    secrets = boto3.client("secretsmanager", region_name=config.region) if config.credentials_secret else None
    return run(config, probe, boto3.client("ec2", region_name=config.region),
               boto3.client("cloudwatch", region_name=config.region), secrets)


def run(config: Config, probe_fn: Callable[..., ProbeResult], ec2: Any, cloudwatch: Any,
        secrets: Any = None) -> dict:
    """Probe every server through the ALB, then through the edge; publish; summarise."""
    probe_fn = with_tokens(config, probe_fn, secrets)
    address = alb_address(ec2, config.alb_interfaces)
    results: dict[tuple[str, str], ProbeResult] = {}
    if address is None:
        results.update({(server, "alb"): _unreachable(config.url(server), config.alb_interfaces)
                        for server in config.servers})
    else:
        with resolving(config.hostname, address):
            results.update({(server, "alb"): r for server, r in _probe_all(config, probe_fn).items()})
    results.update({(server, "edge"): r for server, r in _probe_all(config, probe_fn).items()})

    summary = [_summary(config, server, path, results[server, path]) for server, path in sorted(results)]
    for entry in summary:
        log.info("mcp.canary.probe", extra=entry)
    publish(cloudwatch, [datum for server, path in sorted(results)
                         for datum in metric_data(config, server, path, results[server, path])])
    return {"region": config.region, "alb_address": address, "probes": summary}


def with_tokens(config: Config, probe_fn: Callable[..., ProbeResult], secrets: Any) -> Callable[..., ProbeResult]:
    """`probe_fn` presenting each server's token, fetched once per run; unchanged without credentials."""
    if not config.credentials_secret:
        return probe_fn
    tokens = ServerTokens(secrets, config.credentials_secret, PROBE_TIMEOUT_SECONDS)

    def probe_with_token(url: str, **kwargs: Any) -> ProbeResult:
        try:
            token = tokens.token_for(url)
        except TokenError as error:
            return ProbeResult(url=url, protocol_requested="auto", failure=Failure("auth", "token", str(error)[:1000]))
        return probe_fn(url, token=token, **kwargs)
    return probe_with_token


def alb_address(ec2: Any, description: str) -> str | None:
    """A private address of one of the ALB's nodes (the lowest, so runs are repeatable), or None."""
    answer = ec2.describe_network_interfaces(Filters=[{"Name": "description", "Values": [description]},
                                                      {"Name": "status", "Values": ["in-use"]}])
    addresses = sorted(i["PrivateIpAddress"] for i in answer["NetworkInterfaces"] if i.get("PrivateIpAddress"))
    return addresses[0] if addresses else None


@contextmanager
def resolving(hostname: str, address: str) -> Iterator[None]:
    """Connections to `hostname` go to `address`; everything else about them (SNI, Host, the
    certificate check) still uses the hostname. Process-wide while it lasts: only the ALB probes run."""
    original = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        return original(address if name == hostname else host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo
    try:
        yield
    finally:
        socket.getaddrinfo = original


def _probe_all(config: Config, probe_fn: Callable[..., ProbeResult]) -> dict[str, ProbeResult]:
    servers = sorted(config.servers)
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_PROBES, len(servers) or 1)) as pool:
        found = pool.map(lambda server: probe_fn(config.url(server), timeout=PROBE_TIMEOUT_SECONDS), servers)
        return dict(zip(servers, found))


def _unreachable(url: str, description: str) -> ProbeResult:
    return ProbeResult(url=url, protocol_requested="auto", failure=Failure(
        "connection", "locate ALB", f"no in-use network interface described '{description}'"))


def mismatch(expected: str, result: ProbeResult) -> bool | None:
    """Whether the served manifest differs from the approved one; None when nothing can be compared."""
    if not expected or result.tools_sha256 is None:
        return None
    return result.tools_sha256 != expected


def step_latencies(result: ProbeResult) -> dict[str, float]:
    """Milliseconds per step name (a paginated tools/list adds up), and `total`."""
    latencies: dict[str, float] = {}
    for step in result.steps:
        latencies[step.name] = latencies.get(step.name, 0.0) + step.latency_ms
    return {**latencies, "total": sum(step.latency_ms for step in result.steps)}


def metric_data(config: Config, server: str, path: str, result: ProbeResult) -> list[dict]:
    dimensions = [{"Name": "Server", "Value": server}, {"Name": "Region", "Value": config.region},
                  {"Name": "Path", "Value": path}]

    def datum(name: str, value: float, unit: str, extra: list[dict] = ()) -> dict:
        return {"MetricName": name, "Dimensions": [*dimensions, *extra], "Value": value, "Unit": unit}

    data = [datum(CANARY_SUCCESS_METRIC, 1.0 if result.ok else 0.0, "Count")]
    if result.tools_sha256 is not None:
        data.append(datum("ToolCount", float(len(result.tools)), "Count"))
    changed = mismatch(config.servers[server], result)
    if changed is not None:
        data.append(datum("ToolsManifestMismatch", 1.0 if changed else 0.0, "Count"))
    if result.ok:   # a failed probe's time is its failure's (a timeout...), not the server's latency
        data += [datum("Latency", ms, "Milliseconds", [{"Name": "Step", "Value": step}])
                 for step, ms in sorted(step_latencies(result).items())]
    return data


def publish(cloudwatch: Any, data: list[dict]) -> None:
    for start in range(0, len(data), METRICS_PER_CALL):
        cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data[start:start + METRICS_PER_CALL])


def _summary(config: Config, server: str, path: str, result: ProbeResult) -> dict:
    failure = result.failure
    return {"server": server, "path": path, "ok": result.ok, "protocol_version": result.protocol_version,
            "tool_count": len(result.tools), "tools_sha256": result.tools_sha256,
            "tools_mismatch": mismatch(config.servers[server], result),
            "latency_ms": step_latencies(result)["total"],
            "failure": None if failure is None else f"{failure.step} failed ({failure.kind}): {failure.reason}"}
