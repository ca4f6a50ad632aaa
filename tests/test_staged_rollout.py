"""CANARY/LINEAR services (components/staged_deployment.py, deployment_gate.py) as the shipped staging
stack plans them, the spec rules they need, and the staged-rollout controls with planted faults."""

from __future__ import annotations

import copy
import json

import pulumi
import pulumi_aws as aws
import pytest
from conftest import run_program, shipped_plan, violations
from corpus import attack, legitimate

from mcp_estate.checking.pack_config import generated
from mcp_estate.components import staged_deployment
from mcp_estate.contract.problems import SpecError
from mcp_estate.contract.rollout import InRegion
from mcp_estate.contract.validate import parse_spec
from mcp_estate.offline.runner import FidelityError

GATE_POLICY = "production-services-deploy-through-a-gate"
RULE_POLICY = "staged-services-own-their-production-rule"


@pytest.fixture(scope="module")
def staging():
    return shipped_plan("staging")


def _inputs(plan, name):
    return plan.named(name).inputs


def test_the_canary_service_shifts_ten_percent_after_the_mcp_hook(staging):
    service = _inputs(staging, "mcp-estate-us-east-1-inventory-service")
    configuration = service["deploymentConfiguration"]
    assert configuration["strategy"] == "CANARY"
    assert configuration["bakeTimeInMinutes"] == "15"
    assert configuration["canaryConfiguration"] == {"canaryPercent": 10.0, "canaryBakeTimeInMinutes": "10"}
    [hook] = configuration["lifecycleHooks"]
    assert hook["lifecycleStages"] == ["POST_TEST_TRAFFIC_SHIFT"]
    assert hook["hookTargetArn"] == \
        "arn:aws:lambda:us-east-1:444455556666:function:mcp-estate-staging-us-east-1-deploy-hook"
    assert hook["roleArn"] == "arn:aws:iam::444455556666:role/mcp-estate-staging-us-east-1-deploy-hook-invoke"
    assert json.loads(hook["hookDetails"]) == {"server": "inventory"}
    assert service["alarms"] == {"enable": True, "rollback": True, "alarmNames": [
        f"mcp-estate-staging-inventory-us-east-1-{k}" for k in
        ("5xx", "5xx-alternate", "latency", "latency-alternate", "probe-alb")]}
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}


def test_the_service_names_its_own_rules_groups_and_the_elb_role(staging):
    [balancer] = _inputs(staging, "mcp-estate-us-east-1-inventory-service")["loadBalancers"]
    advanced = balancer["advancedConfiguration"]
    assert advanced["productionListenerRule"] == staging.named("mcp-estate-us-east-1-inventory-route").outputs["arn"]
    assert advanced["testListenerRule"] == staging.named("mcp-estate-us-east-1-inventory-test-route").outputs["arn"]
    assert advanced["alternateTargetGroupArn"] == \
        staging.named("mcp-estate-us-east-1-inventory-tg-alternate").outputs["arn"]
    assert balancer["targetGroupArn"] == staging.named("mcp-estate-us-east-1-inventory-tg").outputs["arn"]
    assert advanced["roleArn"] == "arn:aws:iam::444455556666:role/mcp-estate-staging-us-east-1-ecs-elb"


def test_the_alternate_group_checks_health_as_the_first(staging):
    first = _inputs(staging, "mcp-estate-us-east-1-inventory-tg")
    alternate = _inputs(staging, "mcp-estate-us-east-1-inventory-tg-alternate")
    assert alternate["healthCheck"] == first["healthCheck"]
    assert alternate["name"] != first["name"] and len(alternate["name"]) <= 32


def test_the_test_rule_is_reachable_only_from_the_vpc_with_the_header_before_the_route(staging):
    route = _inputs(staging, "mcp-estate-us-east-1-inventory-route")
    test = _inputs(staging, "mcp-estate-us-east-1-inventory-test-route")
    assert test["priority"] == route["priority"] - 1
    assert test["conditions"] == [
        {"pathPattern": {"values": ["/inventory/mcp", "/inventory/mcp/*"]}},
        {"httpHeader": {"httpHeaderName": "X-Mcp-Estate-Route", "values": ["test"]}},
        {"sourceIp": {"values": ["10.40.0.0/16"]}}]
    assert test["transforms"] == route["transforms"]
    weights = [(g["weight"]) for g in route["actions"][0]["forward"]["targetGroups"]]
    assert weights == [100.0, 0.0] and len(route["actions"]) == 1   # forward only: ECS owns it


def test_rolling_servers_are_as_before(staging):
    service = _inputs(staging, "mcp-estate-us-east-1-booking-service")
    assert "deploymentConfiguration" not in service
    assert service["alarms"]["alarmNames"] == ["mcp-estate-staging-booking-us-east-1-5xx",
                                               "mcp-estate-staging-booking-us-east-1-probe-alb"]
    # A ROLLING route stays Pulumi's: it validates the token at the ALB, then forwards to one group.
    route = _inputs(staging, "mcp-estate-us-east-1-booking-route")
    assert [a["type"] for a in route["actions"]] == ["jwt-validation", "forward"]
    assert not [r for r in staging.resources if r.name.startswith("mcp-estate-us-east-1-booking-test-route")]


def test_the_roles_ecs_uses_are_least_privilege(staging):
    invoke = json.loads(_inputs(staging, "mcp-estate-us-east-1-gate-invoke-policy")["policy"])
    assert invoke["Statement"] == [{"Sid": "InvokeTheHook", "Effect": "Allow", "Action": "lambda:InvokeFunction",
                                    "Resource": staging.named("mcp-estate-us-east-1-gate-function").outputs["arn"]}]
    for role in ("mcp-estate-us-east-1-gate-invoke-role", "mcp-estate-us-east-1-gate-ecs-elb-role"):
        assert json.loads(_inputs(staging, role)["assumeRolePolicy"])["Statement"] == [
            {"Effect": "Allow", "Principal": {"Service": "ecs.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    assert _inputs(staging, "mcp-estate-us-east-1-gate-ecs-elb-managed")["policyArn"] == \
        "arn:aws:iam::aws:policy/AmazonECSInfrastructureRolePolicyForLoadBalancers"


def test_the_hook_holds_the_canarys_credentials_exactly_and_knows_its_gate(staging):
    policy = json.loads(_inputs(staging, "mcp-estate-us-east-1-gate-policy")["policy"])
    secret = "arn:aws:secretsmanager:us-east-1:444455556666:secret:mcp-estate-staging/canary-oauth-client-"
    reads = [s for s in policy["Statement"] if "secretsmanager:GetSecretValue" in json.dumps(s["Action"])]
    assert [(s["Sid"], s["Action"]) for s in reads] == [("ReadProbeCredentials", "secretsmanager:GetSecretValue")]
    assert reads[0]["Resource"].startswith(secret)
    decrypt = [s for s in policy["Statement"] if s["Action"] == "kms:Decrypt"]
    assert decrypt == [{"Sid": "DecryptProbeCredentials", "Effect": "Allow", "Action": "kms:Decrypt",
                        "Resource": staging.named("mcp-estate-estate-wide-global-keys-us-east-1-key").outputs["arn"],
                        "Condition": {"StringEquals": {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}}}]
    canary = json.loads(_inputs(staging, "mcp-estate-us-east-1-canary-policy")["policy"])
    assert [s for s in canary["Statement"] if s["Sid"] in ("ReadProbeCredentials", "DecryptProbeCredentials")] == \
        [*reads, *decrypt]
    function = _inputs(staging, "mcp-estate-us-east-1-gate-function")
    assert function["environment"]["variables"]["MCP_HOOK_CREDENTIALS_ARN"] == reads[0]["Resource"]
    assert function["handler"] == "mcp_estate.runtime.deployment_hook.handler"
    servers = json.loads(function["environment"]["variables"]["MCP_HOOK_SERVERS"])
    assert set(servers) == {"inventory"} and servers["inventory"]["protocols"] == ["2025-11-25", "2026-07-28"]
    assert function["vpcConfig"]["securityGroupIds"] == [staging.named("mcp-estate-us-east-1-gate-sg").outputs["id"]]


def test_pulumi_ignores_the_actions_ecs_rewrites(monkeypatch):
    seen = []

    class Recorder:
        def __init__(self, name, opts=None, **kwargs):
            seen.append(opts.ignore_changes)
    monkeypatch.setattr(staged_deployment.aws.lb, "ListenerRule", Recorder)
    opts = pulumi.ResourceOptions()
    staged_deployment.production_rule("r", "l", 100, ["/a/mcp"], {}, "b", "g", {}, opts)
    staged_deployment.test_rule("t", "l", 100, "/a/mcp", {}, "10.0.0.0/16", "b", "g", {}, opts)
    assert seen == [["actions"], ["actions"]]


def test_linear_settings_become_the_linear_block():
    staged = staged_deployment.Staged("booking", InRegion(strategy="LINEAR", linear_step_percent=25,
                                                          step_bake_minutes=5, bake_minutes=20), "f", "h", "i", [])
    configuration = staged_deployment.deployment_configuration(staged)
    assert configuration["linear_configuration"] == {"step_percent": 25, "step_bake_time_in_minutes": "5"}
    assert "canary_configuration" not in configuration and configuration["bake_time_in_minutes"] == "20"


# -- spec rules and the generated pack config -----------------------------------------------------

def _raw(stack: str = "staging") -> dict:
    import yaml
    from conftest import ROOT
    return copy.deepcopy(yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())
                         ["config"]["mcp-estate:estate"])


def _inventory(raw):
    return next(s for s in raw["servers"] if s["name"] == "inventory")


def test_the_hook_reaches_only_the_vpc_and_the_token_endpoint(staging):
    group = staging.named("mcp-estate-us-east-1-gate-sg").outputs["id"]
    egress = sorted((r.inputs["cidrIpv4"], r.inputs["fromPort"], r.inputs["toPort"]) for r in staging.resources
                    if r.type == "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
                    and r.inputs["securityGroupId"] == group)
    assert egress == [("10.40.0.0/16", 443, 443), ("203.0.113.0/24", 443, 443)]


def test_a_staged_server_behind_auth_needs_the_probe_credentials_outside_prod_too():
    raw = _raw()
    del raw["monitoring"]["probe_credentials_secret"]
    with pytest.raises(SpecError, match=r"monitoring.probe_credentials_secret.*probes each new revision of "
                                        r"inventory \(CANARY/LINEAR\)"):
        parse_spec(raw)
    _inventory(raw).pop("rollout")
    _inventory(raw).pop("auth")
    parse_spec(raw)   # staging without staged servers: the canary may wait for its credentials


def test_a_static_probe_token_is_no_longer_a_spec_field():
    raw = _raw()
    _inventory(raw)["surface"] = {"probe_token_secret": "inventory-probe-token"}
    with pytest.raises(SpecError, match="probe_token_secret"):
        parse_spec(raw)


def test_the_test_rule_priority_must_be_free():
    raw = _raw()
    _inventory(raw)["route_priority"] = 2000
    next(s for s in raw["servers"] if s["name"] == "booking")["route_priority"] = 1999
    with pytest.raises(SpecError, match="1999, which is used by 'booking'"):
        parse_spec(raw)


def test_the_probe_tool_must_be_approved():
    raw = _raw()
    _inventory(raw).setdefault("surface", {}).update(tools=["list_stock"], probe_tool={"name": "delete_stock"})
    with pytest.raises(SpecError, match="'delete_stock' is not one of surface.tools"):
        parse_spec(raw)


def test_pack_config_allows_rolling_only_for_alb_validated_servers_and_the_elb_policy_only_when_staged():
    staging, prod = generated(parse_spec(_raw())), generated(parse_spec(_raw("prod")))
    assert staging[GATE_POLICY] == {"rollingServers": ["booking"]}
    assert staging["attached-policies-from-the-stack-or-the-allow-list"] == {
        "allowedManagedPolicies": ["AmazonECSInfrastructureRolePolicyForLoadBalancers"]}
    assert "attached-policies-from-the-stack-or-the-allow-list" not in prod


# -- the controls ---------------------------------------------------------------------------------

CLUSTER = "arn:aws:ecs:eu-west-1:111122223333:cluster/c"
TASK = "arn:aws:ecs:eu-west-1:111122223333:task-definition/mcp-estate-prod-booking:3"
HOOK = {"hook_target_arn": "arn:aws:lambda:eu-west-1:111122223333:function:hook", "role_arn": "arn:aws:iam::1:role/h",
        "lifecycle_stages": ["POST_TEST_TRAFFIC_SHIFT"]}
CANARY = {"strategy": "CANARY", "bake_time_in_minutes": "15", "lifecycle_hooks": [HOOK],
          "canary_configuration": {"canary_percent": 10.0, "canary_bake_time_in_minutes": "10"}}
ALARMS = {"alarm_names": ["a-5xx"], "enable": True, "rollback": True}
BREAKER = {"enable": True, "rollback": True}


def gate(config: dict | None = None, **service) -> list[str]:
    def program():
        aws.ecs.Service("svc", name="booking", cluster=CLUSTER, task_definition=TASK, desired_count=2,
                        tags={"mcp-estate:environment": "prod", "mcp-estate:server": "booking"},
                        **{"alarms": ALARMS, "deployment_circuit_breaker": BREAKER, **service})
    return [v.message for v in violations(run_program(program),
                                          {GATE_POLICY: {"environment": "prod", **(config or {})}}, policy=GATE_POLICY)]


@legitimate("production-services-deploy-through-a-gate")
def test_a_gated_canary_passes():
    assert gate(deployment_configuration=CANARY) == []


def test_rolling_passes_only_for_a_listed_server():
    assert gate({"rollingServers": ["booking"]}) == []
    [message] = gate({"rollingServers": ["payments"]})
    assert "'booking' is not in rollingServers" in message


@pytest.mark.parametrize("change, expected", [
    ({"lifecycle_hooks": [{**HOOK, "lifecycle_stages": []}]}, "no Lambda lifecycle hook"),
    ({"lifecycle_hooks": [{**HOOK, "lifecycle_stages": ["POST_PRODUCTION_TRAFFIC_SHIFT"]}]}, "no Lambda lifecycle"),
    ({"lifecycle_hooks": []}, "no Lambda lifecycle hook"),
    ({"canary_configuration": {"canary_percent": 100.0, "canary_bake_time_in_minutes": "0"}},
     "takes 100.0% of traffic"),
    ({"canary_configuration": {"canary_percent": 10.0, "canary_bake_time_in_minutes": "0"}}, "bakes 0 minutes"),
    ({"strategy": "BLUE_GREEN"}, "'BLUE_GREEN' is none of"),
])
@attack("production-services-deploy-through-a-gate")
def test_a_weakened_canary_is_reported(change, expected):
    [message] = gate(deployment_configuration={**CANARY, **change})
    assert expected in message


def test_a_strategy_in_another_spelling_is_refused_before_the_pack():
    """Fidelity refuses it at plan time; the control would name it too (it compares exact capitals)."""
    with pytest.raises(FidelityError, match="'canary', not one of BLUE_GREEN, CANARY, LINEAR, ROLLING"):
        gate(deployment_configuration={**CANARY, "strategy": "canary"})


@attack("production-services-deploy-through-a-gate")
def test_alarms_without_rollback_fail_a_canary():
    [message] = gate(deployment_configuration=CANARY, alarms={**ALARMS, "rollback": False})
    assert "alarms.rollback is not true" in message


@legitimate("production-services-deploy-through-a-gate")
def test_a_staging_service_is_not_judged():
    def program():
        aws.ecs.Service("svc", name="booking", cluster=CLUSTER, task_definition=TASK,
                        tags={"mcp-estate:environment": "staging"})
    assert violations(run_program(program), {GATE_POLICY: {"environment": "staging"}}, policy=GATE_POLICY) == []


def _two_services(variant: str = "") -> list[str]:
    """Two staged services a and b, each with its own rules and target groups; `variant` changes b:
    "uses-a-prod" names a's production rule, "test-is-prod" names its own production rule as its test
    rule, "forwards-to-a" sends its production rule's second half to a's group, "swapped" lists its
    groups the other way round (the alternate first) in its rules."""
    def program():
        listener = "arn:aws:elasticloadbalancing:eu-west-1:111122223333:listener/app/alb/1/2"
        groups = {n: aws.lb.TargetGroup(n, port=8080, protocol="HTTP", target_type="ip", vpc_id="vpc-1")
                  for n in ("a-blue", "a-green", "b-blue", "b-green")}
        rules = {}
        for server, priority in (("a", 100), ("b", 200)):
            blue, green = groups[f"{server}-blue"].arn, groups[f"{server}-green"].arn
            if server == "b" and variant == "forwards-to-a":
                green = groups["a-green"].arn
            if server == "b" and variant == "swapped":
                blue, green = green, blue
            for kind, offset in (("prod", 0), ("test", -1)):
                rules[server, kind] = aws.lb.ListenerRule(
                    f"{server}-{kind}", listener_arn=listener, priority=priority + offset,
                    conditions=[{"path_pattern": {"values": [f"/{server}/mcp"]}}],
                    actions=staged_deployment.weighted_forward(blue, green))
        for server in ("a", "b"):
            prod = rules["a" if variant == "uses-a-prod" and server == "b" else server, "prod"]
            test = rules[server, "prod" if variant == "test-is-prod" and server == "b" else "test"]
            aws.ecs.Service(f"{server}-svc", cluster=CLUSTER, task_definition=TASK, load_balancers=[{
                "target_group_arn": groups[f"{server}-blue"].arn, "container_name": server, "container_port": 8080,
                "advanced_configuration": {"alternate_target_group_arn": groups[f"{server}-green"].arn,
                                           "production_listener_rule": prod.arn,
                                           "test_listener_rule": test.arn,
                                           "role_arn": "arn:aws:iam::111122223333:role/elb"}}])
    return [v.message for v in violations(run_program(program), {}, policy=RULE_POLICY)]


@legitimate("staged-services-own-their-production-rule")
def test_services_owning_their_rules_pass():
    assert _two_services() == []


@attack("staged-services-own-their-production-rule")
def test_a_service_pointing_at_another_services_production_rule_is_reported():
    messages = _two_services("uses-a-prod")
    assert any("is also a-svc's" in m for m in messages)
    assert any("forwards to" in m and "not one of the service's target groups" in m for m in messages)


@attack("staged-services-own-their-production-rule")
def test_a_service_whose_test_rule_is_its_production_rule_is_reported():
    assert _two_services("test-is-prod")


@attack("staged-services-own-their-production-rule")
def test_a_production_rule_sending_part_of_the_traffic_to_another_servers_group_is_reported():
    assert any("not one of the service's target groups" in m for m in _two_services("forwards-to-a"))


@legitimate("staged-services-own-their-production-rule")
def test_rules_listing_the_alternate_group_first_pass():
    assert _two_services("swapped") == []
