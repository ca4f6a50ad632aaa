"""Cache and asynchronous work (README: Fast answers, later answers): the spec's rules, what each
region gets, the grants on both sides, and that nothing leaves the residency group."""

from __future__ import annotations

import copy
import json

import pytest
from conftest import ACCOUNT, Plan, policy, violations
from test_estate import SMALL, plan_of

from mcp_estate.contract.problems import SpecError
from mcp_estate.contract.validate import parse_spec

PREFIX = "mcp-estate-test"
REGIONS = ("eu-central-1", "eu-west-1", "us-east-1")
EU = ("eu-central-1", "eu-west-1")
CONNECT = {"actions": ["elasticache:Connect"], "resources": ["cache"]}


def with_capabilities(**booking) -> dict:
    raw = copy.deepcopy(SMALL)
    server = raw["servers"][0]
    server["cache"] = {}
    server["permissions"].append(copy.deepcopy(CONNECT))
    server["async"] = {"command": ["python", "-m", "booking.worker"]}
    server.update(booking)
    return raw


def problems(raw: dict) -> list[str]:
    with pytest.raises(SpecError) as error:
        parse_spec(raw)
    return [str(p) for p in error.value.problems]


@pytest.fixture(scope="module")
def both() -> Plan:
    return plan_of(with_capabilities())


# -- spec ---------------------------------------------------------------------------------------

def test_worker_sizes_are_fargate_sizes():
    raw = with_capabilities()
    raw["servers"][0]["async"] |= {"cpu": 300, "memory": 512}
    assert any("servers[booking].async.cpu: 300 is not a Fargate CPU size" in p for p in problems(raw))
    raw["servers"][0]["async"] |= {"cpu": 256, "memory": 4096}
    assert any("servers[booking].async.memory: Fargate does not offer 4096 MiB" in p for p in problems(raw))


def test_worker_scaling_bounds_are_ordered_and_never_zero():
    raw = with_capabilities()
    raw["servers"][0]["async"]["scaling"] = {"min": 5, "max": 2}
    assert any("async.scaling: min 5 is above max 2" in p for p in problems(raw))
    raw["servers"][0]["async"]["scaling"] = {"min": 0}
    assert any("async.scaling.min" in p for p in problems(raw))


def test_queue_settings_that_lose_messages_are_refused():
    raw = with_capabilities()
    raw["servers"][0]["async"] |= {"retention_days": 14, "visibility_timeout_seconds": 10}
    found = problems(raw)
    assert any("async.retention_days: 14 days leaves a dead letter no time" in p for p in found)
    assert any("async.visibility_timeout_seconds: 10 s is shorter than the 30 s" in p for p in found)
    raw["servers"][0]["async"] |= {"retention_days": 1, "visibility_timeout_seconds": 60,
                                   "max_age_alarm_minutes": 1440}
    assert any("async.max_age_alarm_minutes: 1440 minutes is not below" in p for p in problems(raw))


def test_cache_grant_and_declaration_go_together():
    raw = with_capabilities()
    raw["servers"][0]["permissions"].pop()
    assert any("declares `cache` but no grant of elasticache:Connect" in p for p in problems(raw))
    raw = copy.deepcopy(SMALL)
    raw["servers"][1]["permissions"] = [copy.deepcopy(CONNECT)]
    assert any("servers[loyalty].permissions[0].resources: 'cache' names the region's cache" in p
               for p in problems(raw))
    raw = with_capabilities()
    raw["servers"][0]["permissions"][-1]["actions"].append("elasticache:DeleteServerlessCache")
    assert any("elasticache:DeleteServerlessCache on 'cache'" in p for p in problems(raw))


def test_the_caches_shares_add_up_within_the_service_limits():
    raw = with_capabilities(cache={"max_data_gb": 3000})
    raw["servers"][1] |= {"cache": {"max_data_gb": 2001}, "permissions": [copy.deepcopy(CONNECT)]}
    assert any("add up to 5001 GB in each region" in p for p in problems(raw))


@pytest.mark.parametrize("name", ["MCP_CACHE_ENDPOINT", "MCP_CACHE_USER", "MCP_CACHE_NAME", "MCP_TASK_QUEUE_URL"])
def test_capability_environment_is_the_estates(name):
    raw = with_capabilities(environment={name: "x"})
    assert any(f"'{name}' is set by the estate" in p for p in problems(raw))


# -- cache --------------------------------------------------------------------------------------

def test_one_private_encrypted_iam_cache_per_region(both):
    caches = both.of_type("aws:elasticache/serverlessCache:ServerlessCache")
    assert sorted(c.inputs["name"] for c in caches) == [f"{PREFIX}-{r}" for r in REGIONS]
    for cache in caches:
        region = cache.inputs["tags"]["mcp-estate:region"]
        assert cache.inputs["engine"] == "valkey" and cache.inputs["majorEngineVersion"] == "8"
        key = both.named(f"mcp-estate-estate-wide-{both_group(region)}-keys-{region}-key")
        assert cache.inputs["kmsKeyId"] == key.outputs["arn"]
        assert cache.inputs["userGroupId"] == f"{PREFIX}-cache-users"
        assert cache.inputs["cacheUsageLimits"] == {"dataStorage": {"maximum": 5, "unit": "GB"},
                                                    "ecpuPerSeconds": [{"maximum": 5000}]}
        private = {s.outputs["id"] for s in both.of_type("aws:ec2/subnet:Subnet")
                   if s.name.startswith(f"mcp-estate-{region}-net-private-")}
        assert len(private) == 2 and set(cache.inputs["subnetIds"]) == private
        assert cache.inputs["securityGroupIds"] == [both.named(f"mcp-estate-{region}-cache-sg").outputs["id"]]


AMERICAS_GRANTS = "mcp-estate-estate-wide-booking-americas-identity-task-grants"


def both_group(region: str) -> str:
    return "eu" if region in EU else "americas"


def test_cache_users_authenticate_with_iam_only(both):
    users = both.of_type("aws:elasticache/user:User")
    assert len(users) == 3
    for user in users:
        assert user.inputs["authenticationMode"] == {"type": "iam"}
        assert user.inputs["userId"] == user.inputs["userName"] == f"{PREFIX}-booking"
        assert user.inputs["engine"] == "valkey"
        # Its own keys only: another server's user cannot read booking's cached answers.
        assert user.inputs["accessString"] == "on ~booking:* +@all -@admin -@dangerous"
        assert "passwords" not in user.inputs
    for group in both.of_type("aws:elasticache/userGroup:UserGroup"):
        assert group.inputs["userIds"] == [f"{PREFIX}-booking"] and group.inputs["engine"] == "valkey"


def test_cache_admits_only_the_declaring_servers_tasks(both):
    for region in REGIONS:
        group = both.named(f"mcp-estate-{region}-cache-sg")
        booking_sg = both.named(f"mcp-estate-{region}-booking-task-sg").outputs["id"]
        ingress = [r for r in both.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
                   if r.inputs["securityGroupId"] == group.outputs["id"]]
        assert sorted((r.inputs["fromPort"], r.inputs["referencedSecurityGroupId"]) for r in ingress) == \
            [(6379, booking_sg), (6380, booking_sg)]
        loyalty_sg = both.named(f"mcp-estate-{region}-loyalty-task-sg").outputs["id"]
        egress = both.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
        assert not [r for r in egress if r.inputs["securityGroupId"] == loyalty_sg
                    and r.inputs.get("referencedSecurityGroupId") == group.outputs["id"]]


def test_cache_grant_is_exactly_connect_on_the_cache_and_own_user(both):
    for group, regions in (("eu", EU), ("americas", ("us-east-1",))):
        grants = both.named(f"mcp-estate-estate-wide-booking-{group}-identity-task-grants")
        statements = policy(grants, "policy")["Statement"]
        connect = [s for s in statements if s["Action"] == ["elasticache:Connect"]]
        assert connect == [{"Effect": "Allow", "Action": ["elasticache:Connect"], "Resource": sorted(
            [f"arn:aws:elasticache:{r}:{ACCOUNT}:serverlesscache:{PREFIX}-{r}" for r in regions]
            + [f"arn:aws:elasticache:{r}:{ACCOUNT}:user:{PREFIX}-booking" for r in regions])}]


def test_server_learns_the_cache_and_queue_from_its_environment(both):
    container = json.loads(both.named("mcp-estate-eu-west-1-booking-task").inputs["containerDefinitions"])[0]
    env = {e["name"]: e["value"] for e in container["environment"]}
    cache = both.named("mcp-estate-eu-west-1-cache-cache")
    assert env["MCP_CACHE_ENDPOINT"] == cache.outputs["endpoints"][0]["address"]
    assert env["MCP_CACHE_NAME"] == f"{PREFIX}-eu-west-1" and env["MCP_CACHE_USER"] == f"{PREFIX}-booking"
    assert env["MCP_TASK_QUEUE_URL"] == f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}/{PREFIX}-booking-tasks"
    loyalty = json.loads(both.named("mcp-estate-eu-west-1-loyalty-task").inputs["containerDefinitions"])[0]
    assert not [e for e in loyalty["environment"] if e["name"].startswith(("MCP_CACHE", "MCP_TASK"))]


# -- async --------------------------------------------------------------------------------------

def test_task_queue_is_cmk_encrypted_and_redrives_to_its_dlq(both):
    for region in REGIONS:
        queue = both.named(f"mcp-estate-{region}-booking-async-queue")
        dlq = both.named(f"mcp-estate-{region}-booking-async-dlq")
        key = both.named(f"mcp-estate-estate-wide-{both_group(region)}-keys-{region}-key").outputs["arn"]
        assert queue.inputs["kmsMasterKeyId"] == dlq.inputs["kmsMasterKeyId"] == key
        dlq_arn = f"arn:aws:sqs:{region}:{ACCOUNT}:{PREFIX}-booking-tasks-dlq"
        assert json.loads(queue.inputs["redrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}
        source = f"arn:aws:sqs:{region}:{ACCOUNT}:{PREFIX}-booking-tasks"
        assert json.loads(dlq.inputs["redriveAllowPolicy"]) == {"redrivePermission": "byQueue",
                                                                "sourceQueueArns": [source]}
        assert queue.inputs["messageRetentionSeconds"] == 4 * 86400 < dlq.inputs["messageRetentionSeconds"]
        assert queue.inputs["visibilityTimeoutSeconds"] == 300


def test_queue_policy_refuses_other_accounts_and_other_roles(both):
    group = "eu"
    statements = policy(both.named("mcp-estate-eu-west-1-booking-async-queue"), "policy")["Statement"]
    by_sid = {s["Sid"]: s for s in statements}
    assert by_sid["EstateAccountOnly"]["Condition"] == {"StringNotEquals": {"aws:PrincipalAccount": ACCOUNT}}
    assert by_sid["TlsOnly"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # Only the server's task role writes messages (it validated the traveller's token); only the worker reads.
    assert by_sid["ServerSendsOnly"]["Action"] == ["sqs:SendMessage"]
    assert by_sid["ServerSendsOnly"]["Condition"] == {"StringNotEquals": {
        "aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-booking-{group}-task"}}
    assert by_sid["WorkerConsumesOnly"]["Action"] == [
        "sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage"]
    assert by_sid["WorkerConsumesOnly"]["Condition"] == {"StringNotEquals": {
        "aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-booking-{group}-worker"}}
    assert all(s["Effect"] == "Deny" and s["Principal"] == "*" for s in statements) and len(statements) == 4


def test_worker_has_no_ingress_no_public_ip_and_no_load_balancer(both):
    service = both.named("mcp-estate-eu-west-1-booking-async-service")
    assert service.inputs["name"] == "booking-worker"
    assert service.inputs["networkConfiguration"]["assignPublicIp"] is False
    assert "loadBalancers" not in service.inputs
    sg = both.named("mcp-estate-eu-west-1-booking-async-sg").outputs["id"]
    assert not [r for r in both.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
                if r.inputs["securityGroupId"] == sg]
    container = json.loads(both.named("mcp-estate-eu-west-1-booking-async-task").inputs["containerDefinitions"])[0]
    assert container["command"] == ["python", "-m", "booking.worker"]
    assert "portMappings" not in container and "healthCheck" not in container
    assert container["readonlyRootFilesystem"] is True and container["user"]
    server = json.loads(both.named("mcp-estate-eu-west-1-booking-task").inputs["containerDefinitions"])[0]
    assert container["image"] == server["image"]
    # The server's environment, less what only a request path or the cache needs (the worker may not connect).
    names = lambda c: {v["name"] for v in c["environment"]}  # noqa: E731
    assert names(server) - names(container) == {"PORT", "MCP_CACHE_ENDPOINT", "MCP_CACHE_NAME", "MCP_CACHE_USER"}
    assert {"MCP_TASK_QUEUE_URL", "MCP_STATE_TABLE"} <= names(container)


def test_worker_scales_on_backlog_per_task(both):
    target = both.named("mcp-estate-eu-west-1-booking-async-scaling")
    assert (target.inputs["minCapacity"], target.inputs["maxCapacity"]) == (1, 4)
    scaling = both.named("mcp-estate-eu-west-1-booking-async-scale-on-backlog").inputs
    config = scaling["targetTrackingScalingPolicyConfiguration"]
    assert config["targetValue"] == 100
    metrics = config["customizedMetricSpecification"]["metrics"]
    assert [m["id"] for m in metrics] == ["m1", "m2", "e1"] and metrics[2]["expression"] == "m1 / m2"
    queue = {"name": "QueueName", "value": f"{PREFIX}-booking-tasks"}
    assert metrics[0]["metricStat"]["metric"]["dimensions"] == [queue]
    assert metrics[1]["metricStat"]["metric"]["metricName"] == "RunningTaskCount"


def test_alarms_on_oldest_task_and_dead_letters(both):
    oldest, dead = both.named("mcp-estate-eu-west-1-booking-async-oldest-task-alarm"), both.named(
        "mcp-estate-eu-west-1-booking-async-dead-letters-alarm")
    topic = both.named("mcp-estate-eu-west-1-front-alerts").outputs["arn"]
    assert (oldest.inputs["metricName"], oldest.inputs["threshold"]) == ("ApproximateAgeOfOldestMessage", 900)
    assert (dead.inputs["metricName"], dead.inputs["threshold"]) == ("ApproximateNumberOfMessagesVisible", 0)
    assert dead.inputs["dimensions"] == {"QueueName": f"{PREFIX}-booking-tasks-dlq"}
    assert oldest.inputs["alarmActions"] == dead.inputs["alarmActions"] == [topic]
    assert oldest.inputs["name"] == f"{PREFIX}-booking-eu-west-1-oldest-task"


def test_a_worker_deployment_rolls_back_on_new_dead_letters_and_failed_tasks(both):
    service = both.named("mcp-estate-eu-west-1-booking-async-service").inputs
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert service["alarms"] == {"enable": True, "rollback": True, "alarmNames": [
        f"{PREFIX}-booking-eu-west-1-new-dead-letters", f"{PREFIX}-booking-eu-west-1-worker-errors"]}
    new = both.named("mcp-estate-eu-west-1-booking-async-new-dead-letters-alarm").inputs
    assert new["name"] == f"{PREFIX}-booking-eu-west-1-new-dead-letters"
    assert new["metricQueries"] == [
        {"id": "m", "returnData": False, "metric": {
            "namespace": "AWS/SQS", "metricName": "ApproximateNumberOfMessagesVisible", "period": 60,
            "stat": "Maximum", "dimensions": {"QueueName": f"{PREFIX}-booking-tasks-dlq"}}},
        {"id": "added", "expression": "DIFF(m)", "label": "Messages dead-lettered", "returnData": True}]
    assert (new["comparisonOperator"], new["threshold"]) == ("GreaterThanThreshold", 0)
    # DIFF() has no value for the first point of its window: one period alone would never alarm.
    assert (new["evaluationPeriods"], new["datapointsToAlarm"]) == (2, 1)
    # The alarms exist before the service that names them.
    alarm_urns = {both.named(f"mcp-estate-eu-west-1-booking-async-{key}-alarm").urn
                  for key in ("new-dead-letters", "worker-errors")}
    assert alarm_urns <= set(both.named("mcp-estate-eu-west-1-booking-async-service").dependencies)
    errors = both.named("mcp-estate-eu-west-1-booking-async-worker-errors-alarm").inputs
    assert errors["name"] == f"{PREFIX}-booking-eu-west-1-worker-errors"
    assert (errors["namespace"], errors["metricName"], errors["dimensions"]) == (
        "MCPEstate/Tools", "WorkerErrors", {"Server": "booking"})
    assert (errors["statistic"], errors["period"], errors["threshold"]) == ("Sum", 60, 5)
    assert (errors["evaluationPeriods"], errors["datapointsToAlarm"]) == (5, 3)
    # The worker's failed tasks are counted from its lines in the server's log group.
    worker_errors = both.named("mcp-estate-eu-west-1-booking-tools-worker-errors").inputs
    assert worker_errors["pattern"] == '{ ($.event = "mcp.task") && ($.server = "booking") && ($.status = "failed") }'
    assert not [r for r in both.resources if r.name == "mcp-estate-eu-west-1-loyalty-tools-worker-errors"]


def test_the_worker_services_pass_the_rollback_control(both):
    assert not [v for v in violations(both, policy="services-roll-back-on-deployment-alarms")
                if "worker" in v.message]
    unrolled = copy.deepcopy(both)
    service = unrolled.named("mcp-estate-eu-west-1-booking-async-service")
    for props in (service.inputs, service.outputs):
        props["alarms"] = {**props["alarms"], "rollback": False}
    [message] = [v.message for v in violations(unrolled, policy="services-roll-back-on-deployment-alarms")]
    assert message == ("ECS service booking-worker does not roll back on deployment alarms (rollback is not true): "
                       "set alarms={'alarm_names': [...], 'enable': True, 'rollback': True}")


def worker_statements(plan: Plan, group: str = "eu") -> list[dict]:
    return policy(plan.named(f"mcp-estate-estate-wide-booking-{group}-worker-identity-policy"), "policy")["Statement"]


def test_worker_role_consumes_its_queue_only(both):
    statements = worker_statements(both)
    queues = [f"arn:aws:sqs:{r}:{ACCOUNT}:{PREFIX}-booking-tasks" for r in EU]
    assert statements[0] == {"Effect": "Allow", "Resource": queues, "Action": [
        "sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage"]}
    assert statements[1]["Action"] == ["kms:Decrypt"]
    assert statements[1]["Condition"] == {"StringEquals": {"kms:ViaService": [
        "sqs.eu-central-1.amazonaws.com", "sqs.eu-west-1.amazonaws.com"]}}


def test_with_auth_on_the_worker_keeps_task_records_as_the_messages_traveller(both):
    # No table grant of its own: it becomes the server's data role of its group, with the traveller tag.
    statements = worker_statements(both)
    assert statements[2:] == [{"Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"],
                               "Resource": f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-booking-eu-data"}]
    assert not [s for s in statements if any(a.startswith(("dynamodb:", "kms:GenerateDataKey"))
                                             for a in s["Action"])]
    trust = policy(both.named("mcp-estate-estate-wide-booking-eu-data-role"), "assumeRolePolicy")["Statement"]
    assert [s["Principal"] for s in trust] == [{"AWS": [f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-booking-eu-task",
                                                        f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-booking-eu-worker"]}]
    assert trust[0]["Condition"] == {"StringLike": {"aws:RequestTag/mcp-estate-traveller": "?*"},
                                     "ForAllValues:StringEquals": {"aws:TagKeys": ["mcp-estate-traveller"]}}
    # The worker learns the role and the tag as the server does (its container is the server's).
    worker = json.loads(both.named("mcp-estate-eu-west-1-booking-async-task").inputs["containerDefinitions"])[0]
    env = {e["name"]: e["value"] for e in worker["environment"]}
    assert env["MCP_DATA_ROLE_ARN"] == f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-booking-eu-data"
    assert env["MCP_TRAVELLER_TAG"] == "mcp-estate-traveller"


def test_a_server_without_async_keeps_a_data_role_trusting_its_task_role_alone():
    raw = with_capabilities()
    del raw["servers"][0]["async"]
    trust = policy(plan_of(raw).named("mcp-estate-estate-wide-booking-eu-data-role"), "assumeRolePolicy")["Statement"]
    assert [s["Principal"] for s in trust] == [{"AWS": f"arn:aws:iam::{ACCOUNT}:role/{PREFIX}-booking-eu-task"}]


def test_with_auth_off_the_worker_writes_its_servers_task_records_only():
    raw = with_capabilities() | {"environment": "dev", "auth": {"disabled": True}}
    statements = worker_statements(plan_of(raw))
    assert statements[2]["Resource"] == [f"arn:aws:dynamodb:{r}:{ACCOUNT}:table/{PREFIX}-eu-state" for r in EU]
    # The worker serves every traveller of its server, and only its server's partition keys.
    assert statements[2]["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["booking#*"]}}
    assert statements[2]["Action"] == ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
    assert statements[3]["Condition"]["StringEquals"]["kms:ViaService"] == [
        "dynamodb.eu-central-1.amazonaws.com", "dynamodb.eu-west-1.amazonaws.com"]
    assert len(statements) == 4 and not [s for s in statements if "sts:AssumeRole" in s["Action"]]


def test_server_may_send_to_its_own_queue_only(both):
    statements = policy(both.named(AMERICAS_GRANTS), "policy")["Statement"]
    sends = [s for s in statements if "sqs:SendMessage" in s["Action"]]
    assert sends == [{"Effect": "Allow", "Action": ["sqs:SendMessage"],
                      "Resource": [f"arn:aws:sqs:us-east-1:{ACCOUNT}:{PREFIX}-booking-tasks"]}]
    kms = [s for s in statements if s["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]]
    assert kms[0]["Condition"] == {"StringEquals": {"kms:ViaService": ["sqs.us-east-1.amazonaws.com"]}}
    loyalty = [r for r in both.resources if r.name == "mcp-estate-estate-wide-loyalty-americas-identity-task-grants"]
    assert not loyalty   # loyalty declares nothing: no policy at all


def test_with_auth_on_the_server_keeps_task_records_as_the_caller_only(both):
    # Its task role touches no table: task records are per-user items, reached through the data role.
    statements = policy(both.named(AMERICAS_GRANTS), "policy")["Statement"]
    assert not [s for s in statements if any(a.startswith("dynamodb:") for a in s["Action"])]
    data = policy(both.named("mcp-estate-estate-wide-booking-americas-data-items"), "policy")["Statement"][0]
    assert {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"} <= set(data["Action"])
    assert data["Condition"]["ForAllValues:StringEquals"] == {
        "dynamodb:LeadingKeys": ["booking#${aws:PrincipalTag/mcp-estate-traveller}"]}


def test_every_region_has_queue_worker_cache_and_an_sqs_endpoint(both):
    for region in REGIONS:
        assert both.named(f"mcp-estate-{region}-booking-async-queue") and both.named(f"mcp-estate-{region}-cache-cache")
        endpoint = both.named(f"mcp-estate-{region}-queues-sqs")
        assert endpoint.inputs["serviceName"] == f"com.amazonaws.{region}.sqs"
        assert endpoint.inputs["vpcEndpointType"] == "Interface"


def test_nothing_of_a_group_is_named_outside_it(both):
    """The eu worker's and server's policies name eu regions only; the us queue never names eu roles."""
    for name in ("mcp-estate-estate-wide-booking-eu-worker-identity-policy",
                 "mcp-estate-estate-wide-booking-eu-identity-task-grants"):
        text = both.named(name).inputs["policy"]
        assert "us-east-1" not in text, name
    assert "-eu-" not in both.named("mcp-estate-us-east-1-booking-async-queue").inputs["policy"]


def test_no_cache_or_queue_without_a_declaration():
    plan = plan_of(SMALL)
    for token in ("aws:elasticache/serverlessCache:ServerlessCache", "aws:sqs/queue:Queue",
                  "aws:elasticache/user:User"):
        assert plan.of_type(token) == []
    assert not [r for r in plan.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") if r.inputs["serviceName"].endswith(".sqs")]


def test_edge_never_caches_mcp_paths(both):
    ruleset = both.named("mcp-estate-edge-cache")
    assert ruleset.inputs["phase"] == "http_request_cache_settings"
    [rule] = ruleset.inputs["rules"]
    assert rule["action"] == "set_cache_settings" and rule["actionParameters"] == {"cache": False}
    for path in ("/booking/mcp", "/loyalty/mcp"):
        assert f'"{path}"' in rule["expression"] and f'"{path}/"' in rule["expression"]


def test_each_worker_alarm_says_what_happened_and_which_ones_roll_a_deployment_back(both):
    # The descriptions are what the on-call engineer reads in the alert email.
    where = "MCP server booking's tasks in eu-west-1"
    descriptions = {key: both.named(f"mcp-estate-eu-west-1-booking-async-{key}-alarm").inputs["alarmDescription"]
                    for key in ("oldest-task", "dead-letters", "new-dead-letters", "worker-errors")}
    assert descriptions == {
        "oldest-task": f"{where}: a task has waited more than 15 minutes",
        "dead-letters": f"{where}: a task failed 5 times (dead-letter queue)",
        "new-dead-letters": f"{where}: a task was just dead-lettered (rolls a worker deployment back)",
        "worker-errors": f"{where}: more than 5 failed tasks per minute (rolls a worker deployment back)"}
