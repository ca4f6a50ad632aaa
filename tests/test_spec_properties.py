"""Properties of the spec, over generated estates rather than a handful of examples:
- every valid spec plans, under the same strict fidelity inspector as `estate plan`, with one
  service per server and region and the pack's mandatory controls satisfied;
- any single invalid field is reported at its own path, named as people read it
  (`servers[booking].port`), never as a list position or a traceback.
"""

from __future__ import annotations

import copy

from conftest import ACCOUNT, Plan, violations
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_estate.checking.pack_config import with_spec
from mcp_estate.contract.geography import AWS_REGIONS
from mcp_estate.contract.validate import SpecError, parse_spec
from mcp_estate.offline.fidelity import inspect_resource
from mcp_estate.offline.runner import run_offline

# Regions where Fargate serves at least two zones; placeholders everywhere else.
REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2", "eu-north-1"]
SERVERS = ["booking", "inventory", "loyalty", "customer-data"]
DIGEST = "sha256:" + "cd" * 32


@st.composite
def raw_specs(draw) -> dict:
    """A valid `mcp-estate:estate` mapping: 1-3 groups over distinct regions, 1-3 servers."""
    regions = draw(st.lists(st.sampled_from(REGIONS), min_size=1, max_size=3, unique=True))
    cuts = sorted(draw(st.sets(st.integers(1, len(regions) - 1), max_size=len(regions) - 1))) if len(regions) > 1 \
        else []
    spans = [regions[a:b] for a, b in zip([0, *cuts], [*cuts, len(regions)])]
    # The first group stays open; strict groups never share a Cloudflare region (the spec refuses it).
    strict, claimed = [], set()
    for i, span in enumerate(spans):
        areas = {AWS_REGIONS[r].cloudflare_region for r in span}
        strict.append(i > 0 and not areas & claimed and draw(st.booleans()))
        claimed |= areas if strict[-1] else set()
    countries = iter(["DE", "FR", "IE", "NL", "AT", "ES"])
    groups = [{"name": f"group-{i}", "primary_region": span[0], "strict": strict[i],
               "countries": [next(countries)] if strict[i] else [],
               "regions": [{"name": r, "cidr": f"10.{20 + REGIONS.index(r)}.0.0/16"} for r in span]}
              for i, span in enumerate(spans)]
    primary = regions[0]
    names = draw(st.lists(st.sampled_from(SERVERS), min_size=1, max_size=3, unique=True))
    servers = [_server(draw, name, primary) for name in names]
    environment = draw(st.sampled_from(["dev", "staging", "prod"]))
    auth = {"disabled": True} if environment == "dev" and draw(st.booleans()) else \
        {"issuer": "https://login.example.travel/", "jwks_url": "https://login.example.travel/jwks.json"}
    return {"environment": environment, "owner": "travel-platform", "auth": auth,
            "aws_account_id": ACCOUNT, "primary_region": primary,
            "domain": {"hostname": "mcp.example.travel", "zone_id": "0" * 32, "cloudflare_account_id": "f" * 32},
            "residency_groups": groups, "servers": servers, "edge": {"health_server": names[0]},
            # The canary's token, which servers behind `auth` demand of it (required in prod).
            "monitoring": {"probe_credentials_secret": "canary-oauth-client", "probe_token_cidrs": ["203.0.113.0/24"]}}


def _server(draw, name: str, primary: str) -> dict:
    cpu, memory = draw(st.sampled_from([(256, 512), (512, 1024), (1024, 3072), (2048, 4096)]))
    server = {"name": name, "image": f"{ACCOUNT}.dkr.ecr.{primary}.amazonaws.com/mcp/{name}@{DIGEST}",
              "cpu": cpu, "memory": memory, "port": draw(st.integers(1024, 65535)),
              "scaling": {"min": 2, "max": draw(st.integers(2, 20))}}
    if draw(st.booleans()):
        server["permissions"] = [{"actions": ["dynamodb:GetItem", "dynamodb:PutItem"], "resources": ["state"]}]
    if draw(st.booleans()):
        server["secrets"] = [f"{name}-api-key"]
    return server


@settings(max_examples=60, deadline=None)
@given(raw_specs())
def test_every_generated_spec_is_valid(raw):
    spec = parse_spec(raw)
    assert sorted(spec.regions) == sorted(r["name"] for g in raw["residency_groups"] for r in g["regions"])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw_specs())
def test_every_valid_spec_plans_strictly_and_passes_the_pack(raw):
    from mcp_estate.components.estate import Estate
    spec = parse_spec(raw)
    plan = Plan(run_offline(lambda: Estate("mcp-estate", spec), stack="prop", config={},
                            account_id=ACCOUNT, inspect=inspect_resource))   # FidelityError on any bad input
    services = {(r.inputs["tags"]["mcp-estate:server"], r.inputs["tags"]["mcp-estate:region"])
                for r in plan.of_type("aws:ecs/service:Service")}
    assert services == {(s["name"], r) for s in raw["servers"] for r in spec.regions}
    # With the pack config its spec generates (`estate pack-config`), as `estate check --stack` runs it.
    mandatory = [v for v in violations(plan, with_spec({}, spec)) if v.enforcement_level == "mandatory"]
    assert not mandatory, [(v.policy, v.message) for v in mandatory]


# A field, an invalid value for it, and the path the error must name.
INVALID = [
    (lambda raw: raw, "environment", "qa", "environment"),
    (lambda raw: raw, "log_retention_days", 8, "log_retention_days"),
    (lambda raw: raw, "aws_account_id", "1234", "aws_account_id"),
    (lambda raw: raw, "primary_region", "mars-1", "primary_region"),
    (lambda raw: raw["domain"], "hostname", "MCP.Example.Travel", "domain.hostname"),
    (lambda raw: raw["domain"], "zone_id", "not-a-zone", "domain.zone_id"),
    (lambda raw: raw["edge"], "session_affinity_ttl", 5, "edge.session_affinity_ttl"),
    (lambda raw: raw["edge"], "rate_limit_per_minute", "many", "edge.rate_limit_per_minute"),
    (lambda raw: raw["servers"][0], "port", 80, "servers[{server}].port"),
    (lambda raw: raw["servers"][0], "port", "http", "servers[{server}].port"),
    (lambda raw: raw["servers"][0], "cpu", 300, "servers[{server}].cpu"),
    (lambda raw: raw["servers"][0], "memory", 100000, "servers[{server}].memory"),
    (lambda raw: raw["servers"][0], "image", "nginx:latest", "servers[{server}].image"),
    (lambda raw: raw["servers"][0], "architecture", "arm", "servers[{server}].architecture"),
    (lambda raw: raw["servers"][0], "scaling", {"min": 0}, "servers[{server}].scaling.min"),
    (lambda raw: raw["servers"][0], "environment", {"DB_PASSWORD": "x"}, "servers[{server}].environment"),
    (lambda raw: raw["servers"][0], "permissions", [{"actions": ["s3:*"], "resources": ["state"]}],
     "servers[{server}].permissions[0].actions"),
    (lambda raw: raw["servers"][0], "colour", "blue", "servers[{server}].colour"),
    (lambda raw: raw["residency_groups"][0]["regions"][0], "cidr", "8.8.0.0/16",
     "residency_groups[{group}].regions[{region}].cidr"),
    (lambda raw: raw["residency_groups"][0]["regions"][0], "name", "mars-1",
     "residency_groups[{group}].regions[{region}].name"),
    (lambda raw: raw["residency_groups"][0], "countries", ["XX"], "residency_groups[{group}].countries[0]"),
]


@settings(max_examples=80, deadline=None)
@given(raw_specs(), st.sampled_from(INVALID))
def test_any_single_invalid_field_is_named_by_its_path(raw, case):
    where, key, value, path = case
    broken = copy.deepcopy(raw)
    where(broken)[key] = value
    first_group, first_server = raw["residency_groups"][0], raw["servers"][0]
    names = {"server": first_server["name"], "group": first_group["name"],
             "region": first_group["regions"][0]["name"]}
    if key == "name" and "{region}" in path:   # a list item is named by its (here invalid) name
        names["region"] = value
    expected = path.format(**names)
    try:
        parse_spec(broken)
    except SpecError as error:
        assert expected in [p.path for p in error.problems], (expected, [str(p) for p in error.problems])
    else:
        raise AssertionError(f"{expected} = {value!r} was accepted")
