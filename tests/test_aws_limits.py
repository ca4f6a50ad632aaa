"""AWS's apply-time limits are refused at plan time: each limit shown catching a planted violation
one past it, the value at the limit passing, and the shipped stacks passing."""

from __future__ import annotations

import copy
import json

import botocore.session
import pulumi
import pulumi_aws as aws
import pytest
import yaml
from conftest import ACCOUNT, Plan, shipped_plan, stack_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_spec_properties import raw_specs

from mcp_estate.cli import main
from mcp_estate.contract.aws_limits import NAME_LIMITS, AwsQuotas
from mcp_estate.contract.limit_rules import limit_problems, listener_rules
from mcp_estate.contract.problems import Problem
from mcp_estate.contract.spec import EstateSpec
from mcp_estate.contract.validate import SpecError, parse_spec
from mcp_estate.offline.fidelity import inspect_resource
from mcp_estate.offline.limits import estate_limit_problems, resource_limit_problems
from mcp_estate.offline.runner import FidelityError, run_offline

# -- names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("type_token", sorted(NAME_LIMITS))
def test_a_name_one_character_too_long_is_refused_naming_the_limit(type_token):
    limit = NAME_LIMITS[type_token]
    assert resource_limit_problems(type_token, {limit.key: "n" * limit.max}) == []
    [problem] = resource_limit_problems(type_token, {limit.key: "n" * (limit.max + 1)})
    assert problem == (f"{limit.key} '{'n' * (limit.max + 1)}' has {limit.max + 1} characters; AWS accepts at most "
                       f"{limit.max} ({limit.url}): shorten the server, group or stack name it is built from")


ALB = "aws:lb/loadBalancer:LoadBalancer"


def test_an_autoname_that_would_pass_the_limit_is_refused_as_the_provider_refuses_it():
    """The provider appends "-" and 7 random characters and refuses the result over the limit: a
    24-character resource name still fits an ALB's 32, a 25-character one does not."""
    assert resource_limit_problems(ALB, {}, "a" * 24) == []
    [problem] = resource_limit_problems(ALB, {}, "mcp-estate-eu-west-1-front-alb")
    assert problem.startswith("no name is set, and the autoname 'mcp-estate-eu-west-1-front-alb-' plus 7 random "
                              "characters is longer than the 32 AWS accepts")
    assert resource_limit_problems(ALB, {"name": "mcp-estate-dev-eu-west-1"}, "mcp-estate-eu-west-1-front-alb") == []
    assert resource_limit_problems(ALB, {"namePrefix": "mcp-"}, "mcp-estate-eu-west-1-front-alb") == []
    assert any("plus 7 random characters" in p for p in inspect_resource(ALB, "x" * 25, {"subnets": []}))


def test_the_shipped_albs_are_named_from_the_stack_and_region_not_autonamed():
    albs = [r.inputs["name"] for stack in ("dev", "prod") for r in shipped_plan(stack).of_type(ALB)]
    assert "mcp-estate-dev-eu-west-1" in albs and all(len(name) <= 32 for name in albs)
    assert sorted(albs) == sorted(set(albs))


def test_the_fidelity_inspector_reports_a_target_group_name_of_33_characters():
    problems = inspect_resource("aws:lb/targetGroup:TargetGroup", "tg", {"name": "t" * 33, "port": 8080})
    assert any("has 33 characters; AWS accepts at most 32" in p for p in problems)


# botocore's model states some of these limits too (others accept an ARN there, so state its length).
BOTOCORE_NAMES = [("aws:iam/role:Role", "iam", "CreateRole", "RoleName"),
                  ("aws:iam/policy:Policy", "iam", "CreatePolicy", "PolicyName"),
                  ("aws:iam/rolePolicy:RolePolicy", "iam", "PutRolePolicy", "PolicyName"),
                  ("aws:cloudwatch/logGroup:LogGroup", "logs", "CreateLogGroup", "logGroupName"),
                  ("aws:cloudwatch/eventRule:EventRule", "events", "PutRule", "Name"),
                  ("aws:secretsmanager/secret:Secret", "secretsmanager", "CreateSecret", "Name"),
                  ("aws:kms/alias:Alias", "kms", "CreateAlias", "AliasName"),
                  ("aws:wafv2/webAcl:WebAcl", "wafv2", "CreateWebACL", "Name"),
                  ("aws:ecr/repository:Repository", "ecr", "CreateRepository", "repositoryName"),
                  ("aws:cloudwatch/metricAlarm:MetricAlarm", "cloudwatch", "PutMetricAlarm", "AlarmName"),
                  ("aws:sfn/stateMachine:StateMachine", "stepfunctions", "CreateStateMachine", "name"),
                  ("aws:scheduler/schedule:Schedule", "scheduler", "CreateSchedule", "Name")]


@pytest.mark.parametrize("type_token, service, operation, member", BOTOCORE_NAMES)
def test_name_limits_agree_with_the_api_model_aws_validates_against(type_token, service, operation, member):
    model = botocore.session.get_session().get_service_model(service).operation_model(operation)
    assert NAME_LIMITS[type_token].max == model.input_shape.members[member].metadata["max"]


# -- task definitions --------------------------------------------------------------------------------

def task_of_size(size: int) -> dict:
    """Task definition inputs whose request (containers + other inputs, compact JSON) is `size` bytes."""
    inputs = {"family": "booking", "cpu": "512", "memory": "1024"}
    container = {"name": "booking", "image": "i", "environment": [{"name": "PAD", "value": ""}]}
    bare = len(json.dumps([container])) + len(json.dumps(inputs, separators=(",", ":")))
    container["environment"][0]["value"] = "x" * (size - bare)
    return {**inputs, "containerDefinitions": json.dumps([container])}


def test_a_task_definition_just_over_64_kib_is_refused():
    assert resource_limit_problems("aws:ecs/taskDefinition:TaskDefinition", task_of_size(65536)) == []
    [problem] = resource_limit_problems("aws:ecs/taskDefinition:TaskDefinition", task_of_size(65537))
    assert problem.startswith("the task definition is 65537 bytes, over the 65536 bytes (64 KiB) ECS accepts")


def test_a_task_definition_of_eleven_containers_is_refused():
    containers = json.dumps([{"name": f"c{i}", "image": "i"} for i in range(11)])
    assert resource_limit_problems("aws:ecs/taskDefinition:TaskDefinition", {"containerDefinitions": containers}) == [
        "the task definition has 11 containers; ECS accepts at most 10 "
        "(https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-quotas.html)"]


# -- listener rules ------------------------------------------------------------------------------------

RULE = "aws:lb/listenerRule:ListenerRule"


def test_a_listener_rule_holds_five_condition_values_across_its_conditions():
    five = {"conditions": [{"pathPattern": {"values": ["/a", "/b", "/c"]}},
                           {"httpHeader": {"httpHeaderName": "CF-IPCountry", "values": ["DE", "FR"]}}]}
    assert resource_limit_problems(RULE, five) == []
    six = copy.deepcopy(five)
    six["conditions"].append({"queryString": [{"key": "a", "value": "b"}]})
    [problem] = resource_limit_problems(RULE, six)
    assert problem.startswith("its conditions hold 6 values; an ALB rule holds at most 5")


def test_an_action_forwards_to_at_most_five_target_groups():
    action = {"type": "forward", "forward": {"targetGroups": [{"arn": f"tg-{i}"} for i in range(6)]}}
    [problem] = resource_limit_problems(RULE, {"actions": [action]})
    assert problem.startswith("actions[0] forwards to 6 target groups; an action takes at most 5")


# -- counts across resources ---------------------------------------------------------------------------

def plan_problems(program, quotas: AwsQuotas | None = None) -> list[str]:
    try:
        run_offline(program, stack="limits", config={}, account_id=ACCOUNT,
                    inspect_all=lambda registered: estate_limit_problems(registered, quotas))
    except FidelityError as error:
        return str(error).splitlines()
    return []


def group_with_rules(ipv4: int = 0, ipv6: int = 0, peers: int = 0, prefix_list_entries: int = 0):
    def program():
        group = aws.ec2.SecurityGroup("app", vpc_id="vpc-1", description="app")
        for i in range(ipv4):
            aws.vpc.SecurityGroupIngressRule(f"v4-{i}", security_group_id=group.id, ip_protocol="tcp",
                                             from_port=443, to_port=443, cidr_ipv4=f"10.0.{i}.0/24")
        for i in range(ipv6):
            aws.vpc.SecurityGroupIngressRule(f"v6-{i}", security_group_id=group.id, ip_protocol="tcp",
                                             from_port=443, to_port=443, cidr_ipv6=f"2001:db8:{i:x}::/48")
        for i in range(peers):
            aws.vpc.SecurityGroupIngressRule(f"peer-{i}", security_group_id=group.id, ip_protocol="tcp",
                                             from_port=443, to_port=443, referenced_security_group_id=f"sg-{i}")
        if prefix_list_entries:
            ranges = aws.ec2.ManagedPrefixList("ranges", name="ranges", address_family="IPv4",
                                               max_entries=prefix_list_entries)
            aws.vpc.SecurityGroupIngressRule("listed", security_group_id=group.id, ip_protocol="tcp",
                                             from_port=443, to_port=443, prefix_list_id=ranges.id)
    return program


def test_sixty_one_inbound_rules_on_one_group_are_refused_naming_the_group_and_the_quota():
    assert plan_problems(group_with_rules(ipv4=60)) == []
    [problem] = plan_problems(group_with_rules(ipv4=61))
    assert problem.startswith("aws:ec2/securityGroup:SecurityGroup 'app': 61 inbound IPv4 rules, over the 60 of "
                              "AWS's 'Inbound or outbound rules per security group'")
    assert "raise the quota 'Inbound or outbound rules per security group' (L-0EA8095F)" in problem
    assert "aws_quotas.rules_per_security_group" in problem


def test_rules_count_per_address_family_and_references_count_in_both():
    assert plan_problems(group_with_rules(ipv4=60, ipv6=60)) == []       # 60 of each family is fine
    [problem] = plan_problems(group_with_rules(ipv6=30, peers=31))       # 61 IPv6 (and 31 IPv4)
    assert "61 inbound IPv6 rules" in problem


def test_a_customer_managed_prefix_list_weighs_its_max_entries():
    assert plan_problems(group_with_rules(ipv4=45, prefix_list_entries=15)) == []
    [problem] = plan_problems(group_with_rules(ipv4=46, prefix_list_entries=15))
    assert "61 inbound IPv4 rules" in problem


def test_inline_rules_count_one_per_source():
    def program():
        aws.ec2.SecurityGroup("inline", vpc_id="vpc-1", description="inline", egress=[
            {"protocol": "tcp", "from_port": 443, "to_port": 443,
             "cidr_blocks": [f"10.{i}.0.0/16" for i in range(61)]}])
    [problem] = plan_problems(program)
    assert problem.startswith("aws:ec2/securityGroup:SecurityGroup 'inline': 61 outbound IPv4 rules")


def test_a_raised_rules_quota_is_used_and_lowers_the_groups_an_interface_may_have():
    assert plan_problems(group_with_rules(ipv4=61), AwsQuotas(rules_per_security_group=100)) == []

    def interface_with(groups: int):
        return lambda: aws.ec2.VpcEndpoint("api", vpc_id="vpc-1", service_name="com.amazonaws.us-east-1.sts",
                                           vpc_endpoint_type="Interface",
                                           security_group_ids=[f"sg-{i}" for i in range(groups)])
    assert plan_problems(interface_with(5)) == []
    assert plan_problems(interface_with(4), AwsQuotas(rules_per_security_group=250)) == []
    [problem] = plan_problems(interface_with(5), AwsQuotas(rules_per_security_group=250))
    assert "securityGroupIds lists 5 security groups; with 250 rules per group a network interface " \
           "takes at most 4" in problem


def alb_with_rules(count: int, forward: bool = False):
    def program():
        alb = aws.lb.LoadBalancer("front", name="front", subnets=["subnet-1", "subnet-2"])
        listener = aws.lb.Listener("https", load_balancer_arn=alb.arn, port=443, protocol="HTTPS",
                                   default_actions=[{"type": "fixed-response", "fixed_response": {
                                       "content_type": "text/plain", "status_code": "404"}}])
        for i in range(count):
            action = {"type": "fixed-response", "fixed_response": {"content_type": "text/plain", "status_code": "200"}}
            if forward:
                group = aws.lb.TargetGroup(f"tg-{i}", name=f"tg-{i}", port=80, protocol="HTTP", vpc_id="vpc-1")
                action = {"type": "forward", "target_group_arn": group.arn}
            aws.lb.ListenerRule(f"rule-{i}", listener_arn=listener.arn, priority=i + 1, actions=[action],
                                conditions=[{"path_pattern": {"values": [f"/{i}"]}}])
    return program


def test_101_listener_rules_on_one_alb_are_refused_naming_the_alb():
    assert plan_problems(alb_with_rules(100)) == []
    [problem] = plan_problems(alb_with_rules(101))
    assert problem.startswith("aws:lb/loadBalancer:LoadBalancer 'front': 101 listener rules, over the 100 of AWS's "
                              "'Rules per Application Load Balancer (excluding default rules)'")
    assert "(L-7EED9B64) in Service Quotas and set aws_quotas.rules_per_alb" in problem
    assert plan_problems(alb_with_rules(101), AwsQuotas(rules_per_alb=101)) == []


def test_101_target_groups_on_one_alb_are_refused_even_with_the_rules_quota_raised():
    raised = AwsQuotas(rules_per_alb=200)
    assert plan_problems(alb_with_rules(100, forward=True), raised) == []
    [problem] = plan_problems(alb_with_rules(101, forward=True), raised)
    assert problem.startswith("aws:lb/loadBalancer:LoadBalancer 'front': 101 target groups, over the 100 of AWS's "
                              "'Target Groups per Application Load Balancer'")
    assert "AWS does not raise this limit" in problem


# -- the spec ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_the_spec_counts_exactly_the_listener_rules_each_alb_gets(stack):
    spec = parse_spec(stack_config(stack)["mcp-estate:estate"])
    planned = planned_listener_rules(shipped_plan(stack))
    assert planned == listener_rules(spec) and all(planned.values())


def planned_listener_rules(plan: Plan) -> dict[str, int]:
    """Region -> the listener rules the plan puts on its ALB."""
    alb_region = {r.outputs["arn"]: r.inputs["tags"]["mcp-estate:region"]
                  for r in plan.of_type("aws:lb/loadBalancer:LoadBalancer")}
    listener_alb = {r.outputs["arn"]: r.inputs["loadBalancerArn"] for r in plan.of_type("aws:lb/listener:Listener")}
    planned = {region: 0 for region in alb_region.values()}
    for rule in plan.of_type(RULE):
        planned[alb_region[listener_alb[rule.inputs["listenerArn"]]]] += 1
    return planned


def many_servers(count: int, **quotas: int) -> dict:
    """One open group in one region, `auth` on (the ALB validates tokens): 3 rules per server."""
    registry = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
    raw = {"environment": "prod", "owner": "travel-platform", "aws_account_id": ACCOUNT,
           "auth": {"issuer": "https://login.example.travel/", "jwks_url": "https://login.example.travel/jwks.json"},
           "primary_region": "us-east-1",
           "domain": {"hostname": "mcp.example.travel", "zone_id": "0" * 32, "cloudflare_account_id": "f" * 32},
           "residency_groups": [{"name": "americas", "primary_region": "us-east-1",
                                 "regions": [{"name": "us-east-1", "cidr": "10.20.0.0/16"}]}],
           "servers": [{"name": f"server-{i:03d}", "image": f"{registry}/mcp/s{i}@sha256:{'ab' * 32}"}
                       for i in range(count)],
           "edge": {"health_server": "server-000"},
           "monitoring": {"probe_credentials_secret": "canary-oauth-client", "probe_token_cidrs": ["203.0.113.0/24"]}}
    if quotas:
        raw["aws_quotas"] = quotas
    return raw


def test_the_spec_refuses_servers_that_overflow_an_alb_and_names_the_quota_to_raise():
    # (Past 4 servers AWS WAF's rate-based rules refuse such an estate first: checked here on their own.)
    assert listener_rules(EstateSpec.model_validate(many_servers(33))) == {"us-east-1": 99}
    assert limit_problems(EstateSpec.model_validate(many_servers(33))) == []
    [problem] = limit_problems(EstateSpec.model_validate(many_servers(34)))
    assert problem == Problem("servers", (
        "the ALB of each region would hold more listener rules than AWS's 'Rules per Application Load Balancer "
        "(excluding default rules)' of 100 (us-east-1 102): each server takes 1 rule (route), +1 with auth "
        "(metadata), +1 when the ALB validates tokens (health), +1 for CANARY/LINEAR (test), and the residency "
        "guard 1 per 5 refused countries. Use fewer servers, `auth.token_validation: server` for some, or raise "
        "the quota (L-7EED9B64) and set aws_quotas.rules_per_alb (https://docs.aws.amazon.com/"
        "elasticloadbalancing/latest/application/load-balancer-limits.html)"))
    with pytest.raises(SpecError) as error:
        parse_spec(many_servers(34))
    assert problem in error.value.problems
    assert limit_problems(EstateSpec.model_validate(many_servers(34, rules_per_alb=102))) == []


def test_canary_servers_and_the_residency_guard_take_their_rules_too():
    raw = many_servers(2)
    raw["rollout"] = {"in_region": {"strategy": "CANARY"}}
    raw["residency_groups"].append({"name": "eu", "primary_region": "eu-west-1", "strict": True,
                                    "countries": ["AT", "BE", "DE", "FR", "IE", "NL"],
                                    "regions": [{"name": "eu-west-1", "cidr": "10.30.0.0/16"}]})
    for server in raw["servers"]:
        server["auth"] = {"token_validation": "server"}   # CANARY routes are ECS's: no health rule
    # route + metadata + test per server; us-east-1 refuses the 6 strict countries in 2 guard rules.
    assert listener_rules(EstateSpec.model_validate(raw)) == {"us-east-1": 2 + 2 * 3, "eu-west-1": 2 * 3}


def test_the_raised_quotas_cannot_go_below_the_defaults_or_past_aws_caps():
    for quotas in ({"rules_per_alb": 99}, {"rules_per_security_group": 59}, {"rules_per_security_group": 1001}):
        with pytest.raises(SpecError) as error:
            parse_spec(many_servers(1, **quotas))
        assert any(p.path.startswith("aws_quotas.") for p in error.value.problems)


# -- `estate plan` -----------------------------------------------------------------------------------------

def test_estate_plan_fails_naming_the_security_group_a_server_overfills(tmp_path, capsys):
    config = copy.deepcopy(stack_config("dev"))
    server = config["mcp-estate:estate"]["servers"][0]
    server["egress"] = [{"cidr": f"198.51.{i}.0/24", "port": 443, "description": "partner"} for i in range(60)]
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.crowded.yaml").write_text(yaml.safe_dump({"config": config}))
    assert main(["plan", "--stack", "crowded", "--stacks-dir", str(stacks)]) == 1
    error = capsys.readouterr().err
    assert f"aws:ec2/securityGroup:SecurityGroup 'mcp-estate-eu-west-1-{server['name']}-" in error
    assert "outbound IPv4 rules, over the 60 of AWS's 'Inbound or outbound rules per security group'" in error


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_the_shipped_stacks_are_within_every_limit(stack):
    plan = shipped_plan(stack)
    assert estate_limit_problems(plan.resources) == []
    assert [p for r in plan.resources if r.custom for p in resource_limit_problems(r.type, r.inputs)] == []


def test_unknown_values_are_not_counted():
    unknown = pulumi.runtime.rpc.UNKNOWN
    assert resource_limit_problems("aws:lb/targetGroup:TargetGroup", {"name": unknown}) == []
    assert resource_limit_problems("aws:ecs/taskDefinition:TaskDefinition", {"containerDefinitions": unknown}) == []


# -- properties ----------------------------------------------------------------------------------------------

@st.composite
def varied_specs(draw) -> dict:
    """Generated estates with each server's strategy and token validation drawn, and strict groups
    refusing up to 12 countries (1-3 guard rules elsewhere)."""
    raw = draw(raw_specs())
    spare = iter(["BE", "LU", "PT", "IT", "PL", "CZ", "DK", "SE", "FI", "NO", "GR"])
    for group in raw["residency_groups"]:
        if group["strict"]:
            group["countries"] += [next(spare) for _ in range(draw(st.integers(0, 5)))]
    auth_on = not raw["auth"].get("disabled")
    for server in raw["servers"]:
        canary = draw(st.booleans())
        if canary:
            server["rollout"] = {"strategy": "CANARY"}
        if auth_on and (canary or draw(st.booleans())):   # ECS owns a CANARY route (decision 0001)
            server["auth"] = {"token_validation": "server"}
            # The deployment hook's probe then needs the canary's OAuth client.
            raw["monitoring"] = {"probe_credentials_secret": "canary-oauth-client",
                                 "probe_token_cidrs": ["203.0.113.0/24"]}
    return raw


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(varied_specs())
def test_any_accepted_spec_plans_within_the_limits_with_the_rules_the_spec_counted(raw):
    from mcp_estate.components.estate import Estate
    spec = parse_spec(raw)
    plan = Plan(run_offline(lambda: Estate("mcp-estate", spec), stack="prop", config={}, account_id=ACCOUNT,
                            inspect=inspect_resource,   # FidelityError on any limit, as `estate plan`
                            inspect_all=lambda registered: estate_limit_problems(registered, spec.aws_quotas)))
    assert planned_listener_rules(plan) == listener_rules(spec)
