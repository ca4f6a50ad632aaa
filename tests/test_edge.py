"""The Cloudflare edge: pools on each ALB, residency-safe routing, WAF, rate limits and TLS."""

from __future__ import annotations

import pytest
from conftest import Plan, run_program

from mcp_estate.components.edge import Edge, EdgeArgs, EdgeRegion
from mcp_estate.contract.cloudflare_plan import ALLOWANCES, MANAGED_RULESETS, load_balancer_origins
from mcp_estate.contract.spec import ResidencyGroup

HOST = "mcp.example.travel"
ZONE = "0" * 32
CF_ACCOUNT = "f" * 32
ALB = {"us-east-1": "front-us-east-1-123.us-east-1.elb.amazonaws.com",
       "us-west-2": "front-us-west-2-456.us-west-2.elb.amazonaws.com",
       "eu-west-1": "front-eu-west-1-789.eu-west-1.elb.amazonaws.com",
       "eu-central-1": "front-eu-central-1-012.eu-central-1.elb.amazonaws.com",
       "ap-southeast-1": "front-ap-southeast-1-345.ap-southeast-1.elb.amazonaws.com",
       "eu-west-2": "front-eu-west-2-678.eu-west-2.elb.amazonaws.com"}
AMERICAS = {"name": "americas", "primary_region": "us-east-1", "countries": ["US", "CA"],
            "regions": [{"name": "us-east-1", "cidr": "10.20.0.0/16"}, {"name": "us-west-2", "cidr": "10.21.0.0/16"}]}
EU = {"name": "eu", "primary_region": "eu-west-1", "strict": True, "countries": ["FR", "DE"],
      "regions": [{"name": "eu-west-1", "cidr": "10.30.0.0/16"}, {"name": "eu-central-1", "cidr": "10.31.0.0/16"}]}
APAC = {"name": "apac", "primary_region": "ap-southeast-1", "countries": ["SG"],
        "regions": [{"name": "ap-southeast-1", "cidr": "10.40.0.0/16"}]}
EU_REGIONS = {"eu-west-1", "eu-central-1"}


def edge_plan(*groups: dict, reverse: bool = False, cloudflare_plan: str = "pro") -> Plan:
    specs = [ResidencyGroup(**g) for g in (groups or (AMERICAS, EU))]
    regions = [EdgeRegion(name=r.name, group=g.name, alb_dns_name=ALB[r.name]) for g in specs for r in g.regions]
    if reverse:   # the stack file's list order must not matter
        specs, regions = specs[::-1], regions[::-1]

    def program():
        Edge("edge", EdgeArgs(
            hostname=HOST, zone_id=ZONE, account_id=CF_ACCOUNT, cloudflare_plan=cloudflare_plan,
            name_prefix="mcp-prod",
            health_path="/booking/healthz", fallback_region="us-east-1", session_affinity_ttl=1800,
            rate_limit_per_minute=600, mcp_paths=["/loyalty/mcp", "/booking/mcp"],
            regions=regions, groups=specs))
    return run_program(program)


@pytest.fixture(scope="module")
def plan() -> Plan:
    return edge_plan()


def pool_regions(plan: Plan, ids: list[str]) -> list[str]:
    """Pool ids (mock ids are hashes of resource names) back to their regions (`eu-last-resort`
    for the last-resort pool of group eu)."""
    pools = plan.of_type("cloudflare:index/loadBalancerPool:LoadBalancerPool")
    by_id = {p.id: p.name.removeprefix("edge-pool-") for p in pools}
    by_id.update({p.id: f"{p.name.removeprefix('edge-last-resort-')}-last-resort" for p in pools
                  if p.name.startswith("edge-last-resort-")})
    return [by_id[i] for i in ids]


def lb(plan: Plan) -> dict:
    return plan.one("cloudflare:index/loadBalancer:LoadBalancer").inputs


def test_each_region_gets_one_pool_on_its_alb_with_the_public_host_header(plan):
    pools = plan.of_type("cloudflare:index/loadBalancerPool:LoadBalancerPool")
    assert sorted(p.name for p in pools) == ["edge-last-resort-eu", *(
        f"edge-pool-{r}" for r in sorted(["us-east-1", "us-west-2", *EU_REGIONS]))]
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
    # A strict group: retries stay within a pool, so no failover can carry a strict country off its list.
    assert inputs["adaptiveRouting"] == {"failoverAcrossPools": False}


def test_without_a_strict_group_failover_may_cross_pools():
    [lb] = edge_plan(AMERICAS, APAC).of_type("cloudflare:index/loadBalancer:LoadBalancer")
    assert lb.inputs["adaptiveRouting"] == {"failoverAcrossPools": True}


def test_strict_countries_are_routed_only_to_their_own_pools(plan):
    countries = {c: pool_regions(plan, ids) for c, ids in lb(plan)["countryPools"].items()}
    # primary first, the group's unmonitored last resort last
    assert countries["DE"] == countries["FR"] == ["eu-west-1", "eu-central-1", "eu-last-resort"]
    assert countries["US"] == countries["CA"] == ["us-east-1", "us-west-2"]


def test_no_route_for_other_visitors_reaches_a_strict_pool(plan):
    inputs = lb(plan)
    assert pool_regions(plan, inputs["defaultPools"]) == ["us-east-1", "us-west-2"]   # fallback region first
    assert pool_regions(plan, [inputs["fallbackPool"]]) == ["us-east-1"]
    regions = {code: pool_regions(plan, ids) for code, ids in inputs["regionPools"].items()}
    # WEU, where the strict group runs, is its own: an EU visitor served from a data center in a country no
    # group lists (LHR, ZRH) is steered by the data center's region (W2), and must stay in the group.
    assert regions == {"ENAM": ["us-east-1", "us-west-2"], "WNAM": ["us-west-2", "us-east-1"],
                       "WEU": ["eu-west-1", "eu-central-1", "eu-last-resort"]}
    for country in ("US", "CA"):
        assert not EU_REGIONS & set(pool_regions(plan, inputs["countryPools"][country]))


def test_eu_visitors_stay_in_eu_even_when_every_eu_pool_is_down(plan):
    # Cloudflare ignores the health of a pool without a monitor: the last resort never "fails", so
    # geo steering never reaches the load balancer's fallback pool (us-east-1) for DE and FR.
    last_resort = plan.named("edge-last-resort-eu").inputs
    assert "monitor" not in last_resort and "monitorGroup" not in last_resort
    assert last_resort["name"] == "mcp-prod-eu-last-resort" and last_resort["minimumOrigins"] == 1
    assert last_resort["origins"] == [
        {"name": region, "address": ALB[region], "enabled": True, "weight": 1, "header": {"hosts": [HOST]}}
        for region in ("eu-west-1", "eu-central-1")]


def test_the_spec_counts_the_origins_the_edge_builds(plan):
    # The spec checks the count against the Load Balancing add-on's limit (validate.py).
    pools = plan.of_type("cloudflare:index/loadBalancerPool:LoadBalancerPool")
    assert sum(len(p.inputs["origins"]) for p in pools) == 6
    assert load_balancer_origins([ResidencyGroup(**g) for g in (AMERICAS, EU)]) == 6


def test_no_load_balancing_rule_is_made(plan):
    # Custom rules are documented as not working with geo steering, and `ip.src.country` is no
    # documented load-balancing-rule field: residency rests on the country pools alone.
    assert not lb(plan).get("rules")


def test_open_groups_need_no_last_resort_pool():
    plan = edge_plan(AMERICAS, APAC)
    assert [p.name for p in plan.of_type("cloudflare:index/loadBalancerPool:LoadBalancerPool")
            if "last-resort" in p.name] == []
    assert pool_regions(plan, lb(plan)["countryPools"]["US"]) == ["us-east-1", "us-west-2", "ap-southeast-1"]


def test_open_routes_fail_over_to_the_nearest_open_region_first():
    plan = edge_plan(AMERICAS, EU, APAC)
    inputs = lb(plan)
    assert pool_regions(plan, inputs["defaultPools"]) == ["us-east-1", "ap-southeast-1", "us-west-2"]
    assert pool_regions(plan, inputs["regionPools"]["SEAS"]) == ["ap-southeast-1", "us-west-2", "us-east-1"]
    assert pool_regions(plan, inputs["countryPools"]["SG"]) == ["ap-southeast-1", "us-west-2", "us-east-1"]
    assert pool_regions(plan, inputs["countryPools"]["US"]) == ["us-east-1", "us-west-2", "ap-southeast-1"]
    assert pool_regions(plan, inputs["regionPools"]["WEU"]) == ["eu-west-1", "eu-central-1", "eu-last-resort"]


def test_the_strict_group_takes_a_cloudflare_region_an_open_group_shares():
    # An open group in eu-west-2 (WEU too): the strict list wins the region; the open group keeps its
    # countries through countryPools, which geo steering reads before regionPools.
    uk = {"name": "uk", "primary_region": "eu-west-2", "countries": ["GB"],
          "regions": [{"name": "eu-west-2", "cidr": "10.40.0.0/16"}]}
    plan = edge_plan(AMERICAS, EU, uk)
    inputs = lb(plan)
    assert pool_regions(plan, inputs["regionPools"]["WEU"]) == ["eu-west-1", "eu-central-1", "eu-last-resort"]
    assert pool_regions(plan, inputs["countryPools"]["GB"])[0] == "eu-west-2"


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


MCP_PATHS = ('(http.request.uri.path in {"/booking/mcp" "/loyalty/mcp"} or '
             'starts_with(http.request.uri.path, "/booking/mcp/") or '
             'starts_with(http.request.uri.path, "/loyalty/mcp/"))')


def test_each_client_ip_is_rate_limited_on_the_mcp_paths(plan):
    ruleset = plan.named("edge-ratelimit").inputs
    assert ruleset["phase"] == "http_ratelimit"
    [rule] = ruleset["rules"]
    assert rule["action"] == "block"
    assert rule["expression"] == f'(http.host eq "{HOST}" and {MCP_PATHS})'
    assert rule["ratelimit"] == {"characteristics": ["cf.colo.id", "ip.src"], "period": 60,
                                 "requestsPerPeriod": 600, "mitigationTimeout": 600}


@pytest.fixture(scope="module")
def free() -> Plan:
    return edge_plan(cloudflare_plan="free")


def test_on_free_the_rate_limit_counts_ten_seconds_on_the_path_alone(free):
    [rule] = free.named("edge-ratelimit").inputs["rules"]
    assert rule["expression"] == MCP_PATHS   # Free allows only the path (and verified bots) in the rule
    assert rule["ratelimit"] == {"characteristics": ["cf.colo.id", "ip.src"], "period": 10,
                                 "requestsPerPeriod": 100, "mitigationTimeout": 10}
    assert rule["description"] == "At most 100 MCP requests per 10 s per client IP"


def test_cloudflare_managed_and_owasp_rulesets_run_on_the_zone(plan):
    ruleset = plan.named("edge-managed").inputs
    assert ruleset["phase"] == "http_request_firewall_managed"
    assert [(r["action"], r["expression"], r["actionParameters"]["id"]) for r in ruleset["rules"]] == [
        ("execute", "true", "efb7b8c949ac4650a09736fc376e9aee"),
        ("execute", "true", "4814384a9e5d4991b9815dcfc25d2f1f")]


def test_on_free_the_zone_runs_the_free_managed_ruleset_it_includes(free):
    # This entrypoint replaces the zone's managed phase: without it, Free would lose its managed rules.
    assert [(r["ref"], r["actionParameters"]["id"]) for r in free.named("edge-managed").inputs["rules"]] == [
        ("cloudflare_free_managed", "77454fe2d30c4220b5701f6fdfb893ba")]


@pytest.mark.parametrize("cloudflare_plan", sorted(ALLOWANCES))
def test_the_edge_builds_only_what_the_zones_plan_includes(cloudflare_plan):
    allowed, built = ALLOWANCES[cloudflare_plan], edge_plan(cloudflare_plan=cloudflare_plan)
    assert len(built.named("edge-firewall").inputs["rules"]) <= allowed.custom_rules
    ratelimits = built.named("edge-ratelimit").inputs["rules"]
    assert len(ratelimits) <= allowed.ratelimit_rules
    for rule in ratelimits:
        assert rule["ratelimit"]["period"] <= allowed.max_ratelimit_period
        assert rule["ratelimit"]["mitigationTimeout"] <= allowed.max_mitigation_timeout
        assert allowed.ratelimit_host_field or "http.host" not in rule["expression"]
    executed = {r["actionParameters"]["id"] for r in built.named("edge-managed").inputs["rules"]}
    assert executed == {MANAGED_RULESETS[ref] for ref in allowed.managed_rulesets}


def test_zone_serves_only_verified_modern_tls(plan):
    settings = {r.inputs["settingId"]: r.inputs["value"]
                for r in plan.of_type("cloudflare:index/zoneSetting:ZoneSetting")}
    # ip_geolocation: Cloudflare adds CF-IPCountry, which the ALBs' residency guard reads.
    assert settings == {"ssl": "strict", "min_tls_version": "1.2", "always_use_https": "on", "tls_1_3": "on",
                        "ip_geolocation": "on"}
    assert plan.named("edge-ssl").inputs["zoneId"] == ZONE
