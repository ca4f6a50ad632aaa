"""The Cloudflare edge: pools on each ALB, residency-safe routing, WAF, rate limits and TLS."""

from __future__ import annotations

import pytest

from components.edge import Edge, EdgeArgs, EdgeRegion
from mcp_estate.spec import ResidencyGroup
from conftest import Plan, run_program

HOST = "mcp.example.travel"
ZONE = "0" * 32
CF_ACCOUNT = "f" * 32
ALB = {"us-east-1": "front-us-east-1-123.us-east-1.elb.amazonaws.com",
       "us-west-2": "front-us-west-2-456.us-west-2.elb.amazonaws.com",
       "eu-west-1": "front-eu-west-1-789.eu-west-1.elb.amazonaws.com",
       "eu-central-1": "front-eu-central-1-012.eu-central-1.elb.amazonaws.com",
       "ap-southeast-1": "front-ap-southeast-1-345.ap-southeast-1.elb.amazonaws.com"}
AMERICAS = {"name": "americas", "primary_region": "us-east-1", "countries": ["US", "CA"],
            "regions": [{"name": "us-east-1", "cidr": "10.20.0.0/16"}, {"name": "us-west-2", "cidr": "10.21.0.0/16"}]}
EU = {"name": "eu", "primary_region": "eu-west-1", "strict": True, "countries": ["FR", "DE"],
      "regions": [{"name": "eu-west-1", "cidr": "10.30.0.0/16"}, {"name": "eu-central-1", "cidr": "10.31.0.0/16"}]}
APAC = {"name": "apac", "primary_region": "ap-southeast-1", "countries": ["SG"],
        "regions": [{"name": "ap-southeast-1", "cidr": "10.40.0.0/16"}]}
EU_REGIONS = {"eu-west-1", "eu-central-1"}


def edge_plan(*groups: dict, reverse: bool = False) -> Plan:
    specs = [ResidencyGroup(**g) for g in (groups or (AMERICAS, EU))]
    regions = [EdgeRegion(name=r.name, group=g.name, alb_dns_name=ALB[r.name]) for g in specs for r in g.regions]
    if reverse:   # the stack file's list order must not matter
        specs, regions = specs[::-1], regions[::-1]

    def program():
        Edge("edge", EdgeArgs(
            hostname=HOST, zone_id=ZONE, account_id=CF_ACCOUNT, name_prefix="mcp-prod",
            health_path="/booking/healthz", fallback_region="us-east-1", session_affinity_ttl=1800,
            rate_limit_per_minute=600, mcp_paths=["/loyalty/mcp", "/booking/mcp"],
            regions=regions, groups=specs))
    return run_program(program)


@pytest.fixture(scope="module")
def plan() -> Plan:
    return edge_plan()


def pool_regions(plan: Plan, ids: list[str]) -> list[str]:
    """Pool ids (mock ids are hashes of resource names) back to their regions."""
    pools = plan.of_type("cloudflare:index/loadBalancerPool:LoadBalancerPool")
    by_id = {p.id: p.name.removeprefix("edge-pool-") for p in pools}
    return [by_id[i] for i in ids]


def lb(plan: Plan) -> dict:
    return plan.one("cloudflare:index/loadBalancer:LoadBalancer").inputs


def test_each_region_gets_one_pool_on_its_alb_with_the_public_host_header(plan):
    pools = plan.of_type("cloudflare:index/loadBalancerPool:LoadBalancerPool")
    assert sorted(p.name for p in pools) == [f"edge-pool-{r}" for r in sorted(["us-east-1", "us-west-2", *EU_REGIONS])]
    pool = plan.named("edge-pool-eu-central-1").inputs
    assert pool["name"] == "mcp-prod-eu-central-1"
    assert pool["origins"] == [{"name": "eu-central-1", "address": ALB["eu-central-1"], "enabled": True,
                                "weight": 1, "header": {"hosts": [HOST]}}]
    assert pool["monitor"] == plan.named("edge-monitor").id
    assert pool["checkRegions"] == ["WEU"] and pool["minimumOrigins"] == 1
    assert (pool["latitude"], pool["longitude"]) == (50.1, 8.7)


def test_monitor_checks_the_health_path_over_verified_https_with_the_public_host(plan):
    monitor = plan.named("edge-monitor").inputs
    assert {k: monitor[k] for k in ("accountId", "type", "method", "path", "expectedCodes", "header",
                                    "allowInsecure", "followRedirects")} == {
        "accountId": CF_ACCOUNT, "type": "https", "method": "GET", "path": "/booking/healthz",
        "expectedCodes": "200", "header": {"Host": [HOST]}, "allowInsecure": False, "followRedirects": False}
    assert (monitor["interval"], monitor["timeout"], monitor["retries"]) == (60, 5, 2)


def test_load_balancer_is_proxied_and_pins_mcp_sessions_by_their_header(plan):
    inputs = lb(plan)
    assert (inputs["name"], inputs["zoneId"], inputs["proxied"], inputs["steeringPolicy"]) == (HOST, ZONE, True, "geo")
    assert inputs["sessionAffinity"] == "header" and inputs["sessionAffinityTtl"] == 1800
    assert inputs["sessionAffinityAttributes"] == {"headers": ["Mcp-Session-Id"], "requireAllHeaders": True,
                                                   "drainDuration": 60, "zeroDowntimeFailover": "temporary"}
    assert inputs["adaptiveRouting"] == {"failoverAcrossPools": True}


def test_strict_countries_are_routed_only_to_their_own_pools(plan):
    countries = {c: pool_regions(plan, ids) for c, ids in lb(plan)["countryPools"].items()}
    assert countries["DE"] == countries["FR"] == ["eu-west-1", "eu-central-1"]   # primary first
    assert countries["US"] == countries["CA"] == ["us-east-1", "us-west-2"]


def test_no_route_for_other_visitors_reaches_a_strict_pool(plan):
    inputs = lb(plan)
    assert pool_regions(plan, inputs["defaultPools"]) == ["us-east-1", "us-west-2"]   # fallback region first
    assert pool_regions(plan, [inputs["fallbackPool"]]) == ["us-east-1"]
    regions = {code: pool_regions(plan, ids) for code, ids in inputs["regionPools"].items()}
    assert regions == {"ENAM": ["us-east-1", "us-west-2"], "WNAM": ["us-west-2", "us-east-1"]}
    for country in ("US", "CA"):
        assert not EU_REGIONS & set(pool_regions(plan, inputs["countryPools"][country]))


def test_eu_visitors_stay_in_eu_even_when_every_eu_pool_is_down(plan):
    [rule] = lb(plan)["rules"]
    assert rule["name"] == "residency-eu" and rule["terminates"] is True
    assert rule["condition"] == 'ip.src.country in {"DE" "FR"}'
    overrides = rule["overrides"]
    assert overrides["steeringPolicy"] == "off"
    assert pool_regions(plan, overrides["defaultPools"]) == ["eu-west-1", "eu-central-1"]
    assert pool_regions(plan, [overrides["fallbackPool"]]) == ["eu-west-1"]


def test_open_routes_fail_over_to_the_nearest_open_region_first():
    plan = edge_plan(AMERICAS, EU, APAC)
    inputs = lb(plan)
    assert pool_regions(plan, inputs["defaultPools"]) == ["us-east-1", "ap-southeast-1", "us-west-2"]
    assert pool_regions(plan, inputs["regionPools"]["SEAS"]) == ["ap-southeast-1", "us-west-2", "us-east-1"]
    assert pool_regions(plan, inputs["countryPools"]["SG"]) == ["ap-southeast-1", "us-west-2", "us-east-1"]
    assert pool_regions(plan, inputs["countryPools"]["US"]) == ["us-east-1", "us-west-2", "ap-southeast-1"]
    assert "WEU" not in inputs["regionPools"]


def test_routing_does_not_depend_on_the_order_of_the_stack_file(plan):
    assert lb(edge_plan(AMERICAS, EU, reverse=True)) == lb(plan)


def test_firewall_only_lets_mcp_paths_and_methods_reach_the_mcp_host(plan):
    ruleset = plan.named("edge-firewall").inputs
    assert (ruleset["zoneId"], ruleset["kind"], ruleset["phase"]) == (ZONE, "zone", "http_request_firewall_custom")
    paths, methods = ruleset["rules"]
    assert paths["action"] == methods["action"] == "block"
    assert paths["expression"] == (
        f'(http.host eq "{HOST}" and not (http.request.uri.path in {{"/booking/healthz" "/booking/mcp" '
        '"/loyalty/mcp"} or starts_with(http.request.uri.path, "/booking/mcp/") or '
        'starts_with(http.request.uri.path, "/loyalty/mcp/") or starts_with(http.request.uri.path, "/.well-known/")))')
    assert methods["expression"] == (
        f'(http.host eq "{HOST}" and not http.request.method in {{"GET" "POST" "DELETE" "OPTIONS"}})')


def test_each_client_ip_is_rate_limited_on_the_mcp_paths(plan):
    ruleset = plan.named("edge-ratelimit").inputs
    assert ruleset["phase"] == "http_ratelimit"
    [rule] = ruleset["rules"]
    assert rule["action"] == "block"
    assert rule["expression"] == (
        f'(http.host eq "{HOST}" and (http.request.uri.path in {{"/booking/mcp" "/loyalty/mcp"}} or '
        'starts_with(http.request.uri.path, "/booking/mcp/") or starts_with(http.request.uri.path, "/loyalty/mcp/")))')
    assert rule["ratelimit"] == {"characteristics": ["cf.colo.id", "ip.src"], "period": 60,
                                 "requestsPerPeriod": 600, "mitigationTimeout": 600}


def test_cloudflare_managed_and_owasp_rulesets_run_on_the_zone(plan):
    ruleset = plan.named("edge-managed").inputs
    assert ruleset["phase"] == "http_request_firewall_managed"
    assert [(r["action"], r["expression"], r["actionParameters"]["id"]) for r in ruleset["rules"]] == [
        ("execute", "true", "efb7b8c949ac4650a09736fc376e9aee"),
        ("execute", "true", "4814384a9e5d4991b9815dcfc25d2f1f")]


def test_zone_serves_only_verified_modern_tls(plan):
    settings = {r.inputs["settingId"]: r.inputs["value"]
                for r in plan.of_type("cloudflare:index/zoneSetting:ZoneSetting")}
    assert settings == {"ssl": "strict", "min_tls_version": "1.2", "always_use_https": "on", "tls_1_3": "on"}
    assert plan.named("edge-ssl").inputs["zoneId"] == ZONE
