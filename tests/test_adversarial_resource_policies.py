"""resource-access-stays-in-the-estate over the resource-policy types added for issue 12 (EventBridge event
buses, API Gateway, EFS, OpenSearch, Backup vaults), and service principals acting for another account
in trust and resource policies: each risk in several forms must fail; the estate's own grants must pass."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pytest
from conftest import ACCOUNT, run_program, violations
from corpus import attack, legitimate

REGION = "eu-west-1"
FOREIGN = "444455556666"
ACCESS = "resource-access-stays-in-the-estate"
TRUST = "role-trust-admits-only-the-estate"


def document(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def grant(principal, action="*", **extra) -> dict:
    return {"Effect": "Allow", "Principal": principal, "Action": action, "Resource": "*", **extra}


# type -> a builder of one resource carrying `policy` with the estate's provider
POLICY_HOLDERS = {
    "EventBridge event bus policy": lambda policy, opts: aws.cloudwatch.EventBusPolicy(
        "held", event_bus_name="mcp-estate-prod", policy=policy, opts=opts),
    "API Gateway resource policy": lambda policy, opts: aws.apigateway.RestApiPolicy(
        "held", rest_api_id="a1b2c3d4e5", policy=policy, opts=opts),
    "API Gateway REST API": lambda policy, opts: aws.apigateway.RestApi("held", name="api", policy=policy, opts=opts),
    "EFS file system policy": lambda policy, opts: aws.efs.FileSystemPolicy(
        "held", file_system_id="fs-0a1b2c3d", policy=policy, opts=opts),
    "OpenSearch domain access policy": lambda policy, opts: aws.opensearch.DomainPolicy(
        "held", domain_name="search", access_policies=policy, opts=opts),
    "OpenSearch domain": lambda policy, opts: aws.opensearch.Domain(
        "held", domain_name="search", access_policies=policy, opts=opts),
    "Backup vault policy": lambda policy, opts: aws.backup.VaultPolicy(
        "held", backup_vault_name="vault", policy=policy, opts=opts),
}


def messages(policy_name: str, what: str, *statements: dict) -> list[str]:
    def program():
        provider = aws.Provider("aws-eu-west-1", region=REGION, allowed_account_ids=[ACCOUNT])
        POLICY_HOLDERS[what](document(*statements), pulumi.ResourceOptions(provider=provider))
    found = violations(run_program(program), policy=policy_name)
    return sorted(v.message.split(": ")[0] for v in found)


@pytest.mark.parametrize("what", sorted(POLICY_HOLDERS))
@pytest.mark.parametrize("principal, admits", [
    ("*", "everyone, with no condition tying the caller or resource to the estate's account"),
    ({"AWS": ["*"]}, "everyone, with no condition tying the caller or resource to the estate's account"),
    ({"AWS": f"arn:aws:iam::{FOREIGN}:root"}, f"account {FOREIGN}, which is neither the estate's nor in "
                                              "trustedAccounts"),
    ({"Service": "events.amazonaws.com"}, "the service events.amazonaws.com acting for any account (no "
                                          "aws:SourceAccount or aws:SourceArn of the estate)")],
    ids=["star", "aws-star-list", "foreign-root", "unconditioned-service"])
def test_every_new_resource_policy_type_refuses_who_is_not_the_estate(what, principal, admits):
    assert messages(ACCESS, what, grant(principal)) == [f"{what} held admits {admits}"]


@pytest.mark.parametrize("what", sorted(POLICY_HOLDERS))
@legitimate("resource-access-stays-in-the-estate")
def test_the_estates_own_principals_pass_on_every_new_type(what):
    assert messages(ACCESS, what, grant({"AWS": f"arn:aws:iam::{ACCOUNT}:role/booking-task"}),
                    grant("*", Condition={"StringEquals": {"aws:PrincipalAccount": ACCOUNT}}),
                    grant({"Service": "events.amazonaws.com"},
                          Condition={"StringEquals": {"aws:SourceAccount": ACCOUNT}})) == []


@attack("resource-access-stays-in-the-estate")
def test_a_source_ip_alone_does_not_make_everyone_the_estate():
    assert messages(ACCESS, "OpenSearch domain access policy", grant(
        {"AWS": "*"}, Condition={"IpAddress": {"aws:SourceIp": ["203.0.113.0/24"]}})) == [
        "OpenSearch domain access policy held admits everyone, with no condition tying the caller or resource "
        "to the estate's account"]


# -- a service acting for another account ----------------------------------------------------------------

def trusting(*statements: dict) -> list[str]:
    return sorted(v.message.split(": ")[0] for v in trusted_by(*statements))


def trusted_by(*statements: dict) -> list:
    def program():
        provider = aws.Provider("aws-eu-west-1", region=REGION, allowed_account_ids=[ACCOUNT])
        aws.iam.Role("runner", assume_role_policy=document(*statements), opts=pulumi.ResourceOptions(provider=provider))
    return violations(run_program(program), policy=TRUST)


def service_trust(service: str, condition: dict | None = None) -> dict:
    return {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole",
            **({"Condition": condition} if condition else {})}


@pytest.mark.parametrize("condition", [
    {"StringEquals": {"aws:SourceAccount": FOREIGN}},
    {"ArnLike": {"aws:SourceArn": f"arn:aws:states:{REGION}:{FOREIGN}:stateMachine:*"}},
    {"StringEquals": {"aws:SourceAccount": [ACCOUNT, FOREIGN]}},
    {"ArnEquals": {"AWS:SourceArn": f"arn:aws:events:{REGION}:{FOREIGN}:rule/x"}}])
def test_a_service_trusted_for_another_account_is_refused(condition):
    assert trusting(service_trust("states.amazonaws.com", condition)) == [
        f"role runner admits the service states.amazonaws.com acting for account {FOREIGN}, not the estate's account"]


BUCKET_OF_THE_ESTATE = {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::mcp-estate-logs"},
                        "StringEquals": {"aws:SourceAccount": ACCOUNT}}


@pytest.mark.parametrize("service, condition", [
    ("states.amazonaws.com", {"StringEquals": {"aws:SourceAccount": ACCOUNT}}),   # unknown to the table, pinned
    ("events.amazonaws.com", {"ArnLike": {"aws:SourceArn": f"arn:aws:events:*:{ACCOUNT}:rule/*"}}),
    ("logs.eu-west-1.amazonaws.com", {"ArnLike": {"aws:SourceArn": f"arn:aws:logs:eu-west-1:{ACCOUNT}:*"}}),
    ("s3.amazonaws.com", BUCKET_OF_THE_ESTATE),
    ("ecr.amazonaws.com", None), ("ecs.amazonaws.com", None),   # AWS documents these trusts without a condition
    ("ecs-tasks.amazonaws.com", None)])   # judged by ecs-task-trust-has-source-conditions (execution roles)
@legitimate("role-trust-admits-only-the-estate")
def test_a_service_pinned_to_the_estate_or_documented_without_conditions_passes(service, condition):
    assert trusting(service_trust(service, condition)) == []


DOCUMENTED = ("role runner admits the service {} acting for any account (no aws:SourceAccount or aws:SourceArn of the "
              "estate; ")
UNKNOWN = ("role runner admits the service {} acting for any account: the pack's table of service principals "
           "(policies/service_principals.py) does not know it, so pin aws:SourceAccount or aws:SourceArn")


@pytest.mark.parametrize("service, condition, expected", [
    # the table says AWS documents the source keys for these services' roles
    ("lambda.amazonaws.com", None, DOCUMENTED),
    ("events.amazonaws.com", {"StringLike": {"aws:SourceArn": "arn:aws:events:*:*:rule/*"}}, DOCUMENTED),
    ("vpc-flow-logs.amazonaws.com", {"StringEqualsIfExists": {"aws:SourceAccount": ACCOUNT}}, DOCUMENTED),
    ("logs.eu-west-1.amazonaws.com", None, DOCUMENTED),   # the regional spelling is the same service
    # unknown to the table: refused unless pinned; a bucket ARN names no account (the name can change hands)
    ("states.amazonaws.com", None, UNKNOWN),
    ("s3.amazonaws.com", {"ArnLike": {"aws:SourceArn": "arn:aws:s3:::mcp-estate-logs"}}, UNKNOWN),
    ("scheduler.amazonaws.com", {"Null": {"aws:SourceAccount": "false"}}, UNKNOWN)])
@attack("role-trust-admits-only-the-estate")
def test_a_service_trusted_for_any_account_is_refused(service, condition, expected):
    [message] = [v.message for v in trusted_by(service_trust(service, condition))]
    assert message.startswith(expected.format(service)), message


@legitimate("resource-access-stays-in-the-estate")
def test_an_s3_notification_pinned_to_the_bucket_and_account_passes_on_a_queue():
    def program():
        provider = aws.Provider("aws-eu-west-1", region=REGION, allowed_account_ids=[ACCOUNT])
        aws.sqs.QueuePolicy("notices", queue_url="https://sqs.eu-west-1.amazonaws.com/111122223333/q",
                            policy=document(grant({"Service": "s3.amazonaws.com"}, "sqs:SendMessage", Condition={
                                "ArnLike": {"aws:SourceArn": "arn:aws:s3:::mcp-estate-logs"},
                                "StringEquals": {"aws:SourceAccount": ACCOUNT}})),
                            opts=pulumi.ResourceOptions(provider=provider))
    assert violations(run_program(program), policy=ACCESS) == []
