"""The KMS key of one residency group: one multi-region key, present in every region of the group.

Creates a multi-region `aws.kms.Key` in the group's primary region, an `aws.kms.ReplicaKey` in
each other region (the same key material and key id, so a global-table replica, a secret replica
or a replicated image is encrypted under "the same" key everywhere), and the same alias in every
region. Each region's key policy lets the account administer the key through IAM, CloudWatch
Logs encrypt that region's log groups, and CloudWatch alarms and EventBridge rules publish to the
encrypted SNS topic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mcp_estate.contract.iam_documents import document

from .naming import child_opts

DELETION_WINDOW_DAYS = 30   # the maximum: time to notice and cancel a scheduled deletion


@dataclass
class EstateKeysArgs:
    primary_region: str
    regions: list[str]   # every region of the group, the primary included
    account_id: str
    alias: str           # "alias/..."
    providers: dict[str, aws.Provider]
    protect: bool
    tags: dict[str, str]


class EstateKeys(pulumi.ComponentResource):
    """`arns[region]`: the group's key in that region (a replica's ARN differs only by region)."""

    def __init__(self, name: str, args: EstateKeysArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:keys:EstateKeys", name, None, opts)
        description = f"mcp-estate {args.alias}: state, secrets, images, logs and alerts"
        primary = aws.kms.Key(
            f"{name}-{args.primary_region}-key", description=description, multi_region=True,
            enable_key_rotation=True, deletion_window_in_days=DELETION_WINDOW_DAYS,
            policy=json.dumps(key_policy(args.account_id, args.primary_region)), tags=args.tags,
            opts=self._in(args, args.primary_region, protect=args.protect))
        keys: dict[str, aws.kms.Key | aws.kms.ReplicaKey] = {args.primary_region: primary}
        for region in sorted(set(args.regions) - {args.primary_region}):
            # Rotation is a property of the multi-region key: KMS rotates the replicas with the primary.
            keys[region] = aws.kms.ReplicaKey(
                f"{name}-{region}-key", primary_key_arn=primary.arn, description=description,
                deletion_window_in_days=DELETION_WINDOW_DAYS,
                policy=json.dumps(key_policy(args.account_id, region)), tags=args.tags,
                opts=self._in(args, region, protect=args.protect))
        for region, key in keys.items():
            aws.kms.Alias(f"{name}-{region}-alias", name=args.alias, target_key_id=key.key_id,
                          opts=self._in(args, region))
        self.arns: dict[str, pulumi.Output[str]] = {region: key.arn for region, key in keys.items()}
        self.register_outputs({"arns": self.arns})

    def _in(self, args: EstateKeysArgs, region: str, **options) -> pulumi.ResourceOptions:
        return child_opts(self, provider=args.providers[region], **options)


def key_policy(account_id: str, region: str) -> dict:
    """The key policy of the group's key in `region`."""
    return document([_account_administers(account_id), _logs_encrypt(account_id, region),
                          _alarms_publish(account_id), _events_publish()])


def _account_administers(account_id: str) -> dict:
    # AWS's default key policy: delegates access to IAM policies of this account (who may use the
    # key is decided there) and keeps the key manageable; without it the key can become unmanageable.
    return {"Sid": "AccountAdministersKeyThroughIam", "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"}, "Action": "kms:*", "Resource": "*"}


def _logs_encrypt(account_id: str, region: str) -> dict:
    # CloudWatch Logs is not an IAM principal of the account: only the key policy can let it use the
    # key, and only for this account's log groups in this region.
    return {"Sid": "CloudWatchLogsEncryptsThisAccountsLogGroups", "Effect": "Allow",
            "Principal": {"Service": f"logs.{region}.amazonaws.com"},
            "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            "Resource": "*",
            "Condition": {"ArnLike": {
                "kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{region}:{account_id}:log-group:*"}}}


def _alarms_publish(account_id: str) -> dict:
    # CloudWatch alarms publish to the alerts topic, which is encrypted with this key; without this
    # statement the alarm fires and the notification is dropped silently.
    return {"Sid": "CloudWatchAlarmsPublishToEncryptedTopic", "Effect": "Allow",
            "Principal": {"Service": "cloudwatch.amazonaws.com"},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}}


def _events_publish() -> dict:
    # EventBridge rules (change detection) publish to the same encrypted alerts topic: only the key
    # policy can let the service use the key. Unlike alarms, with no aws:Source* condition: the SNS
    # guide ("Key management", compatibility with event sources) says such conditions are not
    # supported for EventBridge-to-encrypted topics, and every delivery would be dropped. The alerts
    # topic's own policy still admits only the estate's rules (aws:SourceArn).
    return {"Sid": "EventBridgeRulesPublishToEncryptedTopic", "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*"}
