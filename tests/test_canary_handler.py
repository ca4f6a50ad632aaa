"""The canary's handler: what it probes, by which route, and the metrics SREs alarm on.

The end-to-end tests run the handler against a real MCP server from the `mcp` package, served over
TLS on 127.0.0.1 with a certificate for `mcp.canary.test` (trusted through SSL_CERT_FILE) and
accepting no other Host header: standing in for an ALB node's private address. The server listens
on a port the OS picks (no root, no race for a free port); the test's resolver sends 127.0.0.1:443
there and refuses every other name, so nothing reaches a real resolver. EC2 and CloudWatch
are small fakes; the metric data is checked against botocore's PutMetricData model.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import socket
import threading
import time

import botocore.session
import mcp_types as types
import pytest
import uvicorn
from botocore.validate import ParamValidator
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecuritySettings

from mcp_estate.runtime.canary_handler import NAMESPACE, Config, metric_data, run
from mcp_estate.runtime.probe import Failure, ProbeResult, Step, manifest_sha256, probe

HOSTNAME = "mcp.canary.test"
INTERFACES = "ELB app/mcp-estate-test-eu-west-1/50dc6c495c0c9188"
TOOLS = [{"name": "search_flights", "description": "Flights between two airports.",
          "inputSchema": {"type": "object", "properties": {"from": {"type": "string"}}}}]


class FakeEc2:
    """DescribeNetworkInterfaces answering with the ALB's interfaces (private addresses)."""

    def __init__(self, addresses: list[str]):
        self.addresses, self.filters = addresses, None

    def describe_network_interfaces(self, Filters):
        self.filters = Filters
        return {"NetworkInterfaces": [{"PrivateIpAddress": a, "Description": INTERFACES} for a in self.addresses]}


class FakeCloudWatch:
    def __init__(self):
        self.calls: list[dict] = []

    def put_metric_data(self, **params):
        self.calls.append(params)

    def data(self) -> list[dict]:
        return [d for call in self.calls for d in call["MetricData"]]


def config(**servers: str) -> Config:
    return Config(hostname=HOSTNAME, region="eu-west-1", alb_interfaces=INTERFACES, servers=servers)


def value(cloudwatch: FakeCloudWatch, metric: str, server: str, path: str, step: str | None = None) -> float:
    wanted = {"Server": server, "Region": "eu-west-1", "Path": path, **({"Step": step} if step else {})}
    [found] = [d["Value"] for d in cloudwatch.data()
               if d["MetricName"] == metric and {x["Name"]: x["Value"] for x in d["Dimensions"]} == wanted]
    return found


# -- a real MCP server behind "the ALB" -----------------------------------------------------------

def _certificate(directory, hostname: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / f"{hostname}.pem", directory / f"{hostname}.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


def _booking_app():
    async def list_tools(ctx, params):
        return types.ListToolsResult(tools=[types.Tool.model_validate(tool) for tool in TOOLS])

    # The ALB strips `/booking`; here the app serves the full path. Only the estate hostname is a valid Host.
    return Server("booking", version="3.1.4", on_list_tools=list_tools).streamable_http_app(
        streamable_http_path="/booking/mcp", stateless_http=True, transport_security=TransportSecuritySettings(
            allowed_hosts=[HOSTNAME], allowed_origins=[f"https://{HOSTNAME}"]))


@contextlib.contextmanager
def _served_over_tls(cert_file: str, key_file: str):
    """Serve on 127.0.0.1, on a socket bound to a port the OS chose; yield that port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(_booking_app(), log_level="critical",
                                           ssl_certfile=cert_file, ssl_keyfile=key_file))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the TLS MCP server did not start"
        time.sleep(0.01)
    try:
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(5)
        listener.close()


@pytest.fixture(scope="module")
def alb(tmp_path_factory):
    """(certificate file, port) of a TLS MCP server on 127.0.0.1 serving `mcp.canary.test`."""
    cert_file, key_file = _certificate(tmp_path_factory.mktemp("tls"), HOSTNAME)
    with _served_over_tls(cert_file, key_file) as port:
        yield cert_file, port


def loopback_resolver(https_port: int):
    """getaddrinfo that knows only 127.0.0.1, where HTTPS (443) is served on `https_port`."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name != "127.0.0.1":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(name, https_port if port in (443, "443", "https") else port, *args, **kwargs)
    return getaddrinfo


@pytest.fixture
def trusted(alb, monkeypatch):
    cert_file, port = alb
    monkeypatch.setenv("SSL_CERT_FILE", cert_file)   # what the probe's default TLS context trusts
    monkeypatch.setattr(socket, "getaddrinfo", loopback_resolver(port))


def test_the_alb_probe_reaches_the_servers_private_address_as_the_hostname(trusted):
    ec2, cloudwatch = FakeEc2(["127.0.0.1"]), FakeCloudWatch()
    summary = run(config(booking=manifest_sha256(TOOLS)), probe, ec2, cloudwatch)

    probes = {p["path"]: p for p in summary["probes"]}
    assert summary["alb_address"] == "127.0.0.1"
    assert probes["alb"]["ok"] and probes["alb"]["tool_count"] == 1 and probes["alb"]["tools_mismatch"] is False
    # The pin is for the ALB probes only: through the edge, the (unresolvable) hostname is looked up.
    assert not probes["edge"]["ok"] and f"cannot resolve {HOSTNAME}" in probes["edge"]["failure"]
    assert ec2.filters == [{"Name": "description", "Values": [INTERFACES]}, {"Name": "status", "Values": ["in-use"]}]
    assert (value(cloudwatch, "Success", "booking", "alb"), value(cloudwatch, "Success", "booking", "edge")) == (1, 0)
    assert value(cloudwatch, "ToolsManifestMismatch", "booking", "alb") == 0
    assert value(cloudwatch, "Latency", "booking", "alb", "total") > 0


def test_a_changed_tool_manifest_is_a_mismatch_not_a_failed_probe(trusted):
    cloudwatch = FakeCloudWatch()
    run(config(booking=hashlib.sha256(b"the approved manifest").hexdigest()), probe, FakeEc2(["127.0.0.1"]),
        cloudwatch)
    assert value(cloudwatch, "ToolsManifestMismatch", "booking", "alb") == 1
    assert value(cloudwatch, "Success", "booking", "alb") == 1


def test_the_alb_certificate_is_still_verified_against_the_hostname(trusted):
    # The same trusted server, probed as another estate's hostname: its certificate does not name it.
    other = Config(hostname="other.canary.test", region="eu-west-1", alb_interfaces=INTERFACES,
                   servers={"booking": ""})
    summary = run(other, probe, FakeEc2(["127.0.0.1"]), FakeCloudWatch())
    [alb_probe] = [p for p in summary["probes"] if p["path"] == "alb"]
    assert not alb_probe["ok"] and "Hostname mismatch" in alb_probe["failure"], alb_probe


# -- metrics, with a fake probe -------------------------------------------------------------------

def result(ok: bool = True, digest: str | None = "a" * 64) -> ProbeResult:
    return ProbeResult(url=f"https://{HOSTNAME}/booking/mcp", protocol_requested="auto",
                       protocol_version="2026-07-28" if ok else None, tools=TOOLS if digest else [],
                       tools_sha256=digest, steps=[Step("server/discover", 40.0, 200), Step("tools/list", 30.0, 200),
                                                   Step("tools/list", 25.5, 200)],
                       failure=None if ok else Failure("http", "tools/list", "HTTP 502 Bad Gateway"))


def test_each_step_latency_is_published_summed_per_step_and_in_total():
    data = metric_data(config(booking=""), "booking", "alb", result())
    latency = {d["Dimensions"][3]["Value"]: d["Value"] for d in data if d["MetricName"] == "Latency"}
    assert latency == {"server/discover": 40.0, "tools/list": 55.5, "total": 95.5}
    assert all(d["Unit"] == "Milliseconds" for d in data if d["MetricName"] == "Latency")


def test_a_failed_probe_publishes_failure_without_latency_or_mismatch():
    data = metric_data(config(booking="b" * 64), "booking", "edge", result(ok=False, digest=None))
    assert [(d["MetricName"], d["Value"]) for d in data] == [("Success", 0.0)]


def test_mismatch_is_published_only_for_servers_with_an_approved_hash():
    assert "ToolsManifestMismatch" not in {d["MetricName"] for d in metric_data(config(booking=""), "booking",
                                                                                 "alb", result())}
    mismatch = [d for d in metric_data(config(booking="b" * 64), "booking", "alb", result())
                if d["MetricName"] == "ToolsManifestMismatch"]
    assert [d["Value"] for d in mismatch] == [1.0]


def test_without_an_alb_interface_every_alb_probe_fails_and_none_is_attempted():
    attempted, cloudwatch = [], FakeCloudWatch()

    def fake_probe(url, **kwargs):
        attempted.append(url)
        return result()

    summary = run(config(booking="", loyalty=""), fake_probe, FakeEc2([]), cloudwatch)
    assert len(attempted) == 2   # the two edge probes
    assert value(cloudwatch, "Success", "loyalty", "alb") == 0 and value(cloudwatch, "Success", "loyalty", "edge") == 1
    assert "no in-use network interface" in next(p["failure"] for p in summary["probes"] if p["path"] == "alb")


def test_published_metric_data_is_valid_for_cloudwatch():
    cloudwatch = FakeCloudWatch()
    run(config(**{f"server{i}": "c" * 64 for i in range(4)}), lambda url, **kw: result(), FakeEc2(["10.30.192.7"]),
        cloudwatch)
    model = botocore.session.get_session().get_service_model("cloudwatch").operation_model("PutMetricData")
    for call in cloudwatch.calls:
        assert call["Namespace"] == NAMESPACE and len(call["MetricData"]) <= 20
        report = ParamValidator().validate(call, model.input_shape)
        assert not report.has_errors(), report.generate_report()
    assert len(cloudwatch.data()) == 4 * 2 * 6   # Success, ToolCount, Mismatch, 3 latencies; 4 servers, 2 paths
