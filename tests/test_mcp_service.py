"""One MCP server in one region: locked-down task, least network, safe deploys, wired alarms."""

from __future__ import annotations

import json

import botocore.session
import pulumi
import pulumi_aws as aws
import pytest
from botocore.validate import ParamValidator
from conftest import ACCOUNT, run_program

from mcp_estate.components.mcp_service import McpService, McpServiceArgs
from mcp_estate.contract.spec import Server

REGION = "eu-west-1"
DIGEST = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
ALB_SG = "sg-0a1b2c3d4e5f60718"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:mcp-estate-test-{REGION}-alerts"
ALB_SUFFIX = "app/mcp-estate-test-eu-west-1/50dc6c495c0c9188"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:mcp-estate-test/booking-api-key-Xa8Rq2"
PREFIX_LISTS = {"dynamodb": "pl-6fa54006", "s3": "pl-6da54004"}
TAGS = {"mcp-estate:stack": "test", "mcp-estate:environment": "prod", "mcp-estate:owner": "travel-platform",
        "mcp-estate:region": REGION, "mcp-estate:server": "booking", "mcp-estate:residency-group": "eu"}
NAME = f"booking-{REGION}"


def booking(**overrides) -> Server:
    return Server.model_validate({
        "name": "booking",
        "image": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/mcp/booking:2.3.1@{DIGEST}",
        "secrets": ["booking-api-key"],
        "environment": {"LOG_LEVEL": "info", "BOOKING_API_URL": "https://api.partner.example"},
        "egress": [{"cidr": "203.0.113.0/24", "port": 443, "description": "Partner booking API"}],
        "scaling": {"min": 2, "max": 12, "target_cpu_percent": 55, "target_requests_per_task": 400},
        "alarms": {"max_5xx_per_minute": 5, "max_p99_latency_seconds": 1.5},
        **overrides,
    })


def service_args(server: Server, **overrides) -> McpServiceArgs:
    values = dict(
        server=server, region=REGION,
        image=f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mcp/booking@{DIGEST}",
        cluster_arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/mcp-estate-test-{REGION}",
        cluster_name=f"mcp-estate-test-{REGION}",
        vpc_id="vpc-0f1e2d3c4b5a69788", vpc_cidr="10.30.0.0/16",
        private_subnet_ids=["subnet-0aa11bb22cc33dd44", "subnet-0ee55ff66aa77bb88"],
        endpoint_prefix_list_ids=PREFIX_LISTS, alb_security_group_id=ALB_SG,
        listener_arn=f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener/{ALB_SUFFIX}/0467ef3c8400ae65",
        alb_arn_suffix=ALB_SUFFIX, alerts_topic_arn=TOPIC,
        task_role_arn=f"arn:aws:iam::{ACCOUNT}:role/booking-identity-task-1a2b3c4",
        execution_role_arn=f"arn:aws:iam::{ACCOUNT}:role/booking-identity-execution-5d6e7f8",
        log_group_name="/mcp-estate-test/booking",
        log_key_arn=f"arn:aws:kms:{REGION}:{ACCOUNT}:key/mrk-0123456789abcdef0123456789abcdef",
        log_retention_days=90, secrets={"booking-api-key": SECRET_ARN},
        state_table="mcp-estate-test-eu-state", tags=TAGS, alarm_prefix=f"mcp-estate-test-booking-{REGION}-")
    return McpServiceArgs(**{**values, **overrides})


def plan_of(server: Server | None = None, name: str = NAME, **overrides):
    def program():
        provider = aws.Provider(f"aws-{REGION}", region=REGION)
        McpService(name, service_args(server or booking(), **overrides),
                   opts=pulumi.ResourceOptions(provider=provider))
    return run_program(program)


@pytest.fixture(scope="module")
def plan():
    """The default plan, shared by the tests that only read it."""
    return plan_of()


def container(plan) -> dict:
    (definition,) = json.loads(plan.named(f"{NAME}-task").inputs["containerDefinitions"])
    return definition


def rules(plan, kind: str, group_id: str) -> list:
    return [r for r in plan.of_type(f"aws:vpc/securityGroup{kind}Rule:SecurityGroup{kind}Rule")
            if r.inputs["securityGroupId"] == group_id]


def task_sg(plan) -> str:
    return plan.named(f"{NAME}-task-sg").id


# -- the container ---------------------------------------------------------------------------------

def test_container_runs_as_non_root_on_a_read_only_filesystem_with_no_capabilities(plan):
    definition = container(plan)
    assert definition["user"] == "10001:10001"
    assert definition["readonlyRootFilesystem"] is True
    assert definition["privileged"] is False
    assert definition["linuxParameters"] == {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}}
    assert definition["mountPoints"] == [{"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}]


def test_container_runs_exactly_the_pinned_regional_image(plan):
    assert container(plan)["image"] == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/mcp/booking@{DIGEST}"


def test_secrets_reach_the_container_only_by_reference(plan):
    definition = container(plan)
    assert definition["secrets"] == [{"name": "BOOKING_API_KEY", "valueFrom": SECRET_ARN}]
    assert all(e["name"] != "BOOKING_API_KEY" and "secretsmanager" not in e["value"]
               for e in definition["environment"])


def test_environment_holds_the_servers_variables_the_state_table_and_the_port_sorted_by_name(plan):
    assert container(plan)["environment"] == [
        {"name": "BOOKING_API_URL", "value": "https://api.partner.example"},
        {"name": "LOG_LEVEL", "value": "info"},
        {"name": "MCP_STATE_TABLE", "value": "mcp-estate-test-eu-state"},
        {"name": "PORT", "value": "8080"},
    ]


def test_container_serves_mcp_on_its_port_and_is_health_checked_locally():
    definition = container(plan_of(booking(port=8443, health_check_path="/health/live")))
    assert definition["portMappings"] == [{"containerPort": 8443, "protocol": "tcp", "name": "mcp",
                                           "appProtocol": "http"}]
    assert definition["healthCheck"] == {
        "command": ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8443/health/live || exit 1"],
        "interval": 15, "timeout": 5, "retries": 3, "startPeriod": 20}


def test_logs_go_to_the_servers_encrypted_log_group_without_blocking_the_server(plan):
    logs = plan.named(f"{NAME}-logs").inputs
    assert logs["name"] == "/mcp-estate-test/booking"
    assert logs["kmsKeyId"] == service_args(booking()).log_key_arn
    assert logs["retentionInDays"] == 90
    assert plan.named(f"{NAME}-logs").urn in plan.named(f"{NAME}-task").dependencies
    assert container(plan)["logConfiguration"] == {"logDriver": "awslogs", "options": {
        "awslogs-group": "/mcp-estate-test/booking", "awslogs-region": REGION, "awslogs-stream-prefix": "booking",
        "mode": "non-blocking", "max-buffer-size": "25m"}}


def test_container_definition_is_valid_for_the_ecs_api(plan):
    shape = botocore.session.get_session().get_service_model("ecs").operation_model(
        "RegisterTaskDefinition").input_shape
    report = ParamValidator().validate({"family": "f", "containerDefinitions": [container(plan)]}, shape)
    assert not report.has_errors(), report.generate_report()


def test_task_definition_is_a_fargate_task_in_a_family_unique_to_the_stack_and_server():
    task = plan_of(booking(cpu=1024, memory=2048, architecture="ARM64")).named(f"{NAME}-task").inputs
    assert task["family"] == "mcp-estate-test-booking"
    assert (task["networkMode"], task["requiresCompatibilities"]) == ("awsvpc", ["FARGATE"])
    assert (task["cpu"], task["memory"]) == ("1024", "2048")
    assert task["runtimePlatform"] == {"operatingSystemFamily": "LINUX", "cpuArchitecture": "ARM64"}
    assert task["taskRoleArn"].endswith(":role/booking-identity-task-1a2b3c4")
    assert task["executionRoleArn"].endswith(":role/booking-identity-execution-5d6e7f8")
    assert task["volumes"] == [{"name": "tmp"}]


# -- the network -----------------------------------------------------------------------------------

def test_tasks_accept_traffic_only_from_the_alb_on_the_server_port(plan):
    (ingress,) = rules(plan, "Ingress", task_sg(plan))
    assert ingress.inputs["referencedSecurityGroupId"] == ALB_SG
    assert (ingress.inputs["ipProtocol"], ingress.inputs["fromPort"], ingress.inputs["toPort"]) == ("tcp", 8080, 8080)


def test_tasks_reach_only_the_endpoints_and_their_declared_destinations():
    plan = plan_of(booking(egress=[{"cidr": "203.0.113.0/24", "port": 443, "description": "Partner API"},
                                   {"cidr": "198.51.100.0/24", "port": 8443, "description": "Partner v2"}]))
    egress = {(r.inputs.get("cidrIpv4") or r.inputs.get("cidrIpv6") or r.inputs["prefixListId"],
               r.inputs["ipProtocol"], r.inputs["fromPort"], r.inputs["toPort"])
              for r in rules(plan, "Egress", task_sg(plan))}
    assert egress == {("10.30.0.0/16", "tcp", 443, 443), ("pl-6fa54006", "tcp", 443, 443),
                      ("pl-6da54004", "tcp", 443, 443), ("203.0.113.0/24", "tcp", 443, 443),
                      ("198.51.100.0/24", "tcp", 8443, 8443)}
    assert plan.named(f"{NAME}-to-198-51-100-0-24-8443").inputs["cidrIpv4"] == "198.51.100.0/24"


def test_egress_rules_are_named_by_destination_so_reordering_changes_nothing():
    first = {"cidr": "203.0.113.0/24", "port": 443, "description": "Partner API"}
    second = {"cidr": "198.51.100.0/24", "port": 8443, "description": "Payments API"}

    def egress_rules(entries):
        plan = plan_of(booking(egress=entries))
        return {r.name: r.inputs for r in rules(plan, "Egress", task_sg(plan))}

    forward = egress_rules([first, second])
    assert forward == egress_rules([second, first])
    assert {f"{NAME}-to-203-0-113-0-24-443", f"{NAME}-to-198-51-100-0-24-8443",
            f"{NAME}-to-s3", f"{NAME}-to-dynamodb", f"{NAME}-to-endpoints"} == set(forward)


def test_the_alb_may_reach_the_tasks_on_the_server_port_only(plan):
    (alb_egress,) = rules(plan, "Egress", ALB_SG)
    assert alb_egress.inputs["referencedSecurityGroupId"] == task_sg(plan)
    assert (alb_egress.inputs["fromPort"], alb_egress.inputs["toPort"]) == (8080, 8080)


# -- routing ---------------------------------------------------------------------------------------

def test_listener_rule_routes_the_servers_paths_at_its_priority_and_strips_the_server_prefix():
    plan = plan_of(booking(route_priority=120))
    rule = plan.named(f"{NAME}-route").inputs
    assert rule["listenerArn"] == service_args(booking()).listener_arn
    assert rule["priority"] == 120
    assert rule["conditions"] == [{"pathPattern": {"values": ["/booking/mcp", "/booking/mcp/*", "/booking/healthz"]}}]
    assert rule["transforms"] == [{"type": "url-rewrite",
                                   "urlRewriteConfig": {"rewrite": {"regex": "^/booking(/.*)$", "replace": "$1"}}}]
    assert rule["actions"] == [{"type": "forward", "targetGroupArn": plan.named(f"{NAME}-tg").id}]


def test_target_group_health_checks_ip_targets_on_the_health_path():
    tg = plan_of(booking(health_check_path="/ready")).named(f"{NAME}-tg").inputs
    assert (tg["port"], tg["protocol"], tg["targetType"], tg["vpcId"]) == (8080, "HTTP", "ip", "vpc-0f1e2d3c4b5a69788")
    assert tg["deregistrationDelay"] == 30
    assert tg["healthCheck"] == {"path": "/ready", "matcher": "200", "interval": 15, "timeout": 5,
                                 "healthyThreshold": 2, "unhealthyThreshold": 3}


def test_target_group_name_fits_the_32_character_limit_for_the_longest_names():
    long_name = "loyalty-points-exchanger"   # the longest server name the spec allows (24)
    plan = plan_of(booking(name=long_name), name=f"{long_name}-ap-southeast-2")
    name = plan.named(f"{long_name}-ap-southeast-2-tg").inputs["name"]
    assert len(name) <= 32 and name.startswith("loyalty-points-exchange")


def test_target_group_name_is_unique_per_stack_and_changes_with_the_port_so_replacements_never_collide(plan):
    def tg_name(tg_plan) -> str:
        return tg_plan.named(f"{NAME}-tg").inputs["name"]

    names = {tg_name(plan), tg_name(plan_of(booking(port=9090))),
             tg_name(plan_of(log_group_name="/mcp-estate-staging/booking"))}
    assert len(names) == 3 and all(n.startswith("booking-") for n in names)


# -- the service -----------------------------------------------------------------------------------

def test_service_runs_in_private_subnets_with_no_public_ip_and_rolls_back_failed_deploys(plan):
    service = plan.named(f"{NAME}-service").inputs
    assert service["networkConfiguration"] == {"subnets": ["subnet-0aa11bb22cc33dd44", "subnet-0ee55ff66aa77bb88"],
                                               "securityGroups": [task_sg(plan)], "assignPublicIp": False}
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert (service["deploymentMinimumHealthyPercent"], service["deploymentMaximumPercent"]) == (100, 200)
    assert service["enableExecuteCommand"] is False
    assert (service["launchType"], service["platformVersion"]) == ("FARGATE", "LATEST")


def test_service_registers_its_container_into_the_target_group_after_the_route_exists(plan):
    service = plan.named(f"{NAME}-service")
    assert service.inputs["loadBalancers"] == [{"targetGroupArn": plan.named(f"{NAME}-tg").id,
                                                "containerName": "booking", "containerPort": 8080}]
    assert service.inputs["taskDefinition"] == plan.named(f"{NAME}-task").id
    assert service.inputs["desiredCount"] == 2
    assert plan.named(f"{NAME}-route").urn in service.dependencies


def test_autoscaling_tracks_cpu_and_requests_per_task_within_the_servers_bounds(plan):
    target = plan.named(f"{NAME}-scaling").inputs
    service_name = plan.named(f"{NAME}-service").outputs["name"]
    assert target["resourceId"] == f"service/mcp-estate-test-{REGION}/{service_name}"
    assert (target["minCapacity"], target["maxCapacity"]) == (2, 12)
    assert target["scalableDimension"] == "ecs:service:DesiredCount"
    cpu = plan.named(f"{NAME}-scale-on-cpu").inputs["targetTrackingScalingPolicyConfiguration"]
    assert cpu["targetValue"] == 55
    assert cpu["predefinedMetricSpecification"] == {"predefinedMetricType": "ECSServiceAverageCPUUtilization"}
    requests = plan.named(f"{NAME}-scale-on-requests").inputs["targetTrackingScalingPolicyConfiguration"]
    assert requests["targetValue"] == 400
    assert requests["predefinedMetricSpecification"] == {
        "predefinedMetricType": "ALBRequestCountPerTarget",
        "resourceLabel": f"{ALB_SUFFIX}/{plan.named(f'{NAME}-tg').outputs['arnSuffix']}"}


# -- alarms ----------------------------------------------------------------------------------------

def test_alarms_watch_5xx_latency_and_health_of_the_target_group_and_notify_the_alerts_topic(plan):
    dimensions = {"LoadBalancer": ALB_SUFFIX, "TargetGroup": plan.named(f"{NAME}-tg").outputs["arnSuffix"]}
    alarms = {key: plan.named(f"{NAME}-{key}-alarm").inputs for key in ("5xx", "latency", "unhealthy")}
    for alarm in alarms.values():
        assert (alarm["alarmActions"], alarm["okActions"]) == ([TOPIC], [TOPIC])
        assert (alarm["namespace"], alarm["dimensions"]) == ("AWS/ApplicationELB", dimensions)
        assert (alarm["period"], alarm["treatMissingData"]) == (60, "notBreaching")
    assert {k: alarms["5xx"][k] for k in ("metricName", "statistic", "threshold", "evaluationPeriods",
                                          "datapointsToAlarm")} == {
        "metricName": "HTTPCode_Target_5XX_Count", "statistic": "Sum", "threshold": 5,
        "evaluationPeriods": 5, "datapointsToAlarm": 3}
    assert (alarms["latency"]["metricName"], alarms["latency"]["extendedStatistic"],
            alarms["latency"]["threshold"]) == ("TargetResponseTime", "p99", 1.5)
    assert (alarms["unhealthy"]["metricName"], alarms["unhealthy"]["statistic"], alarms["unhealthy"]["threshold"],
            alarms["unhealthy"]["comparisonOperator"], alarms["unhealthy"]["evaluationPeriods"]) == (
        "UnHealthyHostCount", "Maximum", 1, "GreaterThanOrEqualToThreshold", 3)


# -- every resource --------------------------------------------------------------------------------

def test_every_taggable_resource_carries_the_contract_tags(plan):
    untaggable = {"aws:appautoscaling/policy:Policy", "pulumi:providers:aws"}
    resources = [r for r in plan.resources if r.custom and r.type not in untaggable]
    assert resources and all(r.inputs.get("tags") == TAGS for r in resources), \
        [r.name for r in resources if r.inputs.get("tags") != TAGS]


def test_every_resource_is_a_child_of_the_service_in_its_region(plan):
    component = plan.one("mcp-estate:mcp_service:McpService")
    provider = plan.named(f"aws-{REGION}")
    children = plan.children_of(component)
    assert len(children) == len([r for r in plan.resources if r.custom]) - 1   # all but the provider
    assert all(child.provider.startswith(provider.urn) for child in children)


def test_a_deploy_that_trips_its_5xx_alarm_or_a_named_alarm_rolls_back_by_itself():
    canary = f"mcp-estate-test-booking-{REGION}-probe-alb"
    plan = plan_of(deployment_alarm_names=[canary])
    assert plan.named(f"{NAME}-service").inputs["alarms"] == {
        "alarmNames": [f"mcp-estate-test-booking-{REGION}-5xx", canary], "enable": True, "rollback": True}
    assert plan.named(f"{NAME}-5xx-alarm").inputs["name"] == f"mcp-estate-test-booking-{REGION}-5xx"
