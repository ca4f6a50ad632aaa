"""Bring your own zone or load balancer: with `edge.zone: caller` the estate builds no zone entry-point
ruleset and no zone setting, and hands them over as data; with `edge.load_balancer: caller` it builds
the monitor and pools but no load balancer, and hands over the pool ids and the steering it would use."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pulumi
import pulumi_cloudflare as cloudflare
import pytest
from conftest import ROOT, Plan, run_program, violations
from corpus import attack, legitimate
from test_edge import ALB, AMERICAS, CF_ACCOUNT, EU, HOST, ZONE, edge_plan, lb

from mcp_estate.components.edge import ZONE_SETTINGS, Edge, EdgeArgs, EdgeRegion
from mcp_estate.contract.spec import ResidencyGroup

RULESET = "cloudflare:index/ruleset:Ruleset"
ZONE_SETTING = "cloudflare:index/zoneSetting:ZoneSetting"
LOAD_BALANCER = "cloudflare:index/loadBalancer:LoadBalancer"
POOL = "cloudflare:index/loadBalancerPool:LoadBalancerPool"
MONITOR = "cloudflare:index/loadBalancerMonitor:LoadBalancerMonitor"


def delegating_plan(*, zone: bool, load_balancer: bool) -> Plan:
    """The edge of test_edge's estate (americas open, eu strict), building what the flags say."""
    groups = [ResidencyGroup(**g) for g in (AMERICAS, EU)]
    regions = [EdgeRegion(name=r.name, group=g.name, alb_dns_name=ALB[r.name]) for g in groups for r in g.regions]

    def program():
        Edge("edge", EdgeArgs(
            hostname=HOST, zone_id=ZONE, account_id=CF_ACCOUNT, cloudflare_plan="pro", name_prefix="mcp-prod",
            health_path="/booking/healthz", fallback_region="us-east-1", session_affinity_ttl=1800,
            rate_limit_per_minute=600, mcp_paths=["/loyalty/mcp", "/booking/mcp"], regions=regions,
            groups=groups, builds_zone=zone, builds_load_balancer=load_balancer))
    return run_program(program)


@pytest.fixture(scope="module")
def built() -> Plan:
    return edge_plan()


@pytest.fixture(scope="module")
def caller_zone() -> Plan:
    return delegating_plan(zone=False, load_balancer=True)


@pytest.fixture(scope="module")
def caller_balancer() -> Plan:
    return delegating_plan(zone=True, load_balancer=False)


def delegated(plan: Plan) -> dict:
    return plan.one("mcp-estate:edge:Edge").outputs["delegated"]


def as_recorded(value):
    """Keys as the engine records a resource's inputs (action_parameters -> actionParameters)."""
    if isinstance(value, dict):
        return {key.split("_")[0] + "".join(w.title() for w in key.split("_")[1:]): as_recorded(v)
                for key, v in value.items()}
    return [as_recorded(v) for v in value] if isinstance(value, list) else value


def test_by_default_nothing_is_delegated(built):
    assert "delegated" not in built.one("mcp-estate:edge:Edge").outputs
    assert len(built.of_type(RULESET)) == 4 and len(built.of_type(ZONE_SETTING)) == len(ZONE_SETTINGS)


def test_a_caller_owned_zone_gets_no_ruleset_and_no_setting_from_the_estate(caller_zone):
    assert caller_zone.of_type(RULESET) == [] and caller_zone.of_type(ZONE_SETTING) == []
    assert len(caller_zone.of_type(LOAD_BALANCER)) == 1


def test_the_caller_gets_each_phases_rules_exactly_as_the_estate_writes_them(built, caller_zone):
    written = {r.inputs["phase"]: r.inputs["rules"] for r in built.of_type(RULESET)}
    handed = delegated(caller_zone)["zone_rules"]
    assert {phase: as_recorded(rules) for phase, rules in handed.items()} == written
    assert sorted(handed) == ["http_ratelimit", "http_request_cache_settings", "http_request_firewall_custom",
                              "http_request_firewall_managed"]
    # As the SDK's `rules` argument takes them (snake_case keys), ready to append to the caller's list.
    [limit] = handed["http_ratelimit"]
    assert limit["ratelimit"]["requests_per_period"] == 600 and limit["action"] == "block"


def test_the_caller_gets_the_zone_settings_the_estate_relies_on(caller_zone):
    assert delegated(caller_zone)["zone_settings"] == {
        "ssl": "strict", "min_tls_version": "1.2", "always_use_https": "on", "tls_1_3": "on",
        "ip_geolocation": "on"}


def test_a_caller_owned_zone_still_gets_the_estates_load_balancer(built, caller_zone):
    assert lb(caller_zone) == lb(built)
    assert set(delegated(caller_zone)) == {"zone_rules", "zone_settings"}


def test_a_caller_owned_balancer_leaves_the_pools_and_monitor_to_the_estate(built, caller_balancer):
    assert caller_balancer.of_type(LOAD_BALANCER) == []
    assert [p.inputs for p in caller_balancer.of_type(POOL)] == [p.inputs for p in built.of_type(POOL)]
    assert len(caller_balancer.of_type(MONITOR)) == 1
    assert len(caller_balancer.of_type(RULESET)) == 4, "the zone is still the estate's"


def test_the_caller_gets_every_pool_id_by_region_and_strict_group(caller_balancer):
    handed, pools = delegated(caller_balancer), {p.name: p.id for p in caller_balancer.of_type(POOL)}
    assert handed["pool_ids"] == {region: pools[f"edge-pool-{region}"]
                                  for region in ("eu-central-1", "eu-west-1", "us-east-1", "us-west-2")}
    assert handed["last_resort_pool_ids"] == {"eu": pools["edge-last-resort-eu"]}


def test_the_caller_gets_the_steering_and_affinity_the_estate_would_have_used(built, caller_balancer):
    """The very arguments of the estate's load balancer, pool ids resolved: geo steering with the strict
    group's last-resort pools, header affinity on Mcp-Session-Id, no failover across pools."""
    handed = delegated(caller_balancer)["load_balancer"]
    assert as_recorded(handed) == lb(built)
    assert handed["steering_policy"] == "geo" and handed["session_affinity"] == "header"
    assert handed["session_affinity_attributes"]["headers"] == ["Mcp-Session-Id"]
    assert handed["adaptive_routing"] == {"failover_across_pools": False}
    assert set(delegated(caller_balancer)) == {"pool_ids", "last_resort_pool_ids", "load_balancer"}


def readme_example() -> str:
    section = (ROOT / "README.md").read_text().split("### Bring your own zone or load balancer", 1)[1]
    return re.search(r"```python\n(.+?)\n```", section, re.S)[1]


def test_the_readmes_owner_program_rebuilds_the_estates_rules_and_balancer(built):
    """The README's example, run as the zone owner's program over this edge's delegated outputs: its
    custom ruleset holds the team's rule then the estate's, and its load balancer is the estate's."""
    handed = delegated(delegating_plan(zone=False, load_balancer=False))
    team_rule = {"ref": "team_block_admin", "action": "block", "expression": 'http.request.uri.path eq "/admin"'}

    class Reference:
        def __init__(self, name: str):
            assert name == "<org>/mcp-estate/prod"

        def get_output(self, key: str):
            assert key == "delegated_edge"
            return pulumi.Output.from_input(handed)

    def program():
        exec(readme_example(), {"pulumi": SimpleNamespace(StackReference=Reference), "cloudflare": cloudflare,
                                "ZONE": ZONE, "TEAM_CUSTOM_RULES": [team_rule]})
    owner = run_program(program)
    [ruleset] = owner.of_type(RULESET)
    custom = handed["zone_rules"]["http_request_firewall_custom"]
    assert ruleset.inputs["rules"] == as_recorded([team_rule, *custom])
    estate_lb = {k: v for k, v in lb(built).items() if k != "description"}
    assert {k: v for k, v in lb(owner).items() if k != "zoneId"} == {k: v for k, v in estate_lb.items()
                                                                     if k != "zoneId"}


MONITORED = "cloudflare-pools-monitored"


@legitimate(MONITORED)
def test_a_strict_groups_unused_last_resort_pool_is_the_callers_to_place(caller_balancer):
    """No load balancer here: the unmonitored last-resort pool's place (last in the strict lists) is judged
    with the caller's load balancer; with the load balancer here, its lists are judged as ever."""
    delegation = {MONITORED: {"delegatedEdge": ["loadBalancer"]}}
    assert violations(caller_balancer, delegation, MONITORED) == []
    assert violations(delegating_plan(zone=True, load_balancer=True), delegation, MONITORED) == []


@attack(MONITORED)
def test_without_the_delegation_the_unused_last_resort_pool_is_an_unmonitored_pool(caller_balancer):
    [unused] = violations(caller_balancer, {}, MONITORED)
    assert unused.urn.endswith("edge-last-resort-eu")
