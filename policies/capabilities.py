"""Caches and task queues: private, encrypted with a customer key, IAM-authenticated, closed to
other accounts, never losing a failing message silently (README: Fast answers, later answers).

A cached answer or a queued task is a traveller's data: these controls hold for what the estate
creates and for what a team adds next to it (another queue, a standalone queue policy, a worker
with a rule added by a separate resource, a password user, a replication group or
cache cluster beside the serverless cache).
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import PolicyResource, ResourceValidationArgs, Severity, StackValidationArgs

from .control import (UNKNOWN, Report, Risk, as_list, as_mapping, document, estate_accounts, grants_everyone, lookup,
                      pinned_conditions, resource_policy, stack_policy, statements)
from .data_protection import customer_key_problem
from .private_networking import is_true

QUEUE = "aws:sqs/queue:Queue"
QUEUE_POLICY = "aws:sqs/queuePolicy:QueuePolicy"
REDRIVE_POLICY = "aws:sqs/redrivePolicy:RedrivePolicy"
SERVICE = "aws:ecs/service:Service"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
INGRESS_RULES = ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                 "aws:ec2/securityGroupRule:SecurityGroupRule")
SERVERLESS_CACHE = "aws:elasticache/serverlessCache:ServerlessCache"
REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
CACHE_CLUSTER = "aws:elasticache/cluster:Cluster"
GLOBAL_DATASTORE = "aws:elasticache/globalReplicationGroup:GlobalReplicationGroup"
CACHE_USER = "aws:elasticache/user:User"
USER_GROUP = "aws:elasticache/userGroup:UserGroup"
# ElastiCache's own user, in every Redis OSS user group: no password, every key and command.
DEFAULT_USER = "default"
ACCOUNT_KEYS = ("aws:principalaccount", "aws:sourceaccount", "aws:principalorgid")


@resource_policy(
    "queues-encrypted-with-a-customer-key",
    "SQS queues are encrypted with a customer-managed KMS key (not SQS-managed SSE, not alias/aws/sqs)",
    applies_to=[QUEUE],
    risks=[Risk.DATA_LOSS], severity=Severity.HIGH,
    remediation="Set kms_master_key_id to the region's estate key and leave sqs_managed_sse_enabled unset.")
def queues_encrypted_with_a_customer_key(args: ResourceValidationArgs, report: Report) -> None:
    if args.props.get("sqsManagedSseEnabled") is True:
        report(f"SQS queue {args.name} uses SQS-managed encryption: set kms_master_key_id to the estate's key")
    elif problem := customer_key_problem(args.props, "kmsMasterKeyId"):
        report(f"SQS queue {args.name} uses {problem}: set kms_master_key_id to the estate's key")


@resource_policy(
    "queues-closed-to-other-accounts",
    "No SQS queue policy (inline or a QueuePolicy) lets a principal outside the estate's accounts use the "
    "queue: no Allow to everyone unless pinned to the estate's account, no Allow naming another account",
    applies_to=[QUEUE, QUEUE_POLICY],
    risks=[Risk.CONFUSED_DEPUTY, Risk.DATA_LOSS], severity=Severity.CRITICAL,
    remediation="Name the estate's roles as principals, or pin aws:PrincipalAccount to the estate's account.")
def queues_closed_to_other_accounts(args: ResourceValidationArgs, report: Report) -> None:
    accounts = estate_accounts(args)
    for statement in statements(args.props.get("policy")):
        if statement.get("Effect") != "Allow":
            continue
        if grants_everyone(statement):
            pinned = pinned_conditions(statement)
            if not any(set(map(str, pinned.get(key, []))) <= accounts and pinned.get(key)
                       for key in ACCOUNT_KEYS[:2]):
                report(f"{args.name}'s policy allows everyone without pinning aws:PrincipalAccount to the "
                       f"estate's account ({', '.join(sorted(accounts)) or 'unknown'})")
        for account in _named_accounts(statement) - accounts:
            report(f"{args.name}'s policy allows account {account}, outside the estate")


def _named_accounts(statement: dict) -> set[str]:
    principal = statement.get("Principal")
    names = as_list(as_mapping(principal).get("AWS")) if isinstance(principal, dict) else []
    found = set()
    for name in map(str, names):
        fields = name.split(":")
        found.add(fields[4] if len(fields) > 4 else name)
    return found - {"*"}


@stack_policy(
    "queues-have-dead-letter-queues",
    "Every SQS queue redrives to a dead-letter queue of the same account (a DLQ is recognised by being some "
    "queue's redrive target), so a failing task is kept and alarmed on instead of retried forever or lost"
    ". Reads outputs (queue ARNs): where one is unknown on a first preview it cannot run, "
    "so `estate check` in every pull request is the gate",
    risks=[Risk.DATA_LOSS, Risk.AVAILABILITY], severity=Severity.HIGH,
    remediation="Set redrive_policy={deadLetterTargetArn: <DLQ in this account>, maxReceiveCount: N}.")
def queues_have_dead_letter_queues(args: StackValidationArgs, report: Report) -> None:
    queues = [r for r in args.resources if r.resource_type == QUEUE]
    redrives = {str(lookup(r.props, "url")): _redrive(r.props.get("redrivePolicy")) for r in queues}
    for r in args.resources:
        if r.resource_type == REDRIVE_POLICY:
            redrives[str(lookup(r.props, "queueUrl"))] = _redrive(r.props.get("redrivePolicy"))
    targets = {target for target in redrives.values() if target}
    for queue in queues:
        arn, url = str(lookup(queue.props, "arn")), str(lookup(queue.props, "url"))
        target = redrives.get(url)
        if arn in targets:
            continue   # itself a dead-letter queue
        if not target:
            report(f"SQS queue {queue.name} has no dead-letter queue: set its redrive_policy")
        elif _account(target) != _account(arn):
            report(f"SQS queue {queue.name} redrives to {target}, in another account: use a DLQ of its own")


def _redrive(value: Any) -> str | None:
    doc = document(value)
    target = doc.get("deadLetterTargetArn") if doc else None
    return str(target) if target else None


def _account(arn: str) -> str:
    fields = arn.split(":")
    return fields[4] if len(fields) > 4 else ""


@stack_policy(
    "workers-have-no-ingress",
    "ECS services without a load balancer (workers) get no public IP and their security groups admit "
    "nothing (no inline ingress, no ingress rule resource)"
    ". Reads outputs (security group ids): where one is unknown on a first preview it cannot run, "
    "so `estate check` in every pull request is the gate",
    risks=[Risk.COMMAND_EXECUTION], severity=Severity.HIGH,
    remediation="Remove the ingress rule; set network_configuration.assign_public_ip=False.")
def workers_have_no_ingress(args: StackValidationArgs, report: Report) -> None:
    groups = {str(lookup(r.props, "id")): r for r in args.resources if r.resource_type == SECURITY_GROUP}
    for service in args.resources:
        if service.resource_type != SERVICE or as_list(service.props.get("loadBalancers")):
            continue
        network = as_mapping(service.props.get("networkConfiguration"))
        if network.get("assignPublicIp") is True:
            report(f"worker {service.name} has a public IP: set assign_public_ip=False")
        for group_id in map(str, as_list(network.get("securityGroups"))):
            for reason in _ingress(group_id, groups.get(group_id), args.resources):
                report(f"worker {service.name}'s security group {group_id} {reason}: workers take no traffic")


def _ingress(group_id: str, group: PolicyResource | None, resources: list[PolicyResource]) -> list[str]:
    reasons = ["has inline ingress rules"] if group is not None and as_list(group.props.get("ingress")) else []
    for rule in resources:
        if rule.resource_type in INGRESS_RULES and str(lookup(rule.props, "securityGroupId")) == group_id \
                and rule.props.get("type", "ingress") == "ingress":
            reasons.append(f"is opened by {rule.name}")
    return reasons


@resource_policy(
    "caches-private-encrypted-iam",
    "ElastiCache caches (serverless caches and replication groups) sit in named subnets behind their "
    "own security groups, are encrypted at rest with a customer-managed key and in transit (a "
    "replication group: transit_encryption_enabled and transit_encryption_mode `required`, TLS only), "
    "and authenticate through a user group, never an AUTH token; cache users authenticate with IAM (no "
    "password, no password-less user) and no user group holds ElastiCache's password-less `default` "
    "user. Refused outright: a cache cluster (Memcached or a lone Redis OSS node: no customer key, no "
    "user group) and a global datastore (it copies cached answers to other regions, past a strict "
    "group's residency)",
    applies_to=[SERVERLESS_CACHE, REPLICATION_GROUP, CACHE_CLUSTER, GLOBAL_DATASTORE, CACHE_USER, USER_GROUP],
    risks=[Risk.DATA_LOSS, Risk.CONFUSED_DEPUTY], severity=Severity.HIGH,
    remediation="Set subnet_ids, security_group_ids, kms_key_id and user_group_id on a serverless "
                "cache; on a replication group subnet_group_name, security_group_ids, "
                "at_rest_encryption_enabled=True, kms_key_id, transit_encryption_enabled=True, "
                "transit_encryption_mode='required' and user_group_ids, no auth_token; "
                "authentication_mode={'type': 'iam'} on every user; a serverless cache or a replication "
                "group instead of a cluster or a global datastore.")
def caches_private_encrypted_iam(args: ResourceValidationArgs, report: Report) -> None:
    judge = {SERVERLESS_CACHE: _serverless_cache, REPLICATION_GROUP: _replication_group,
             CACHE_CLUSTER: _cluster, GLOBAL_DATASTORE: _global_datastore,
             CACHE_USER: _cache_user, USER_GROUP: _user_group}[args.resource_type]
    for problem in judge(args.props):
        report(f"{args.name}: {problem}")


def _cache_user(props: Any) -> list[str]:
    mode = as_mapping(props.get("authenticationMode")).get("type")
    if mode != "iam" or props.get("passwords") or props.get("noPasswordRequired") is True:
        return [f"the cache user authenticates with {mode or 'a password'}: use "
                "authentication_mode={'type': 'iam'} (a task signs a short-lived token with its role)"]
    return []


def _user_group(props: Any) -> list[str]:
    if DEFAULT_USER in map(str, as_list(props.get("userIds"))):
        return [f"the user group holds ElastiCache's `{DEFAULT_USER}` user (no password, every key and "
                "command): hold only IAM users, in a Valkey user group (which needs no default user)"]
    return []


def _serverless_cache(props: Any) -> list[str]:
    needed = (("subnetIds", "the private subnets"), ("securityGroupIds", "its own security group"),
              ("userGroupId", "a user group of IAM users"))
    problems = [f"the serverless cache has no {key}: set it to {fix}" for key, fix in needed
                if not props.get(key)]
    if problem := customer_key_problem(props, "kmsKeyId"):
        problems.append(f"the serverless cache uses {problem}: set kms_key_id to the region's estate key")
    return problems


def _replication_group(props: Any) -> list[str]:
    needed = (("subnetGroupName", "a subnet group of the private subnets"),
              ("securityGroupIds", "its own security group"), ("userGroupIds", "a user group of IAM users"))
    problems = [f"the replication group has no {key}: set it to {fix}" for key, fix in needed
                if not lookup(props, key)]
    for key in ("atRestEncryptionEnabled", "transitEncryptionEnabled"):
        if not _enabled(props, key):
            problems.append(f"the replication group has {key}={props.get(key)!r}: set it to True")
    if problem := customer_key_problem(props, "kmsKeyId"):
        problems.append(f"the replication group uses {problem}: set kms_key_id to the region's estate key")
    mode = lookup(props, "transitEncryptionMode")
    if mode not in ("required", UNKNOWN):
        problems.append(f"the replication group has transitEncryptionMode={mode!r}, which admits clients "
                        "without TLS: set transit_encryption_mode='required'")
    problems += [f"the replication group has an {key} (one shared password, full access): remove it, "
                 "clients authenticate as IAM users of its user group"
                 for key in ("authToken", "authTokenWo") if props.get(key)]
    if props.get("globalReplicationGroupId"):
        problems.append("the replication group joins a global datastore, which copies its data to other "
                        "regions: remove global_replication_group_id")
    return problems


def _enabled(props: Any, key: str) -> bool:
    """A boolean input set to true (the provider takes the string "true" too); unknown at preview passes."""
    value = lookup(props, key)
    return value is UNKNOWN or is_true(value)


def _cluster(props: Any) -> list[str]:
    # CreateCacheCluster takes no at-rest encryption, KMS key or user group: a Memcached cluster or a
    # lone Redis OSS node cannot meet the bar, and a replica joining a group (replication_group_id)
    # belongs in the group's own declaration (num_cache_clusters), where this control judges it.
    return [f"a cache cluster (engine {props.get('engine') or 'unstated'}) takes no customer key and no "
            "user group: use a serverless cache, or a replication group (num_cache_clusters for replicas)"]


def _global_datastore(props: Any) -> list[str]:
    return ["a global datastore copies cached answers to other regions, past a strict group's residency: "
            "keep each region's cache in its region"]
