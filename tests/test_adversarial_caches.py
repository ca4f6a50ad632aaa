"""caches-private-encrypted-iam against the ElastiCache types a team could add by hand beside the
estate's serverless cache: a replication group must meet the serverless cache's bar (private subnets,
its own security group, a customer key, IAM users through a user group) plus TLS only; a cache cluster
and a global datastore are refused outright. Each variant is its own corpus case.

Programs are planned without the fidelity inspector (as `pulumi preview --policy-pack` sees a program
the inspector never read), except the legitimate group, whose inputs the inspector checks against the SDK.
"""

from __future__ import annotations

import pulumi_aws as aws
import pytest
from conftest import ACCOUNT, Plan, run_program, violations
from corpus import attack, legitimate

from mcp_estate.offline.runner import run_offline

CONTROL = "caches-private-encrypted-iam"
KEY = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"
SUBNETS = ["subnet-0a1b2c3d4e5f60718", "subnet-0b1c2d3e4f5a60718"]
SECURITY_GROUP = "sg-0a1b2c3d4e5f60718"
# The bar, as a team would write it: Valkey 8, two nodes, every setting the control requires.
GROUP = {"description": "MCP answers, short-lived", "engine": "valkey", "engine_version": "8.0",
         "node_type": "cache.t4g.small", "num_cache_clusters": 2, "automatic_failover_enabled": True,
         "subnet_group_name": "mcp-private", "security_group_ids": [SECURITY_GROUP],
         "at_rest_encryption_enabled": True, "kms_key_id": KEY,
         "transit_encryption_enabled": True, "transit_encryption_mode": "required",
         "user_group_ids": ["mcp-cache-users"]}


def found(program, inspect: bool = False) -> list[str]:
    plan = run_program(program) if inspect else Plan(run_offline(program, stack="test", config={},
                                                                 account_id=ACCOUNT))
    return [v.message for v in violations(plan, policy=CONTROL)]


def group(**changes):
    """A program with the replication group, `changes` applied (None removes an argument)."""
    args = {key: value for key, value in {**GROUP, **changes}.items() if value is not None}
    return lambda: aws.elasticache.ReplicationGroup("answers", **args)


def group_with_its_users():
    """The replication group as it is meant to be built: its subnet group, IAM users in a Valkey user group."""
    subnets = aws.elasticache.SubnetGroup("private", name="mcp-private", subnet_ids=SUBNETS)
    user = aws.elasticache.User("booking", user_id="mcp-booking", user_name="mcp-booking", engine="valkey",
                                access_string="on ~booking:* +@all -@admin -@dangerous",
                                authentication_mode={"type": "iam"})
    users = aws.elasticache.UserGroup("users", user_group_id="mcp-cache-users", engine="valkey",
                                      user_ids=[user.user_id])
    aws.elasticache.ReplicationGroup("answers", **{**GROUP, "subnet_group_name": subnets.name,
                                                   "user_group_ids": [users.user_group_id]})


@legitimate(CONTROL)
def test_a_replication_group_held_to_the_bar_with_its_iam_users_passes():
    assert found(group_with_its_users, inspect=True) == []


@legitimate(CONTROL)
def test_a_redis_oss_7_group_with_a_single_node_passes():
    assert found(group(engine="redis", engine_version="7.1", num_cache_clusters=1,
                       automatic_failover_enabled=None)) == []


AT_REST, TRANSIT = "atRestEncryptionEnabled", "transitEncryptionEnabled"
ENCRYPTION_GAPS = {
    "at rest unstated (Redis OSS: off by default)": (
        {"engine": "redis", "engine_version": "7.1", "at_rest_encryption_enabled": None}, f"{AT_REST}=None"),
    "at rest false": ({"at_rest_encryption_enabled": False}, f"{AT_REST}=False"),
    'at rest "false"': ({"at_rest_encryption_enabled": "false"}, f"{AT_REST}='false'"),
    "no key (the AWS-owned key)": ({"kms_key_id": None}, "uses no customer-managed KMS key"),
    "the AWS-managed key": ({"kms_key_id": "alias/aws/elasticache"}, "the AWS-managed key alias/aws/elasticache"),
    "transit unstated": ({"transit_encryption_enabled": None, "transit_encryption_mode": None}, f"{TRANSIT}=None"),
    "transit false": ({"transit_encryption_enabled": False, "transit_encryption_mode": None}, f"{TRANSIT}=False"),
    'transit "false"': ({"transit_encryption_enabled": "false"}, f"{TRANSIT}='false'"),
    "transit preferred (clients without TLS admitted)": (
        {"transit_encryption_mode": "preferred"}, "transitEncryptionMode='preferred', which admits clients"),
    "transit mode unstated (the provider keeps what AWS has)": (
        {"transit_encryption_mode": None}, "transitEncryptionMode=None"),
}


@pytest.mark.parametrize("changes, problem", ENCRYPTION_GAPS.values(), ids=ENCRYPTION_GAPS)
@attack(CONTROL)
def test_a_replication_group_encrypted_less_than_required_is_refused(changes, problem):
    assert [p for p in found(group(**changes)) if p.startswith("answers: the replication group") and problem in p]


ACCESS_GAPS = {
    "an AUTH token instead of a user group": ({"user_group_ids": None, "auth_token": "x" * 32},
                                              "has an authToken"),
    "an AUTH token beside the user group": ({"auth_token": "x" * 32}, "has an authToken"),
    "a write-only AUTH token": ({"user_group_ids": None, "auth_token_wo": "x" * 32, "auth_token_wo_version": 1},
                                "has an authTokenWo"),
    "no user group at all": ({"user_group_ids": None}, "has no userGroupIds"),
    "the default subnet group (default VPC)": ({"subnet_group_name": None}, "has no subnetGroupName"),
    "the VPC's default security group": ({"security_group_ids": None}, "has no securityGroupIds"),
    "a secondary of a global datastore": ({"global_replication_group_id": "ldgnf-mcp-answers"},
                                          "joins a global datastore"),
}


@pytest.mark.parametrize("changes, problem", ACCESS_GAPS.values(), ids=ACCESS_GAPS)
@attack(CONTROL)
def test_a_replication_group_reachable_another_way_is_refused(changes, problem):
    assert [p for p in found(group(**changes)) if problem in p]


CLUSTERS = {
    "memcached": {"engine": "memcached", "node_type": "cache.t4g.small", "num_cache_nodes": 2,
                  "subnet_group_name": "mcp-private", "security_group_ids": [SECURITY_GROUP],
                  "transit_encryption_enabled": True},
    "a lone Redis OSS node": {"engine": "redis", "engine_version": "7.1", "node_type": "cache.t4g.small",
                              "num_cache_nodes": 1, "subnet_group_name": "mcp-private",
                              "security_group_ids": [SECURITY_GROUP]},
    "a replica added to a group": {"replication_group_id": "answers"},
}


@pytest.mark.parametrize("args", CLUSTERS.values(), ids=CLUSTERS)
@attack(CONTROL)
def test_a_cache_cluster_is_refused_outright(args):
    assert found(lambda: aws.elasticache.Cluster("answers-node", **args)) == [
        f"answers-node: a cache cluster (engine {args.get('engine', 'unstated')}) takes no customer key and no "
        "user group: use a serverless cache, or a replication group (num_cache_clusters for replicas)"]


@attack(CONTROL)
def test_a_global_datastore_is_refused_outright():
    def program():
        primary = group()()
        aws.elasticache.GlobalReplicationGroup("everywhere", global_replication_group_id_suffix="answers",
                                               primary_replication_group_id=primary.id)
    assert [p for p in found(program) if p.startswith("everywhere: a global datastore copies")]


@pytest.mark.parametrize("engine", ["redis", "valkey"])
@attack(CONTROL)
def test_a_user_group_holding_the_password_less_default_user_is_refused(engine):
    program = lambda: aws.elasticache.UserGroup(   # noqa: E731
        "users", user_group_id="mcp-cache-users", engine=engine, user_ids=["default", "mcp-booking"])
    assert found(program) == ["users: the user group holds ElastiCache's `default` user (no password, every key "
                              "and command): hold only IAM users, in a Valkey user group (which needs no "
                              "default user)"]
