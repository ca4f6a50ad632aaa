"""The fidelity check catches what only the real providers would: misspelled nested keys, values
of the wrong type or outside the SDK's documented values, malformed ECS container definitions,
policy documents IAM would store but never apply as meant, and Cloudflare rule expressions
reading fields their phase does not have."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pulumi_cloudflare as cf
import pytest
from conftest import ACCOUNT
from pulumi.runtime import rpc

from mcp_estate.offline.cloudflare_rules import tokens
from mcp_estate.offline.fidelity import _documented_values, inspect_resource
from mcp_estate.offline.runner import FidelityError, run_offline
from mcp_estate.policies.iam_actions import matches_no_action

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
    document = {"Version": "2012-10-17",
                "Statement": {"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
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


# -- scalar types and documented values ---------------------------------------------------------

STEP_SCALING = "aws:appautoscaling/policy:Policy"


def step_scaling(**config) -> dict:
    return {"name": "booking-out", "resourceId": "service/mcp/booking", "scalableDimension": "ecs:service:DesiredCount",
            "serviceNamespace": "ecs", "policyType": "StepScaling",
            "stepScalingPolicyConfiguration": {"adjustmentType": "ChangeInCapacity", "cooldown": 60,
                                               "stepAdjustments": [{"scalingAdjustment": 2,
                                                                    "metricIntervalLowerBound": "0"}]} | config}


def test_a_number_given_as_a_string_fails_the_plan():
    def program():
        aws.appautoscaling.Policy("booking-out", resource_id="service/mcp/booking", service_namespace="ecs",
                                  scalable_dimension="ecs:service:DesiredCount", policy_type="StepScaling",
                                  step_scaling_policy_configuration={"adjustment_type": "ChangeInCapacity",
                                                                     "cooldown": "60"})

    with pytest.raises(FidelityError) as error:
        plan(program)
    assert str(error.value) == ("aws:appautoscaling/policy:Policy 'booking-out': "
                                'stepScalingPolicyConfiguration.cooldown must be an integer, got "60"')


def test_scalars_must_have_the_sdk_type_and_an_int_valued_float_is_an_int():
    assert inspect_resource(STEP_SCALING, "p", step_scaling(cooldown=60.0)) == []
    assert inspect_resource(STEP_SCALING, "p", step_scaling(cooldown=60.5, adjustmentType=1)) == [
        "stepScalingPolicyConfiguration.adjustmentType must be a string, got 1",
        "stepScalingPolicyConfiguration.cooldown must be an integer, got 60.5"]
    assert inspect_resource(SERVICE, "svc", {"desiredCount": True, "enableExecuteCommand": "false"}) == [
        "desiredCount must be an integer, got true", 'enableExecuteCommand must be a boolean, got "false"']


def test_a_value_outside_the_sdks_documented_values_fails_the_plan():
    def program():
        aws.ecs.Service("booking-svc", launch_type="FARGATE_SPOT")
        aws.ecs.TaskDefinition("booking-task", family="booking", requires_compatibilities=["FARGATE", "LAMBDA"],
                               container_definitions=json.dumps([booking_container()]))
        cf.LoadBalancer("lb", zone_id="z", name="mcp.example.com", default_pools=["p"], fallback_pool="p",
                        session_affinity="sticky")

    with pytest.raises(FidelityError) as error:
        plan(program)
    assert str(error.value).splitlines() == [
        "aws:ecs/service:Service 'booking-svc': launchType is 'FARGATE_SPOT', not one of EC2, EXTERNAL, FARGATE "
        "(the SDK's documented values)",
        "aws:ecs/taskDefinition:TaskDefinition 'booking-task': requiresCompatibilities[1] is 'LAMBDA', not one of EC2, "
        "EXTERNAL, FARGATE, MANAGED_INSTANCES (the SDK's documented values)",
        "cloudflare:index/loadBalancer:LoadBalancer 'lb': sessionAffinity is 'sticky', not one of cookie, header, "
        "ip_cookie, none (the SDK's documented values)"]


def test_provider_config_scalars_are_checked_through_their_json_text():
    def program():
        aws.Provider("aws-eu-west-1", region="eu-west-1", max_retries="three", retry_mode="exponential")

    with pytest.raises(FidelityError) as error:
        plan(program)
    assert sorted(str(error.value).splitlines()) == [
        "pulumi:providers:aws 'aws-eu-west-1': maxRetries must be an integer, got \"three\"",
        "pulumi:providers:aws 'aws-eu-west-1': retryMode is 'exponential', not one of adaptive, standard "
        "(the SDK's documented values)"]


@pytest.mark.parametrize("doc, values", [
    ("Launch type. The valid values are `EC2`, `FARGATE`, and `EXTERNAL`. Defaults to `EC2`.",
     {"EC2", "FARGATE", "EXTERNAL"}),
    ('Session affinity.\n        Available values: "none", "cookie", "ip*cookie", "header".\n',
     {"none", "cookie", "ip_cookie", "header"}),
    ("Valid values: `ENABLED`, `DISABLED`", {"ENABLED", "DISABLED"}),
    ("Tracing mode. Valid values: `\"Active\"` or `\"PassThrough\"`.", {"Active", "PassThrough"}),
])
def test_closed_lists_of_documented_values_are_read(doc, values):
    assert _documented_values(doc) == values


@pytest.mark.parametrize("doc", [
    # SNS: a list, then more values in the next sentence.
    "Protocol to use. Valid values are: `sqs`, `sms`, `lambda`, `firehose`, and `application`. Protocols `email`, "
    "`email-json`, `http` and `https` are also valid but partially supported.",
    # ELB listener: one list per kind of load balancer, the first one goes on after its values.
    "For Application Load Balancers, valid values are `HTTP` and `HTTPS`, with a default of `HTTP`. For Network "
    "Load Balancers, valid values are `TCP`, `TLS`, `UDP`.",
    "Valid values are `2XX`, `4XX`, or `5XX`.",                        # patterns, not values
    'Valid values are `["x86_64"]` and `["arm64"]`.',                   # whole lists
    "Valid values are `instanceId` (or `host`, which has the same effect), or any platform attribute.",
    "Valid values include `gp2` and `gp3`.",
    "Valid values are between 0 and 1440.",
    "Comma-separated list of methods. Valid values are `GET`, `POST`.",
])
def test_open_ended_or_ambiguous_value_lists_are_not_enforced(doc):
    assert _documented_values(doc) is None


def test_non_exhaustive_docstrings_let_real_values_through():
    assert inspect_resource("aws:sns/topicSubscription:TopicSubscription", "s", {
        "topic": "arn:aws:sns:eu-west-1:111122223333:alerts", "protocol": "email",
        "endpoint": "oncall@example.com"}) == []
    assert inspect_resource("aws:lb/listener:Listener", "l", {
        "loadBalancerArn": "arn", "protocol": "HTTPS", "port": 443,
        "defaultActions": [{"type": "fixed-response", "fixedResponse": {"contentType": "text/plain",
                                                                         "statusCode": "404"}}]}) == []


# -- IAM: principals, condition operators and condition keys ----------------------------------------

def statement(**fields) -> dict:
    return {"Effect": "Allow", "Action": "dynamodb:GetItem",
            "Resource": f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/booking"} | fields


def identity(*statements: dict) -> dict:
    return {"role": "booking-task", "policy": json.dumps({"Version": "2012-10-17", "Statement": list(statements)})}


def test_misspelled_condition_operators_and_keys_fail_the_plan():
    def program():
        aws.iam.RolePolicy("booking-state", role="booking-task", policy=json.dumps({
            "Version": "2012-10-17", "Statement": [statement(Sid="OwnItems", Condition={
                "ForAllValue:StringEquals": {"dynamodb:LeadingKey": ["${aws:PrincipalTag/tenant}"]},
                "StringEqual": {"aws:SourceAcount": ACCOUNT}})]}))

    with pytest.raises(FidelityError) as error:
        plan(program)
    assert str(error.value).splitlines() == [f"aws:iam/rolePolicy:RolePolicy 'booking-state': {p}" for p in [
        "policy.Statement[OwnItems].Condition: 'ForAllValue:StringEquals' is not an IAM condition operator (e.g. "
        "StringEquals, ArnLike, ForAnyValue:StringLike, StringEqualsIfExists, Null)",
        "policy.Statement[OwnItems].Condition.ForAllValue:StringEquals: 'dynamodb:LeadingKey' is neither a global "
        "condition key nor one of dynamodb's",
        "policy.Statement[OwnItems].Condition: 'StringEqual' is not an IAM condition operator (e.g. StringEquals, "
        "ArnLike, ForAnyValue:StringLike, StringEqualsIfExists, Null)",
        "policy.Statement[OwnItems].Condition.StringEqual: 'aws:SourceAcount' is neither a global condition key "
        "nor one of dynamodb's"]]


def test_documented_operators_global_and_service_keys_pass_in_any_case():
    conditions = {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["${aws:PrincipalTag/tenant}"]},
                  "Null": {"dynamodb:leadingkeys": "false"},
                  "StringEqualsIfExists": {"AWS:SourceAccount": ACCOUNT, "aws:ResourceTag/mcp-estate:stack": "prod",
                                           "aws:PrincipalTag/team": "booking"},
                  "ForAnyValue:StringLike": {"aws:PrincipalOrgPaths": "o-a1b2c3d4e5/*"},
                  "Bool": {"aws:SecureTransport": True}, "IpAddressIfExists": {"aws:SourceIp": "192.0.2.0/24"},
                  "ArnLike": {"aws:SourceArn": "arn:aws:events:*"}, "NumericLessThan": {"aws:MultiFactorAuthAge": 300}}
    assert inspect_resource("aws:iam/rolePolicy:RolePolicy", "p", identity(statement(Condition=conditions))) == []


def test_a_condition_key_of_another_service_than_the_actions_is_reported():
    problems = inspect_resource("aws:iam/rolePolicy:RolePolicy", "p", identity(
        statement(Condition={"StringLike": {"s3:prefix": "booking/*"}}),
        statement(Action="kms:Decrypt", Condition={"StringEquals": {
            "kms:ViaService": "dynamodb.eu-west-1.amazonaws.com",
            "kms:EncryptionContext:aws:dynamodb:tableName": "b"}}),
        statement(Action=["s3:GetObject", "dynamodb:Query"], Condition={"StringLike": {"s3:prefix": "b/*"}})))

    assert problems == ["policy.Statement[0].Condition.StringLike: 's3:prefix' is neither a global condition key nor "
                        "one of dynamodb's"]


def test_null_takes_no_ifexists_and_bool_and_null_compare_with_true_or_false():
    problems = inspect_resource("aws:iam/rolePolicy:RolePolicy", "p", identity(statement(Condition={
        "NullIfExists": {"aws:TagKeys": "true"}, "Bool": {"aws:SecureTransport": "yes"}})))

    assert problems == [
        "policy.Statement[0].Condition: 'NullIfExists' is not an IAM condition operator (e.g. StringEquals, ArnLike, "
        "ForAnyValue:StringLike, StringEqualsIfExists, Null)",
        'policy.Statement[0].Condition.Bool.aws:SecureTransport: Bool compares with "true" or "false", got "yes"']


def test_identity_policies_name_no_principal_and_resource_policies_must():
    assert inspect_resource("aws:iam/rolePolicy:RolePolicy", "p", identity(statement(Principal="*"))) == [
        "policy.Statement[0].Principal: an identity policy applies to its holder and must not name a principal"]
    key_policy = json.dumps({"Version": "2012-10-17", "Statement": [statement(Action="kms:Decrypt", Resource="*")]})
    assert inspect_resource("aws:kms/key:Key", "k", {"policy": key_policy}) == [
        "policy.Statement[0] needs a Principal: a resource policy must say whom it lets in"]


def test_principals_have_the_documented_kinds_and_service_principal_names():
    trust = {"Effect": "Allow", "Action": "sts:AssumeRole",
             "Principal": {"Service": ["ecs-tasks.amazonaws.com", "ecs-tasks"], "Account": ACCOUNT}}

    assert inspect_resource(ROLE, "role", role_inputs(trust)) == [
        "assumeRolePolicy.Statement[0].Principal.Service: 'ecs-tasks' is not a service principal (like "
        "'ecs-tasks.amazonaws.com')",
        "unknown key 'Account' at assumeRolePolicy.Statement[0].Principal (known: AWS, CanonicalUser, Federated, "
        "Service)"]
    assert inspect_resource(ROLE, "role", role_inputs(TASK_ROLE_TRUST["Statement"][0])) == []


def test_an_oidc_trust_may_use_its_providers_claims_as_keys():
    trust = {"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
             "Principal": {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"},
             "Condition": {"StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"},
                           "StringLike": {"token.actions.githubusercontent.com:sub": "repo:travel/mcp:*",
                                          "accounts.example.com:sub": "x"}}}

    assert inspect_resource(ROLE, "role", role_inputs(trust)) == [
        "assumeRolePolicy.Statement[0].Condition.StringLike: 'accounts.example.com:sub' is neither a global "
        "condition key nor one of sts's"]


def test_vpc_endpoint_policies_are_checked_like_every_other_policy():
    def program():
        aws.ec2.VpcEndpoint("dynamodb-endpoint", vpc_id="vpc-0f1e2d3c4b5a69788", vpc_endpoint_type="Gateway",
                            service_name="com.amazonaws.eu-west-1.dynamodb", policy=json.dumps({
                                "Version": "2012-10-17", "Statement": [{
                                    "Sid": "EstateTablesOnly", "Effect": "Allow", "Principal": "*",
                                    "Action": ["dynamodb:GetItem", "dynamodb:PutItems"], "Resource": "*",
                                    "Condition": {"StringEquals": {"aws:ResourceAcount": ACCOUNT}}}]}))

    with pytest.raises(FidelityError) as error:
        plan(program)
    assert str(error.value).splitlines() == [
        "aws:ec2/vpcEndpoint:VpcEndpoint 'dynamodb-endpoint': policy.Statement[EstateTablesOnly].Action: "
        "'dynamodb:PutItems' is not an AWS IAM action",
        "aws:ec2/vpcEndpoint:VpcEndpoint 'dynamodb-endpoint': policy.Statement[EstateTablesOnly].Condition."
        "StringEquals: 'aws:ResourceAcount' is neither a global condition key nor one of dynamodb's"]


@pytest.mark.parametrize("token, key, kind", [
    ("aws:sqs/queuePolicy:QueuePolicy", "policy", "resource"),
    ("aws:secretsmanager/secretPolicy:SecretPolicy", "policy", "resource"),
    ("aws:cloudwatch/logResourcePolicy:LogResourcePolicy", "policyDocument", "resource"),
    ("aws:iam/userPolicy:UserPolicy", "policy", "identity"),
])
def test_other_policy_bearing_inputs_are_checked(token, key, kind):
    document = {"Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "logs:PutLogEvent", "Resource": "*"}]}

    problems = inspect_resource(token, "p", {key: json.dumps(document)})

    assert f"{key}.Statement[0].Action: 'logs:PutLogEvent' is not an AWS IAM action" in problems
    assert (f"{key}.Statement[0] needs a Principal: a resource policy must say whom it lets in" in problems) == (
        kind == "resource")


def test_a_roles_inline_policies_are_identity_policies():
    inline = {"name": "grants", "policy": json.dumps({"Version": "2012-10-17", "Statement": [
        statement(Principal="*", Action="dynamodb:GetItems")]})}

    inputs = role_inputs(TASK_ROLE_TRUST["Statement"][0]) | {"inlinePolicies": [inline]}
    assert inspect_resource(ROLE, "role", inputs) == [
        "inlinePolicies[0].policy.Statement[0].Principal: an identity policy applies to its holder and must not name "
        "a principal",
        "inlinePolicies[0].policy.Statement[0].Action: 'dynamodb:GetItems' is not an AWS IAM action"]


# -- Cloudflare expressions ---------------------------------------------------------------------

LOAD_BALANCER = "cloudflare:index/loadBalancer:LoadBalancer"
RULESET = "cloudflare:index/ruleset:Ruleset"


def load_balancer(proxied: bool, *conditions: str) -> dict:
    return {"zoneId": "z", "name": "mcp.example.com", "defaultPools": ["p"], "fallbackPool": "p", "proxied": proxied,
            "rules": [{"name": f"r{i}", "condition": c} for i, c in enumerate(conditions)]}


def ruleset(phase: str, *expressions: str) -> dict:
    return {"zoneId": "z", "kind": "zone", "name": "n", "phase": phase,
            "rules": [{"ref": f"r{i}", "action": "block", "expression": e} for i, e in enumerate(expressions)]}


def test_a_load_balancing_rule_on_the_undocumented_country_field_fails_the_plan():
    def program():
        cf.LoadBalancer("edge-lb", zone_id="z", name="mcp.example.com", default_pools=["pool-us"],
                        fallback_pool="pool-us", proxied=True, steering_policy="geo",
                        rules=[{"name": "residency-eu", "priority": 1, "condition": 'ip.src.country in {"DE" "FR"}',
                                "overrides": {"default_pools": ["pool-eu"]}, "terminates": True}])

    with pytest.raises(FidelityError) as error:
        plan(program)
    assert str(error.value) == (
        "cloudflare:index/loadBalancer:LoadBalancer 'edge-lb': rules[residency-eu].condition: field 'ip.src.country' "
        "is not available in load-balancing rules of a proxied load balancer")


def test_load_balancing_rule_fields_depend_on_the_proxy_status_and_take_no_functions():
    proxied = load_balancer(True, 'http.request.uri.path eq "/eu" and cf.load_balancer.region eq "WEU"',
                            'ip.src in {192.0.2.0/24} or dns.qry.name eq "a."', 'lower(http.host) eq "a"')
    dns_only = load_balancer(False, 'dns.qry.name eq "mcp.example.com." and not dns.rr.opt.client',
                             'http.host eq "a"')

    assert inspect_resource(LOAD_BALANCER, "lb", proxied) == [
        "rules[r1].condition: field 'dns.qry.name' is not available in load-balancing rules of a proxied load "
        "balancer",
        "rules[r2].condition: function 'lower()' is not available in load-balancing rules of a proxied load balancer"]
    assert inspect_resource(LOAD_BALANCER, "lb", dns_only) == [
        "rules[r1].condition: field 'http.host' is not available in load-balancing rules of a DNS-only load balancer"]


def test_ruleset_expressions_use_only_the_fields_and_functions_of_their_phase():
    firewall = ruleset("http_request_firewall_custom",
                       'http.host eq "mcp.example.com" and not starts_with(http.request.uri.path, "/mcp/")',
                       "http.response.code eq 401", 'regex_replace(http.request.uri.path, "a", "b") eq "/"',
                       'cidr(ip.src, 24, 48) eq 192.0.2.0 and ip.src.country in {"DE"}')
    headers = ruleset("http_response_headers_transform",
                      'http.response.code eq 401 and starts_with(http.request.uri.path, "/mcp")',
                      'cidr(ip.src, 24, 48) eq 192.0.2.0', 'cf.response.error_type eq "waf"')

    assert inspect_resource(RULESET, "fw", firewall) == [
        "rules[r1].expression: field 'http.response.code' is not available in phase http_request_firewall_custom",
        "rules[r2].expression: function 'regex_replace()' is not available in phase http_request_firewall_custom"]
    assert inspect_resource(RULESET, "hdr", headers) == [
        "rules[r1].expression: function 'cidr()' is not available in phase http_response_headers_transform"]


def test_a_misspelled_field_is_reported_with_the_likely_one():
    assert inspect_resource(RULESET, "rl", ruleset("http_ratelimit", 'http.request.uri.paht eq "/mcp"')) == [
        "rules[r0].expression: field 'http.request.uri.paht' is not available in phase http_ratelimit "
        "(did you mean: http.request.uri.path, raw.http.request.uri.path)"]


def test_the_tokenizer_reads_strings_sets_lists_indexes_and_ip_literals_without_mistaking_them_for_fields():
    expression = ('any(http.request.headers["ip.src.country"][*] == r#"say "ip.src.country""#) and '
                  'ip.src in {192.0.2.0/24 2001:db8::/32 fe80::/10} and not ip.src in $blocked and '
                  'cf.edge.server_port in {80..443} and ssl')

    fields = [text for kind, text in tokens(expression) if kind == "field"]

    assert fields == ["http.request.headers", "ip.src", "ip.src", "cf.edge.server_port", "ssl"]
    assert inspect_resource(RULESET, "fw", ruleset("http_request_firewall_custom", expression)) == []


def test_an_unreadable_expression_is_reported_not_passed():
    assert inspect_resource(RULESET, "fw", ruleset("http_request_firewall_custom", 'http.host eq "a" ; drop')) == [
        "rules[r0].expression: cannot read '; drop' (character 17)"]


def test_phases_without_a_field_table_are_not_checked():
    assert inspect_resource(RULESET, "l4", ruleset("ddos_l4", "tcp.dstport eq 22")) == []


def test_preparing_the_estates_types_compiles_every_shape_a_plan_inspects():
    """What the region workers are forked with (offline/worker_preload.py): a plan then compiles nothing."""
    from conftest import shipped_plan

    from mcp_estate.offline import fidelity, worker_preload

    fidelity.prepare(worker_preload.TYPES)
    compiled = fidelity._fields.cache_info().currsize
    for resource in shipped_plan("staging").resources + shipped_plan("prod").resources:
        if resource.custom:
            fidelity.inspect_resource(resource.type, resource.name, resource.inputs)
    assert fidelity._fields.cache_info().currsize == compiled
