"""A group's state table: one global table, replicated to the group's regions only, each copy safe."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
from conftest import ACCOUNT, Plan, run_program

from mcp_estate.components.state_store import StateStore, StateStoreArgs

TAGS = {"mcp-estate:stack": "test", "mcp-estate:residency-group": "eu"}
KEYS = {r: f"arn:aws:kms:{r}:{ACCOUNT}:key/mrk-{r}" for r in ("eu-west-1", "eu-central-1", "eu-north-1", "us-east-1")}


def plan_state(regions: list[str], protect: bool = True, seen: dict | None = None) -> Plan:
    def program():
        provider = aws.Provider("aws-eu-west-1", region="eu-west-1")
        store = StateStore("eu-state", StateStoreArgs(
            table_name="mcp-estate-test-eu-state", primary_region="eu-west-1", regions=regions,
            key_arns=KEYS, protect=protect, tags=TAGS), opts=pulumi.ResourceOptions(provider=provider))
        if seen is not None:
            seen["table_name"] = store.table_name
            store.table_arn.apply(lambda arn: seen.__setitem__("table_arn", arn))
    return run_program(program)


def table(plan: Plan):
    return plan.named("eu-state-table")


def test_sessions_are_keyed_by_pk_and_sk_and_expire_on_expires_at():
    inputs = table(plan_state(["eu-west-1"])).inputs
    assert inputs["name"] == "mcp-estate-test-eu-state"
    assert inputs["billingMode"] == "PAY_PER_REQUEST"
    assert (inputs["hashKey"], inputs["rangeKey"]) == ("pk", "sk")
    assert inputs["attributes"] == [{"name": "pk", "type": "S"}, {"name": "sk", "type": "S"}]
    assert inputs["ttl"] == {"attributeName": "expires_at", "enabled": True}
    assert inputs["tags"] == TAGS


def test_primary_copy_is_encrypted_with_the_primary_key_and_recoverable():
    inputs = table(plan_state(["eu-west-1", "eu-central-1"])).inputs
    assert inputs["serverSideEncryption"] == {"enabled": True, "kmsKeyArn": KEYS["eu-west-1"]}
    assert inputs["pointInTimeRecovery"] == {"enabled": True}
    assert (inputs["streamEnabled"], inputs["streamViewType"]) == (True, "NEW_AND_OLD_IMAGES")


def test_replicas_are_exactly_the_groups_other_regions_each_with_its_own_key():
    plan = plan_state(["eu-north-1", "eu-west-1", "eu-central-1"])
    assert table(plan).inputs["replicas"] == [
        {"regionName": region, "kmsKeyArn": KEYS[region], "pointInTimeRecovery": True,
         "propagateTags": True, "deletionProtectionEnabled": True}
        for region in ("eu-central-1", "eu-north-1")]
    assert len(plan.of_type("aws:dynamodb/table:Table")) == 1


def test_single_region_group_has_no_replica():
    assert table(plan_state(["eu-west-1"])).inputs.get("replicas", []) == []


def test_protected_data_means_deletion_protection_everywhere_and_a_protected_resource():
    resource = table(plan_state(["eu-west-1", "eu-central-1"]))
    assert resource.protect is True
    assert resource.inputs["deletionProtectionEnabled"] is True
    assert resource.inputs["replicas"][0]["deletionProtectionEnabled"] is True


def test_unprotected_data_can_be_deleted():
    resource = table(plan_state(["eu-west-1", "eu-central-1"], protect=False))
    assert resource.protect is False
    assert resource.inputs["deletionProtectionEnabled"] is False
    assert resource.inputs["replicas"][0]["deletionProtectionEnabled"] is False


def test_the_table_lives_in_the_primary_region_and_exposes_its_name_and_arn():
    seen: dict = {}
    plan = plan_state(["eu-west-1"], seen=seen)
    provider = plan.named("aws-eu-west-1")
    assert table(plan).provider == f"{provider.urn}::{provider.id}"
    assert seen == {"table_name": "mcp-estate-test-eu-state",
                    "table_arn": f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/mcp-estate-test-eu-state"}
