"""Stack topology: every serving region is routed, protected and holds its group's state; a strict
group's state and visitors stay in it; losing any one region leaves each group its declared peak."""

from __future__ import annotations

import copy
from typing import NamedTuple

import pulumi
import pulumi_aws as aws
import pulumi_cloudflare as cloudflare
import pytest
from corpus import attack, legitimate
from conftest import (
    ACCOUNT,
    Plan,
    run_program,
    run_with_planted_fault,
    shipped_plan,
    stack_config,
)

from mcp_estate.checking.pack_config import with_spec
from mcp_estate.components.estate import Estate
from mcp_estate.checking.check import evaluate
from mcp_estate.offline.fidelity import inspect_resource
from mcp_estate.offline.runner import run_offline
from mcp_estate.contract.spec import EstateSpec
from mcp_estate.contract.validate import parse_spec
from mcp_estate.policies.catalogue import CONTROLS

ROUTED = "every-serving-region-is-routed-protected-and-replicated"
RESIDENCY = "strict-residency-stays-in-its-group"
SURVIVE = "regions-survive-the-loss-of-any-one"
DIGEST = "sha256:" + "cd" * 32
REGISTRY = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"


# The residency config of the hand-built estates below (what `estate pack-config` would generate).
HAND_GROUPS = {"americas": {"strict": False, "regions": ["us-east-1"], "countries": ["US"]},
               "eu": {"strict": True, "regions": ["eu-central-1", "eu-west-1"], "countries": ["DE", "FR"]}}
HAND_CONFIG = {RESIDENCY: {"residencyGroups": HAND_GROUPS}}


def found(plan: Plan, policy: str, config: dict | None = None) -> list[str]:
    """The messages of one policy's violations over a plan (as `estate check` evaluates an export),
    with the pack config (default: the hand-built estates' residency groups)."""
    [control] = [c for c in CONTROLS if c.name == policy]
    return [v.message for v in evaluate([r.export() for r in plan.resources], HAND_CONFIG if config is None
                                        else config, controls=[control])]


def spec_config(spec: EstateSpec) -> dict:
    return with_spec({}, spec)


def estate_of(spec: EstateSpec, stack: str = "test", config: dict | None = None) -> Plan:
    return Plan(run_offline(lambda: Estate("mcp-estate", spec), stack=stack, account_id=ACCOUNT, config=config or {},
                            inspect=inspect_resource))


# -- the shipped stacks ---------------------------------------------------------------------------

class Shipped(NamedTuple):
    spec: EstateSpec
    plan: Plan


@pytest.fixture(scope="module", params=["dev", "staging", "prod"])
def shipped(request) -> Shipped:
    spec = parse_spec(stack_config(request.param)["mcp-estate:estate"])
    return Shipped(spec, shipped_plan(request.param))


@pytest.mark.parametrize("policy", [ROUTED, RESIDENCY, SURVIVE])
@legitimate(param="policy")
def test_the_shipped_stacks_pass_every_topology_policy(shipped, policy):
    assert found(shipped.plan, policy, spec_config(shipped.spec)) == []


def test_scaling_targets_carry_a_peak_exactly_where_the_stack_declares_one(shipped):
    for target in shipped.plan.of_type("aws:appautoscaling/target:Target"):
        tags = target.outputs["tags"]
        peak = shipped.spec.group_of[tags["mcp-estate:region"]].peak_tasks.get(tags["mcp-estate:server"])
        assert tags.get("mcp-estate:peak-tasks") == (None if peak is None else str(peak)), target.name


def test_prod_declares_a_peak_for_every_server_of_every_group():
    spec = parse_spec(stack_config("prod")["mcp-estate:estate"])
    for group in spec.residency_groups:
        assert set(group.peak_tasks) == {s.name for r in group.regions for s in spec.servers_in(r.name)}
        assert all(peak > 0 for peak in group.peak_tasks.values())


# -- an estate built from a spec ------------------------------------------------------------------

SPEC = {
    "environment": "staging", "owner": "travel-platform", "aws_account_id": ACCOUNT, "primary_region": "us-east-1",
        "auth": {"issuer": "https://login.example.travel/", "jwks_url": "https://login.example.travel/jwks.json"},
    "domain": {"hostname": "mcp.example.travel", "zone_id": "0" * 32, "cloudflare_account_id": "f" * 32},
    "residency_groups": [
        {"name": "americas", "primary_region": "us-east-1", "countries": ["US", "CA"],
         "peak_tasks": {"booking": 0, "loyalty": 4},     # one region: only a peak of 0 survives its loss
         "regions": [{"name": "us-east-1", "cidr": "10.20.0.0/16"}]},
        {"name": "eu", "primary_region": "eu-west-1", "strict": True, "countries": ["FR", "DE"],
         "peak_tasks": {"booking": 10, "loyalty": 6},    # either region alone: booking 10 (enough), loyalty 4
         "regions": [{"name": "eu-west-1", "cidr": "10.30.0.0/16"}, {"name": "eu-central-1", "cidr": "10.31.0.0/16"}]},
    ],
    "servers": [
        {"name": "booking", "image": f"{REGISTRY}/mcp/booking@{DIGEST}", "scaling": {"min": 2, "max": 10}},
        {"name": "loyalty", "image": f"{REGISTRY}/mcp/loyalty@{DIGEST}", "scaling": {"min": 1, "max": 4}},
    ],
    "edge": {"health_server": "booking"},
}


@pytest.fixture(scope="module")
def built() -> Plan:
    return estate_of(parse_spec(SPEC))


def tags_of(plan: Plan, name: str) -> dict:
    return plan.named(name).outputs["tags"]


def test_a_strict_groups_resources_say_so_and_its_table_records_its_countries(built):
    eu = tags_of(built, "mcp-estate-estate-wide-eu-state-table")
    americas = tags_of(built, "mcp-estate-estate-wide-americas-state-table")
    assert (eu["mcp-estate:residency"], eu["mcp-estate:countries"]) == ("strict", "DE FR")
    assert americas["mcp-estate:residency"] == "open" and "mcp-estate:countries" not in americas
    assert tags_of(built, "mcp-estate-eu-central-1-booking-service")["mcp-estate:residency"] == "strict"
    assert tags_of(built, "mcp-estate-us-east-1-front-alb")["mcp-estate:residency"] == "open"


def test_scaling_targets_carry_their_groups_declared_peak(built):
    assert tags_of(built, "mcp-estate-eu-central-1-loyalty-scaling")["mcp-estate:peak-tasks"] == "6"
    assert tags_of(built, "mcp-estate-us-east-1-booking-scaling")["mcp-estate:peak-tasks"] == "0"


def test_an_estate_built_from_a_spec_is_routed_protected_replicated_and_resident(built):
    assert found(built, ROUTED) == []
    assert found(built, RESIDENCY, spec_config(parse_spec(SPEC))) == []


@attack("regions-survive-the-loss-of-any-one")
def test_a_peak_the_other_regions_cannot_carry_names_the_lost_region_and_the_shortfall(built):
    assert sorted(m for m in found(built, SURVIVE) if "group eu" in m) == [   # booking's 10 is enough
        "Losing eu-central-1 leaves loyalty in group eu 4 tasks of capacity (eu-west-1 max 4), 2 short of the "
        "declared peak of 6: raise servers[loyalty].scaling.max or run loyalty in another region of the group",
        "Losing eu-west-1 leaves loyalty in group eu 4 tasks of capacity (eu-central-1 max 4), 2 short of the "
        "declared peak of 6: raise servers[loyalty].scaling.max or run loyalty in another region of the group"]


@attack("regions-survive-the-loss-of-any-one")
def test_a_group_of_one_region_survives_its_loss_only_with_a_peak_of_zero(built):
    assert [m for m in found(built, SURVIVE) if "group eu" not in m] == [   # booking's peak is 0
        "loyalty runs only in us-east-1 of group americas: losing it leaves no capacity for the declared peak of "
        "4 tasks; run loyalty in a second region of the group"]



@legitimate("regions-survive-the-loss-of-any-one")
def test_peaks_each_region_of_the_group_can_carry_alone_pass():
    spec = copy.deepcopy(SPEC)
    spec["residency_groups"][0]["peak_tasks"] = {"booking": 0, "loyalty": 0}
    spec["residency_groups"][1]["peak_tasks"] = {"booking": 10, "loyalty": 4}   # each EU region runs 4 at most
    assert found(estate_of(parse_spec(spec)), SURVIVE) == []

# -- hand-built estates: what the spec cannot produce ---------------------------------------------

GROUPS = {"us-east-1": "americas", "eu-west-1": "eu", "eu-central-1": "eu"}
EU_ALBS = ("eu-west-1", "eu-central-1")


def hand_built(*, waf=("us-east-1", "eu-west-1", "eu-central-1"), internal=(), origins=None, replicas=None,
               countries=("DE", "FR"), load_balancer=None, replica_resources=None, last_resort=None,
               fault: str | None = None) -> Plan:
    """Per region a service, an ALB (with WAF) and a monitored pool; per group a table; the eu group's
    unmonitored last-resort pool on both EU ALBs; one geo load balancer. Each keyword breaks one part:
    `origins` maps a region's pool to another region's ALB or to an address; `last_resort` overrides
    the last-resort pool's arguments (`origins`: regions or addresses, `(region, enabled)` pairs);
    `load_balancer(pools)` returns LoadBalancer arguments to override (pools by region, and `eu-last`).
    `fault`: what the plan's inspector must refuse first, for a fault the pack must catch as well."""
    def program():
        providers = {r: aws.Provider(f"aws-{r}", region=r) for r in GROUPS}
        albs = {}
        for region, group in GROUPS.items():
            opts = pulumi.ResourceOptions(provider=providers[region])
            tags = {"mcp-estate:region": region, "mcp-estate:residency-group": group,
                    "mcp-estate:residency": "strict" if group == "eu" else "open"}
            aws.ecs.Service(f"booking-{region}", tags={**tags, "mcp-estate:server": "booking"}, opts=opts)
            albs[region] = aws.lb.LoadBalancer(f"alb-{region}", load_balancer_type="application",
                                               internal=region in internal, subnets=["subnet-a", "subnet-b"],
                                               tags=tags, opts=opts)
            if region in waf:
                aws.wafv2.WebAclAssociation(f"waf-{region}", resource_arn=albs[region].arn, opts=opts,
                                            web_acl_arn=f"arn:aws:wafv2:{region}:{ACCOUNT}:regional/webacl/w/1")

        def origin(where: str, enabled: bool = True) -> dict:   # a region (its ALB) or a literal address
            return {"name": where, "address": albs[where].dns_name if where in albs else where, "enabled": enabled}

        monitor = cloudflare.LoadBalancerMonitor("monitor", account_id="f" * 32, type="https", path="/healthz")
        pools = {}
        for region in GROUPS:
            where = (origins or {}).get(region, region)
            pools[region] = cloudflare.LoadBalancerPool(
                f"pool-{region}", account_id="f" * 32, name=f"mcp-test-{region}", monitor=monitor.id,
                origins=[origin(where)] if where else []).id
        resort = {"origins": list(EU_ALBS), **(last_resort or {})}
        resort["origins"] = [origin(*o) if isinstance(o, tuple) else origin(o) for o in resort["origins"]]
        if resort.pop("monitored", False):
            resort["monitor"] = monitor.id
        pools["eu-last"] = cloudflare.LoadBalancerPool("pool-eu-last-resort", account_id="f" * 32,
                                                       name="mcp-test-eu-last-resort", **resort).id
        for group, home in (("americas", "us-east-1"), ("eu", "eu-west-1")):
            tags = {"mcp-estate:residency-group": group, "mcp-estate:residency": "strict" if group == "eu" else "open"}
            if group == "eu" and countries:
                tags["mcp-estate:countries"] = " ".join(countries)
            table = aws.dynamodb.Table(f"{group}-state", hash_key="pk", attributes=[{"name": "pk", "type": "S"}],
                                       replicas=[{"region_name": r} for r in (replicas or {}).get(
                                           group, [r for r, g in GROUPS.items() if g == group and r != home])],
                                       tags=tags, opts=pulumi.ResourceOptions(provider=providers[home]))
            for region in (replica_resources or {}).get(group, []):
                aws.dynamodb.TableReplica(f"{group}-state-{region}", global_table_arn=table.arn,
                                          opts=pulumi.ResourceOptions(provider=providers[region]))
        eu = [pools["eu-west-1"], pools["eu-central-1"], pools["eu-last"]]
        arguments = dict(steering_policy="geo", default_pools=[pools["us-east-1"]], fallback_pool=pools["us-east-1"],
                         region_pools={"ENAM": [pools["us-east-1"]]},
                         country_pools={"US": [pools["us-east-1"]], "DE": eu, "FR": eu})
        arguments.update(load_balancer(pools) if load_balancer else {})
        cloudflare.LoadBalancer("lb", zone_id="0" * 32, name="mcp.example.travel", proxied=True, **arguments)
    return run_with_planted_fault(program, fault) if fault else run_program(program)


@pytest.fixture(scope="module")
def compliant() -> Plan:
    return hand_built()


def test_a_hand_built_compliant_estate_passes(compliant):
    assert found(compliant, ROUTED) == []
    assert found(compliant, RESIDENCY) == []


@attack("every-serving-region-is-routed-protected-and-replicated")
def test_a_serving_region_without_a_waf_on_its_alb_is_reported():
    assert found(hand_built(waf=("us-east-1", "eu-west-1")), ROUTED) == [
        "Region eu-central-1 (running booking) is served by ALB alb-eu-central-1 without a WAF: associate a web "
        "ACL with it (aws.wafv2.WebAclAssociation, resource_arn=the ALB's arn)"]


@attack("every-serving-region-is-routed-protected-and-replicated")
def test_a_serving_region_with_only_an_internal_alb_is_unreachable():
    assert found(hand_built(internal=("us-east-1",)), ROUTED) == [
        "Region us-east-1 (running booking) has no internet-facing ALB tagged mcp-estate:region=us-east-1: "
        "Cloudflare cannot reach its servers"]


@attack("every-serving-region-is-routed-protected-and-replicated")
def test_a_serving_region_whose_alb_no_pool_points_at_is_not_routed():
    [message] = found(hand_built(origins={"eu-central-1": "partner.example.com"},
                                 last_resort={"origins": ["eu-west-1"]}), ROUTED)
    assert message.startswith("Region eu-central-1 (running booking) has no enabled Cloudflare pool whose origin "
                              "is its ALB (alb-eu-central-1")


@attack("every-serving-region-is-routed-protected-and-replicated")
def test_a_pool_no_load_balancer_routes_to_leaves_its_region_unrouted():
    def without_central(pools):   # the eu-central-1 pool exists but nothing routes to it
        eu = [pools["eu-west-1"], pools["eu-last"]]
        return {"country_pools": {"US": [pools["us-east-1"]], "DE": eu, "FR": eu}}
    assert found(hand_built(load_balancer=without_central, last_resort={"origins": ["eu-west-1"]}), ROUTED) == [
        "Region eu-central-1 (running booking): no Cloudflare load balancer routes to its pool pool-eu-central-1: "
        "add it to the load balancer's pools"]


@attack("every-serving-region-is-routed-protected-and-replicated")
def test_a_serving_region_without_a_copy_of_its_groups_state_is_reported():
    messages = found(hand_built(replicas={"eu": []}), ROUTED)
    assert messages == ["Region eu-central-1 (running booking): state table eu-state of group eu has no copy there "
                        "(only in eu-west-1): add a replica in eu-central-1, or a failover loses its sessions"]


@attack("strict-residency-stays-in-its-group")
def test_a_strict_table_replicated_outside_its_group_is_reported():
    messages = found(hand_built(replicas={"eu": ["eu-central-1", "us-east-1"]}), RESIDENCY)
    assert messages == ["State table eu-state has copies in strict group eu (eu-central-1, eu-west-1) and outside "
                        "it (us-east-1): remove the copies outside the group's regions (eu-central-1, eu-west-1)"]


@attack("strict-residency-stays-in-its-group")
def test_without_the_config_a_strict_table_that_does_not_record_its_countries_is_reported():
    assert found(hand_built(countries=()), RESIDENCY, config={}) == [
        "The pack config gives no residencyGroups, so which groups are strict, and where, is read from "
        "mcp-estate:residency tags a change can rewrite: pass the config `estate pack-config --stack <stack> "
        "--write` generates (policies/config/<environment>.json)",
        "State table eu-state of strict group eu does not record the countries the group keeps (tag "
        "mcp-estate:countries), so their routing cannot be checked"]


@attack("strict-residency-stays-in-its-group")
def test_with_the_config_the_countries_come_from_it_and_a_tag_that_disagrees_is_reported():
    assert found(hand_built(countries=()), RESIDENCY) == []   # the config's DE and FR are routed right
    assert found(hand_built(countries=("DE",)), RESIDENCY) == [
        "State table eu-state records countries DE for strict group eu, but the pack config gives DE FR: the "
        "config decides; correct the tag"]


@attack("strict-residency-stays-in-its-group")
def test_a_table_replica_resource_outside_a_strict_group_is_a_copy_there():
    def program(extra_region="us-east-1"):
        home = aws.Provider("mcp-estate-aws-eu-west-1", region="eu-west-1")
        table = aws.dynamodb.Table("eu-state", hash_key="pk", attributes=[{"name": "pk", "type": "S"}],
                                   tags={"mcp-estate:residency-group": "eu", "mcp-estate:residency": "strict",
                                         "mcp-estate:region": "eu-west-1", "mcp-estate:countries": "DE FR"},
                                   opts=pulumi.ResourceOptions(provider=home))
        aws.dynamodb.TableReplica("eu-state-us-east-1", global_table_arn=table.arn,
                                  opts=pulumi.ResourceOptions(provider=aws.Provider(f"aws-{extra_region}",
                                                                                    region=extra_region)))
    assert found(run_program(program), RESIDENCY) == [
        "State table eu-state has copies in strict group eu (eu-west-1) and outside it (us-east-1): remove the "
        "copies outside the group's regions (eu-central-1, eu-west-1)"]


@legitimate("every-serving-region-is-routed-protected-and-replicated")
def test_a_table_replica_resource_is_the_copy_a_serving_region_needs():
    assert found(hand_built(replicas={"eu": []}, replica_resources={"eu": ["eu-central-1"]}), ROUTED) == []


# -- strict countries: attacks that leak them must fail ---------------------------------------------

@attack("strict-residency-stays-in-its-group")
def test_a_strict_country_routed_to_a_pool_outside_the_group_is_reported():
    def de_fails_over_to_us(pools):
        eu = [pools["eu-west-1"], pools["eu-central-1"], pools["eu-last"]]
        return {"country_pools": {"US": [pools["us-east-1"]], "FR": eu, "DE": [*eu[:2], pools["us-east-1"]]}}
    [message] = found(hand_built(load_balancer=de_fails_over_to_us), RESIDENCY)
    assert message.startswith("Cloudflare load balancer lb sends DE visitors (strict group eu) to ")
    assert message.endswith("mcp-test-us-east-1 (us-east-1): route them only to the group's pools")


@attack("strict-residency-stays-in-its-group")
def test_a_strict_country_without_its_own_route_is_reported():
    def no_entry_for_fr(pools):   # FR falls to the region pools, then to the default pools
        return {"country_pools": {"US": [pools["us-east-1"]], "DE": [pools["eu-west-1"], pools["eu-last"]]}}
    assert found(hand_built(load_balancer=no_entry_for_fr), RESIDENCY) == [
        "Cloudflare load balancer lb has no countryPools entry for FR (strict group eu): its visitors go to the "
        "region or default pools, outside the group"]


@attack("strict-residency-stays-in-its-group")
def test_a_country_code_in_another_spelling_is_no_route_for_the_strict_country():
    def lowercase_fr(pools):   # Cloudflare's country codes are upper case: "fr" maps no visitor of FR
        eu = [pools["eu-west-1"], pools["eu-central-1"], pools["eu-last"]]
        return {"country_pools": {"US": [pools["us-east-1"]], "DE": eu, "fr": eu}}
    assert [m.split(":")[0] for m in found(hand_built(load_balancer=lowercase_fr), RESIDENCY)] == [
        "Cloudflare load balancer lb has no countryPools entry for FR (strict group eu)",
        "Cloudflare load balancer lb sends fr visitors into strict group eu's pool mcp-test-eu-west-1 (eu-west-1), "
        "mcp-test-eu-central-1 (eu-central-1), mcp-test-eu-last-resort (eu-central-1, eu-west-1)"]


def ends_with(*last):
    """DE and FR routed to the two EU pools, then to `last` (pool keys)."""
    def routing(pools):
        eu = [pools["eu-west-1"], pools["eu-central-1"], *(pools[k] for k in last)]
        return {"country_pools": {"US": [pools["us-east-1"]], "DE": eu, "FR": eu}}
    return routing


RUNS_OUT = ("which can be unhealthy: when all its pools are, geo steering sends the visitors to the fallback pool, "
            "outside the group; end the list with an enabled pool of the group without a monitor")


@pytest.mark.parametrize("attack, last_resort, last", [
    ("no last resort: the list ends with a monitored pool", None, ()),
    ("the last resort has a monitor", {"monitored": True}, ("eu-last",)),
    ("the last resort has a monitor group", {"monitor_group": "f" * 32}, ("eu-last",)),
    ("the last resort is disabled", {"enabled": False}, ("eu-last",)),
    ("every origin of the last resort is disabled",
     {"origins": [("eu-west-1", False), ("eu-central-1", False)]}, ("eu-last",)),
    ("an unmonitored pool of the group before a monitored last one", None, ("eu-last", "eu-west-1")),
])
@attack("strict-residency-stays-in-its-group")
def test_a_strict_countrys_list_that_can_run_out_of_pools_is_reported(attack, last_resort, last):
    messages = found(hand_built(last_resort=last_resort, load_balancer=ends_with(*last)), RESIDENCY)
    assert len(messages) == 2 and [m.split("'s countryPools for ")[1][:2] for m in messages] == ["DE", "FR"], attack
    assert all(m.endswith(RUNS_OUT) for m in messages), (attack, messages)


@attack("strict-residency-stays-in-its-group")
def test_a_last_resort_outside_the_group_is_reported():
    # An unmonitored pool is always used: one in us-east-1 would take DE and FR there, not keep them home.
    plan = hand_built(last_resort={"origins": ["us-east-1"]})
    assert [m.split(" to ")[0] for m in found(plan, RESIDENCY)] == [
        "Cloudflare load balancer lb sends DE visitors (strict group eu)",
        "Cloudflare load balancer lb sends FR visitors (strict group eu)"]


@attack("strict-residency-stays-in-its-group")
def test_a_pool_whose_origins_span_residency_groups_leads_outside_the_strict_group():
    plan = hand_built(last_resort={"origins": ["eu-west-1", "us-east-1"]})
    messages = found(plan, RESIDENCY)
    assert len(messages) == 2
    assert all("mcp-test-eu-last-resort (eu-west-1, us-east-1): route them only to the group's pools" in m
               for m in messages), messages


@attack("strict-residency-stays-in-its-group")
def test_a_pool_leads_where_its_origin_is_whatever_its_name_says():
    # mcp-test-eu-central-1 has the us-east-1 ALB as its origin: DE and FR visitors would leave the group.
    messages = found(hand_built(origins={"eu-central-1": "us-east-1"}), RESIDENCY)
    assert [m.split(" to ")[0] for m in messages] == [
        "Cloudflare load balancer lb sends DE visitors (strict group eu)",
        "Cloudflare load balancer lb sends FR visitors (strict group eu)"]
    assert all("mcp-test-eu-central-1 (us-east-1)" in m for m in messages), messages


def test_a_pool_whose_origin_is_no_alb_of_the_estate_leads_outside_whatever_its_name_says():
    # mcp-test-eu-central-1 is named for the region, but its origin could be anywhere in the world.
    plan = hand_built(origins={"eu-central-1": "eu-central-1.origin.example.travel"},
                      last_resort={"origins": ["eu-west-1"]})
    messages = found(plan, RESIDENCY)
    assert [m.split(" to ")[0] for m in messages] == [
        "Cloudflare load balancer lb sends DE visitors (strict group eu)",
        "Cloudflare load balancer lb sends FR visitors (strict group eu)"]
    assert all("mcp-test-eu-central-1 (outside the estate)" in m for m in messages), messages
    [unrouted] = found(plan, ROUTED)   # and the ALB of eu-central-1 is no pool's origin
    assert unrouted.startswith("Region eu-central-1 (running booking) has no enabled Cloudflare pool")


@legitimate("strict-residency-stays-in-its-group")
def test_a_pool_without_origins_leads_where_its_name_says():
    assert found(hand_built(origins={"eu-central-1": None}), RESIDENCY) == []


@pytest.mark.parametrize("route, into_eu", [
    ("through its defaultPools", lambda us, eu: {"default_pools": [us, eu]}),
    ("through its fallbackPool", lambda us, eu: {"fallback_pool": eu}),
    ("through its regionPools", lambda us, eu: {"region_pools": {"ENAM": [us, eu]}}),
    ("sends US visitors into", lambda us, eu: {"country_pools": {"US": [us, eu], "DE": [eu], "FR": [eu]}}),
])
@attack("strict-residency-stays-in-its-group")
def test_no_route_for_other_visitors_reaches_a_strict_pool(route, into_eu):
    messages = found(hand_built(load_balancer=lambda pools: into_eu(pools["us-east-1"], pools["eu-last"])),
                     RESIDENCY)
    assert any(route in m and "strict group eu's pool mcp-test-eu-last-resort" in m for m in messages), messages


@pytest.mark.parametrize("pops", [{"FRA": ["us-east-1"]}, {"FRA": ["eu-west-1", "eu-last"]}])
@attack("strict-residency-stays-in-its-group")
def test_a_data_center_mapping_is_reported_whatever_it_maps_to(pops):
    # PoP steering takes precedence over countryPools, and a data center serves visitors of any country.
    def with_pops(pools):
        return {"pop_pools": {pop: [pools[k] for k in keys] for pop, keys in pops.items()}}
    messages = found(hand_built(load_balancer=with_pops), RESIDENCY)
    assert ("Cloudflare load balancer lb maps data centers in popPools (FRA): a data center serves visitors of "
            "any country and its mapping takes precedence over countryPools, so strict group eu's visitors may "
            "leave the group: remove popPools") in messages, messages


@pytest.mark.parametrize("steering", ["off", "dynamic_latency", "proximity", "random"])
@attack("strict-residency-stays-in-its-group")
def test_a_steering_policy_that_ignores_country_pools_is_reported(steering):
    assert found(hand_built(load_balancer=lambda pools: {"steering_policy": steering}), RESIDENCY) == [
        f"Cloudflare load balancer lb steers by '{steering}', which ignores countryPools: set "
        "steering_policy='geo' so strict group eu's countries stay on its pools"]


@attack("strict-residency-stays-in-its-group")
def test_the_former_residency_rule_is_reported_twice_over():
    # `ip.src.country` is no documented load-balancing-rule field, and rules do not work with geo steering.
    def old_rule(pools):
        eu = [pools["eu-west-1"], pools["eu-central-1"]]
        return {"rules": [{"name": "residency-eu", "priority": 1, "terminates": True,
                           "condition": 'ip.src.country in {"DE" "FR"}',
                           "overrides": {"steering_policy": "off", "default_pools": eu, "fallback_pool": eu[0]}}]}
    plan = hand_built(load_balancer=old_rule, fault="field 'ip.src.country' is not available")
    assert found(plan, RESIDENCY) == [
        "Cloudflare load balancer lb's rule 'residency-eu' reads ip.src.country, which Cloudflare does not "
        "document for load-balancing rules: remove the rule",
        "Cloudflare load balancer lb's rule 'residency-eu' overrides defaultPools, fallbackPool, steeringPolicy: "
        "Cloudflare documents custom rules as not working with geo steering, so nothing shows strict group eu's "
        "visitors stay in the group: remove the rule"]


@attack("strict-residency-stays-in-its-group")
def test_a_rule_on_documented_fields_that_moves_visitors_is_reported():
    def beta(pools):
        return {"rules": [
            {"name": "beta", "condition": 'starts_with(http.request.uri.path, "/beta")',
             "overrides": {"region_pools": {"WEU": [pools["us-east-1"]]}}},
            {"name": "stop", "terminates": True, "condition": 'http.host eq "mcp.example.travel"'},
            {"name": "off", "disabled": True, "condition": "true", "overrides": {"default_pools": [pools["us-east-1"]]}}]}
    plan = hand_built(load_balancer=beta, fault="function 'starts_with()' is not available")
    assert [m.split(":")[0] for m in found(plan, RESIDENCY)] == [
        "Cloudflare load balancer lb's rule 'beta' overrides regionPools",
        "Cloudflare load balancer lb's rule 'stop' terminates"]


@legitimate("strict-residency-stays-in-its-group")
def test_a_rule_that_only_answers_itself_or_keeps_affinity_passes():
    def harmless(pools):
        return {"rules": [
            {"name": "blocked", "terminates": True, "condition": 'http.request.uri.path eq "/admin"',
             "fixed_response": {"status_code": 403, "message_body": "no"}},
            {"name": "ttl", "condition": 'http.request.uri.path contains "/mcp"',
             "overrides": {"session_affinity_ttl": 600}}]}
    assert found(hand_built(load_balancer=harmless), RESIDENCY) == []


# -- strict countries: legitimate changes must pass ---------------------------------------------------

@pytest.mark.parametrize("change, last_resort, routing", [
    ("reorder the group's pools", None, lambda p: [p["eu-central-1"], p["eu-west-1"], p["eu-last"]]),
    ("one group pool then the last resort", None, lambda p: [p["eu-west-1"], p["eu-last"]]),
    ("only the unmonitored last resort", None, lambda p: [p["eu-last"]]),
    ("a last resort on the primary's ALB alone", {"origins": ["eu-west-1"]},
     lambda p: [p["eu-west-1"], p["eu-central-1"], p["eu-last"]]),
])
@legitimate("strict-residency-stays-in-its-group")
def test_legitimate_routes_of_a_strict_country_pass(change, last_resort, routing):
    def route(pools):
        return {"country_pools": {"US": [pools["us-east-1"]], "DE": routing(pools), "FR": routing(pools)}}
    assert found(hand_built(last_resort=last_resort, load_balancer=route), RESIDENCY) == [], change


def test_adding_a_region_to_the_strict_group_keeps_it_resident():
    spec = copy.deepcopy(SPEC)
    eu = spec["residency_groups"][1]
    eu["regions"] = [{"name": "eu-west-3", "cidr": "10.32.0.0/16"}, *eu["regions"]]   # listed first, on purpose
    plan = estate_of(parse_spec(spec))
    assert found(plan, RESIDENCY, spec_config(parse_spec(spec))) == [] and found(plan, ROUTED) == []
    # The same stack judged by the config of the spec before the change: the new region is not the group's.
    assert found(plan, RESIDENCY, spec_config(parse_spec(SPEC)))[0] == (
        "Resources of residency group eu are tagged with region eu-west-3, outside the group's regions in the "
        "pack config (eu-central-1, eu-west-1)")
    [last_resort] = [p for p in plan.of_type("cloudflare:index/loadBalancerPool:LoadBalancerPool")
                     if p.name.endswith("last-resort-eu")]
    assert [o["name"] for o in last_resort.inputs["origins"]] == ["eu-west-1", "eu-central-1", "eu-west-3"]


@attack("regions-survive-the-loss-of-any-one")
def test_an_unreadable_peak_is_reported():
    def program():
        aws.appautoscaling.Target("mcp-estate-us-east-1-booking-scaling", min_capacity=2, max_capacity=30,
                                  resource_id="service/c/booking", scalable_dimension="ecs:service:DesiredCount",
                                  service_namespace="ecs", tags={
                                      "mcp-estate:region": "us-east-1", "mcp-estate:residency-group": "americas",
                                      "mcp-estate:server": "booking", "mcp-estate:peak-tasks": "lots"})
    assert found(run_program(program), SURVIVE) == [
        "Scaling targets of booking in group americas carry an unreadable peak (lots): mcp-estate:peak-tasks must "
        "be a number of tasks"]


# -- residency from a trusted source: the config, not the tags ------------------------------------

def retagged(plan: Plan, rewrite) -> list[dict]:
    """The plan's export with `rewrite(name, tags)` applied to every resource's tags, inputs and
    outputs alike: what a change that edits only tags would produce."""
    resources = copy.deepcopy([r.export() for r in plan.resources])
    for resource in resources:
        name = resource["urn"].split("::")[-1]
        for key in ("inputs", "outputs"):
            tags = (resource.get(key) or {}).get("tags")
            if isinstance(tags, dict):
                rewrite(name, tags)
    return resources


def judged(resources: list[dict], config: dict | None = None) -> list[str]:
    [control] = [c for c in CONTROLS if c.name == RESIDENCY]
    return [v.message for v in evaluate(resources, HAND_CONFIG if config is None else config, controls=[control])]


def de_to_us(pools):
    return {"country_pools": {"US": [pools["us-east-1"]], "DE": [pools["us-east-1"], pools["eu-last"]],
                              "FR": [pools["eu-west-1"], pools["eu-last"]]}}


def test_tagging_the_strict_group_open_does_not_relax_it():
    def open_up(_name, tags):
        if tags.get("mcp-estate:residency") == "strict":
            tags["mcp-estate:residency"] = "open"
    messages = judged(retagged(hand_built(load_balancer=de_to_us), open_up))
    assert "Resources of residency group eu are tagged mcp-estate:residency=open, but the pack config makes it " \
           "strict: the config decides; correct the tags" in messages
    assert any(m.startswith("Cloudflare load balancer lb sends DE visitors (strict group eu) to mcp-test-us-east-1")
               for m in messages)


def test_dropping_the_tables_group_tag_does_not_hide_a_copy_outside_the_group():
    def untag_table(name, tags):
        if name == "eu-state":
            tags.clear()
    messages = judged(retagged(hand_built(replicas={"eu": ["eu-central-1", "us-east-1"]}), untag_table))
    assert messages == ["State table eu-state has copies in strict group eu (eu-central-1, eu-west-1) and outside "
                        "it (us-east-1): remove the copies outside the group's regions (eu-central-1, eu-west-1)"]


def test_shrinking_the_recorded_countries_does_not_free_a_country():
    def only_de(name, tags):
        if name == "eu-state":
            tags["mcp-estate:countries"] = "DE"

    def fr_to_us(pools):
        eu = [pools["eu-west-1"], pools["eu-central-1"], pools["eu-last"]]
        return {"country_pools": {"US": [pools["us-east-1"]], "DE": eu, "FR": [pools["us-east-1"]]}}
    messages = judged(retagged(hand_built(load_balancer=fr_to_us), only_de))
    assert "Cloudflare load balancer lb sends FR visitors (strict group eu) to mcp-test-us-east-1 (us-east-1): " \
           "route them only to the group's pools" in messages


def test_retagging_a_foreign_alb_into_the_group_does_not_make_its_pool_resident():
    def move_us_alb(name, tags):   # the us-east-1 ALB now claims to be in eu-central-1
        if name == "alb-us-east-1":
            tags.update({"mcp-estate:region": "eu-central-1", "mcp-estate:residency-group": "eu"})
    messages = judged(retagged(hand_built(origins={"eu-central-1": "us-east-1"}), move_us_alb))
    assert any("mcp-test-eu-central-1 (us-east-1)" in m for m in messages), messages


@attack("strict-residency-stays-in-its-group")
def test_the_config_alone_makes_a_group_strict_whatever_the_tags_say():
    relaxed = {RESIDENCY: {"residencyGroups": {**HAND_GROUPS, "eu": {**HAND_GROUPS["eu"], "strict": False}}}}
    messages = judged([r.export() for r in hand_built(load_balancer=de_to_us).resources], relaxed)
    assert messages == ["Resources of residency group eu are tagged mcp-estate:residency=strict, but the pack config "
                        "makes it open: the config decides; correct the tags"]


def copies(program) -> list[str]:
    return judged([r.export() for r in run_program(program).resources])


def provider(region: str) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(provider=aws.Provider(f"aws-{region}", region=region))


KEY_ARN = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/mrk-0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("home, replica, expected", [
    ("eu-west-1", "us-east-1", ["Secret api-key is homed in eu-west-1, in strict group eu, and copied to us-east-1, "
                                "outside the group's regions (eu-central-1, eu-west-1): remove those replicas"]),
    ("eu-west-1", "eu-central-1", []),   # within the group
    ("us-east-1", "eu-west-1", []),      # an open secret may be read in the strict group
])
def test_a_secret_homed_in_a_strict_group_is_copied_only_inside_it(home, replica, expected):
    def program():
        aws.secretsmanager.Secret("api-key", name="api-key", kms_key_id=KEY_ARN,
                                  replicas=[{"region": replica, "kms_key_id": KEY_ARN}], opts=provider(home))
    assert copies(program) == expected


@pytest.mark.parametrize("region, expected", [
    ("us-east-1", ["KMS replica key eu-key-replica is homed in eu-west-1, in strict group eu, and copied to "
                   "us-east-1, outside the group's regions (eu-central-1, eu-west-1): remove those replicas"]),
    ("eu-central-1", []),
])
def test_a_strict_groups_kms_key_is_replicated_only_inside_it(region, expected):
    def program():
        primary = aws.kms.Key("eu-key", multi_region=True, enable_key_rotation=True, opts=provider("eu-west-1"))
        aws.kms.ReplicaKey("eu-key-replica", primary_key_arn=primary.arn, opts=provider(region))
    assert copies(program) == expected


# -- the edge steers by data center: the strict group's Cloudflare regions and the origin guard ------

def edited(plan: Plan, edit) -> list[str]:
    """The residency verdicts over the plan's export after `edit(name, outputs, export)` on each resource."""
    resources = copy.deepcopy([r.export() for r in plan.resources])
    for resource in resources:
        edit(resource["urn"].split("::")[-1], resource.get("outputs") or {}, resources)
    return judged([r for r in resources if not r.get("deleted")], spec_config(parse_spec(SPEC)))


def guard_of(outputs: dict) -> dict:
    return outputs["conditions"][0]["httpHeader"]


LB = "mcp-estate-edge-lb"
GUARD_MISSING = ("ALB mcp-estate-us-east-1-front-alb (us-east-1, outside strict group eu) serves visitors of {} "
                 "on listener mcp-estate-us-east-1-front-https: Cloudflare steers by data center, so they can reach it")


def test_the_built_estate_maps_its_strict_cloudflare_region_and_guards_the_open_alb(built):
    assert edited(built, lambda *_: None) == []
    lb = built.named("mcp-estate-edge-lb").inputs
    eu = [p for p in built.of_type("cloudflare:index/loadBalancerPool:LoadBalancerPool")]
    names = {p.outputs["id"]: p.name for p in eu}
    assert [names[i] for i in lb["regionPools"]["WEU"]] == [
        "mcp-estate-edge-pool-eu-west-1", "mcp-estate-edge-pool-eu-central-1", "mcp-estate-edge-last-resort-eu"]
    [guard] = [r for r in built.of_type("aws:lb/listenerRule:ListenerRule") if "residency-guard" in r.name]
    assert guard.name == "mcp-estate-us-east-1-front-residency-guard-1"   # only the open group's ALB refuses
    assert (guard.inputs["priority"], guard_of(guard.inputs)) == (1, {"httpHeaderName": "CF-IPCountry",
                                                                        "values": ["DE", "FR"]})
    assert guard.inputs["actions"][0]["fixedResponse"]["statusCode"] == "403"


@pytest.mark.parametrize("leak, edit, expected", [
    ("a strict country missing from the guard",
     lambda n, o, _: n.endswith("guard-1") and guard_of(o).update(values=["DE"]), "FR"),
    ("the guard on the wrong header",
     lambda n, o, _: n.endswith("guard-1") and guard_of(o).update(httpHeaderName="CF-Connecting-IP"), "DE FR"),
    ("the guard forwards instead of refusing",
     lambda n, o, _: n.endswith("guard-1") and o["actions"][0].update(type="forward"), "DE FR"),
    ("the guard answers 200",
     lambda n, o, _: n.endswith("guard-1") and o["actions"][0]["fixedResponse"].update(statusCode="200"), "DE FR"),
    ("the guard narrowed by a second condition",
     lambda n, o, _: n.endswith("guard-1") and o["conditions"].append({"pathPattern": {"values": ["/x"]}}),
     "DE FR"),
    ("a server route ahead of the guard",
     lambda n, o, _: n == "mcp-estate-us-east-1-booking-route" and o.update(priority=0), "DE FR"),
])
def test_an_open_alb_that_does_not_refuse_every_strict_country_first_is_reported(built, leak, edit, expected):
    messages = edited(built, edit)
    assert [m.split(": Cloudflare")[0] for m in messages] == [GUARD_MISSING.format(expected).split(": Cloudflare")[0]], \
        (leak, messages)


def test_removing_a_guard_rule_is_reported(built):
    def drop(name, outputs, resources):
        if name.endswith("guard-1"):
            next(r for r in resources if r.get("outputs") is outputs)["deleted"] = True
    assert [m.split(": Cloudflare")[0] for m in edited(built, drop)] == [
        GUARD_MISSING.format("DE FR").split(": Cloudflare")[0]]


def test_the_strict_groups_cloudflare_region_sent_to_an_open_pool_is_reported(built):
    us = built.named("mcp-estate-edge-pool-us-east-1").outputs["id"]
    messages = edited(built, lambda n, o, _: n == "mcp-estate-edge-lb" and o["regionPools"].update(WEU=[us]))
    assert messages == [
        "Cloudflare load balancer mcp-estate-edge-lb sends data centers of Cloudflare region WEU, where strict group "
        "eu runs, to mcp-estate-test-us-east-1 (us-east-1): the group's visitors served there leave it; map "
        "regionPools.WEU to the group's pools only, ending with an enabled group pool without a monitor"]


def test_reordering_the_strict_groups_region_list_passes_and_another_region_into_it_is_reported(built):
    lb = built.named(LB).outputs
    weu = lb["regionPools"]["WEU"]
    reordered = [weu[1], weu[0], weu[2]]
    assert edited(built, lambda n, o, _: n == LB and o["regionPools"].update(WEU=reordered)) == []
    [message] = edited(built, lambda n, o, _: n == LB and o["regionPools"].update(
        ENAM=[*o["regionPools"]["ENAM"], weu[0]]))
    assert "through its regionPools.ENAM: keep the group's pools out of it" in message


@attack("strict-residency-stays-in-its-group")
def test_adding_a_country_to_the_strict_group_extends_the_guard():
    spec = copy.deepcopy(SPEC)
    spec["residency_groups"][1]["countries"] = ["FR", "DE", "IE", "PT", "AT", "BE"]
    plan = estate_of(parse_spec(spec))
    guards = sorted((r.inputs["priority"], guard_of(r.inputs)["values"]) for r in
                    plan.of_type("aws:lb/listenerRule:ListenerRule") if "residency-guard" in r.name)
    assert guards == [(1, ["AT", "BE", "DE", "FR", "IE"]), (2, ["PT"])]
    assert found(plan, RESIDENCY, spec_config(parse_spec(spec))) == []
    # The stack before the change, judged by the new spec's config: the new countries are not refused.
    messages = found(estate_of(parse_spec(SPEC)), RESIDENCY, spec_config(parse_spec(spec)))
    assert [m for m in messages if m.startswith("ALB")] == [m for m in messages if m.startswith(
        GUARD_MISSING.format("AT BE IE PT").split(": Cloudflare")[0])] != []
