"""What the SREs watch: per-tool metrics and anomaly alarms, change detection, and the dashboards."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pytest
from conftest import ACCOUNT, Plan, policy, violations

from mcp_estate.components.change_detection import ChangeDetection, ChangeDetectionArgs, IamWatch, autoscaling_role_arn
from mcp_estate.components.dashboards import (
    DashboardRegion,
    Dashboards,
    DashboardsArgs,
    DashboardService,
    DashboardWork,
)
from mcp_estate.components.telemetry import ToolTelemetry, ToolTelemetryArgs, filter_pattern
from mcp_estate.offline.fidelity import inspect_resource
from mcp_estate.offline.runner import run_offline

REGION = "eu-west-1"
PREFIX = "mcp-estate-test"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:mcp-estate-test-{REGION}-alerts"
TAGS = {"mcp-estate:stack": "test", "mcp-estate:region": REGION}
DEPLOYER = f"arn:aws:iam::{ACCOUNT}:role/mcp-estate-deploy"
CLUSTER = f"{PREFIX}-{REGION}"
CLUSTER_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}"


def run(program) -> Plan:
    return Plan(run_offline(program, stack="test", config={}, account_id=ACCOUNT, inspect=inspect_resource))


def provider(region: str = REGION) -> aws.Provider:
    return aws.Provider(f"aws-{region}", region=region, allowed_account_ids=[ACCOUNT])


# -- per-tool telemetry ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tools() -> Plan:
    def program():
        ToolTelemetry(f"booking-{REGION}-tools", ToolTelemetryArgs(
            server="booking", region=REGION, name_prefix=PREFIX, log_group_name="/mcp-estate-test/booking",
            alerts_topic_arn=TOPIC, tags=TAGS), opts=pulumi.ResourceOptions(provider=provider()))
    return run(program)


def test_tool_call_lines_of_the_server_become_calls_errors_and_latency_per_tool(tools):
    filters = {r.name.removeprefix(f"booking-{REGION}-tools-"): r.inputs
               for r in tools.of_type("aws:cloudwatch/logMetricFilter:LogMetricFilter")}
    assert sorted(filters) == ["calls", "elicitation", "errors", "sampling", "tool-calls", "tool-errors",
                               "tool-latency"]
    assert all(f["logGroupName"] == "/mcp-estate-test/booking" for f in filters.values())
    assert filters["tool-latency"]["pattern"] == \
        '{ ($.event = "mcp.tool_call") && ($.server = "booking") && ($.latency_ms >= 0) }'
    assert filters["tool-latency"]["metricTransformation"] == {
        "name": "Latency", "namespace": "MCPEstate/Tools", "value": "$.latency_ms", "unit": "Milliseconds",
        "dimensions": {"Server": "$.server", "Tool": "$.tool"}}
    assert filters["tool-errors"]["pattern"] == \
        '{ ($.event = "mcp.tool_call") && ($.server = "booking") && ($.outcome = "error") }'
    assert filters["calls"]["metricTransformation"] == {
        "name": "Calls", "namespace": "MCPEstate/Tools", "value": "1", "unit": "Count",
        "dimensions": {"Server": "$.server"}}


def test_server_initiated_requests_are_summed_per_server(tools):
    filters = {r.name.removeprefix(f"booking-{REGION}-tools-"): r.inputs
               for r in tools.of_type("aws:cloudwatch/logMetricFilter:LogMetricFilter")}
    assert filters["sampling"]["pattern"] == \
        '{ ($.event = "mcp.tool_call") && ($.server = "booking") && ($.sampling > 0) }'
    assert filters["sampling"]["metricTransformation"] == {
        "name": "SamplingRequests", "namespace": "MCPEstate/Tools", "value": "$.sampling", "unit": "Count",
        "dimensions": {"Server": "$.server"}}
    assert filters["elicitation"]["metricTransformation"]["name"] == "ElicitationRequests"
    assert filters["elicitation"]["metricTransformation"]["value"] == "$.elicitation"
    # Nothing of the capabilities for a server declaring none.
    assert not {"cache-hits", "cache-misses", "tasks-finished", "worker-errors"} & set(filters)


def test_a_server_declaring_cache_and_async_counts_cache_outcomes_and_its_workers_tasks():
    def program():
        ToolTelemetry(f"booking-{REGION}-tools", ToolTelemetryArgs(
            server="booking", region=REGION, name_prefix=PREFIX, log_group_name="/mcp-estate-test/booking",
            alerts_topic_arn=TOPIC, tags=TAGS, cache=True, tasks=True),
            opts=pulumi.ResourceOptions(provider=provider()))
    filters = {r.name.removeprefix(f"booking-{REGION}-tools-"): r.inputs
               for r in run(program).of_type("aws:cloudwatch/logMetricFilter:LogMetricFilter")}
    expected = {
        "cache-hits": ('{ ($.event = "mcp.tool_call") && ($.server = "booking") && ($.cache = "hit") }', "CacheHits"),
        "cache-misses": ('{ ($.event = "mcp.tool_call") && ($.server = "booking") && ($.cache = "miss") }',
                         "CacheMisses"),
        "tasks-finished": ('{ ($.event = "mcp.task") && ($.server = "booking") }', "TasksFinished"),
        "worker-errors": ('{ ($.event = "mcp.task") && ($.server = "booking") && ($.status = "failed") }',
                          "WorkerErrors"),
    }
    for key, (pattern, metric) in expected.items():
        assert filters[key]["pattern"] == pattern
        assert filters[key]["metricTransformation"] == {"name": metric, "namespace": "MCPEstate/Tools", "value": "1",
                                                        "unit": "Count", "dimensions": {"Server": "$.server"}}
    assert len(filters) == 11


def test_a_server_cannot_write_into_another_servers_metrics():
    assert '($.server = "loyalty")' in filter_pattern("loyalty")
    assert '($.server = "booking")' not in filter_pattern("loyalty")


def test_call_rate_alarms_outside_its_band_either_way_and_errors_above_it(tools):
    calls = tools.named(f"booking-{REGION}-tools-calls-anomaly").inputs
    assert calls["name"] == f"{PREFIX}-booking-{REGION}-tool-calls-anomaly"
    assert (calls["comparisonOperator"], calls["thresholdMetricId"], calls["evaluationPeriods"]) == (
        "LessThanLowerOrGreaterThanUpperThreshold", "band", 3)
    assert calls["metricQueries"] == [
        {"id": "m", "returnData": True, "metric": {"namespace": "MCPEstate/Tools", "metricName": "Calls",
                                                  "period": 300, "stat": "Sum", "dimensions": {"Server": "booking"}}},
        {"id": "band", "expression": "ANOMALY_DETECTION_BAND(m, 2)", "label": "Calls (expected)", "returnData": True}]
    assert (calls["alarmActions"], calls["okActions"]) == ([TOPIC], [TOPIC])
    errors = tools.named(f"booking-{REGION}-tools-errors-anomaly").inputs
    assert errors["comparisonOperator"] == "GreaterThanUpperThreshold"
    assert errors["metricQueries"][0]["metric"]["metricName"] == "Errors"


# -- change detection ---------------------------------------------------------------------------------

ROLES = ["mcp-estate-test-loyalty-eu-task", "mcp-estate-test-booking-eu-task"]


def changes_of(region: str = REGION, deployer: str | None = DEPLOYER, home: bool = True) -> Plan:
    def program():
        # One provider per region: the engine refuses a second registration of one URN.
        providers = {r: provider(r) for r in {region} | ({"us-east-1"} if home else set())}
        iam = IamWatch(role_names=ROLES, provider=providers["us-east-1"], tags={"mcp-estate:stack": "test"}) \
            if home else None
        ChangeDetection(f"changes-{region}", ChangeDetectionArgs(
            region=region, account_id=ACCOUNT, name_prefix=PREFIX, cluster_name=CLUSTER, cluster_arn=CLUSTER_ARN,
            task_families=[f"{PREFIX}-loyalty", f"{PREFIX}-booking"], repositories=["mcp/loyalty", "mcp/booking"],
            deployment_role_arn=deployer, alerts_topic_arn=TOPIC, tags=TAGS, iam=iam),
            opts=pulumi.ResourceOptions(provider=providers[region]))
    return run(program)


@pytest.fixture(scope="module")
def changes() -> Plan:
    return changes_of()


def pattern(plan: Plan, name: str) -> dict:
    return json.loads(plan.named(name).inputs["eventPattern"])


def test_new_task_definitions_of_the_estate_are_reported_unless_the_deployment_role_made_them(changes):
    assert pattern(changes, f"changes-{REGION}-task-definitions") == {
        "source": ["aws.ecs"], "detail-type": ["AWS API Call via CloudTrail"], "detail": {
            "eventSource": ["ecs.amazonaws.com"], "eventName": ["RegisterTaskDefinition"],
            "requestParameters": {"family": [f"{PREFIX}-booking", f"{PREFIX}-loyalty"]},
            "userIdentity": {"$or": [
                {"type": [{"anything-but": "AssumedRole"}]},
                {"sessionContext": {"sessionIssuer": {"arn": [{"anything-but": [DEPLOYER]}]}}}]}}}


def test_service_changes_in_the_cluster_ignore_autoscaling_and_the_deployment_role(changes):
    detail = pattern(changes, f"changes-{REGION}-services")["detail"]
    assert detail["eventName"] == ["CreateService", "DeleteService", "UpdateService"]
    assert detail["requestParameters"] == {"cluster": [CLUSTER, CLUSTER_ARN]}
    assert detail["userIdentity"]["$or"][1]["sessionContext"]["sessionIssuer"]["arn"] == [
        {"anything-but": sorted([DEPLOYER, autoscaling_role_arn(ACCOUNT)])}]


def test_without_a_deployment_role_every_caller_is_reported():
    detail = pattern(changes_of(deployer=None), f"changes-{REGION}-task-definitions")["detail"]
    assert "userIdentity" not in detail


def test_pushes_to_the_estates_repositories_are_reported_with_repository_and_digest(changes):
    assert pattern(changes, f"changes-{REGION}-image-pushes") == {
        "source": ["aws.ecr"], "detail-type": ["ECR Image Action"], "detail": {
            "action-type": ["PUSH"], "result": ["SUCCESS"], "repository-name": ["mcp/booking", "mcp/loyalty"]}}
    transformer = changes.named(f"changes-{REGION}-image-pushes-to-alerts").inputs["inputTransformer"]
    assert transformer["inputPaths"]["digest"] == "$.detail.image-digest"
    assert json.loads(transformer["inputTemplate"]).startswith("image <repository>@<digest>")


def test_role_changes_are_reported_in_the_home_region_from_a_rule_forwarding_them_from_us_east_1(changes):
    detail = pattern(changes, f"changes-{REGION}-iam-changes")["detail"]
    assert (detail["eventSource"], detail["requestParameters"]) == (
        ["iam.amazonaws.com"], {"roleName": sorted(ROLES)})
    assert {"PutRolePolicy", "AttachRolePolicy", "UpdateAssumeRolePolicy"} <= set(detail["eventName"])
    # IAM's events reach EventBridge only in us-east-1: the same pattern there, to the home region's bus.
    forward = changes.named(f"changes-{REGION}-iam-forward")
    assert forward.provider.rsplit("::", 2)[1] == "aws-us-east-1"
    assert json.loads(forward.inputs["eventPattern"]) == pattern(changes, f"changes-{REGION}-iam-changes")
    assert forward.inputs["name"] == f"{PREFIX}-us-east-1-iam-changes-forward"
    target = changes.named(f"changes-{REGION}-iam-forward-to-home").inputs
    assert target["arn"] == f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"
    role = changes.named(f"changes-{REGION}-iam-forward-role")
    assert target["roleArn"] == role.outputs["arn"]
    assert policy(role, "assumeRolePolicy")["Statement"] == [{
        "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}, "ArnEquals": {
            "aws:SourceArn": f"arn:aws:events:us-east-1:{ACCOUNT}:rule/{PREFIX}-us-east-1-iam-changes-forward"}}}]
    assert policy(changes.named(f"changes-{REGION}-iam-forward-policy"), "policy")["Statement"] == [{
        "Sid": "PutOnHomeBus", "Effect": "Allow", "Action": "events:PutEvents",
        "Resource": f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/default"}]
    # The us-east-1 side holds no data and names no group or region of the estate.
    us_east_1 = [r for r in changes.resources if "iam-forward" in r.name]
    assert sorted(r.type for r in us_east_1) == ["aws:cloudwatch/eventRule:EventRule",
                                                 "aws:cloudwatch/eventTarget:EventTarget", "aws:iam/role:Role",
                                                 "aws:iam/rolePolicy:RolePolicy"]
    assert all(r.inputs.get("tags", {}) in ({}, {"mcp-estate:stack": "test"}) for r in us_east_1)


def test_a_home_region_of_us_east_1_needs_no_forwarding():
    east = changes_of("us-east-1")
    assert pattern(east, "changes-us-east-1-iam-changes")["detail"]["eventSource"] == ["iam.amazonaws.com"]
    assert not any("iam-forward" in r.name for r in east.resources)


def test_other_regions_watch_no_roles():
    assert not any("iam" in r.name for r in changes_of(home=False).resources)


def test_only_the_accounts_alarms_and_these_rules_may_publish_to_the_alerts_topic(changes):
    statements = {s["Sid"]: s for s in policy(changes.named(f"changes-{REGION}-alerts-policy"), "policy")["Statement"]}
    rules = sorted(r.outputs["arn"] for r in changes.of_type("aws:cloudwatch/eventRule:EventRule")
                   if not r.name.endswith("iam-forward"))
    assert statements["ChangeDetectionRulesPublish"]["Principal"] == {"Service": "events.amazonaws.com"}
    assert sorted(statements["ChangeDetectionRulesPublish"]["Condition"]["ArnEquals"]["aws:SourceArn"]) == rules
    assert statements["AlarmsOfThisAccountPublish"]["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:*"}}
    assert statements["AccountManagesTopic"]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert all(t.inputs["arn"] == TOPIC for t in changes.of_type("aws:cloudwatch/eventTarget:EventTarget")
               if not t.name.endswith("iam-forward-to-home"))
    assert violations(changes) == []


# -- dashboards ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dashboards() -> Plan:
    def program():
        providers = {r: provider(r) for r in ("eu-west-1", "us-east-1")}
        regions = [DashboardRegion(name=r, cluster_name=f"{PREFIX}-{r}", alb_arn_suffix=f"app/alb-{r}/1", services=[
            DashboardService("booking", f"booking-{r}-svc", f"targetgroup/booking-{r}/2")]) for r in sorted(providers)]
        Dashboards("dashboards", DashboardsArgs(name_prefix=PREFIX, home_region="us-east-1", providers=providers,
                                                regions=regions))
    return run(program)


def widgets(plan: Plan, name: str) -> dict[str, dict]:
    body = json.loads(plan.named(name).inputs["dashboardBody"])
    return {w["properties"]["title"]: w["properties"] for w in body["widgets"]}


def test_a_region_dashboard_shows_the_alb_ecs_canary_and_tools_of_its_region(dashboards):
    assert dashboards.named("dashboards-eu-west-1").inputs["dashboardName"] == f"{PREFIX}-eu-west-1"
    shown = widgets(dashboards, "dashboards-eu-west-1")
    assert sorted(shown) == sorted([
        "ALB 5xx per minute", "Latency p99 (s)", "Healthy tasks", "ECS CPU %", "ECS memory %",
        "Canary success (1 = ok)", "Canary probe latency (ms)", "Tool calls per 5 minutes",
        "Tool errors per 5 minutes"])
    assert all(w["region"] == "eu-west-1" for w in shown.values())
    assert shown["ALB 5xx per minute"]["metrics"] == [
        ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", "app/alb-eu-west-1/1",
         "TargetGroup", "targetgroup/booking-eu-west-1/2", {"label": "booking"}]]
    assert shown["ECS CPU %"]["metrics"] == [["AWS/ECS", "CPUUtilization", "ClusterName", f"{PREFIX}-eu-west-1",
                                             "ServiceName", "booking-eu-west-1-svc", {"label": "booking"}]]
    assert [m[7] for m in shown["Canary success (1 = ok)"]["metrics"]] == ["alb", "edge"]
    [[search]] = shown["Tool calls per 5 minutes"]["metrics"]
    assert search["expression"] == "SEARCH('{MCPEstate/Tools,Server,Tool} MetricName=\"Calls\"', 'Sum', 300)"


def test_the_global_dashboard_puts_every_region_side_by_side(dashboards):
    assert dashboards.named("dashboards-global").inputs["dashboardName"] == f"{PREFIX}-global"
    shown = widgets(dashboards, "dashboards-global")
    regions = [m[-1]["region"] for m in shown["Canary success through the ALB, every region"]["metrics"]]
    assert regions == ["eu-west-1", "us-east-1"]
    assert {"Tool calls and errors per 5 minutes, eu-west-1",
            "Tool calls and errors per 5 minutes, us-east-1"} <= set(shown)


@pytest.fixture(scope="module")
def capability_dashboards() -> Plan:
    """booking declares cache and async in eu-west-1; loyalty there and us-east-1's servers declare neither."""
    def program():
        providers = {r: provider(r) for r in ("eu-west-1", "us-east-1")}
        work = DashboardWork("mcp-estate-test-booking-tasks", "mcp-estate-test-booking-tasks-dlq", "booking-worker")
        eu = DashboardRegion(name="eu-west-1", cluster_name=f"{PREFIX}-eu-west-1", alb_arn_suffix="app/alb-eu/1",
                             cache_name=f"{PREFIX}-eu-west-1", services=[
                                 DashboardService("booking", "booking-svc", "targetgroup/b/2", work=work, cache=True),
                                 DashboardService("loyalty", "loyalty-svc", "targetgroup/l/3")])
        us = DashboardRegion(name="us-east-1", cluster_name=f"{PREFIX}-us-east-1", alb_arn_suffix="app/alb-us/1",
                             services=[DashboardService("loyalty", "loyalty-svc", "targetgroup/l/4")])
        Dashboards("dashboards", DashboardsArgs(name_prefix=PREFIX, home_region="us-east-1", providers=providers,
                                                regions=[eu, us]))
    return run(program)


CAPABILITY_WIDGETS = ["Task queue backlog (visible messages)", "Age of the oldest task (s)",
                      "Dead-lettered tasks (messages in the DLQ)", "Worker tasks running",
                      "Worker failed tasks per minute", "Cache hit rate (%)"]


def test_a_region_whose_server_declares_cache_and_async_graphs_its_queue_worker_and_cache(capability_dashboards):
    shown = widgets(capability_dashboards, "dashboards-eu-west-1")
    assert list(shown)[-6:] == CAPABILITY_WIDGETS and len(shown) == 15
    booking = {"label": "booking", "region": "eu-west-1"}
    assert shown["Task queue backlog (visible messages)"]["metrics"] == [
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "mcp-estate-test-booking-tasks", booking]]
    assert shown["Age of the oldest task (s)"]["metrics"] == [
        ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", "mcp-estate-test-booking-tasks", booking]]
    assert shown["Dead-lettered tasks (messages in the DLQ)"]["metrics"] == [
        ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "mcp-estate-test-booking-tasks-dlq", booking]]
    assert shown["Worker tasks running"]["metrics"] == [
        ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", f"{PREFIX}-eu-west-1",
         "ServiceName", "booking-worker", {"label": "booking"}]]
    assert shown["Worker failed tasks per minute"]["metrics"] == [
        ["MCPEstate/Tools", "WorkerErrors", "Server", "booking", {"label": "booking"}]]
    assert shown["Worker failed tasks per minute"]["stat"] == "Sum"
    assert shown["Cache hit rate (%)"]["metrics"] == [
        ["AWS/ElastiCache", "CacheHitRate", "clusterId", f"{PREFIX}-eu-west-1",
         {"label": f"cache {PREFIX}-eu-west-1", "stat": "Average"}],
        ["MCPEstate/Tools", "CacheHits", "Server", "booking", {"id": "hits0", "visible": False}],
        ["MCPEstate/Tools", "CacheMisses", "Server", "booking", {"id": "misses0", "visible": False}],
        [{"expression": "100 * hits0 / (hits0 + misses0)", "label": "booking tool calls", "id": "rate0"}]]


def test_a_region_without_declaring_servers_shows_no_capability_widget(capability_dashboards):
    shown = widgets(capability_dashboards, "dashboards-us-east-1")
    assert not set(CAPABILITY_WIDGETS) & set(shown) and len(shown) == 9
