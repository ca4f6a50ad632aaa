"""no-privilege-escalation-paths tried as an attacker would (issue 12, "dangerous only together"): each
half of a combination in a different policy, attachment route or spelling must fail; what a role
legitimately holds, or what its boundary cuts, must pass."""

from __future__ import annotations

import json

import pulumi_aws as aws
import pytest
from conftest import ACCOUNT, run_program, violations
from corpus import attack, legitimate

POLICY = "no-privilege-escalation-paths"
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole",
    "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}}]})
ROLES = f"arn:aws:iam::{ACCOUNT}:role"


def document(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action, resource="*", **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def found(program) -> list[str]:
    return sorted(v.message for v in violations(run_program(program), policy=POLICY))


def role(name: str = "deploy", **extra) -> aws.iam.Role:
    return aws.iam.Role(name, name=name, assume_role_policy=TRUST, **extra)


def in_two_inline_policies(first: dict, second: dict):
    def program():
        role()
        aws.iam.RolePolicy("one", role="deploy", policy=document(first))
        aws.iam.RolePolicy("two", role="deploy", policy=document(second))
    return program


# -- combinations split over the policies of one role ---------------------------------------------------

@pytest.mark.parametrize("launch, what", [
    ("lambda:CreateFunction", "a new Lambda function"), ("ec2:RunInstances", "a new EC2 instance"),
    ("ECS:registerTaskDefinition", "a new ECS task definition"),
    ("cloudformation:CreateStack", "a new CloudFormation stack"), ("glue:CreateJob", "a new Glue job")])
@attack("no-privilege-escalation-paths")
def test_pass_role_in_one_policy_and_a_launch_in_another_is_refused(launch, what):
    assert found(in_two_inline_policies(allow("iam:PassRole"), allow(launch))) == [
        f"role deploy can escalate its privileges: iam:PassRole on * with {launch.lower()}: it can hand any "
        f"of those roles to {what} and act as it"]


@attack("no-privilege-escalation-paths")
def test_the_halves_over_an_inline_policy_a_managed_policy_and_an_attachment_are_combined():
    def program():
        launch = aws.iam.Policy("launch", name="launch", policy=document(allow("lambda:Create*")))
        role(inline_policies=[aws.iam.RoleInlinePolicyArgs(name="pass", policy=document(
            allow("iam:Pass*", f"{ROLES}/mcp-*")))])
        aws.iam.RolePolicyAttachment("attach", role="deploy", policy_arn=launch.arn)
    assert found(program) == [
        f"role deploy can escalate its privileges: iam:PassRole on {ROLES}/mcp-* with lambda:createfunction: it "
        "can hand any of those roles to a new Lambda function and act as it"]


@attack("no-privilege-escalation-paths")
def test_not_action_grants_the_launch_it_does_not_list():
    statement = {"Effect": "Allow", "NotAction": ["s3:*"], "Resource": "*"}
    messages = found(in_two_inline_policies(allow("iam:PassRole"), statement))
    assert any("with lambda:createfunction" in m for m in messages)
    assert any(m.endswith("iam:putrolepolicy on *: it can change its own or another identity's permissions or "
                          "code") for m in messages)


@pytest.mark.parametrize("action, resource", [
    ("iam:PutRolePolicy", f"{ROLES}/deploy"),                 # on itself, exactly
    ("iam:AttachRolePolicy", f"{ROLES}/dep*"),                # on itself by a pattern
    ("iam:DeleteRolePermissionsBoundary", f"{ROLES}/*"),      # lifting its own boundary
    ("iam:CreatePolicyVersion", f"arn:aws:iam::{ACCOUNT}:policy/*"),
    ("iam:UpdateAssumeRolePolicy", "arn:aws:iam::*:role/deploy"),
    ("lambda:UpdateFunctionCode", f"arn:aws:lambda:eu-west-1:{ACCOUNT}:function:*")])
@attack("no-privilege-escalation-paths")
def test_changing_its_own_or_unnamed_permissions_is_refused(action, resource):
    def program():
        role()
        aws.iam.RolePolicy("one", role="deploy", policy=document(allow(action, resource)))
    assert found(program) == [f"role deploy can escalate its privileges: {action.lower()} on {resource}: it can "
                              "change its own or another identity's permissions or code"]


@attack("no-privilege-escalation-paths")
def test_assuming_every_role_is_refused_for_a_user_too():
    def program():
        aws.iam.User("ci", name="ci")
        aws.iam.UserPolicy("ci", user="ci", policy=document(allow("sts:AssumeRole", f"{ROLES}/*")))
    assert found(program) == [f"user ci can escalate its privileges: sts:AssumeRole on {ROLES}/*: it can "
                              "become any role that trusts the account"]


@attack("no-privilege-escalation-paths")
def test_a_new_version_of_its_own_boundary_is_refused():
    def program():
        boundary = aws.iam.Policy("boundary", name="boundary", policy=document(allow(["s3:GetObject",
                                                                                      "iam:CreatePolicyVersion"])))
        role(permissions_boundary=boundary.arn)
        aws.iam.RolePolicy("one", role="deploy", policy=document(allow(
            "iam:CreatePolicyVersion", f"arn:aws:iam::{ACCOUNT}:policy/boundary")))
    assert found(program) == [
        f"role deploy can escalate its privileges: iam:createpolicyversion on arn:aws:iam::{ACCOUNT}:policy/boundary: "
        "it can change its own or another identity's permissions or code"]


# -- what must pass --------------------------------------------------------------------------------------

@legitimate("no-privilege-escalation-paths")
def test_a_deploy_role_passing_named_roles_to_ecs_passes():
    assert found(in_two_inline_policies(
        allow("iam:PassRole", [f"{ROLES}/mcp-estate-prod-booking-task", f"{ROLES}/mcp-estate-prod-booking-exec"]),
        allow(["ecs:RegisterTaskDefinition", "ecs:UpdateService"]))) == []


def test_pass_role_pinned_to_ecs_tasks_with_a_lambda_launch_passes():
    passing = allow("iam:PassRole", f"{ROLES}/*",
                    Condition={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}})
    assert found(in_two_inline_policies(passing, allow("lambda:CreateFunction"))) == []
    assert found(in_two_inline_policies(passing, allow("ecs:RegisterTaskDefinition"))) != []


def test_a_boundary_leaving_the_launch_out_passes_and_one_allowing_it_does_not():
    def bounded(boundary_actions):
        def program():
            boundary = aws.iam.Policy("boundary", name="boundary", policy=document(allow(boundary_actions)))
            role(permissions_boundary=boundary.arn)
            aws.iam.RolePolicy("one", role="deploy", policy=document(allow(["iam:PassRole", "lambda:CreateFunction"])))
        return program
    assert found(bounded(["iam:PassRole", "s3:GetObject"])) == []
    assert len(found(bounded(["iam:PassRole", "lambda:*"]))) == 1


@legitimate("no-privilege-escalation-paths")
def test_two_roles_each_with_one_half_pass():
    def program():
        role("a")
        role("b")
        aws.iam.RolePolicy("one", role="a", policy=document(allow("iam:PassRole")))
        aws.iam.RolePolicy("two", role="b", policy=document(allow("lambda:CreateFunction")))
    assert found(program) == []


def test_changing_a_named_other_role_passes():
    def program():
        role()
        aws.iam.RolePolicy("one", role="deploy", policy=document(allow("iam:PutRolePolicy", f"{ROLES}/booking-task")))
    assert found(program) == []


@legitimate("no-privilege-escalation-paths")
def test_the_shipped_prod_stack_holds_no_escalation_path():
    from conftest import shipped_plan
    assert violations(shipped_plan("prod"), policy=POLICY) == []




# -- a user holds what its groups hold (issue 12) ------------------------------------------------------

def user_with_pass_role() -> None:
    aws.iam.User("ci", name="ci")
    aws.iam.UserPolicy("ci", user="ci", policy=document(allow("iam:PassRole")))


LAUNCH_VIA_GROUP = ("user ci can escalate its privileges: iam:PassRole on * with lambda:createfunction: it can hand "
                    "any of those roles to a new Lambda function and act as it")


def deployers(attach) -> None:
    """Group deployers, given lambda:CreateFunction by `attach(group, policy)`."""
    group = aws.iam.Group("deployers", name="deployers")
    launch = aws.iam.Policy("launch", name="launch", policy=document(allow("lambda:CreateFunction")))
    attach(group, launch)


@pytest.mark.parametrize("attach", [
    lambda group, launch: aws.iam.GroupPolicy("inline", group="deployers",
                                              policy=document(allow("lambda:CreateFunction"))),
    lambda group, launch: aws.iam.GroupPolicyAttachment("attach", group=group.name, policy_arn=launch.arn),
    lambda group, launch: aws.iam.PolicyAttachment("attach", name="attach", groups=["deployers"],
                                                   policy_arn=launch.arn),
    lambda group, launch: aws.iam.GroupPolicyAttachmentsExclusive("attach", group_name="deployers",
                                                                  policy_arns=[launch.arn]),
])
@attack("no-privilege-escalation-paths")
def test_a_launch_a_user_gets_from_its_group_completes_its_pass_role(attach):
    def program():
        user_with_pass_role()
        deployers(attach)
        aws.iam.UserGroupMembership("ci-groups", user="ci", groups=["deployers"])
    assert found(program) == [LAUNCH_VIA_GROUP]


@attack("no-privilege-escalation-paths")
def test_membership_by_a_group_membership_resource_counts_too():
    def program():
        aws.iam.User("ci", name="ci")
        group = aws.iam.Group("deployers", name="deployers")
        aws.iam.GroupPolicy("inline", group="deployers", policy=document(allow("lambda:CreateFunction")))
        aws.iam.GroupPolicy("pass", group="deployers", policy=document(allow("iam:PassRole")))
        aws.iam.GroupMembership("members", name="members", group=group.name,
                                users=["ci"])
    assert found(program) == [
        "group deployers can escalate its privileges: iam:PassRole on * with lambda:createfunction: it can hand "
        "any of those roles to a new Lambda function and act as it", LAUNCH_VIA_GROUP]


@attack("no-privilege-escalation-paths")
def test_a_user_changing_its_own_groups_policy_is_changing_itself():
    group_arn = f"arn:aws:iam::{ACCOUNT}:group/deployers"

    def program():
        aws.iam.User("ci", name="ci")
        aws.iam.Group("deployers", name="deployers")
        aws.iam.UserPolicy("ci", user="ci", policy=document(allow("iam:PutGroupPolicy", group_arn)))
        aws.iam.UserGroupMembership("ci-groups", user="ci", groups=["deployers"])
    assert found(program) == [f"user ci can escalate its privileges: iam:putgrouppolicy on {group_arn}: it can "
                              "change its own or another identity's permissions or code"]


@attack("no-privilege-escalation-paths")
def test_a_user_in_a_group_this_stack_does_not_define_is_refused():
    def program():
        aws.iam.User("ci", name="ci")
        aws.iam.UserGroupMembership("ci-groups", user="ci", groups=["Admins"])
    assert found(program) == [
        "user ci is in group Admins, which this stack does not define, so what the group grants it cannot be "
        "judged: define the group (and its policies) in this stack, or leave the user out of it"]


@legitimate("no-privilege-escalation-paths")
def test_a_user_outside_the_group_with_the_other_half_passes():
    def program():
        user_with_pass_role()
        deployers(lambda group, launch: aws.iam.GroupPolicyAttachment("attach", group="deployers",
                                                                      policy_arn=launch.arn))
        aws.iam.Group("readers", name="readers")
        aws.iam.UserGroupMembership("ci-groups", user="ci", groups=["readers"])
    assert found(program) == []


@legitimate("no-privilege-escalation-paths")
def test_a_users_boundary_narrows_what_its_group_grants():
    def program():
        boundary = aws.iam.Policy("boundary", name="boundary", policy=document(allow(["iam:PassRole", "s3:*"])))
        aws.iam.User("ci", name="ci", permissions_boundary=boundary.arn)
        aws.iam.UserPolicy("ci", user="ci", policy=document(allow("iam:PassRole")))
        deployers(lambda group, launch: aws.iam.GroupPolicyAttachment("attach", group="deployers",
                                                                      policy_arn=launch.arn))
        aws.iam.UserGroupMembership("ci-groups", user="ci", groups=["deployers"])
    assert found(program) == []
