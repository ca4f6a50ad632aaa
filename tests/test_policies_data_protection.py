"""The data-protection controls over real SDK resources: what passes, and every way to fall short."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from mcp_estate.checking.check import evaluate
from corpus import attack, legitimate
from conftest import run_program, violations

KEY = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
KEY_WEST = "arn:aws:kms:us-west-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
PROD = {"mcp-estate:environment": "prod"}
DEV = {"mcp-estate:environment": "dev"}


def messages(plan, name: str, config: dict | None = None) -> list[str]:
    """The policy's messages, sorted: resources register concurrently, in no fixed order."""
    return sorted(v.message for v in violations(plan, config, policy=name))


def table(name: str = "sessions", *, tags: dict = PROD, protect: bool = True, **overrides) -> aws.dynamodb.Table:
    args = dict(
        billing_mode="PAY_PER_REQUEST", hash_key="pk", range_key="sk",
        attributes=[{"name": "pk", "type": "S"}, {"name": "sk", "type": "S"}],
        stream_enabled=True, stream_view_type="NEW_AND_OLD_IMAGES",
        point_in_time_recovery={"enabled": True},
        server_side_encryption={"enabled": True, "kms_key_arn": KEY},
        deletion_protection_enabled=True,
        replicas=[{"region_name": "us-west-2", "kms_key_arn": KEY_WEST, "point_in_time_recovery": True,
                   "propagate_tags": True, "deletion_protection_enabled": True}],
        tags=tags)
    args.update(overrides)
    return aws.dynamodb.Table(name, **args, opts=pulumi.ResourceOptions(protect=protect))


# -- dynamodb-tables-protected ----------------------------------------------------------------------

@legitimate("dynamodb-tables-protected")
def test_a_prod_global_table_with_recovery_its_own_keys_and_protection_passes():
    assert messages(run_program(table), "dynamodb-tables-protected") == sorted([])


def test_a_table_without_point_in_time_recovery_fails():
    plan = run_program(lambda: table(point_in_time_recovery={"enabled": False}))
    assert messages(plan, "dynamodb-tables-protected") == sorted([
        "DynamoDB table sessions has no point-in-time recovery: set point_in_time_recovery={'enabled': True}"])


def test_a_table_on_an_aws_owned_or_aws_managed_key_fails():
    def program():
        table("owned", server_side_encryption=None)
        table("managed", server_side_encryption={"enabled": True})
        table("alias", server_side_encryption={
            "enabled": True, "kms_key_arn": "arn:aws:kms:us-east-1:111122223333:alias/aws/dynamodb"})
    alias, managed, owned = messages(run_program(program), "dynamodb-tables-protected")
    assert owned.startswith("DynamoDB table owned is encrypted with an AWS-owned key")
    assert managed == ("DynamoDB table managed uses no customer-managed KMS key: "
                       "set server_side_encryption.kms_key_arn to the estate's key")
    assert alias.startswith("DynamoDB table alias uses the AWS-managed key arn:aws:kms:us-east-1:111122223333:"
                            "alias/aws/dynamodb")


def test_a_replica_without_recovery_its_own_key_or_deletion_protection_fails_in_prod():
    plan = run_program(lambda: table(replicas=[{"region_name": "us-west-2"}]))
    assert messages(plan, "dynamodb-tables-protected") == sorted([
        "DynamoDB table sessions replica in us-west-2 has no point-in-time recovery: "
        "set the replica's point_in_time_recovery=True",
        "DynamoDB table sessions replica in us-west-2 uses no customer-managed KMS key: "
        "set the replica's kms_key_arn to the estate's key in that region",
        "DynamoDB table sessions replica in us-west-2 can be deleted in prod: "
        "set the replica's deletion_protection_enabled=True"])


@attack("dynamodb-tables-protected")
def test_a_prod_table_must_be_deletion_protected_and_pulumi_protected():
    plan = run_program(lambda: table(deletion_protection_enabled=False, protect=False))
    assert messages(plan, "dynamodb-tables-protected") == sorted([
        "DynamoDB table sessions can be deleted in prod: set deletion_protection_enabled=True",
        "DynamoDB table sessions is not protected in prod: pass opts=ResourceOptions(protect=True)"])


@attack("dynamodb-tables-protected")
def test_prod_comes_from_the_policy_config_when_the_table_is_untagged():
    plan = run_program(lambda: table(tags=None, deletion_protection_enabled=False, protect=False))
    assert messages(plan, "dynamodb-tables-protected") == sorted([])
    assert len(messages(plan, "dynamodb-tables-protected",
                        {"dynamodb-tables-protected": {"environment": "prod"}})) == 2


@attack("dynamodb-tables-protected")
def test_a_table_tagged_dev_in_a_prod_stack_is_held_to_prod_and_its_tag_reported():
    plan = run_program(lambda: table(tags=DEV, deletion_protection_enabled=False, protect=False))
    assert messages(plan, "dynamodb-tables-protected", {"dynamodb-tables-protected": {"environment": "prod"}}) == [
        "DynamoDB table sessions can be deleted in prod: set deletion_protection_enabled=True",
        "DynamoDB table sessions is not protected in prod: pass opts=ResourceOptions(protect=True)",
        "sessions is tagged mcp-estate:environment=dev, but the pack config checks a prod stack: correct the tag, "
        "or check it with the dev pack config"]


@legitimate("dynamodb-tables-protected")
def test_a_dev_table_may_be_deleted():
    plan = run_program(lambda: table(tags=DEV, deletion_protection_enabled=False, protect=False, replicas=[
        {"region_name": "us-west-2", "kms_key_arn": KEY_WEST, "point_in_time_recovery": True}]))
    assert messages(plan, "dynamodb-tables-protected") == sorted([])


@attack("dynamodb-tables-protected")
def test_a_separate_table_replica_resource_is_held_to_the_same_rules():
    def program():
        aws.dynamodb.TableReplica("good", global_table_arn="arn:aws:dynamodb:us-east-1:111122223333:table/t",
                                  kms_key_arn=KEY_WEST, point_in_time_recovery=True, deletion_protection_enabled=True,
                                  tags=PROD, opts=pulumi.ResourceOptions(protect=True))
        aws.dynamodb.TableReplica("bare", global_table_arn="arn:aws:dynamodb:us-east-1:111122223333:table/t",
                                  tags=PROD)
    assert messages(run_program(program), "dynamodb-tables-protected") == sorted([
        "DynamoDB table replica bare has no point-in-time recovery: set point_in_time_recovery=True",
        "DynamoDB table replica bare uses no customer-managed KMS key: "
        "set kms_key_arn to the estate's key in the replica's region",
        "DynamoDB table replica bare can be deleted in prod: set deletion_protection_enabled=True",
        "DynamoDB table replica bare is not protected in prod: pass opts=ResourceOptions(protect=True)"])


def test_a_key_arn_preview_cannot_know_yet_counts_as_set():
    # During `pulumi preview` a new key's ARN is unknown: the policy must still run, and pass.
    resources = [r.export() for r in run_program(table).resources]
    for entry in resources:
        if entry["type"] == "aws:dynamodb/table:Table":
            entry["inputs"]["serverSideEncryption"]["kmsKeyArn"] = UNKNOWN_STRING_VALUE
            entry["inputs"]["replicas"][0]["kmsKeyArn"] = UNKNOWN_STRING_VALUE
    assert [v for v in evaluate(resources) if v.policy == "dynamodb-tables-protected"] == []


# -- kms-keys-rotate --------------------------------------------------------------------------------

@attack("kms-keys-rotate")
def test_keys_must_rotate_and_replicas_rotate_with_their_primary():
    def program():
        primary = aws.kms.Key("rotating", multi_region=True, enable_key_rotation=True, deletion_window_in_days=30)
        aws.kms.ReplicaKey("replica", primary_key_arn=primary.arn, deletion_window_in_days=30)
        aws.kms.Key("static", deletion_window_in_days=30)
        aws.kms.Key("switched-off", enable_key_rotation=False)
    assert messages(run_program(program), "kms-keys-rotate") == sorted([
        "KMS key static does not rotate: set enable_key_rotation=True",
        "KMS key switched-off does not rotate: set enable_key_rotation=True"])


@legitimate("kms-keys-rotate")
def test_asymmetric_keys_which_kms_cannot_rotate_are_exempt():
    plan = run_program(lambda: aws.kms.Key("signing", customer_master_key_spec="ECC_NIST_P256",
                                           key_usage="SIGN_VERIFY"))
    assert messages(plan, "kms-keys-rotate") == sorted([])


# -- secrets-use-the-estate-key ---------------------------------------------------------------------

@legitimate("secrets-use-the-estate-key")
def test_a_secret_and_its_replicas_on_the_estate_key_pass():
    plan = run_program(lambda: aws.secretsmanager.Secret(
        "api-key", kms_key_id=KEY, replicas=[{"region": "us-west-2", "kms_key_id": KEY_WEST}]))
    assert messages(plan, "secrets-use-the-estate-key") == sorted([])


def test_a_secret_or_replica_on_the_aws_managed_key_fails():
    def program():
        aws.secretsmanager.Secret("default-key")
        aws.secretsmanager.Secret("named-default", kms_key_id="alias/aws/secretsmanager")
        aws.secretsmanager.Secret("replica-default", kms_key_id=KEY, replicas=[{"region": "us-west-2"}])
    assert messages(run_program(program), "secrets-use-the-estate-key") == sorted([
        "Secret default-key uses no customer-managed KMS key: set kms_key_id to the estate's key ARN",
        "Secret named-default uses the AWS-managed key alias/aws/secretsmanager: "
        "set kms_key_id to the estate's key ARN",
        "Secret replica-default replica in us-west-2 uses no customer-managed KMS key: "
        "set the replica's kms_key_id to the estate's key in that region"])


# -- log-groups-encrypted-with-retention ------------------------------------------------------------

@attack("log-groups-encrypted-with-retention")
def test_log_groups_need_a_retention_and_the_estate_key():
    def program():
        aws.cloudwatch.LogGroup("good", retention_in_days=30, kms_key_id=KEY)
        aws.cloudwatch.LogGroup("forever", kms_key_id=KEY)
        aws.cloudwatch.LogGroup("zero", retention_in_days=0, kms_key_id=KEY)
        aws.cloudwatch.LogGroup("plain", retention_in_days=30)
    assert messages(run_program(program), "log-groups-encrypted-with-retention") == sorted([
        "Log group forever never expires: set retention_in_days (e.g. 30)",
        "Log group zero never expires: set retention_in_days (e.g. 30)",
        "Log group plain uses no customer-managed KMS key: set kms_key_id to the estate's key ARN"])


# -- sns-topics-encrypted ---------------------------------------------------------------------------

@attack("sns-topics-encrypted")
def test_alert_topics_need_a_customer_managed_key():
    def program():
        aws.sns.Topic("alerts", kms_master_key_id=KEY)
        aws.sns.Topic("plain")
        aws.sns.Topic("aws-managed", kms_master_key_id="alias/aws/sns")
    assert messages(run_program(program), "sns-topics-encrypted") == sorted([
        "SNS topic plain uses no customer-managed KMS key: set kms_master_key_id to the estate's key ARN",
        "SNS topic aws-managed uses the AWS-managed key alias/aws/sns: "
        "set kms_master_key_id to the estate's key ARN"])

