"""The canary: a private, least-privileged Lambda probing every server by ALB and by edge, and its alarms."""

from __future__ import annotations

import hashlib

import pulumi
import pulumi_aws as aws
import pytest
from conftest import ACCOUNT, ROOT, Plan, policy, shipped_plan, violations

from mcp_estate.components.canary import Canary, CanaryArgs, probe_alarm_name, rate
from mcp_estate.contract.spec import Monitoring
from mcp_estate.offline.fidelity import inspect_resource
from mcp_estate.offline.runner import run_offline
from mcp_estate.runtime.canary_handler import Config

REGION = "eu-west-1"
NAME = f"canary-{REGION}"
PREFIX = "mcp-estate-test"
APPROVED = hashlib.sha256(b"booking tools v3").hexdigest()
ALB_SG = "sg-0a1b2c3d4e5f60718"
ENDPOINT_SG = "sg-0f0e0d0c0b0a09080"
ALB_SUFFIX = "app/mcp-estate-test-eu-west-1/50dc6c495c0c9188"
SUBNETS = ["subnet-0aa11bb22cc33dd44", "subnet-0ee55ff66aa77bb88"]
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:mcp-estate-test-{REGION}-alerts"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/mrk-0123456789abcdef0123456789abcdef"
CLOUDFLARE = ["173.245.48.0/20", "103.21.244.0/22"]
TAGS = {"mcp-estate:stack": "test", "mcp-estate:environment": "prod", "mcp-estate:owner": "travel-platform",
        "mcp-estate:region": REGION}
FUNCTION = f"{PREFIX}-{REGION}-canary"


def plan_of(monitoring: Monitoring | None = None) -> Plan:
    """The canary under the mocks and the plan's strict fidelity inspector."""
    def program():
        provider = aws.Provider(f"aws-{REGION}", region=REGION, allowed_account_ids=[ACCOUNT])
        Canary(NAME, CanaryArgs(
            region=REGION, account_id=ACCOUNT, name_prefix=PREFIX, hostname="mcp.example.travel",
            servers={"booking": APPROVED, "loyalty": None}, monitoring=monitoring or Monitoring(),
            vpc_id="vpc-0f1e2d3c4b5a69788", vpc_cidr="10.30.0.0/16", private_subnet_ids=SUBNETS,
            endpoint_security_group_id=ENDPOINT_SG, alb_security_group_id=ALB_SG, alb_arn_suffix=ALB_SUFFIX,
            cloudflare_ipv4_cidrs=CLOUDFLARE, alerts_topic_arn=TOPIC, log_key_arn=KEY, log_retention_days=90,
            tags=TAGS), opts=pulumi.ResourceOptions(provider=provider))
    return Plan(run_offline(program, stack="test", config={}, account_id=ACCOUNT, inspect=inspect_resource))


@pytest.fixture(scope="module")
def plan() -> Plan:
    return plan_of()


def function(plan: Plan) -> dict:
    return plan.named(f"{NAME}-function").inputs


def test_the_function_runs_python_on_arm64_in_the_private_subnets_one_run_at_a_time(plan):
    inputs = function(plan)
    assert (inputs["name"], inputs["runtime"], inputs["architectures"], inputs["handler"]) == (
        FUNCTION, "python3.12", ["arm64"], "mcp_estate.runtime.canary_handler.handler")
    assert inputs["vpcConfig"] == {"subnetIds": SUBNETS, "securityGroupIds": [plan.named(f"{NAME}-sg").id]}
    assert inputs["timeout"] == 60
    assert plan.of_type("aws:lambda/functionUrl:FunctionUrl") == []


def test_the_function_reserves_no_concurrency_so_accounts_with_a_low_quota_can_deploy_it(plan):
    # Lambda refuses a reservation that leaves less than its minimum unreserved (new accounts: all of it).
    assert "reservedConcurrentExecutions" not in function(plan)


def test_runs_cannot_overlap_by_schedule_a_run_ends_before_the_next_one_starts(plan):
    shortest_schedule = Monitoring(probe_every_minutes=1)
    with pytest.raises(ValueError):
        Monitoring(probe_every_minutes=0)
    assert function(plan)["timeout"] <= 60 * shortest_schedule.probe_every_minutes
    retries = plan.named(f"{NAME}-no-retries").inputs
    assert (retries["maximumRetryAttempts"], retries["maximumEventAgeInSeconds"]) == (0, 300)


def test_the_code_is_the_handler_and_the_probe_packaged_from_source(plan):
    assets = function(plan)["code"]["assets"]
    assert sorted(assets) == [
        "mcp_estate/__init__.py", "mcp_estate/contract/__init__.py", "mcp_estate/contract/names.py",
        "mcp_estate/runtime/__init__.py",
        "mcp_estate/runtime/canary_handler.py", "mcp_estate/runtime/probe.py", "mcp_estate/runtime/tokens.py"]
    for path, asset in assets.items():
        assert asset["hash"] == hashlib.sha256((ROOT / path).read_bytes()).hexdigest()


def test_the_handler_gets_the_hostname_the_alb_and_each_servers_approved_hash(plan):
    variables = function(plan)["environment"]["variables"]
    config = Config.from_environment(variables)
    assert config == Config(hostname="mcp.example.travel", region=REGION, alb_interfaces=f"ELB {ALB_SUFFIX}",
                            servers={"booking": APPROVED, "loyalty": ""})
    assert config.url("booking") == "https://mcp.example.travel/booking/mcp"


def test_the_canary_connects_only_to_its_vpc_and_to_cloudflare_on_443(plan):
    group = plan.named(f"{NAME}-sg").id
    rules = {r.name: r.inputs for r in plan.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")}
    assert {name: (i["securityGroupId"], i["cidrIpv4"], i["fromPort"], i["toPort"]) for name, i in rules.items()} == {
        f"{NAME}-to-vpc": (group, "10.30.0.0/16", 443, 443),
        f"{NAME}-to-cloudflare-173-245-48-0-20": (group, "173.245.48.0/20", 443, 443),
        f"{NAME}-to-cloudflare-103-21-244-0-22": (group, "103.21.244.0/22", 443, 443)}
    assert plan.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")[0].inputs == {
        "securityGroupId": ALB_SG, "ipProtocol": "tcp", "fromPort": 443, "toPort": 443,
        "referencedSecurityGroupId": group, "description": "the MCP canary of the region", "tags": TAGS}


def test_aws_apis_are_reached_through_interface_endpoints_in_the_private_subnets(plan):
    endpoints = {r.inputs["serviceName"]: r.inputs for r in plan.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")}
    assert sorted(endpoints) == [f"com.amazonaws.{REGION}.ec2", f"com.amazonaws.{REGION}.monitoring"]
    for endpoint in endpoints.values():
        assert (endpoint["vpcEndpointType"], endpoint["privateDnsEnabled"], endpoint["subnetIds"],
                endpoint["securityGroupIds"]) == ("Interface", True, SUBNETS, [ENDPOINT_SG])


def test_only_lambda_of_this_account_can_assume_the_role(plan):
    assert policy(plan.named(f"{NAME}-role"), "assumeRolePolicy")["Statement"] == [{
        "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}}]


def test_the_role_writes_its_own_logs_publishes_only_canary_metrics_and_manages_only_interfaces(plan):
    statements = {s["Sid"]: s for s in policy(plan.named(f"{NAME}-policy"), "policy")["Statement"]}
    ec2 = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
    assert statements["WriteOwnLogs"]["Resource"] == \
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{FUNCTION}:*"
    assert statements["PublishCanaryMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "MCPEstate/Canary"}}
    assert statements["DescribeNetwork"]["Action"] == ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
    assert statements["CreateOwnInterfaces"]["Resource"] == [
        f"{ec2}:network-interface/*", *(f"{ec2}:subnet/{s}" for s in SUBNETS),
        f"{ec2}:security-group/{plan.named(f'{NAME}-sg').id}"]
    # The form AWS documents (configuration-vpc): Lambda checks it on ids of its own at CreateFunction.
    assert statements["ManageInterfaces"] == {
        "Sid": "ManageInterfaces", "Effect": "Allow",
        "Action": ["ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"],
        "Resource": f"{ec2}:*/*"}
    assert not any(s["Resource"] == "*" for sid, s in statements.items()
                   if sid not in ("PublishCanaryMetrics", "DescribeNetwork"))


def test_the_function_waits_for_its_grant_and_log_group_and_logs_encrypted(plan):
    dependencies = plan.named(f"{NAME}-function").dependencies
    assert plan.named(f"{NAME}-policy").urn in dependencies and plan.named(f"{NAME}-logs").urn in dependencies
    logs = plan.named(f"{NAME}-logs").inputs
    assert (logs["name"], logs["kmsKeyId"], logs["retentionInDays"]) == (f"/aws/lambda/{FUNCTION}", KEY, 90)
    assert function(plan)["loggingConfig"]["logGroup"] == f"/aws/lambda/{FUNCTION}"


def test_the_canary_passes_the_least_privilege_and_network_controls(plan):
    assert [v.message for v in violations(plan)] == []


def test_a_schedule_at_the_spec_rate_is_the_only_invoker_and_a_failed_run_is_not_retried(plan):
    rule = plan.named(f"{NAME}-schedule")
    assert (rule.inputs["scheduleExpression"], rule.inputs["state"]) == ("rate(5 minutes)", "ENABLED")
    permission = plan.named(f"{NAME}-invoke").inputs
    assert (permission["principal"], permission["sourceArn"], permission["function"]) == (
        "events.amazonaws.com", rule.outputs["arn"], FUNCTION)
    assert plan.named(f"{NAME}-target").inputs["arn"] == plan.named(f"{NAME}-function").outputs["arn"]
    retries = plan.named(f"{NAME}-no-retries").inputs
    assert (retries["maximumRetryAttempts"], retries["maximumEventAgeInSeconds"]) == (0, 300)


@pytest.mark.parametrize("minutes, expression", [(1, "rate(1 minute)"), (15, "rate(15 minutes)")])
def test_rate_expressions_use_eventbridges_singular_for_one(minutes, expression):
    assert rate(minutes) == expression


def test_each_path_alarms_after_n_failed_probes_in_a_row_under_the_name_ecs_watches():
    plan = plan_of(Monitoring(probe_every_minutes=2, failed_probes_to_alarm=3))
    for path in ("alb", "edge"):
        alarm = plan.named(f"{NAME}-booking-probe-{path}").inputs
        assert alarm["name"] == probe_alarm_name(PREFIX, "booking", REGION, path) == \
            f"{PREFIX}-booking-{REGION}-probe-{path}"
        assert {k: alarm[k] for k in ("namespace", "metricName", "dimensions", "statistic", "period",
                                      "evaluationPeriods", "datapointsToAlarm", "threshold", "comparisonOperator",
                                      "treatMissingData", "alarmActions", "okActions")} == {
            "namespace": "MCPEstate/Canary", "metricName": "Success",
            "dimensions": {"Server": "booking", "Region": REGION, "Path": path}, "statistic": "Minimum",
            "period": 120, "evaluationPeriods": 3, "datapointsToAlarm": 3, "threshold": 1,
            "comparisonOperator": "LessThanThreshold", "treatMissingData": "notBreaching",
            "alarmActions": [TOPIC], "okActions": [TOPIC]}


def test_a_changed_tool_manifest_alarms_on_either_path_only_for_servers_with_an_approved_hash(plan):
    alarm = plan.named(f"{NAME}-booking-tools-changed").inputs
    queries = {q["id"]: q for q in alarm["metricQueries"]}
    assert queries["changed"]["expression"] == "MAX([m_alb, m_edge])" and queries["changed"]["returnData"]
    assert queries["m_edge"]["metric"] == {"namespace": "MCPEstate/Canary", "metricName": "ToolsManifestMismatch",
                                           "period": 300, "stat": "Maximum",
                                           "dimensions": {"Server": "booking", "Region": REGION, "Path": "edge"}}
    assert (alarm["threshold"], alarm["comparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert [r.name for r in plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
            if r.name.endswith("tools-changed")] == [f"{NAME}-booking-tools-changed"]


def test_slow_probes_through_the_alb_alarm_at_the_spec_latency():
    alarm = plan_of(Monitoring(max_probe_latency_ms=2500)).named(f"{NAME}-loyalty-probe-latency").inputs
    assert (alarm["metricName"], alarm["dimensions"], alarm["threshold"], alarm["comparisonOperator"]) == (
        "Latency", {"Server": "loyalty", "Region": REGION, "Path": "alb", "Step": "total"}, 2500,
        "GreaterThanThreshold")


def test_a_canary_that_stops_running_alerts_when_its_silence_alarm_enters_insufficient_data(plan):
    silent = plan.named(f"{NAME}-canary-silent").inputs
    assert {k: v for k, v in silent.items() if k not in ("alarmDescription", "tags")} == {
        "name": f"{FUNCTION}-silent", "namespace": "AWS/Lambda", "metricName": "Invocations",
        "dimensions": {"FunctionName": FUNCTION}, "statistic": "Sum", "period": 300,
        "evaluationPeriods": 2, "datapointsToAlarm": 2, "threshold": 1,
        "comparisonOperator": "LessThanThreshold",
        # Two periods without a run: every point missing, the alarm goes to INSUFFICIENT_DATA and alerts.
        "treatMissingData": "missing", "insufficientDataActions": [TOPIC],
        "alarmActions": [TOPIC], "okActions": [TOPIC]}


def test_a_fresh_deploy_does_not_alert_that_the_canary_is_silent(plan):
    # A new alarm starts in INSUFFICIENT_DATA: with `missing` it stays there until the first run (no
    # transition, no action) and goes to OK after it. `breaching` would go to ALARM, and alert, first.
    silent = plan.named(f"{NAME}-canary-silent").inputs
    assert silent["treatMissingData"] == "missing"
    others = [a.inputs for a in plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
              if a.inputs is not silent]
    assert all(a["treatMissingData"] == "notBreaching" and "insufficientDataActions" not in a for a in others)
    errors = plan.named(f"{NAME}-canary-errors").inputs
    assert (errors["metricName"], errors["threshold"]) == ("Errors", 1)


def test_with_credentials_the_canary_reaches_each_token_endpoint_range_on_443_and_says_why():
    plan = shipped_plan("prod")   # monitoring.probe_token_cidrs: [203.0.113.0/24]
    group = plan.named("mcp-estate-us-east-1-canary-sg")
    rules = {r.name: r.inputs for r in plan.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
             if r.name.startswith("mcp-estate-us-east-1-canary-to-token-")}
    assert rules == {"mcp-estate-us-east-1-canary-to-token-203-0-113-0-24": {
        "securityGroupId": group.id, "ipProtocol": "tcp", "fromPort": 443, "toPort": 443,
        "cidrIpv4": "203.0.113.0/24", "description": "the IdP token endpoint (bearer tokens of the canary)",
        "tags": group.inputs["tags"]}}
