"""A residency group's key: one multi-region key, replicated to each region, usable by logs and alarms."""

from __future__ import annotations

import pulumi_aws as aws
from conftest import ACCOUNT, Plan, policy, run_program

from mcp_estate.components.keys import EstateKeys, EstateKeysArgs
from mcp_estate.policies.iam_actions import unknown_actions

TAGS = {"mcp-estate:stack": "test", "mcp-estate:residency-group": "americas"}
REGIONS = ["us-east-1", "us-west-2", "ca-central-1"]


def plan_keys(protect: bool = True, arns: dict | None = None) -> Plan:
    def program():
        providers = {r: aws.Provider(f"aws-{r}", region=r) for r in REGIONS}
        keys = EstateKeys("americas", EstateKeysArgs(
            primary_region="us-east-1", regions=REGIONS, account_id=ACCOUNT, alias="alias/mcp-estate-test-americas",
            providers=providers, protect=protect, tags=TAGS))
        if arns is not None:
            for region, arn in keys.arns.items():
                arn.apply(lambda value, region=region: arns.__setitem__(region, value))
    return run_program(program)


def provider_of(plan: Plan, region: str) -> str:
    provider = plan.named(f"aws-{region}")
    return f"{provider.urn}::{provider.id}"


def test_primary_key_is_multi_region_rotated_and_protected():
    plan = plan_keys()
    key = plan.one("aws:kms/key:Key")
    assert key.name == "americas-us-east-1-key"
    assert key.provider == provider_of(plan, "us-east-1")
    assert key.inputs["multiRegion"] is True
    assert key.inputs["enableKeyRotation"] is True
    assert key.inputs["deletionWindowInDays"] == 30
    assert key.inputs["tags"] == TAGS
    assert key.protect is True


def test_every_other_region_of_the_group_gets_a_replica_of_the_primary():
    plan = plan_keys()
    primary_arn = plan.one("aws:kms/key:Key").outputs["arn"]
    replicas = {r.name: r for r in plan.of_type("aws:kms/replicaKey:ReplicaKey")}
    assert sorted(replicas) == ["americas-ca-central-1-key", "americas-us-west-2-key"]
    for region in ("us-west-2", "ca-central-1"):
        replica = replicas[f"americas-{region}-key"]
        assert replica.provider == provider_of(plan, region)
        assert replica.inputs["primaryKeyArn"] == primary_arn
        assert replica.inputs["deletionWindowInDays"] == 30
        assert replica.inputs["tags"] == TAGS
        assert replica.protect is True


def test_unprotected_estate_leaves_keys_deletable():
    plan = plan_keys(protect=False)
    keys = plan.of_type("aws:kms/key:Key") + plan.of_type("aws:kms/replicaKey:ReplicaKey")
    assert len(keys) == 3 and not any(k.protect for k in keys)


def test_the_alias_names_the_key_in_every_region():
    plan = plan_keys()
    for region in REGIONS:
        alias = plan.named(f"americas-{region}-alias")
        key = plan.named(f"americas-{region}-key")
        assert alias.provider == provider_of(plan, region)
        assert alias.inputs["name"] == "alias/mcp-estate-test-americas"
        assert alias.inputs["targetKeyId"] == key.outputs["keyId"]


def test_arns_give_the_key_of_each_region():
    arns: dict[str, str] = {}
    plan = plan_keys(arns=arns)
    assert arns == {region: plan.named(f"americas-{region}-key").outputs["arn"] for region in REGIONS}
    assert arns["us-west-2"].startswith(f"arn:aws:kms:us-west-2:{ACCOUNT}:key/mrk-")


def test_account_administers_the_key_through_iam():
    plan = plan_keys()
    for region in REGIONS:
        statement = policy(plan.named(f"americas-{region}-key"), "policy")["Statement"][0]
        assert statement == {"Sid": "AccountAdministersKeyThroughIam", "Effect": "Allow",
                             "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*",
                             "Resource": "*"}


def test_logs_may_encrypt_only_this_accounts_log_groups_of_the_keys_region():
    plan = plan_keys()
    for region in REGIONS:
        statement = policy(plan.named(f"americas-{region}-key"), "policy")["Statement"][1]
        assert statement["Principal"] == {"Service": f"logs.{region}.amazonaws.com"}
        assert statement["Action"] == ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*",
                                       "kms:GenerateDataKey*", "kms:Describe*"]
        assert statement["Condition"] == {"ArnLike": {
            "kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{region}:{ACCOUNT}:log-group:*"}}


def test_alarms_of_this_account_may_publish_to_the_encrypted_topic():
    plan = plan_keys()
    statement = policy(plan.named("americas-us-west-2-key"), "policy")["Statement"][2]
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert statement["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert len(policy(plan.named("americas-us-west-2-key"), "policy")["Statement"]) == 4


def test_change_detection_rules_may_publish_to_the_encrypted_topic_without_source_conditions():
    # The SNS guide: aws:Source* conditions in a key policy are not supported for EventBridge-to-encrypted
    # topics (deliveries would be dropped); the topic policy is what admits only the estate's rules.
    plan = plan_keys()
    statement = policy(plan.named("americas-us-west-2-key"), "policy")["Statement"][3]
    assert statement == {"Sid": "EventBridgeRulesPublishToEncryptedTopic", "Effect": "Allow",
                         "Principal": {"Service": "events.amazonaws.com"},
                         "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*"}


def test_named_key_policy_actions_exist_in_iam():
    plan = plan_keys()
    statements = policy(plan.named("americas-us-east-1-key"), "policy")["Statement"]
    actions = [a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])]
    assert unknown_actions([a for a in actions if "*" not in a]) == []
