"""A secret: encrypted at home and in each replica with that region's key; its value never in code."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
from conftest import ACCOUNT, Plan, run_program

from mcp_estate.components.secrets import EstateSecret, EstateSecretArgs

TAGS = {"mcp-estate:stack": "test"}
KEYS = {r: f"arn:aws:kms:{r}:{ACCOUNT}:key/mrk-{r}" for r in ("us-east-1", "us-west-2", "eu-west-1")}


def plan_secret(replica_regions: list[str], protect: bool = True, seen: dict | None = None) -> Plan:
    def program():
        provider = aws.Provider("aws-us-east-1", region="us-east-1")
        secret = EstateSecret("secret-booking-api-key", EstateSecretArgs(
            secret_name="mcp-estate-test/booking-api-key", home_region="us-east-1",
            replica_regions=replica_regions, key_arns=KEYS, protect=protect, tags=TAGS),
            opts=pulumi.ResourceOptions(provider=provider))
        if seen is not None:
            secret.arn.apply(lambda arn: seen.__setitem__("arn", arn))
    return run_program(program)


def test_secret_is_encrypted_with_its_home_regions_key():
    plan = plan_secret(["us-west-2"])
    secret = plan.one("aws:secretsmanager/secret:Secret")
    provider = plan.named("aws-us-east-1")
    assert secret.provider == f"{provider.urn}::{provider.id}"
    assert secret.inputs["name"] == "mcp-estate-test/booking-api-key"
    assert secret.inputs["kmsKeyId"] == KEYS["us-east-1"]
    assert secret.inputs["recoveryWindowInDays"] == 30
    assert secret.inputs["tags"] == TAGS


def test_replicas_are_exactly_the_given_regions_each_with_its_own_key():
    secret = plan_secret(["us-west-2", "eu-west-1"]).one("aws:secretsmanager/secret:Secret")
    assert secret.inputs["replicas"] == [{"region": "eu-west-1", "kmsKeyId": KEYS["eu-west-1"]},
                                         {"region": "us-west-2", "kmsKeyId": KEYS["us-west-2"]}]
    assert secret.inputs["forceOverwriteReplicaSecret"] is False


def test_the_value_is_never_in_the_program():
    plan = plan_secret(["us-west-2"])
    assert plan.of_type("aws:secretsmanager/secretVersion:SecretVersion") == []
    assert "put-secret-value" in plan.one("aws:secretsmanager/secret:Secret").inputs["description"]


def test_protect_follows_the_estates_data_protection():
    assert plan_secret([], protect=True).one("aws:secretsmanager/secret:Secret").protect is True
    assert plan_secret([], protect=False).one("aws:secretsmanager/secret:Secret").protect is False


def test_arn_is_the_secrets_arn():
    seen: dict = {}
    plan = plan_secret([], seen=seen)
    assert seen["arn"] == plan.one("aws:secretsmanager/secret:Secret").outputs["arn"]
    assert seen["arn"].startswith(f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:mcp-estate-test/booking-api-key-")
