"""The region's cache: one ElastiCache Serverless (Valkey) cache for the servers that declare `cache`.

Creates, in one region (never replicated: no global datastore, so a strict group's cached answers
stay in its regions):
- a security group admitting Valkey's ports (6379, and 6380 for reads from replicas) only from the
  task security groups of the servers declaring `cache`, with the matching egress rule on each of
  those task groups; the group has no other rule;
- one ElastiCache user per server, authenticated by IAM only (no password exists to leak: a task
  signs a short-lived token with its role), its id equal to its name as IAM authentication requires;
- a Valkey user group holding exactly those users (a Valkey group admits only users with a password
  or IAM: there is no password-less `default` user to disable);
- the serverless cache in the region's private subnets, encrypted at rest with the region's key
  (a serverless cache always encrypts in transit: clients must use TLS), with that user group and
  usage limits that bound its cost.

A server's role reaches the cache only through the symbolic grant `cache` (elasticache:Connect on
the cache and on its own user: `connect_arns`); what the user may do inside is its access string.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .naming import child_opts

ENGINE = "valkey"
MAJOR_ENGINE_VERSION = "8"
PORTS = (6379, 6380)   # the endpoint, and the reader endpoint (read from replicas)


def access_string(server: str) -> str:
    """The server's keys only (`<server>:...`, README: Fast answers, later answers), and every
    command but the administrative and dangerous ones: one server's user can neither read another's
    cached answers nor reconfigure the cache (ElastiCache RBAC: access strings are the boundary
    between clients of one cache)."""
    return f"on ~{server}:* +@all -@admin -@dangerous"


@dataclass
class CacheUser:
    """A server admitted to the cache (`RegionalCache.admit`, once its task security group exists)."""
    server: str
    user_id: str
    task_security_group_id: pulumi.Input[str]


@dataclass
class RegionalCacheArgs:
    region: str
    cache_name: str
    user_group_id: str
    vpc_id: pulumi.Input[str]
    private_subnet_ids: list[pulumi.Input[str]]
    key_arn: pulumi.Input[str]                  # the region's key of its residency group
    user_ids: dict[str, str]                    # server -> its user's id (also its name: IAM authentication)
    max_data_gb: int
    max_ecpu_per_second: int
    tags: dict[str, str]


def connect_arns(account_id: str, region: str, cache_name: str, user_id: str) -> list[str]:
    """What IAM authentication checks elasticache:Connect against: the cache and the user."""
    return [f"arn:aws:elasticache:{region}:{account_id}:serverlesscache:{cache_name}",
            f"arn:aws:elasticache:{region}:{account_id}:user:{user_id}"]


class RegionalCache(pulumi.ComponentResource):
    def __init__(self, name: str, args: RegionalCacheArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:regional_cache:RegionalCache", name, None, opts)
        self._name, self._tags = name, args.tags
        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=args.vpc_id, tags=args.tags, opts=child_opts(self),
            description="MCP estate cache: Valkey from the tasks of servers declaring cache only")
        users = [aws.elasticache.User(
            f"{name}-user-{server}", user_id=user_id, user_name=user_id, engine=ENGINE,
            access_string=access_string(server), authentication_mode={"type": "iam"}, tags=args.tags,
            opts=child_opts(self)) for server, user_id in sorted(args.user_ids.items())]
        self.user_group = aws.elasticache.UserGroup(
            f"{name}-users", user_group_id=args.user_group_id, engine=ENGINE,
            user_ids=[u.user_id for u in users], tags=args.tags, opts=child_opts(self))
        self.cache = aws.elasticache.ServerlessCache(
            f"{name}-cache", name=args.cache_name, engine=ENGINE, major_engine_version=MAJOR_ENGINE_VERSION,
            description=f"MCP estate cache in {args.region}: per-traveller answers, short-lived",
            subnet_ids=args.private_subnet_ids, security_group_ids=[self.security_group.id],
            kms_key_id=args.key_arn, user_group_id=self.user_group.user_group_id,
            cache_usage_limits={"data_storage": {"maximum": args.max_data_gb, "unit": "GB"},
                                "ecpu_per_seconds": [{"maximum": args.max_ecpu_per_second}]},
            tags=args.tags, opts=child_opts(self))
        self.endpoint: pulumi.Output[str] = self.cache.endpoints.apply(lambda endpoints: endpoints[0].address)
        self.register_outputs({"cache_arn": self.cache.arn, "endpoint": self.endpoint})

    def admit(self, users: list[CacheUser]) -> None:
        """Open Valkey's ports between the cache and each user's tasks, and nothing else: called once
        the servers' task security groups exist (the servers' tasks need the cache's endpoint first)."""
        name, group = self._name, self.security_group
        for user in users:
            for port in PORTS:
                aws.vpc.SecurityGroupIngressRule(
                    f"{name}-from-{user.server}-{port}", security_group_id=group.id, ip_protocol="tcp",
                    from_port=port, to_port=port, referenced_security_group_id=user.task_security_group_id,
                    description=f"Valkey from MCP server {user.server}", tags=self._tags, opts=child_opts(self))
                aws.vpc.SecurityGroupEgressRule(
                    f"{name}-{user.server}-to-cache-{port}", security_group_id=user.task_security_group_id,
                    ip_protocol="tcp", from_port=port, to_port=port, referenced_security_group_id=group.id,
                    description="Valkey to the cache of the region", tags=self._tags, opts=child_opts(self))
