"""Least-privilege controls: each identity holds what its job needs, and only the estate's tasks become one."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pytest
from corpus import attack, legitimate
from conftest import (
    ACCOUNT,
    Plan,
    as_object,
    run_program,
    run_with_planted_fault,
    violations,
)

from mcp_estate.components.keys import EstateKeys, EstateKeysArgs
from mcp_estate.components.region_network import RegionNetwork, RegionNetworkArgs
from mcp_estate.components.server_identity import Grant, ServerIdentity, ServerIdentityArgs
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from mcp_estate.checking.check import evaluate
from mcp_estate.policies.iam_actions import requires_wildcard_resource

TABLE = f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/mcp-estate-test-eu-state"
POLICIES = ("no-wildcard-actions", "no-not-action-or-not-resource-allows",
            "resource-wildcard-only-where-aws-requires-it", "attached-policies-from-the-stack-or-the-allow-list",
            "role-trust-admits-only-the-estate", "resource-access-stays-in-the-estate",
            "no-trust-policy-open-to-everyone", "ecs-task-trust-has-source-conditions")
ECS_TRUST = {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}


def document(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action, resource=TABLE, **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def messages(plan: Plan, policy: str) -> list[str]:
    return sorted(v.message for v in violations(plan, policy=policy))


def identity_policies(*statements: dict, planted_fault: str | None = None) -> Plan:
    """The same statements in every kind of identity policy: role, user, group, managed, role inline.
    With `planted_fault`, the statements are wrong on purpose and the inspector must say so."""
    def program():
        aws.iam.RolePolicy("role-grants", role="booking-task", policy=document(*statements))
        aws.iam.UserPolicy("user-grants", user="ci", policy=document(*statements))
        aws.iam.GroupPolicy("group-grants", group="operators", policy=document(*statements))
        aws.iam.Policy("managed-grants", policy=document(*statements))
        aws.iam.Role("legacy", assume_role_policy=document(ECS_TRUST | {"Condition": {
            "StringEquals": {"aws:SourceAccount": ACCOUNT}}}),
            inline_policies=[{"name": "grants", "policy": document(*statements)}])
    return run_with_planted_fault(program, planted_fault) if planted_fault else run_program(program)


KINDS = ["group policy group-grants", "managed policy managed-grants", "role legacy inline policy grants",
         "role policy role-grants", "user policy user-grants"]


def in_every_kind(text: str) -> list[str]:
    return sorted(f"{kind}{text}" for kind in KINDS)


# -- no-wildcard-actions --------------------------------------------------------------------------------

@pytest.mark.parametrize("action", ["*", "*:*", "dynamodb:*", ["dynamodb:GetItem", "s3:*"]])
@attack("no-wildcard-actions")
def test_wildcard_actions_are_refused_in_every_kind_of_identity_policy(action):
    wildcard = action if isinstance(action, str) else "s3:*"
    assert messages(identity_policies(allow(action)), "no-wildcard-actions") == in_every_kind(
        f" allows {wildcard}: list the actions the job needs instead")


@pytest.mark.parametrize("action", ["s?:GetObject", "*:GetItem", "s3:*?", "dynamodb:**", "s3*"])
@attack("no-wildcard-actions")
def test_service_wide_patterns_with_question_marks_or_partial_services_are_refused(action):
    # `s3*` names no service: the plan's inspector refuses it first, the policy refuses it too.
    fault = f"'{action}' matches no AWS IAM action" if action == "s3*" else None
    assert messages(identity_policies(allow(action), planted_fault=fault), "no-wildcard-actions") == in_every_kind(
        f" allows {action}: list the actions the job needs instead")


@legitimate("no-wildcard-actions")
def test_partial_action_patterns_including_question_marks_pass():
    plan = identity_policies(allow(["dynamodb:Get*", "s3:??tObject", "dynamodb:Query"]))
    assert messages(plan, "no-wildcard-actions") == []


@attack("no-wildcard-actions")
def test_a_single_statement_object_given_as_an_object_is_read_too():
    plan = as_object(run_program(lambda: aws.iam.Policy("managed-grants", policy=json.dumps(
        {"Version": "2012-10-17", "Statement": allow("*", Sid="Everything")}))), "managed-grants", "policy")
    assert messages(plan, "no-wildcard-actions") == [
        "managed policy managed-grants (statement Everything) allows *: list the actions the job needs instead"]


@legitimate("no-wildcard-actions")
def test_listed_actions_partial_patterns_and_denies_pass():
    plan = identity_policies(allow(["dynamodb:GetItem", "dynamodb:Query"]), allow("dynamodb:Get*"),
                             {"Effect": "Deny", "Action": "*", "Resource": "*",
                              "Condition": {"Bool": {"aws:SecureTransport": "false"}}})
    assert messages(plan, "no-wildcard-actions") == []


# -- no-not-action-or-not-resource-allows ---------------------------------------------------------------

@attack("no-not-action-or-not-resource-allows")
def test_allows_with_not_action_or_not_resource_are_refused():
    plan = identity_policies({"Effect": "Allow", "NotAction": "iam:*", "Resource": TABLE},
                             {"Effect": "Allow", "Action": "dynamodb:GetItem", "NotResource": TABLE})
    assert messages(plan, "no-not-action-or-not-resource-allows") == sorted(
        in_every_kind(" allows with NotAction, which grants everything it does not list: use Action and Resource "
                      "instead")
        + in_every_kind(" allows with NotResource, which grants everything it does not list: use Action and "
                        "Resource instead"))


@legitimate("no-not-action-or-not-resource-allows")
def test_denies_with_not_action_pass():
    plan = identity_policies(allow("dynamodb:GetItem"),
                             {"Effect": "Deny", "NotAction": ["dynamodb:GetItem"], "Resource": "*"})
    assert messages(plan, "no-not-action-or-not-resource-allows") == []


# -- resource-wildcard-only-where-aws-requires-it ----------------------------------------------------------

@attack("resource-wildcard-only-where-aws-requires-it")
def test_scopable_actions_on_every_resource_are_refused_and_named():
    plan = identity_policies(allow(["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "logs:Describe*"], ["*"]))
    assert messages(plan, "resource-wildcard-only-where-aws-requires-it") == in_every_kind(
        ' allows ecr:BatchGetImage, logs:Describe* on every resource (*), but AWS lets these actions be scoped: '
        "name the ARNs they need")


@pytest.mark.parametrize("resource", [
    f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/*", "arn:aws:dynamodb:*:*:table/mcp-estate-test-eu-state",
    f"arn:*:dynamodb:eu-west-1:{ACCOUNT}:table/mcp-estate-test-eu-state", f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/*",
    f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:*", f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:*",
    f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:*/*", f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:*:*",
    f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/*/index/*", "arn:aws:s3:::*/*", "*?"])
@attack("resource-wildcard-only-where-aws-requires-it")
def test_every_resource_of_a_kind_counts_as_the_wildcard(resource):
    plan = identity_policies(allow(["dynamodb:GetItem", "ecr:GetAuthorizationToken"], [TABLE, resource]))
    assert messages(plan, "resource-wildcard-only-where-aws-requires-it") == in_every_kind(
        f" allows dynamodb:GetItem on every resource ({resource}), but AWS lets these actions be scoped: "
        "name the ARNs they need")


@legitimate("resource-wildcard-only-where-aws-requires-it")
def test_the_estates_scoped_wildcard_arns_pass():
    plan = identity_policies(allow(["ecr:BatchGetImage", "logs:PutLogEvents", "secretsmanager:GetSecretValue",
                                    "dynamodb:Query", "s3:GetObject"], [
        f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/mcp/*", f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/mcp/x:*",
        f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:mcp/booking-??????", f"{TABLE}/index/*",
        "arn:aws:s3:::mcp-estate-artifacts/*"]))
    assert messages(plan, "resource-wildcard-only-where-aws-requires-it") == []


EC2 = f"arn:aws:ec2:eu-west-1:{ACCOUNT}"
SUBNET = f"{EC2}:subnet/subnet-0a1b2c3d4e5f60718"


@legitimate("resource-wildcard-only-where-aws-requires-it")
def test_a_vpc_function_creates_interfaces_in_its_subnets_and_manages_them_in_the_documented_form():
    # AWS documents `arn:aws:ec2:<region>:<account>:*/*` for Lambda's upkeep of a VPC function's interfaces:
    # a narrower grant fails CreateFunction (Lambda developer guide, configuration-vpc).
    plan = identity_policies(
        allow("ec2:CreateNetworkInterface", [f"{EC2}:network-interface/*", SUBNET, f"{EC2}:security-group/sg-0a1b"]),
        allow(["ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"],
              f"{EC2}:*/*"),
        allow("ec2:DeleteNetworkInterface", f"{EC2}:network-interface/*",
              Condition={"ArnEquals": {"ec2:Subnet": [SUBNET]}}))
    assert messages(plan, "resource-wildcard-only-where-aws-requires-it") == []


@pytest.mark.parametrize("resource", [
    "*", f"arn:aws:ec2:*:{ACCOUNT}:*/*", "arn:aws:ec2:eu-west-1:*:*/*", f"arn:aws:*:eu-west-1:{ACCOUNT}:*/*",
    f"{EC2}:*", f"{EC2}:*:*", f"{EC2}:*/*/*", f"arn:aws:ec2:eu-*:{ACCOUNT}:*/*", f"{EC2}:network-interface/*"])
@attack("resource-wildcard-only-where-aws-requires-it")
def test_interface_upkeep_on_more_than_the_documented_form_is_refused(resource):
    plan = identity_policies(allow("ec2:DeleteNetworkInterface", resource))
    assert messages(plan, "resource-wildcard-only-where-aws-requires-it") == in_every_kind(
        f" allows ec2:DeleteNetworkInterface on every resource ({resource}), but AWS lets these actions be "
        "scoped: name the ARNs they need")


@pytest.mark.parametrize("action", ["ec2:TerminateInstances", "ec2:CreateNetworkInterface", "ec2:DeleteSubnet",
                                    "dynamodb:DeleteTable"])
@attack("resource-wildcard-only-where-aws-requires-it")
def test_the_documented_form_excuses_only_lambdas_interface_upkeep(action):
    resource = f"arn:aws:{action.split(':')[0]}:eu-west-1:{ACCOUNT}:*/*"
    plan = identity_policies(allow(action, resource))
    assert messages(plan, "resource-wildcard-only-where-aws-requires-it") == in_every_kind(
        f" allows {action} on every resource ({resource}), but AWS lets these actions be scoped: "
        "name the ARNs they need")


@attack("resource-wildcard-only-where-aws-requires-it")
def test_managing_every_interface_of_the_account_is_refused():
    plan = identity_policies(allow(["ec2:DeleteNetworkInterface", "ec2:CreateNetworkInterface"],
                                   f"{EC2}:network-interface/*"),
                             allow("dynamodb:CreateTable", f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/*"))
    assert messages(plan, "resource-wildcard-only-where-aws-requires-it") == sorted(in_every_kind(
        f" allows ec2:DeleteNetworkInterface on every resource ({EC2}:network-interface/*), but AWS lets these "
        "actions be scoped: name the ARNs they need") + in_every_kind(
        f" allows dynamodb:CreateTable on every resource (arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/*), but AWS "
        "lets these actions be scoped: name the ARNs they need"))


@legitimate("resource-wildcard-only-where-aws-requires-it")
def test_actions_without_resource_level_permissions_may_use_the_wildcard():
    plan = identity_policies(
        allow(["ecr:GetAuthorizationToken", "sts:GetCallerIdentity", "logs:DescribeLogGroups"], "*"),
        allow("xray:PutTraceSegments", ["*"]), allow("dynamodb:GetItem"))
    assert messages(plan, "resource-wildcard-only-where-aws-requires-it") == []


@pytest.mark.parametrize("action, star_only", [
    ("ecr:GetAuthorizationToken", True), ("ECR:getAuthorizationToken", True), ("sts:GetCallerIdentity", True),
    ("ecr:BatchGetImage", False), ("kms:Decrypt", False), ("logs:Describe*", False), ("*", False),
    ("ecr:NoSuchAction", False)])
def test_the_catalogue_knows_which_actions_aws_cannot_scope(action, star_only):
    assert requires_wildcard_resource(action) is star_only


# -- attached-policies-from-the-stack-or-the-allow-list -------------------------------------------------------

ATTACHED = "attached-policies-from-the-stack-or-the-allow-list"
SAFE_TRUST = document(ECS_TRUST | {"Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}})


def attached_messages(program, config: dict | None = None) -> list[str]:
    plan = run_program(program)
    return sorted(v.message.split(": ")[0] for v in violations(plan, config=config, policy=ATTACHED))


def test_aws_managed_policies_are_refused_by_content_whatever_their_name_and_route():
    # ReadOnlyAccess reads every secret and table; ...ReadWrite writes them: as broad as ...FullAccess.
    def program():
        aws.iam.RolePolicyAttachment("admin", role="booking-task",
                                     policy_arn="arn:aws:iam::aws:policy/AdministratorAccess")
        aws.iam.UserPolicyAttachment("read-all", user="ci", policy_arn="arn:aws:iam::aws:policy/ReadOnlyAccess")
        aws.iam.GroupPolicyAttachment("rw", group="operators",
                                      policy_arn="arn:aws:iam::aws:policy/AmazonDynamoDBReadOnlyAccess")
        aws.iam.PolicyAttachment("s3", roles=["booking-task"],
                                 policy_arn="arn:aws-us-gov:iam::aws:policy/AmazonS3ReadOnlyAccess")
        aws.iam.RolePolicyAttachmentsExclusive("exclusive", role_name="booking-task", policy_arns=[
            "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"])
        aws.iam.Role("amplify", assume_role_policy=SAFE_TRUST,
                     managed_policy_arns=["arn:aws:iam::aws:policy/AWSLambda_ReadOnlyAccess"])
    assert attached_messages(program) == [
        ("admin attaches the AWS-managed arn:aws:iam::aws:policy/AdministratorAccess, which is not in "
        "allowedManagedPolicies"),
        ("amplify attaches the AWS-managed arn:aws:iam::aws:policy/AWSLambda_ReadOnlyAccess, which is not in "
        "allowedManagedPolicies"),
        ("exclusive attaches the AWS-managed arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy,"
        " which is not in allowedManagedPolicies"),
        ("read-all attaches the AWS-managed arn:aws:iam::aws:policy/ReadOnlyAccess, which is not in "
        "allowedManagedPolicies"),
        ("rw attaches the AWS-managed arn:aws:iam::aws:policy/AmazonDynamoDBReadOnlyAccess, which is not in "
        "allowedManagedPolicies"),
        ("s3 attaches the AWS-managed arn:aws-us-gov:iam::aws:policy/AmazonS3ReadOnlyAccess, which is not in "
        "allowedManagedPolicies")]


def test_policies_written_elsewhere_cannot_be_judged_and_are_refused():
    def program():
        aws.iam.RolePolicyAttachment("own-name", role="booking-task",
                                     policy_arn=f"arn:aws:iam::{ACCOUNT}:policy/BookingTableAccess")
        aws.iam.RolePolicyAttachment("foreign", role="booking-task",
                                     policy_arn="arn:aws:iam::444455556666:policy/Shared")
        aws.iam.RolePolicy("kept", role="booking-task", name="kept", policy=document(allow("dynamodb:GetItem")))
        aws.iam.RolePoliciesExclusive("inline-only", role_name="booking-task", policy_names=["kept", "console-made"])
    assert attached_messages(program) == [
        ("foreign attaches arn:aws:iam::444455556666:policy/Shared, a policy this stack does not write, so its "
        "content cannot be judged"),
        ("inline-only keeps inline policies console-made on role booking-task, which this stack does not write, so "
        "their content cannot be judged"),
        (f"own-name attaches arn:aws:iam::{ACCOUNT}:policy/BookingTableAccess, a policy this stack does not write, "
        "so its content cannot be judged")]


@legitimate("attached-policies-from-the-stack-or-the-allow-list")
def test_policies_of_the_stack_and_allow_listed_aws_policies_pass():
    def program():
        policy = aws.iam.Policy("table-read", policy=document(allow("dynamodb:GetItem")))
        role = aws.iam.Role("worker", name="worker", assume_role_policy=SAFE_TRUST,
                            inline_policies=[{"name": "inline", "policy": document(allow("dynamodb:Query"))}])
        aws.iam.RolePolicyAttachment("own", role=role.name, policy_arn=policy.arn)
        aws.iam.PolicyAttachment("own-again", roles=[role.name], policy_arn=policy.arn)
        aws.iam.RolePolicyAttachment("basic", role=role.name,
                                     policy_arn="arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
        aws.iam.RolePolicy("extra", role=role.name, name="extra", policy=document(allow("dynamodb:PutItem")))
        aws.iam.RolePoliciesExclusive("inline-only", role_name=role.name, policy_names=["inline", "extra"])
    assert attached_messages(program, {ATTACHED: {"allowedManagedPolicies": [
        "service-role/AWSLambdaBasicExecutionRole"]}}) == []


# -- trust policies ------------------------------------------------------------------------------------------

def role_trusting(*statements: dict) -> Plan:
    return run_program(lambda: aws.iam.Role("trusted", assume_role_policy=document(*statements)))


@pytest.mark.parametrize("statement", [
    {"Principal": "*"}, {"Principal": {"AWS": "*"}},
    {"Principal": {"AWS": ["*"]}, "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}},
    {"NotPrincipal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/intruder"}}], ids=["star", "aws", "with-condition", "not"])
@attack("no-trust-policy-open-to-everyone")
def test_roles_anyone_can_assume_are_refused(statement):
    plan = role_trusting({"Effect": "Allow", "Action": "sts:AssumeRole", **statement})
    assert messages(as_object(plan, "trusted", "assumeRolePolicy"), "no-trust-policy-open-to-everyone") == [
        "role trusted can be assumed by anyone: trust a named service or role ARN instead"]


@legitimate("no-trust-policy-open-to-everyone")
def test_roles_trusting_named_principals_pass():
    plan = role_trusting({"Effect": "Allow", "Action": "sts:AssumeRole",
                          "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/deployer"}},
                         {"Effect": "Deny", "Action": "sts:AssumeRole", "Principal": "*",
                          "Condition": {"Bool": {"aws:MultiFactorAuthPresent": "false"}}})
    assert messages(plan, "no-trust-policy-open-to-everyone") == []


@pytest.mark.parametrize("principal, condition", [
    ({"Service": "ecs-tasks.amazonaws.com"}, None),
    ({"Service": ["ec2.amazonaws.com", "ecs-tasks.amazonaws.com"]}, None),
    ({"Service": "ecs-tasks.amazonaws.com"}, {"StringEqualsIfExists": {"aws:SourceAccount": ACCOUNT}}),
    ({"Service": "ecs-tasks.amazonaws.com"}, {"StringNotEquals": {"aws:SourceAccount": "444455556666"}}),
    ({"Service": "ecs-tasks.amazonaws.com"}, {"ArnLike": {"aws:SourceArn": "*"}}),
], ids=["none", "in-a-list", "if-exists", "negated", "any-arn"])
@attack("ecs-task-trust-has-source-conditions")
def test_ecs_task_trust_without_a_source_condition_is_refused(principal, condition):
    statement = {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": principal}
    plan = role_trusting(statement | {"Condition": condition} if condition else statement)
    assert messages(plan, "ecs-task-trust-has-source-conditions") == [
        ("role trusted trusts ecs-tasks.amazonaws.com for any account's tasks and no task definition uses it only "
        "as its execution role: add a condition on aws:SourceAccount or aws:SourceArn (StringEquals / ArnLike)")]


@pytest.mark.parametrize("condition", [
    {"StringEquals": {"aws:SourceAccount": ACCOUNT}},
    {"ArnLike": {"aws:SourceArn": [f"arn:aws:ecs:eu-west-1:{ACCOUNT}:*"]}},
    {"ArnEquals": {"aws:sourcearn": f"arn:aws:ecs:eu-west-1:{ACCOUNT}:task/mcp/0123"}},
], ids=["account", "arn-like", "lower-case-key"])
@legitimate("ecs-task-trust-has-source-conditions")
def test_ecs_task_trust_pinned_to_the_source_passes(condition):
    plan = role_trusting(ECS_TRUST | {"Condition": condition},
                         {"Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "ecr.amazonaws.com"}})
    assert messages(plan, "ecs-task-trust-has-source-conditions") == []


def ecs_roles(*uses: tuple[str, str, str], **role_options) -> Plan:
    """Roles `task-role` and `exec-role` trusting ECS without conditions, and task definitions naming them:
    each use is (task definition, taskRoleArn or executionRoleArn, `arn` or `name`, role)."""
    def program():
        roles = {key: aws.iam.Role(key, name=f"booking-{key}", assume_role_policy=document(ECS_TRUST),
                                   **role_options) for key in ("task-role", "exec-role")}
        definitions: dict[str, dict] = {}
        for definition, field, spelling, role in uses:
            definitions.setdefault(definition, {})[field] = roles[role].arn if spelling == "arn" else roles[role].name
        for definition, fields in sorted(definitions.items()):
            aws.ecs.TaskDefinition(definition, family=definition, container_definitions="[]", **fields)
    return run_program(program)


def refused_roles(plan: Plan) -> list[str]:
    return sorted(m.split()[1] for m in messages(plan, "ecs-task-trust-has-source-conditions"))


@attack("ecs-task-trust-has-source-conditions")
def test_a_role_used_only_as_an_execution_role_needs_no_source_condition():
    plan = ecs_roles(("booking", "execution_role_arn", "arn", "exec-role"),
                     ("booking", "task_role_arn", "arn", "task-role"),
                     ("loyalty", "execution_role_arn", "name", "exec-role"))
    assert messages(plan, "ecs-task-trust-has-source-conditions") == [
        ("role task-role trusts ecs-tasks.amazonaws.com for any account's tasks and task definitions run tasks as it "
        "(taskRoleArn): add a condition on aws:SourceAccount or aws:SourceArn (StringEquals / ArnLike)")]


@pytest.mark.parametrize("uses", [
    [("booking", "execution_role_arn", "arn", "exec-role"), ("loyalty", "task_role_arn", "arn", "exec-role")],
    [("booking", "execution_role_arn", "arn", "exec-role"), ("loyalty", "task_role_arn", "name", "exec-role")],
    [("booking", "execution_role_arn", "arn", "exec-role"), ("booking", "task_role_arn", "arn", "exec-role")],
    [],
], ids=["task-role-elsewhere", "task-role-by-name", "both-in-one", "unused"])
def test_a_task_role_cannot_pass_as_an_execution_role(uses):
    # Used as a task role anywhere (by ARN or by name, as ECS accepts), or by nothing at all: conditions needed.
    assert "exec-role" in refused_roles(ecs_roles(*uses))


def test_a_task_role_dressed_as_an_execution_role_is_still_refused():
    plan = ecs_roles(("booking", "task_role_arn", "arn", "exec-role"), description="ECS task execution role",
                     tags={"mcp-estate:role": "execution", "Name": "ecsTaskExecutionRole"})
    assert refused_roles(plan) == ["exec-role", "task-role"]


def preview_of(plan: Plan) -> list[dict]:
    """The plan's export as a first preview sees it: the task definitions' role ARNs are not known yet."""
    resources = [r.export() for r in plan.resources]
    for resource in resources:
        if resource["type"] == "aws:ecs/taskDefinition:TaskDefinition":
            for props in (resource["inputs"], resource["outputs"]):
                props.update({key: UNKNOWN_STRING_VALUE for key in ("taskRoleArn", "executionRoleArn") if key in props})
    return resources


def test_at_a_first_preview_an_unguarded_role_cannot_be_judged_yet_and_says_so():
    plan = ecs_roles(("booking", "execution_role_arn", "arn", "exec-role"))
    found = [v for v in evaluate(preview_of(plan)) if v.policy == "ecs-task-trust-has-source-conditions"]
    assert [(v.enforcement_level, v.message.split(":")[0]) for v in found] == [
        ("advisory", "can't run policy 'ecs-task-trust-has-source-conditions' during preview")]


@legitimate("ecs-task-trust-has-source-conditions")
def test_task_definitions_are_not_read_when_every_ecs_role_pins_its_source():
    # So a first preview still checks a stack whose every ECS role is guarded.
    def program():
        role = aws.iam.Role("task-role", assume_role_policy=document(ECS_TRUST | {"Condition": {
            "StringEquals": {"aws:SourceAccount": ACCOUNT}}}))
        aws.ecs.TaskDefinition("booking", family="booking", container_definitions="[]", task_role_arn=role.arn)
    found = evaluate(preview_of(run_program(program)))
    assert [v for v in found if v.policy == "ecs-task-trust-has-source-conditions"] == []


# -- what the estate's components build ---------------------------------------------------------------

@legitimate("no-not-action-or-not-resource-allows")
@legitimate("attached-policies-from-the-stack-or-the-allow-list")
@legitimate("no-trust-policy-open-to-everyone")
@legitimate("role-trust-admits-only-the-estate")
def test_the_estates_roles_and_key_policies_pass_every_least_privilege_control():
    regions = ["eu-west-1", "us-east-1"]
    key = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/mrk-0123456789abcdef0123456789abcdef"
    tags = {"mcp-estate:stack": "test", "mcp-estate:environment": "prod"}

    def program():
        providers = {r: aws.Provider(f"aws-{r}", region=r, allowed_account_ids=[ACCOUNT]) for r in regions}
        identity = ServerIdentity("booking-identity", ServerIdentityArgs(
            server="booking", group="eu", name_prefix="mcp-estate-test", account_id=ACCOUNT, regions=regions,
            tags=tags,
            grants=[Grant(actions=["dynamodb:GetItem", "dynamodb:PutItem"], resources=[TABLE])],
            repository_arns=[f"arn:aws:ecr:{r}:{ACCOUNT}:repository/mcp/booking" for r in regions],
            log_group_arns=[f"arn:aws:logs:{r}:{ACCOUNT}:log-group:/mcp-estate-test/booking:*" for r in regions],
            secret_arns=[f"arn:aws:secretsmanager:{r}:{ACCOUNT}:secret:mcp-estate-test/booking-??????"
                         for r in regions], key_arns=[key]),
            opts=pulumi.ResourceOptions(providers=[providers["eu-west-1"]]))
        aws.ecs.TaskDefinition("booking-task", family="booking", container_definitions="[]",
                               task_role_arn=identity.task_role_arn, execution_role_arn=identity.execution_role_arn)
        EstateKeys("eu", EstateKeysArgs(primary_region="eu-west-1", regions=regions, account_id=ACCOUNT,
                                        alias="alias/mcp-estate-test-eu", providers=providers, protect=True,
                                        tags=tags))
        RegionNetwork("net-eu-west-1", RegionNetworkArgs(
            region="eu-west-1", account_id=ACCOUNT, cidr="10.30.0.0/16", availability_zones=2, nat=False,
            log_key_arn=key, log_retention_days=90, flow_logs_role_name="net-eu-west-1-flow-logs", tags=tags),
            opts=pulumi.ResourceOptions(provider=providers["eu-west-1"]))

    plan = run_program(program)
    execution = json.loads(plan.named("booking-identity-execution-policy").inputs["policy"])
    assert {"Sid": "EcrLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"} \
        in execution["Statement"]
    assert any('"kms:*"' in k.inputs["policy"] for k in plan.of_type("aws:kms/key:Key"))
    assert [v for v in violations(plan) if v.policy in POLICIES] == []
