"""Stack topology: every serving region is routed, protected and holds its group's state; a strict
group's state and visitors stay in it; losing any one region leaves each group its declared peak."""

from __future__ import annotations

from typing import NamedTuple

import pulumi
import pulumi_aws as aws
import pulumi_cloudflare as cloudflare
import pytest

from components.estate import Estate
from mcp_estate.check import evaluate
from mcp_estate.fidelity import inspect_resource
from mcp_estate.offline import run_offline
from mcp_estate.spec import EstateSpec
from mcp_estate.validate import parse_spec
from policies.catalogue import CONTROLS
from conftest import ACCOUNT, Plan, run_program, shipped_plan, stack_config

ROUTED = "every-serving-region-is-routed-protected-and-replicated"
RESIDENCY = "strict-residency-stays-in-its-group"
SURVIVE = "regions-survive-the-loss-of-any-one"
DIGEST = "sha256:" + "cd" * 32
REGISTRY = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"


def found(plan: Plan, policy: str) -> list[str]:
    """The messages of one policy's violations over a plan (as `estate check` evaluates an export)."""
    [control] = [c for c in CONTROLS if c.name == policy]
    return [v.message for v in evaluate([r.export() for r in plan.resources], controls=[control])]


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
def test_the_shipped_stacks_pass_every_topology_policy(shipped, policy):
    assert found(shipped.plan, policy) == []


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
    eu, americas = tags_of(built, "eu-state-table"), tags_of(built, "americas-state-table")
    assert (eu["mcp-estate:residency"], eu["mcp-estate:countries"]) == ("strict", "DE FR")
    assert americas["mcp-estate:residency"] == "open" and "mcp-estate:countries" not in americas
    assert tags_of(built, "booking-eu-central-1-service")["mcp-estate:residency"] == "strict"
    assert tags_of(built, "front-us-east-1-alb")["mcp-estate:residency"] == "open"


def test_scaling_targets_carry_their_groups_declared_peak(built):
    assert tags_of(built, "loyalty-eu-central-1-scaling")["mcp-estate:peak-tasks"] == "6"
    assert tags_of(built, "booking-us-east-1-scaling")["mcp-estate:peak-tasks"] == "0"


def test_an_estate_built_from_a_spec_is_routed_protected_replicated_and_resident(built):
    assert found(built, ROUTED) == []
    assert found(built, RESIDENCY) == []


def test_a_peak_the_other_regions_cannot_carry_names_the_lost_region_and_the_shortfall(built):
    assert sorted(m for m in found(built, SURVIVE) if "group eu" in m) == [   # booking's 10 is enough
        "Losing eu-central-1 leaves loyalty in group eu 4 tasks of capacity (eu-west-1 max 4), 2 short of the "
        "declared peak of 6: raise servers[loyalty].scaling.max or run loyalty in another region of the group",
        "Losing eu-west-1 leaves loyalty in group eu 4 tasks of capacity (eu-central-1 max 4), 2 short of the "
        "declared peak of 6: raise servers[loyalty].scaling.max or run loyalty in another region of the group"]


def test_a_group_of_one_region_survives_its_loss_only_with_a_peak_of_zero(built):
    assert [m for m in found(built, SURVIVE) if "group eu" not in m] == [   # booking's peak is 0
        "loyalty runs only in us-east-1 of group americas: losing it leaves no capacity for the declared peak of "
        "4 tasks; run loyalty in a second region of the group"]


# -- hand-built estates: what the spec cannot produce ---------------------------------------------

GROUPS = {"us-east-1": "americas", "eu-west-1": "eu", "eu-central-1": "eu"}


def hand_built(*, waf=("us-east-1", "eu-west-1", "eu-central-1"), internal=(), origins=None, replicas=None,
               countries=("DE", "FR"), load_balancer=None, replica_resources=None) -> Plan:
    """Per region a service, an ALB (with WAF) and a pool; per group a table; one geo load balancer.
    Each keyword breaks one part: `origins` maps a region's pool to another region's ALB or to an
    address; `load_balancer(pools)` returns LoadBalancer arguments to override."""
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
        pools = {}
        for region in GROUPS:
            origin = (origins or {}).get(region, region)   # a region (its ALB), a literal address or None
            address = albs[origin].dns_name if origin in albs else origin
            pools[region] = cloudflare.LoadBalancerPool(
                f"pool-{region}", account_id="f" * 32, name=f"mcp-test-{region}",
                origins=[{"name": region, "address": address, "enabled": True}] if address else []).id
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
        eu = [pools["eu-west-1"], pools["eu-central-1"]]
        arguments = dict(
            default_pools=[pools["us-east-1"]], fallback_pool=pools["us-east-1"],
            region_pools={"ENAM": [pools["us-east-1"]]},
            country_pools={"US": [pools["us-east-1"]], "DE": eu, "FR": eu},
            rules=[{"name": "residency-eu", "priority": 1, "terminates": True,
                    "condition": 'ip.src.country in {"DE" "FR"}',
                    "overrides": {"steering_policy": "off", "default_pools": eu, "fallback_pool": eu[0]}}])
        arguments.update(load_balancer(pools) if load_balancer else {})
        cloudflare.LoadBalancer("lb", zone_id="0" * 32, name="mcp.example.travel", proxied=True,
                                steering_policy="geo", **arguments)
    return run_program(program)


@pytest.fixture(scope="module")
def compliant() -> Plan:
    return hand_built()


def test_a_hand_built_compliant_estate_passes(compliant):
    assert found(compliant, ROUTED) == []
    assert found(compliant, RESIDENCY) == []


def test_a_serving_region_without_a_waf_on_its_alb_is_reported():
    assert found(hand_built(waf=("us-east-1", "eu-west-1")), ROUTED) == [
        "Region eu-central-1 (running booking) is served by ALB alb-eu-central-1 without a WAF: associate a web "
        "ACL with it (aws.wafv2.WebAclAssociation, resource_arn=the ALB's arn)"]


def test_a_serving_region_with_only_an_internal_alb_is_unreachable():
    assert found(hand_built(internal=("us-east-1",)), ROUTED) == [
        "Region us-east-1 (running booking) has no internet-facing ALB tagged mcp-estate:region=us-east-1: "
        "Cloudflare cannot reach its servers"]


def test_a_serving_region_whose_alb_no_pool_points_at_is_not_routed():
    [message] = found(hand_built(origins={"eu-central-1": "partner.example.com"}), ROUTED)
    assert message.startswith("Region eu-central-1 (running booking) has no enabled Cloudflare pool whose origin "
                              "is its ALB (alb-eu-central-1")


def test_a_pool_no_load_balancer_routes_to_leaves_its_region_unrouted():
    def without_central(pools):   # the eu-central-1 pool exists but nothing routes to it
        eu = [pools["eu-west-1"]]
        return {"country_pools": {"US": [pools["us-east-1"]], "DE": eu, "FR": eu},
                "rules": [{"name": "residency-eu", "condition": 'ip.src.country in {"DE" "FR"}', "terminates": True,
                           "overrides": {"default_pools": eu, "fallback_pool": eu[0]}}]}
    assert found(hand_built(load_balancer=without_central), ROUTED) == [
        "Region eu-central-1 (running booking): no Cloudflare load balancer routes to its pool pool-eu-central-1: "
        "add it to the load balancer's pools"]


def test_a_serving_region_without_a_copy_of_its_groups_state_is_reported():
    messages = found(hand_built(replicas={"eu": []}), ROUTED)
    assert messages == ["Region eu-central-1 (running booking): state table eu-state of group eu has no copy there "
                        "(only in eu-west-1): add a replica in eu-central-1, or a failover loses its sessions"]


def test_a_strict_table_replicated_outside_its_group_is_reported():
    messages = found(hand_built(replicas={"eu": ["eu-central-1", "us-east-1"]}), RESIDENCY)
    assert messages == ["State table eu-state of strict group eu has a copy in us-east-1, outside the group's "
                        "regions (eu-central-1, eu-west-1): remove the replica"]


def test_a_strict_table_that_does_not_record_its_countries_is_reported():
    assert found(hand_built(countries=()), RESIDENCY) == [
        "State table eu-state of strict group eu does not record the countries the group keeps (tag "
        "mcp-estate:countries), so their routing cannot be checked"]


def test_a_strict_country_routed_to_a_pool_outside_the_group_is_reported():
    def de_fails_over_to_us(pools):
        eu = [pools["eu-west-1"], pools["eu-central-1"]]
        return {"country_pools": {"US": [pools["us-east-1"]], "FR": eu, "DE": [*eu, pools["us-east-1"]]}}
    [message] = found(hand_built(load_balancer=de_fails_over_to_us), RESIDENCY)
    assert message.startswith("Cloudflare load balancer lb sends DE visitors (strict group eu) to ")
    assert message.endswith("mcp-test-us-east-1 (us-east-1): route them only to the group's pools")


def test_a_strict_country_without_its_own_route_is_reported():
    def no_entry_for_fr(pools):
        return {"country_pools": {"US": [pools["us-east-1"]], "DE": [pools["eu-west-1"]]}}
    assert found(hand_built(load_balancer=no_entry_for_fr), RESIDENCY) == [
        "Cloudflare load balancer lb has no countryPools entry for FR (strict group eu): its visitors go to the "
        "region or default pools, outside the group"]


def test_a_pool_leads_where_its_origin_is_whatever_its_name_says():
    # mcp-test-eu-central-1 has the us-east-1 ALB as its origin: DE and FR visitors would leave the group.
    messages = found(hand_built(origins={"eu-central-1": "us-east-1"}), RESIDENCY)
    assert [m.split(" to ")[0] for m in messages] == [
        "Cloudflare load balancer lb sends DE visitors (strict group eu)",
        "Cloudflare load balancer lb sends FR visitors (strict group eu)",
        "Cloudflare load balancer lb's rule 'residency-eu' sends strict group eu's visitors"]
    assert all("mcp-test-eu-central-1 (us-east-1)" in m for m in messages), messages


def test_a_pool_whose_origin_is_no_alb_of_the_estate_leads_outside_whatever_its_name_says():
    # mcp-test-eu-central-1 is named for the region, but its origin could be anywhere in the world.
    plan = hand_built(origins={"eu-central-1": "eu-central-1.origin.example.travel"})
    messages = found(plan, RESIDENCY)
    assert [m.split(" to ")[0] for m in messages] == [
        "Cloudflare load balancer lb sends DE visitors (strict group eu)",
        "Cloudflare load balancer lb sends FR visitors (strict group eu)",
        "Cloudflare load balancer lb's rule 'residency-eu' sends strict group eu's visitors"]
    assert all("mcp-test-eu-central-1 (outside the estate)" in m for m in messages), messages
    [unrouted] = found(plan, ROUTED)   # and the ALB of eu-central-1 is no pool's origin
    assert unrouted.startswith("Region eu-central-1 (running booking) has no enabled Cloudflare pool")


def test_a_pool_without_origins_leads_where_its_name_says():
    assert found(hand_built(origins={"eu-central-1": None}), RESIDENCY) == []


def test_a_rule_before_the_residency_rule_that_may_catch_its_visitors_is_reported():
    def maintenance_first(pools):
        eu = [pools["eu-west-1"], pools["eu-central-1"]]
        return {"rules": [
            {"name": "residency-eu", "priority": 10, "terminates": True, "condition": 'ip.src.country in {"DE" "FR"}',
             "overrides": {"default_pools": eu, "fallback_pool": eu[0]}},
            {"name": "beta", "priority": 1, "condition": 'http.request.uri.path contains "/beta"',
             "overrides": {"steering_policy": "random"}},
            {"name": "fr-canary", "priority": 2, "terminates": True, "condition": 'ip.src.country in {"FR"}'},
            {"name": "us-only", "priority": 3, "terminates": True, "condition": 'ip.src.country in {"US"}',
             "overrides": {"default_pools": [pools["us-east-1"]]}},
            {"name": "after", "priority": 20, "terminates": True, "condition": "true"}]}
    assert found(hand_built(load_balancer=maintenance_first), RESIDENCY) == [
        "Cloudflare load balancer lb's rule 'beta' overrides steeringPolicy before the residency rule "
        "'residency-eu' and may match strict group eu's visitors ('http.request.uri.path contains \"/beta\"'): "
        "give the residency rule a lower priority, or limit this rule to `ip.src.country in {...}` of other "
        "countries",
        "Cloudflare load balancer lb's rule 'fr-canary' terminates before the residency rule 'residency-eu' and "
        "may match strict group eu's visitors ('ip.src.country in {\"FR\"}'): give the residency rule a lower "
        "priority, or limit this rule to `ip.src.country in {...}` of other countries"]


def test_a_terminating_fixed_response_before_the_residency_rule_passes():
    def fixed_first(pools):
        eu = [pools["eu-west-1"], pools["eu-central-1"]]
        return {"rules": [
            {"name": "blocked", "priority": 1, "terminates": True, "condition": 'http.request.uri.path eq "/admin"',
             "fixed_response": {"status_code": 403, "message_body": "no"}},
            {"name": "residency-eu", "priority": 2, "terminates": True, "condition": 'ip.src.country in {"DE" "FR"}',
             "overrides": {"default_pools": eu, "fallback_pool": eu[0]}}]}
    assert found(hand_built(load_balancer=fixed_first), RESIDENCY) == []


def test_a_table_replica_resource_outside_a_strict_group_is_a_copy_there():
    def program(extra_region="us-east-1"):
        home = aws.Provider("aws-eu-west-1", region="eu-west-1")
        table = aws.dynamodb.Table("eu-state", hash_key="pk", attributes=[{"name": "pk", "type": "S"}],
                                   tags={"mcp-estate:residency-group": "eu", "mcp-estate:residency": "strict",
                                         "mcp-estate:region": "eu-west-1", "mcp-estate:countries": "DE FR"},
                                   opts=pulumi.ResourceOptions(provider=home))
        aws.dynamodb.TableReplica("eu-state-us-east-1", global_table_arn=table.arn,
                                  opts=pulumi.ResourceOptions(provider=aws.Provider(f"aws-{extra_region}",
                                                                                    region=extra_region)))
    assert found(run_program(program), RESIDENCY) == [
        "State table eu-state of strict group eu has a copy in us-east-1, outside the group's regions (eu-west-1): "
        "remove the replica"]


def test_a_table_replica_resource_is_the_copy_a_serving_region_needs():
    assert found(hand_built(replicas={"eu": []}, replica_resources={"eu": ["eu-central-1"]}), ROUTED) == []


@pytest.mark.parametrize("route, into_eu", [
    ("through its defaultPools", lambda us, eu: {"default_pools": [us, eu]}),
    ("through its fallbackPool", lambda us, eu: {"fallback_pool": eu}),
    ("through its regionPools", lambda us, eu: {"region_pools": {"ENAM": [us], "WEU": [eu]}}),
    ("sends US visitors into", lambda us, eu: {"country_pools": {"US": [us, eu], "DE": [eu], "FR": [eu]}}),
])
def test_no_route_for_other_visitors_reaches_a_strict_pool(route, into_eu):
    [message] = found(hand_built(load_balancer=lambda pools: into_eu(pools["us-east-1"], pools["eu-west-1"])),
                      RESIDENCY)
    assert route in message and "strict group eu's pool mcp-test-eu-west-1 (eu-west-1)" in message, message


def test_a_strict_group_without_a_rule_for_when_its_pools_are_down_is_reported():
    assert found(hand_built(load_balancer=lambda pools: {"rules": []}), RESIDENCY) == [
        "Cloudflare load balancer lb has no terminating rule `ip.src.country in {...}` for strict group eu's "
        "countries that overrides the default and fallback pools with the group's: when all its pools are down, "
        "geo steering sends its visitors to the load balancer's fallback pool"]


def test_a_residency_rule_that_falls_back_outside_the_group_is_reported():
    def falls_back_to_us(pools):
        eu = [pools["eu-west-1"], pools["eu-central-1"]]
        return {"rules": [{"name": "residency-eu", "condition": 'ip.src.country in {"DE" "FR"}', "terminates": True,
                           "overrides": {"default_pools": eu, "fallback_pool": pools["us-east-1"]}}]}
    assert found(hand_built(load_balancer=falls_back_to_us), RESIDENCY) == [
        "Cloudflare load balancer lb's rule 'residency-eu' sends strict group eu's visitors to mcp-test-us-east-1 "
        "(us-east-1), outside the group: override only with the group's pools"]


def test_a_residency_rule_that_also_admits_other_countries_is_reported():
    def admits_us(pools):
        eu = [pools["eu-west-1"], pools["eu-central-1"]]
        return {"rules": [{"name": "residency-eu", "condition": 'ip.src.country in {"DE" "FR" "US"}',
                           "terminates": True, "overrides": {"default_pools": eu, "fallback_pool": eu[0]}}]}
    [message] = found(hand_built(load_balancer=admits_us), RESIDENCY)
    assert message.startswith("Cloudflare load balancer lb's rule 'residency-eu' routes visitors beyond strict "
                              "group eu's countries to its pool mcp-test-eu-west-1 (eu-west-1), mcp-test-eu-central-1")


def test_an_unreadable_peak_is_reported():
    def program():
        aws.appautoscaling.Target("booking-us-east-1-scaling", min_capacity=2, max_capacity=30,
                                  resource_id="service/c/booking", scalable_dimension="ecs:service:DesiredCount",
                                  service_namespace="ecs", tags={
                                      "mcp-estate:region": "us-east-1", "mcp-estate:residency-group": "americas",
                                      "mcp-estate:server": "booking", "mcp-estate:peak-tasks": "lots"})
    assert found(run_program(program), SURVIVE) == [
        "Scaling targets of booking in group americas carry an unreadable peak (lots): mcp-estate:peak-tasks must "
        "be a number of tasks"]
