"""The whole estate from a spec: what exists, where, and how it changes when the spec changes."""

from __future__ import annotations

import copy
import inspect
import json
import random
from functools import cache

import pulumi_aws
import pytest

from components.estate import Estate
from mcp_estate.fidelity import inspect_resource
from mcp_estate.offline import run_offline
from mcp_estate.validate import parse_spec
from conftest import ACCOUNT, Plan, shipped_plan

DIGEST = "sha256:" + "cd" * 32
REGISTRY = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"

SMALL = {
    "environment": "staging", "owner": "travel-platform", "aws_account_id": ACCOUNT,
    "primary_region": "us-east-1",
    "domain": {"hostname": "mcp.example.travel", "zone_id": "0" * 32, "cloudflare_account_id": "f" * 32},
    "residency_groups": [
        {"name": "americas", "primary_region": "us-east-1", "countries": ["US", "CA"],
         "regions": [{"name": "us-east-1", "cidr": "10.20.0.0/16"}]},
        {"name": "eu", "primary_region": "eu-west-1", "strict": True, "countries": ["DE", "FR", "IE"],
         "regions": [{"name": "eu-west-1", "cidr": "10.30.0.0/16"}, {"name": "eu-central-1", "cidr": "10.31.0.0/16"}]},
    ],
    "servers": [
        {"name": "booking", "image": f"{REGISTRY}/mcp/booking@{DIGEST}", "secrets": ["booking-api-key"],
         "permissions": [{"actions": ["dynamodb:PutItem", "dynamodb:GetItem"], "resources": ["state"]}]},
        {"name": "loyalty", "image": f"{REGISTRY}/mcp/loyalty@{DIGEST}"},
    ],
    "edge": {"health_server": "booking"},
}


def plan_of(raw: dict, stack: str = "test") -> Plan:
    spec = parse_spec(raw)
    return Plan(run_offline(lambda: Estate("mcp-estate", spec), stack=stack, account_id=ACCOUNT,
                            config={"mcp-estate:estate": raw}, inspect=inspect_resource))


def inputs_by_urn(plan: Plan) -> dict[str, str]:
    return {r.urn: json.dumps(r.inputs, sort_keys=True) for r in plan.resources}


@pytest.fixture(scope="module")
def small() -> Plan:
    return plan_of(SMALL)


@pytest.fixture(scope="module")
def prod() -> Plan:
    return shipped_plan("prod")


def region_of(resource) -> str | None:
    return resource.inputs.get("tags", {}).get("mcp-estate:region")


def test_every_server_runs_in_every_region(small):
    services = {(r.inputs["tags"]["mcp-estate:server"], region_of(r))
                for r in small.of_type("aws:ecs/service:Service")}
    assert services == {(server, region) for server in ("booking", "loyalty")
                        for region in ("us-east-1", "eu-west-1", "eu-central-1")}


def test_each_server_has_its_own_roles_and_security_groups(small):
    roles = small.of_type("aws:iam/role:Role")
    for server in ("booking", "loyalty"):
        assert len([r for r in roles if r.inputs["tags"].get("mcp-estate:server") == server]) == 2
    task_sgs = {r.name for r in small.of_type("aws:ec2/securityGroup:SecurityGroup")
                if r.inputs["tags"].get("mcp-estate:server")}
    assert len(task_sgs) == 6


def test_one_state_table_per_residency_group_replicated_only_inside_it(small):
    tables = {t.inputs["tags"]["mcp-estate:residency-group"]: t for t in small.of_type("aws:dynamodb/table:Table")}
    assert set(tables) == {"americas", "eu"}
    assert [r["regionName"] for r in tables["eu"].inputs["replicas"]] == ["eu-central-1"]
    assert tables["americas"].inputs.get("replicas", []) == []


def test_the_state_grant_resolves_to_the_tables_of_the_servers_regions(small):
    policy = next(json.loads(r.inputs["policy"]) for r in small.of_type("aws:iam/rolePolicy:RolePolicy")
                  if "dynamodb:GetItem" in json.dumps(r.inputs["policy"]))
    resources = {res for s in policy["Statement"] for res in s["Resource"]}
    assert f"arn:aws:dynamodb:eu-central-1:{ACCOUNT}:table/mcp-estate-test-eu-state" in resources
    assert f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/mcp-estate-test-americas-state" in resources
    assert not any(r == "*" for r in resources)


def test_tasks_pull_their_image_by_digest_from_their_own_region(small):
    for definition in small.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        region = region_of(definition)
        [container] = json.loads(definition.inputs["containerDefinitions"])
        assert container["image"].startswith(f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/mcp/")
        assert container["image"].endswith(f"@{DIGEST}")


def test_the_secret_replicates_to_every_region_running_a_server_that_uses_it(small):
    secret = small.one("aws:secretsmanager/secret:Secret")
    assert secret.inputs["name"] == "mcp-estate-test/booking-api-key"
    assert sorted(r["region"] for r in secret.inputs["replicas"]) == ["eu-central-1", "eu-west-1"]


@cache
def taggable_types() -> set[str]:
    """AWS resource type tokens whose SDK class accepts `tags`."""
    tokens = set()
    for module_name in dir(pulumi_aws):
        module = getattr(pulumi_aws, module_name)
        for cls in vars(module).values() if inspect.ismodule(module) else ():
            if inspect.isclass(cls) and hasattr(cls, "_internal_init") and \
                    "tags" in inspect.signature(cls._internal_init).parameters:
                token = getattr(cls, "_pulumi_type_token", None) or ""
                tokens.add(token)
    return tokens


def test_every_taggable_aws_resource_carries_the_contract_tags(small):
    tagged_types = {r.type for r in small.resources if r.type.startswith("aws:") and "tags" in r.inputs}
    for resource in small.resources:
        if resource.type.startswith("aws:") and resource.custom and \
                (resource.type in tagged_types or resource.type in taggable_types()):
            tags = resource.inputs.get("tags") or resource.inputs.get("resourceTags") or {}
            if isinstance(tags, list):   # ECR creation templates take a list of key/value pairs
                tags = {t["key"]: t["value"] for t in tags}
            assert {"mcp-estate:stack", "mcp-estate:environment", "mcp-estate:owner"} <= set(tags), resource.urn
            assert tags["mcp-estate:stack"] == "test"


def test_reordering_every_list_in_the_spec_changes_nothing(small):
    shuffled = copy.deepcopy(SMALL)
    rng = random.Random(7)
    for collection in [shuffled["residency_groups"], shuffled["servers"],
                       *[g["regions"] for g in shuffled["residency_groups"]],
                       *[g["countries"] for g in shuffled["residency_groups"]],
                       *[p["actions"] for s in shuffled["servers"] for p in s.get("permissions", [])]]:
        collection.reverse()
        rng.shuffle(collection)
    assert inputs_by_urn(plan_of(shuffled)) == inputs_by_urn(small)


def added(raw: dict) -> dict:
    grown = copy.deepcopy(raw)
    grown["residency_groups"][0]["regions"].append({"name": "us-west-2", "cidr": "10.21.0.0/16"})
    grown["servers"].append({"name": "inventory", "image": f"{REGISTRY}/mcp/inventory@{DIGEST}"})
    return grown


# Resources that enumerate the estate's regions or servers by design: adding one updates them
# in place (a new replica, a new route or pool, a new path), it never replaces or removes them.
AGGREGATES = {
    "aws:dynamodb/table:Table",                          # americas table gains a us-west-2 replica
    "aws:kms/key:Key",                                   # (key policies name no regions: must not change)
    "aws:ecr/replicationConfiguration:ReplicationConfiguration",   # replicates to us-west-2 too
    "aws:secretsmanager/secret:Secret",                  # booking's secret gains a replica
    "aws:iam/role:Role",                                 # trust lists the regions tasks run in
    "aws:iam/rolePolicy:RolePolicy",                     # grants list per-region ARNs
    "cloudflare:index/loadBalancer:LoadBalancer",        # routes to the new pool
    "cloudflare:index/ruleset:Ruleset",                  # allows the new server's path
    "aws:lambda/function:Function",                      # the canary probes the new server too
    "aws:cloudwatch/eventRule:EventRule",                # change detection watches its family, repo, roles
    "aws:cloudwatch/dashboard:Dashboard",                # graphs the new server and region
}


def test_adding_a_region_and_a_server_only_adds_resources(small):
    before, after = inputs_by_urn(small), inputs_by_urn(plan_of(added(SMALL)))
    assert set(before) <= set(after), sorted(set(before) - set(after))
    changed = {urn for urn in before if before[urn] != after[urn]}
    types = {urn.split("::")[2].split("$")[-1] for urn in changed}
    assert types <= AGGREGATES, sorted(types - AGGREGATES)
    assert "aws:kms/key:Key" not in types
    assert len(after) > len(before)


def test_the_prod_stack_builds_every_region_server_and_the_edge(prod):
    services = {(r.inputs["tags"]["mcp-estate:server"], region_of(r)) for r in prod.of_type("aws:ecs/service:Service")}
    regions = {"us-east-1", "us-west-2", "eu-west-1", "eu-central-1"}
    assert services == {(s, r) for s in ("booking", "inventory", "loyalty") for r in regions}
    # One pool per region, and the strict eu group's last resort.
    pools = sorted(p.inputs["name"] for p in prod.of_type("cloudflare:index/loadBalancerPool:LoadBalancerPool"))
    assert pools == ["mcp-estate-prod-eu-central-1", "mcp-estate-prod-eu-last-resort", "mcp-estate-prod-eu-west-1",
                     "mcp-estate-prod-us-east-1", "mcp-estate-prod-us-west-2"]
    assert len(prod.of_type("aws:wafv2/webAclAssociation:WebAclAssociation")) == 4
    assert all(t.protect for t in prod.of_type("aws:dynamodb/table:Table"))
    assert all(lb.inputs["enableDeletionProtection"] for lb in prod.of_type("aws:lb/loadBalancer:LoadBalancer"))


def test_each_service_rolls_back_on_the_canary_alarm_of_its_own_server_and_region(small):
    alarms = {(r.inputs["name"], region_of(r)) for r in small.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    for service in small.of_type("aws:ecs/service:Service"):
        server, region = service.inputs["tags"]["mcp-estate:server"], region_of(service)
        names = service.inputs["alarms"]["alarmNames"]
        assert names == [f"mcp-estate-test-{server}-{region}-5xx", f"mcp-estate-test-{server}-{region}-probe-alb"]
        assert all((name, region) in alarms for name in names)


def test_every_region_has_a_canary_probing_exactly_its_servers_through_nat(small):
    canaries = {region_of(f): json.loads(f.inputs["environment"]["variables"]["MCP_CANARY_SERVERS"])
                for f in small.of_type("aws:lambda/function:Function")}
    assert canaries == {region: {"booking": "", "loyalty": ""} for region in ("us-east-1", "eu-west-1", "eu-central-1")}
    nat_regions = {region_of(n) for n in small.of_type("aws:ec2/natGateway:NatGateway")}
    assert nat_regions == {"us-east-1", "eu-west-1", "eu-central-1"}
