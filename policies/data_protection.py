"""Data protection: what the estate stores survives mistakes, and is readable only through its own keys.

Session state (DynamoDB), secrets, logs and alerts carry travellers' data and operational detail.
Each is encrypted with a customer-managed KMS key (whose key policy, unlike an AWS-managed
key's, the estate controls and audits), keys rotate, logs expire on purpose rather than never,
and in prod the session table cannot be deleted by a `pulumi destroy` or a console click.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import ResourceValidationArgs, Severity

from .control import (ENVIRONMENT_CONFIG, UNKNOWN, Report, Risk, as_list, as_mapping, environment, lookup,
                      resource_policy)

TABLE = "aws:dynamodb/table:Table"
TABLE_REPLICA = "aws:dynamodb/tableReplica:TableReplica"
KMS_KEY = "aws:kms/key:Key"
SECRET = "aws:secretsmanager/secret:Secret"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
TOPIC = "aws:sns/topic:Topic"


def customer_key_problem(props: Any, key: str) -> str | None:
    """Why `props[key]` is not a customer-managed KMS key, or None when it is one.
    Absent means the service's AWS-managed (or AWS-owned) key; `alias/aws/...` names one."""
    value = lookup(props, key)
    if value is UNKNOWN:
        return None   # another resource's output (the estate's key), known at `pulumi up`
    if not value:
        return "no customer-managed KMS key"
    if "alias/aws/" in str(value):
        return f"the AWS-managed key {value}"
    return None


# -- DynamoDB ---------------------------------------------------------------------------------------

@resource_policy(
    "dynamodb-tables-protected",
    "DynamoDB tables (and every replica) have point-in-time recovery and a customer-managed KMS key; "
    "in prod they are deletion-protected and `protect`ed",
    applies_to=[TABLE, TABLE_REPLICA],
    risks=[Risk.DATA_LOSS], severity=Severity.HIGH,
    remediation="Set point_in_time_recovery={'enabled': True}, server_side_encryption={'enabled': True, "
                "'kms_key_arn': <key>}, each replica's point_in_time_recovery=True and kms_key_arn; in prod "
                "deletion_protection_enabled=True and ResourceOptions(protect=True).",
    config=ENVIRONMENT_CONFIG)
def dynamodb_tables_protected(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type == TABLE:
        _check_table(args, report)
    elif args.resource_type == TABLE_REPLICA:
        _check_table_replica(args, report)


def _check_table(args: ResourceValidationArgs, report: Report) -> None:
    props, what, prod = args.props, f"DynamoDB table {args.name}", environment(args, report) == "prod"
    if as_mapping(props.get("pointInTimeRecovery")).get("enabled") is not True:
        report(f"{what} has no point-in-time recovery: set point_in_time_recovery={{'enabled': True}}")
    encryption = as_mapping(props.get("serverSideEncryption"))
    if encryption.get("enabled") is not True:
        report(f"{what} is encrypted with an AWS-owned key: set server_side_encryption="
               f"{{'enabled': True, 'kms_key_arn': <the estate's key>}}")
    elif problem := customer_key_problem(encryption, "kmsKeyArn"):
        report(f"{what} uses {problem}: set server_side_encryption.kms_key_arn to the estate's key")
    for replica in as_list(props.get("replicas")):
        replica = as_mapping(replica)
        where = f"{what} replica in {replica.get('regionName')}"
        if replica.get("pointInTimeRecovery") is not True:
            report(f"{where} has no point-in-time recovery: set the replica's point_in_time_recovery=True")
        if problem := customer_key_problem(replica, "kmsKeyArn"):
            report(f"{where} uses {problem}: set the replica's kms_key_arn to the estate's key in that region")
        if prod and replica.get("deletionProtectionEnabled") is not True:
            report(f"{where} can be deleted in prod: set the replica's deletion_protection_enabled=True")
    if prod:
        _check_prod_protection(args, what, report)


def _check_table_replica(args: ResourceValidationArgs, report: Report) -> None:
    props, what = args.props, f"DynamoDB table replica {args.name}"
    if props.get("pointInTimeRecovery") is not True:
        report(f"{what} has no point-in-time recovery: set point_in_time_recovery=True")
    if problem := customer_key_problem(props, "kmsKeyArn"):
        report(f"{what} uses {problem}: set kms_key_arn to the estate's key in the replica's region")
    if environment(args, report) == "prod":
        _check_prod_protection(args, what, report)


def _check_prod_protection(args: ResourceValidationArgs, what: str, report: Report) -> None:
    if args.props.get("deletionProtectionEnabled") is not True:
        report(f"{what} can be deleted in prod: set deletion_protection_enabled=True")
    if not args.opts.protect:
        # Deletion protection stops the API call; `protect` stops Pulumi from planning it at all.
        report(f"{what} is not protected in prod: pass opts=ResourceOptions(protect=True)")


# -- KMS --------------------------------------------------------------------------------------------

@resource_policy(
    "kms-keys-rotate",
    "Customer-managed symmetric KMS keys rotate their key material automatically",
    # Only aws.kms.Key: an aws.kms.ReplicaKey has no rotation setting of its own, KMS rotates
    # it with its multi-Region primary, which this policy checks.
    applies_to=[KMS_KEY],
    risks=[Risk.DATA_LOSS], severity=Severity.MEDIUM,
    remediation="Set enable_key_rotation=True on the aws.kms.Key.")
def kms_keys_rotate(args: ResourceValidationArgs, report: Report) -> None:
    spec = args.props.get("customerMasterKeySpec")
    if spec not in (None, "SYMMETRIC_DEFAULT"):
        return   # KMS cannot rotate asymmetric or HMAC keys automatically
    if args.props.get("enableKeyRotation") is not True:
        report(f"KMS key {args.name} does not rotate: set enable_key_rotation=True")


# -- Secrets Manager --------------------------------------------------------------------------------

@resource_policy(
    "secrets-use-the-estate-key",
    "Secrets and each of their replicas are encrypted with a customer-managed KMS key, "
    "not the AWS-managed aws/secretsmanager key",
    applies_to=[SECRET],
    risks=[Risk.DATA_LOSS], severity=Severity.HIGH,
    remediation="Set kms_key_id=<the estate's key ARN> and each replica's kms_key_id=<the key in its region>.")
def secrets_use_the_estate_key(args: ResourceValidationArgs, report: Report) -> None:
    what = f"Secret {args.name}"
    if problem := customer_key_problem(args.props, "kmsKeyId"):
        report(f"{what} uses {problem}: set kms_key_id to the estate's key ARN")
    for replica in as_list(args.props.get("replicas")):
        replica = as_mapping(replica)
        if problem := customer_key_problem(replica, "kmsKeyId"):
            report(f"{what} replica in {replica.get('region')} uses {problem}: "
                   f"set the replica's kms_key_id to the estate's key in that region")


# -- CloudWatch Logs --------------------------------------------------------------------------------

@resource_policy(
    "log-groups-encrypted-with-retention",
    "Log groups are encrypted with a customer-managed KMS key and expire after a set retention",
    applies_to=[LOG_GROUP],
    risks=[Risk.DATA_LOSS], severity=Severity.MEDIUM,
    remediation="Set retention_in_days (e.g. 30) and kms_key_id=<the estate's key ARN in the log group's region>.")
def log_groups_encrypted_with_retention(args: ResourceValidationArgs, report: Report) -> None:
    what = f"Log group {args.name}"
    retention = args.props.get("retentionInDays")
    if not isinstance(retention, (int, float)) or retention <= 0:
        # Absent or 0 is "never expire": tool inputs and outputs kept forever.
        report(f"{what} never expires: set retention_in_days (e.g. 30)")
    if problem := customer_key_problem(args.props, "kmsKeyId"):
        report(f"{what} uses {problem}: set kms_key_id to the estate's key ARN")


# -- SNS --------------------------------------------------------------------------------------------

@resource_policy(
    "sns-topics-encrypted",
    "SNS topics (alarms carry operational detail) are encrypted with a customer-managed KMS key",
    applies_to=[TOPIC],
    risks=[Risk.DATA_LOSS], severity=Severity.LOW,
    remediation="Set kms_master_key_id=<the estate's key ARN>; its key policy must let "
                "cloudwatch.amazonaws.com use it, which the AWS-managed alias/aws/sns key cannot.")
def sns_topics_encrypted(args: ResourceValidationArgs, report: Report) -> None:
    if problem := customer_key_problem(args.props, "kmsMasterKeyId"):
        report(f"SNS topic {args.name} uses {problem}: set kms_master_key_id to the estate's key ARN")
