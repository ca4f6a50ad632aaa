"""The fidelity check catches what only the real providers would: misspelled nested keys,
malformed ECS container definitions and IAM actions AWS does not define."""

from __future__ import annotations

import json
import time

import pulumi
import pulumi_aws as aws
import pulumi_cloudflare as cf
import pytest
from pulumi.runtime import rpc

from mcp_estate.fidelity import inspect_resource
from mcp_estate.iam_actions import matches_no_action
from mcp_estate.offline import FidelityError, run_offline
from conftest import ACCOUNT

SERVICE = "aws:ecs/service:Service"
TASK = "aws:ecs/taskDefinition:TaskDefinition"
ROLE = "aws:iam/role:Role"
SUBNETS = ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"]
TASK_ROLE_TRUST = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole",
    "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}}]}


def booking_container(**overrides) -> dict:
    """A realistic, hardened MCP server container definition."""
    container = {
        "name": "booking",
        "image": f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/booking@sha256:{'a' * 64}",
        "essential": True,
        "cpu": 512,
        "memory": 1024,
        "readonlyRootFilesystem": True,
        "user": "10001",
        "portMappings": [{"containerPort": 8080, "protocol": "tcp", "appProtocol": "http"}],
        "environment": [{"name": "LOG_LEVEL", "value": "info"}],
        "secrets": [{"name": "API_KEY",
                     "valueFrom": f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:booking-api-AbCdEf"}],
        "linuxParameters": {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}},
        "healthCheck": {"command": ["CMD-SHELL", "curl -fs http://localhost:8080/healthz || exit 1"],
                        "interval": 30, "retries": 3, "startPeriod": 10, "timeout": 5},
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": "/mcp/booking", "awslogs-region": "eu-west-1", "awslogs-stream-prefix": "booking"}},
        "ulimits": [{"name": "nofile", "softLimit": 65536, "hardLimit": 65536}],
    }
    container.update(overrides)
    return container


def task_inputs(*containers: dict) -> dict:
    return {"family": "booking", "containerDefinitions": json.dumps(list(containers)),
            "cpu": "512", "memory": "1024", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"]}


def role_inputs(*statements: dict) -> dict:
    return {"assumeRolePolicy": json.dumps({"Version": "2012-10-17", "Statement": list(statements)})}


def plan(program) -> list:
    return run_offline(program, stack="test", config={}, account_id=ACCOUNT, inspect=inspect_resource)


# -- SDK shape --------------------------------------------------------------------------------

def test_a_misspelled_nested_key_fails_the_plan_naming_resource_path_and_known_keys():
    def program():
        aws.ecs.Service("booking-svc", network_configuration={"assign_public_ips": False, "subnets": SUBNETS})

    with pytest.raises(FidelityError) as error:
        plan(program)
    assert str(error.value) == (
        "aws:ecs/service:Service 'booking-svc': unknown key 'assign_public_ips' at networkConfiguration "
        "(known: assignPublicIp, securityGroups, subnets)")


def test_a_missing_required_nested_key_fails_the_plan():
    def program():
        aws.ecs.Service("booking-svc", network_configuration={"assign_public_ip": False})

    with pytest.raises(FidelityError, match="'booking-svc': missing required key 'subnets' at networkConfiguration"):
        plan(program)


def test_keys_are_checked_deep_inside_lists_of_nested_objects():
    rule = {"name": "rate", "priority": 1, "action": {"block": {}},
            "statement": {"rateBasedStatement": {"limit": 1000, "aggregateKeyType": "IP",
                                                 "evaluationWindowSeconds": 300}},
            "visibilityConfig": {"cloudwatchMetricsEnabled": True, "sampledRequestsEnabled": True}}
    inputs = {"scope": "REGIONAL", "defaultAction": {"allow": {}}, "rules": [rule],
              "visibilityConfig": {"cloudwatchMetricsEnabled": True, "metricName": "acl",
                                   "sampledRequestsEnabled": True}}

    problems = inspect_resource("aws:wafv2/webAcl:WebAcl", "acl", inputs)

    assert problems[0].startswith("unknown key 'evaluationWindowSeconds' at rules[0].statement.rateBasedStatement "
                                  "(known: aggregateKeyType, customKeys, evaluationWindowSec,")
    assert problems[1:] == ["missing required key 'metricName' at rules[0].visibilityConfig"]


def test_a_value_of_the_wrong_shape_where_an_object_or_list_is_expected_is_reported():
    assert inspect_resource(SERVICE, "svc", {"networkConfiguration": SUBNETS}) == [
        "expected an object at networkConfiguration, got list"]
    assert inspect_resource(SERVICE, "svc", {"networkConfiguration": {"subnets": SUBNETS[0]}}) == [
        "expected a list at networkConfiguration.subnets, got str"]


def test_map_inputs_accept_any_key_but_check_their_values():
    lb = {"zoneId": "z", "name": "mcp.example.com", "defaultPools": ["p1"], "fallbackPool": "p1",
          "countryPools": {"US": ["p1"], "GB": "p2"}}

    assert inspect_resource("cloudflare:index/loadBalancer:LoadBalancer", "lb", lb) == [
        "expected a list at countryPools[GB], got str"]
    assert inspect_resource(SERVICE, "svc", {"tags": {"cost-center": "travel", "any_key": "x"}}) == []


def test_resource_types_resolve_through_the_sdk_registry_including_renamed_modules():
    problems = inspect_resource("aws:lambda/function:Function", "fn", {"role": "r", "handlr": "main.handler",
                                                                        "zzz": 1})

    assert problems[0].startswith("unknown key 'handlr' (did you mean: handler")
    assert problems[1].startswith("unknown key 'zzz' (none of its ")


def test_args_renamed_by_codegen_to_init_args_are_found():
    # `s3.BucketServerSideEncryptionConfigurationArgs` is a nested type of the legacy `s3.Bucket`;
    # the resource's own args are `...InitArgs`.
    token = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    rule = {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": "alias/logs"},
            "bucketKeyEnabled": True}

    assert inspect_resource(token, "sse", {"bucket": "logs", "rules": [rule]}) == []


def test_a_union_input_is_checked_against_the_member_its_value_fits():
    document = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"},
        {"Effect": "Allow", "Principal": {"Service": ["ecs-tasks.amazonaws.com"], "Account": "1"},
         "Actions": ["sts:AssumeRole"]}]}

    assert inspect_resource(ROLE, "role", {"assumeRolePolicy": document}) == [
        "unknown key 'Account' at assumeRolePolicy.Statement[1].Principal (known: Service)",
        "unknown key 'Actions' at assumeRolePolicy.Statement[1] (known: Action, Condition, Effect, NotAction, "
        "NotPrincipal, NotResource, Principal, Resource, Sid)"]


def test_provider_config_is_checked_although_the_sdk_sends_it_as_json_text():
    def program():
        aws.Provider("aws-eu-west-1", region="eu-west-1", allowed_account_ids=[ACCOUNT],
                     assume_roles=[{"role_arn": f"arn:aws:iam::{ACCOUNT}:role/deployer"}],
                     default_tags={"tag": {"mcp:estate": "prod"}})

    with pytest.raises(FidelityError) as error:
        plan(program)
    assert str(error.value) == ("pulumi:providers:aws 'aws-eu-west-1': unknown key 'tag' at defaultTags "
                                "(known: tags)")


def test_a_secret_input_is_checked_like_a_plain_one():
    def program():
        aws.ecs.Service("booking-svc", network_configuration=pulumi.Output.secret({"subnet": SUBNETS}))
        aws.ecs.TaskDefinition("booking-task", family="booking", container_definitions=pulumi.Output.secret(
            json.dumps([booking_container(readOnlyRootFilesystem=True)])))

    with pytest.raises(FidelityError) as error:
        plan(program)
    assert "'booking-svc': unknown key 'subnet' at networkConfiguration" in str(error.value)
    assert "'booking-task': unknown key 'readOnlyRootFilesystem' at containerDefinitions[booking]" in str(error.value)


# -- ECS container definitions ----------------------------------------------------------------

def test_a_misspelled_container_definition_key_is_reported_with_the_container_name():
    problems = inspect_resource(TASK, "task", task_inputs(booking_container(readOnlyRootFilesystem=True)))

    assert problems == ["unknown key 'readOnlyRootFilesystem' at containerDefinitions[booking] "
                        "(did you mean: readonlyRootFilesystem)"]


def test_container_definition_values_must_have_the_ecs_api_types():
    container = booking_container(portMappings=[{"containerPort": "8080"}], essential="true", cpu=True,
                                  linuxParameters={"capabilities": {"drop": "ALL"}})

    assert inspect_resource(TASK, "task", task_inputs(container)) == [
        'containerDefinitions[booking].essential must be boolean, got "true"',
        'containerDefinitions[booking].cpu must be integer, got true',
        'containerDefinitions[booking].portMappings[0].containerPort must be integer, got "8080"',
        'containerDefinitions[booking].linuxParameters.capabilities.drop must be list, got "ALL"',
    ]


def test_container_definition_enums_and_required_members_follow_the_ecs_api():
    container = booking_container(portMappings=[{"containerPort": 8080, "protocol": "TCP"}],
                                  logConfiguration={"options": {"awslogs-group": "/mcp/booking"}},
                                  secrets=[{"name": "API_KEY"}])

    assert inspect_resource(TASK, "task", task_inputs(container)) == [
        "containerDefinitions[booking].portMappings[0].protocol is 'TCP', not one of tcp, udp",
        "missing required key 'valueFrom' at containerDefinitions[booking].secrets[0]",
        "missing required key 'logDriver' at containerDefinitions[booking].logConfiguration",
    ]


def test_container_definitions_must_be_a_json_list():
    assert inspect_resource(TASK, "task", task_inputs() | {"containerDefinitions": "{not json"})[0].startswith(
        "containerDefinitions is not JSON")
    assert inspect_resource(TASK, "task", task_inputs() | {"containerDefinitions": json.dumps(booking_container())}) \
        == ["containerDefinitions must be a JSON list, got dict"]


# -- IAM policy documents ---------------------------------------------------------------------

def test_an_action_aws_does_not_define_fails_the_plan():
    def program():
        aws.iam.RolePolicy("booking-state", role="booking-task", policy=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Sid": "ReadState", "Effect": "Allow",
                                                   "Action": ["dynamodb:GetItem", "dynamodb:GetItems"],
                                                   "Resource": "*"}]}))

    with pytest.raises(FidelityError) as error:
        plan(program)
    assert str(error.value) == ("aws:iam/rolePolicy:RolePolicy 'booking-state': "
                                "policy.Statement[ReadState].Action: 'dynamodb:GetItems' is not an AWS IAM action")


def test_a_wildcard_matching_no_action_is_reported_and_real_wildcards_pass():
    statement = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                 "Action": ["dynamo:*", "kms:*", "kms:Encrypt*", "s3:Get?bject", "KMS:describe*"]}

    assert inspect_resource(ROLE, "role", role_inputs(statement)) == [
        "assumeRolePolicy.Statement[0].Action: 'dynamo:*' matches no AWS IAM action"]


def test_not_action_is_checked_like_action():
    statement = {"Effect": "Deny", "Principal": "*", "NotAction": ["kms:Decrypt", "kms:Decrypts*"], "Resource": "*"}

    assert inspect_resource("aws:kms/key:Key", "key", {"policy": json.dumps(
        {"Version": "2012-10-17", "Statement": [statement]})}) == [
        "policy.Statement[0].NotAction: 'kms:Decrypts*' matches no AWS IAM action"]


def test_policy_document_shape_is_checked():
    document = {"Statement": [{"Effect": "allow", "Principal": "*", "Actions": ["s3:GetObject"], "Resource": "*"}]}

    inputs = {"bucket": "logs", "policy": json.dumps(document)}

    assert inspect_resource("aws:s3/bucketPolicy:BucketPolicy", "bp", inputs) == [
        "policy.Version is None, not '2012-10-17'",
        "unknown key 'Actions' at policy.Statement[0] (known: Action, Condition, Effect, NotAction, NotPrincipal, "
        "NotResource, Principal, Resource, Sid)",
        "policy.Statement[0].Effect is 'allow', not 'Allow' or 'Deny'",
        "policy.Statement[0] needs exactly one of Action, NotAction",
    ]


def test_a_single_statement_object_is_checked_like_a_list():
    document = {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
                                                       "Action": "sns:Publishes", "Resource": "*"}}

    assert inspect_resource("aws:sns/topicPolicy:TopicPolicy", "tp", {"arn": "t", "policy": json.dumps(document)}) == [
        "policy.Statement[0].Action: 'sns:Publishes' is not an AWS IAM action"]


def test_a_policy_not_yet_known_is_skipped():
    assert inspect_resource(ROLE, "role", {"assumeRolePolicy": rpc.UNKNOWN}) == []


def test_matches_no_action_is_case_insensitive_and_honours_both_wildcards():
    assert not matches_no_action("*")
    assert not matches_no_action("ECR:batchget*")
    assert not matches_no_action("s3:?etObject")
    assert matches_no_action("s3:GetObjects?")


# -- correct resources pass -------------------------------------------------------------------

def realistic_program():
    """A slice of a real estate: provider, task, service, WAF, Cloudflare LB, IAM, KMS."""
    provider = aws.Provider("aws-eu-west-1", region="eu-west-1", allowed_account_ids=[ACCOUNT],
                            assume_roles=[{"role_arn": f"arn:aws:iam::{ACCOUNT}:role/deployer",
                                           "session_name": "mcp-estate"}],
                            default_tags={"tags": {"mcp:estate": "prod"}})
    opts = pulumi.ResourceOptions(provider=provider)
    role = aws.iam.Role("booking-task-role", assume_role_policy=json.dumps(TASK_ROLE_TRUST),
                        tags={"mcp:server": "booking"}, opts=opts)
    aws.iam.RolePolicy("booking-task-state", role=role.name, opts=opts, policy=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Sid": "ReadState", "Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Query"],
             "Resource": f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/booking"},
            {"Sid": "Decrypt", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*"}]}))
    aws.kms.Key("booking-key", enable_key_rotation=True, opts=opts, policy=json.dumps({
        "Version": "2012-10-17", "Statement": [{
            "Sid": "Account", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "kms:*", "Resource": "*"}]}))
    task = aws.ecs.TaskDefinition(
        "booking-task", family="booking", cpu="512", memory="1024", network_mode="awsvpc",
        requires_compatibilities=["FARGATE"], task_role_arn=role.arn, execution_role_arn=role.arn,
        runtime_platform={"cpu_architecture": "ARM64", "operating_system_family": "LINUX"},
        container_definitions=json.dumps([booking_container()]), opts=opts)
    aws.ecs.Service(
        "booking-svc", cluster="mcp", task_definition=task.arn, desired_count=2, launch_type="FARGATE",
        network_configuration={"assign_public_ip": False, "subnets": SUBNETS, "security_groups": ["sg-0123"]},
        deployment_circuit_breaker={"enable": True, "rollback": True},
        load_balancers=[{"target_group_arn": "arn:aws:elasticloadbalancing:eu-west-1:111122223333:"
                                             "targetgroup/booking/0123456789abcdef",
                         "container_name": "booking", "container_port": 8080}],
        opts=opts)
    aws.wafv2.WebAcl(
        "edge-acl", scope="REGIONAL", default_action={"allow": {}},
        visibility_config={"cloudwatch_metrics_enabled": True, "metric_name": "edge-acl",
                           "sampled_requests_enabled": True},
        rules=[{"name": "aws-common", "priority": 0, "override_action": {"none": {}},
                "statement": {"managed_rule_group_statement": {"name": "AWSManagedRulesCommonRuleSet",
                                                               "vendor_name": "AWS"}},
                "visibility_config": {"cloudwatch_metrics_enabled": True, "metric_name": "aws-common",
                                      "sampled_requests_enabled": True}},
               {"name": "rate", "priority": 1, "action": {"block": {}},
                "statement": {"rate_based_statement": {"limit": 1000, "aggregate_key_type": "IP",
                                                       "evaluation_window_sec": 300}},
                "visibility_config": {"cloudwatch_metrics_enabled": True, "metric_name": "rate",
                                      "sampled_requests_enabled": True}}],
        opts=opts)
    cf.LoadBalancer(
        "mcp-lb", zone_id="fedcba9876543210fedcba9876543210", name="mcp.example.com",
        default_pools=["pool-eu"], fallback_pool="pool-eu", proxied=True, steering_policy="geo",
        session_affinity="cookie", session_affinity_ttl=1800,
        session_affinity_attributes={"samesite": "Strict", "secure": "Always", "zero_downtime_failover": "temporary",
                                     "drain_duration": 60},
        country_pools={"GB": ["pool-eu"], "US": ["pool-us", "pool-eu"]})


def test_a_realistic_estate_slice_has_no_problems():
    resources = plan(realistic_program)

    assert {r.type for r in resources if r.custom} == {
        "pulumi:providers:aws", "aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy", "aws:kms/key:Key",
        TASK, SERVICE, "aws:wafv2/webAcl:WebAcl", "cloudflare:index/loadBalancer:LoadBalancer"}


def test_inspection_costs_well_under_a_second_per_thousand_resources():
    resources = [r for r in run_offline(realistic_program, stack="test", config={}, account_id=ACCOUNT) if r.custom]
    rounds = 200

    start = time.perf_counter()
    for _ in range(rounds):
        for r in resources:
            inspect_resource(r.type, r.name, r.inputs)
    per_resource = (time.perf_counter() - start) / (rounds * len(resources))

    assert per_resource < 0.00025, f"{per_resource * 1e6:.0f} µs per resource"
