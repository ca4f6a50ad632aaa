"""The whole estate from a spec: what exists, where, and how it changes when the spec changes."""

from __future__ import annotations

import copy
import inspect
import json
import random

import pytest
from conftest import ACCOUNT, Plan, shipped_plan

from mcp_estate.components.estate import Estate
from mcp_estate.contract.validate import parse_spec
from mcp_estate.offline.fidelity import inspect_resource, resource_class
from mcp_estate.offline.runner import run_offline

DIGEST = "sha256:" + "cd" * 32
REGISTRY = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"

SMALL = {
    "environment": "staging", "owner": "travel-platform", "aws_account_id": ACCOUNT,
        "auth": {"issuer": "https://login.example.travel/", "jwks_url": "https://login.example.travel/jwks.json"},
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


def test_each_server_has_a_task_and_an_execution_role_per_residency_group_and_its_own_security_groups(small):
    """With auth on, a server using state also gets its per-user data role (tests/test_per_user_data.py)."""
    names: dict[tuple, list[str]] = {}
    for role in small.of_type("aws:iam/role:Role"):
        tags = role.inputs["tags"]
        names.setdefault((tags.get("mcp-estate:server"), tags.get("mcp-estate:residency-group")), []) \
            .append(role.outputs["name"])
    for server, kinds in (("booking", ["data", "exec", "task"]), ("loyalty", ["exec", "task"])):
        for group in ("americas", "eu"):
            assert sorted(names[server, group]) == [f"mcp-estate-test-{server}-{group}-{kind}" for kind in kinds]
    task_sgs = {r.name for r in small.of_type("aws:ec2/securityGroup:SecurityGroup")
                if r.inputs["tags"].get("mcp-estate:server")}
    assert len(task_sgs) == 6


def test_services_in_a_region_run_with_the_roles_of_the_regions_group(small):
    group = {"us-east-1": "americas", "eu-west-1": "eu", "eu-central-1": "eu"}
    for definition in small.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        server, region = definition.inputs["tags"]["mcp-estate:server"], region_of(definition)
        assert definition.inputs["taskRoleArn"] == \
            f"arn:aws:iam::{ACCOUNT}:role/mcp-estate-test-{server}-{group[region]}-task"
        assert definition.inputs["executionRoleArn"] == \
            f"arn:aws:iam::{ACCOUNT}:role/mcp-estate-test-{server}-{group[region]}-exec"


def test_a_task_role_is_assumable_only_from_its_groups_regions(small):
    role = small.named("mcp-estate-estate-wide-booking-eu-identity-task")
    trust = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    assert trust["Condition"]["ArnLike"]["aws:SourceArn"] == [f"arn:aws:ecs:eu-central-1:{ACCOUNT}:*",
                                                              f"arn:aws:ecs:eu-west-1:{ACCOUNT}:*"]


def test_one_state_table_per_residency_group_replicated_only_inside_it(small):
    tables = {t.inputs["tags"]["mcp-estate:residency-group"]: t for t in small.of_type("aws:dynamodb/table:Table")}
    assert set(tables) == {"americas", "eu"}
    assert [r["regionName"] for r in tables["eu"].inputs["replicas"]] == ["eu-central-1"]
    assert tables["americas"].inputs.get("replicas", []) == []


def test_the_state_grant_resolves_to_the_groups_own_table_in_each_of_its_regions(small):
    # With auth on, through the server's per-user data role (tests/test_per_user_data.py has the
    # auth-off case, where the task role holds it with the tables' indexes).
    policy = json.loads(small.named("mcp-estate-estate-wide-booking-eu-data-items").inputs["policy"])
    tables = [f"arn:aws:dynamodb:{r}:{ACCOUNT}:table/mcp-estate-test-eu-state" for r in ("eu-central-1", "eu-west-1")]
    assert policy["Statement"][0]["Resource"] == tables
    americas = json.loads(small.named("mcp-estate-estate-wide-booking-americas-data-items").inputs["policy"])
    assert americas["Statement"][0]["Resource"] == [
        f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/mcp-estate-test-americas-state"]


def strict_data(plan: Plan, group: str, regions: set[str]) -> set[str]:
    """The ARNs of a group's table, key and secret copies (the data a strict group keeps)."""
    keys = {r.outputs["arn"] for r in plan.resources if r.type in ("aws:kms/key:Key", "aws:kms/replicaKey:ReplicaKey")
            and r.inputs.get("tags", {}).get("mcp-estate:residency-group") == group}
    tables = {f"table/mcp-estate-{plan_stack(plan)}-{group}-state"}
    secrets = {f"arn:aws:secretsmanager:{r}:" for r in regions}
    return keys | tables | secrets


def plan_stack(plan: Plan) -> str:
    return plan.resources[0].urn.split("::")[0].removeprefix("urn:pulumi:")


def roles_policies(plan: Plan) -> dict[str, tuple[str, str]]:
    """Role name -> (its residency group, the text of its trust and inline policies)."""
    roles = {r.outputs["name"]: r for r in plan.of_type("aws:iam/role:Role")}
    texts = {name: [r.inputs["assumeRolePolicy"]] for name, r in roles.items()}
    for grant in plan.of_type("aws:iam/rolePolicy:RolePolicy"):
        texts[grant.inputs["role"]].append(grant.inputs["policy"])
    return {name: (r.inputs["tags"].get("mcp-estate:residency-group"), "\n".join(texts[name]))
            for name, r in roles.items()}


@pytest.mark.parametrize("which", ["small", "prod"])
def test_a_strict_groups_table_key_and_secrets_appear_in_no_policy_of_another_groups_roles(which, small, prod):
    plan = {"small": small, "prod": prod}[which]
    data = strict_data(plan, "eu", {"eu-west-1", "eu-central-1"})
    assert len(data) >= 4
    policies = roles_policies(plan)
    # Roles of the other groups (the registry's replication role belongs to no group: it encrypts image
    # replicas with each region's key, no data of the group).
    outsiders = {name: text for name, (group, text) in policies.items() if group not in ("eu", None)}
    assert outsiders and all(not any(d in text for d in data) for text in outsiders.values())
    insiders = [text for group, text in policies.values() if group == "eu"]
    assert insiders and any("table/mcp-estate" in text and "-eu-state" in text for text in insiders)


def test_role_names_fit_iam_with_the_longest_stack_and_server_names():
    # The longest names the CLI and the spec accept (stack 20, server and group 24): role names built from
    # them pass IAM's 64 (hashed where needed), and every other name fits (the strict inspector checks).
    raw = json.loads(json.dumps(SMALL).replace('"booking"', '"booking-reservations-api"')
                     .replace('"name": "eu"', '"name": "european-union-strict-eu"'))
    plan = plan_of(raw, stack="feature-residency-eu")
    roles = plan.of_type("aws:iam/role:Role")
    names = [r.inputs["name"] for r in roles if "name" in r.inputs]
    assert len(names) == len(set(names)) == len(roles) and all(len(n) <= 64 for n in names)
    assert "mcp-estate-feature-residency-eu-booking-reservations-api-european-union-strict-eu-task" not in names


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


def tag_input(type_token: str) -> str | None:
    """The input through which the SDK's class for `type_token` takes tags: `tags`, or `resource_tags`
    for an ECR creation template (the tags of the repositories it creates); None if it takes none."""
    parameters = inspect.signature(resource_class(type_token)._internal_init).parameters
    return next((key for key in ("tags", "resource_tags") if key in parameters), None)


def test_which_types_take_tags_is_read_from_the_sdk_classes():
    assert tag_input("aws:ec2/vpc:Vpc") == "tags"
    assert tag_input("aws:elasticache/serverlessCache:ServerlessCache") == "tags"
    assert tag_input("aws:lambda/function:Function") == "tags"     # module `lambda_`, token `lambda`
    assert tag_input("aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate") == "resource_tags"
    assert tag_input("aws:iam/rolePolicy:RolePolicy") is None
    assert tag_input("aws:kms/alias:Alias") is None


@pytest.mark.parametrize("stack", ["small", "staging", "prod"])   # staging: caches, queues, workers
def test_every_taggable_aws_resource_carries_the_contract_tags(small, stack):
    plan = small if stack == "small" else shipped_plan(stack)
    expected = "test" if stack == "small" else stack
    checked = set()
    for resource in plan.resources:
        key = resource.type.startswith("aws:") and resource.custom and tag_input(resource.type)
        if key:
            tags = resource.inputs.get("resourceTags" if key == "resource_tags" else "tags") or {}
            assert {"mcp-estate:stack", "mcp-estate:environment", "mcp-estate:owner"} <= set(tags), resource.urn
            assert tags["mcp-estate:stack"] == expected
            checked.add(resource.type)
    assert {"aws:ec2/vpc:Vpc", "aws:ecs/service:Service"} <= checked


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


REORDERINGS = {
    "servers": lambda raw: [raw["servers"]],
    "groups": lambda raw: [raw["residency_groups"]],
    "regions": lambda raw: [g["regions"] for g in raw["residency_groups"] if len(g["regions"]) > 1],
    "secrets and grants": lambda raw: [raw["servers"][0]["secrets"], raw["servers"][0]["permissions"][0]["actions"]],
}


@pytest.mark.parametrize("what", sorted(REORDERINGS))
def test_reversing_servers_groups_or_regions_changes_no_resources_inputs(small, what):
    # Reversal always changes the order of a list of two or more (a shuffle may give it back unchanged).
    reordered = copy.deepcopy(SMALL)
    reordered["servers"][0]["secrets"] = ["booking-api-key", "partner-token"]
    base = copy.deepcopy(reordered)
    for collection in REORDERINGS[what](reordered):
        assert len(collection) >= 2
        collection.reverse()
    assert reordered != base
    assert inputs_by_urn(plan_of(reordered)) == inputs_by_urn(plan_of(base))


def test_the_iam_change_rule_watches_every_role_of_the_estate_by_name(small):
    rule = json.loads(small.named("mcp-estate-us-east-1-changes-iam-changes").inputs["eventPattern"])
    watched = rule["detail"]["requestParameters"]["roleName"]
    roles = small.of_type("aws:iam/role:Role")
    named = sorted(r.inputs["name"] for r in roles if "name" in r.inputs)
    assert len(named) == len(roles), "an autonamed role could not be watched by name"
    # Task and execution roles per server and group, booking's data role per group, a canary and a
    # flow-logs role per region, ECR's replica-creation role; no forwarder: the home region is
    # us-east-1, where IAM's events arrive.
    assert watched == named and len(named) == 8 + 2 + 3 + 3 + 1


def test_an_estate_without_us_east_1_forwards_iam_changes_from_there_to_its_home_region():
    dev = shipped_plan("dev")
    forward = dev.named("mcp-estate-eu-west-1-changes-iam-forward")
    provider = forward.provider.rsplit("::", 2)[1]
    assert provider == "mcp-estate-aws-us-east-1"
    assert dev.named(provider).inputs["region"] == "us-east-1"
    assert json.loads(dev.named(provider).inputs["allowedAccountIds"]) == ["111122223333"]
    assert dev.named("mcp-estate-eu-west-1-changes-iam-forward-to-home").inputs["arn"] == \
        "arn:aws:events:eu-west-1:111122223333:event-bus/default"
    assert json.loads(forward.inputs["eventPattern"]) == \
        json.loads(dev.named("mcp-estate-eu-west-1-changes-iam-changes").inputs["eventPattern"])
    # Only the forwarding rule, its target and its role live in us-east-1: nothing else of the estate.
    east = [r.name for r in dev.resources if r.provider and r.provider.rsplit("::", 2)[1] == "mcp-estate-aws-us-east-1"]
    rule = "mcp-estate-eu-west-1-changes-iam-forward"
    assert sorted(east) == [rule, f"{rule}-policy", f"{rule}-role", f"{rule}-to-home"]


def test_an_estate_at_home_in_us_east_1_needs_no_forwarding(prod):
    assert prod.named("mcp-estate-us-east-1-changes-iam-changes")
    assert not any("iam-forward" in r.name for r in prod.resources)
    assert not any("iam-changes" in r.name for r in prod.resources if "us-east-1" not in r.name)


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
    "aws:wafv2/webAcl:WebAcl",                           # the new server's 401 challenge and MCP surface rules
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


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_change_detection_watches_every_role_the_estate_creates_and_only_those(stack):
    """The watched names come from the spec (a region in its own stack watches the estate-wide roles
    too); staging's worker role once went unwatched."""
    resources = shipped_plan(stack).resources
    created = {r.inputs["name"] for r in resources if r.type == "aws:iam/role:Role"}
    rule = next(r for r in resources if r.type == "aws:cloudwatch/eventRule:EventRule"
                and r.name.endswith("-changes-iam-changes"))
    watched = json.loads(rule.inputs["eventPattern"])["detail"]["requestParameters"]["roleName"]
    assert sorted(watched) == sorted(created) and len(watched) == len(set(watched))
