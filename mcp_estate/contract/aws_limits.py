"""The limits AWS enforces only at apply time, in one place, each with the page that states it.

`pulumi up` is the first thing that meets them, half-way through a deploy: a 33-character target
group name, a task definition over 64 KiB, the 61st rule of a security group, the 101st rule of
an ALB. The spec (`limit_rules`) and the offline inspector (`mcp_estate.offline.limits`) check
them at plan time instead. An adjustable limit carries its Service Quotas code: an account that
raised it says so in the stack file (`aws_quotas`), and the check uses the raised value.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from .fields import Strict
from .names import ELASTICACHE_NAME_LIMIT, IAM_NAME_LIMIT

ALB_QUOTAS = "https://docs.aws.amazon.com/elasticloadbalancing/latest/application/load-balancer-limits.html"
VPC_QUOTAS = "https://docs.aws.amazon.com/vpc/latest/userguide/amazon-vpc-limits.html"
ECS_QUOTAS = "https://docs.aws.amazon.com/AmazonECS/latest/developerguide/service-quotas.html"


@dataclass(frozen=True)
class Limit:
    what: str                    # the quota's name, as AWS's page spells it
    value: int                   # the default
    url: str
    quota_code: str = ""         # Service Quotas code when adjustable ("" when fixed)

    def fix(self, raise_with: str) -> str:
        """How to get past the limit: what to change, or which quota to raise (and say so where)."""
        if not self.quota_code:
            return f"AWS does not raise this limit ({self.url})"
        return (f"or raise the quota '{self.what}' ({self.quota_code}) in Service Quotas and set "
                f"{raise_with} to the new value ({self.url})")


RULES_PER_ALB = Limit("Rules per Application Load Balancer (excluding default rules)", 100, ALB_QUOTAS,
                      "L-7EED9B64")
TARGET_GROUPS_PER_ALB = Limit("Target Groups per Application Load Balancer", 100, ALB_QUOTAS)
TARGET_GROUPS_PER_ACTION = Limit("Target Groups per Action per Application Load Balancer", 5, ALB_QUOTAS)
CONDITION_VALUES_PER_RULE = Limit("Condition Values per Rule", 5, ALB_QUOTAS)
# Enforced per direction and per address family: 60 inbound IPv4 and 60 inbound IPv6 rules. A rule
# naming a security group or an AWS-managed prefix list counts once in each family; one naming a
# customer-managed prefix list counts as that list's max_entries. The quota times the quota of
# security groups per network interface (5) may not exceed 1,000.
RULES_PER_SECURITY_GROUP = Limit("Inbound or outbound rules per security group", 60, VPC_QUOTAS, "L-0EA8095F")
MAX_RULES_TIMES_GROUPS_PER_ENI = 1000
SECURITY_GROUPS_PER_ENI = 5
CONTAINERS_PER_TASK_DEFINITION = Limit("Containers per task definition", 10, ECS_QUOTAS)
TASK_DEFINITION_BYTES = Limit("Task definition size (KiB)", 64 * 1024, ECS_QUOTAS)


def _api(page: str) -> str:
    return f"https://docs.aws.amazon.com/{page}.html"


@dataclass(frozen=True)
class NameLimit:
    key: str                     # the input that holds the physical name
    max: int
    url: str


# Physical names, by resource type (engine type token), with the API page that states the limit.
# An explicit name is sent as is; an autoname (the resource's name, "-" and 7 random characters) is
# refused by the provider when longer, not shortened. `names` bounds the names it builds to the same limits.
NAME_LIMITS: dict[str, NameLimit] = {
    "aws:iam/role:Role": NameLimit("name", IAM_NAME_LIMIT, _api("IAM/latest/APIReference/API_CreateRole")),
    "aws:iam/policy:Policy": NameLimit("name", 128, _api("IAM/latest/APIReference/API_CreatePolicy")),
    "aws:iam/rolePolicy:RolePolicy": NameLimit(
        "name", 128, _api("IAM/latest/APIReference/API_PutRolePolicy")),
    "aws:lb/targetGroup:TargetGroup": NameLimit(
        "name", 32, _api("elasticloadbalancing/latest/APIReference/API_CreateTargetGroup")),
    "aws:lb/loadBalancer:LoadBalancer": NameLimit(
        "name", 32, _api("elasticloadbalancing/latest/APIReference/API_CreateLoadBalancer")),
    "aws:ecs/cluster:Cluster": NameLimit(
        "name", 255, _api("AmazonECS/latest/APIReference/API_CreateCluster")),
    "aws:ecs/service:Service": NameLimit(
        "name", 255, _api("AmazonECS/latest/APIReference/API_CreateService")),
    "aws:ecs/taskDefinition:TaskDefinition": NameLimit(
        "family", 255, _api("AmazonECS/latest/APIReference/API_RegisterTaskDefinition")),
    "aws:cloudwatch/logGroup:LogGroup": NameLimit(
        "name", 512, _api("AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup")),
    "aws:cloudwatch/logMetricFilter:LogMetricFilter": NameLimit(
        "name", 512, _api("AmazonCloudWatchLogs/latest/APIReference/API_PutMetricFilter")),
    "aws:cloudwatch/metricAlarm:MetricAlarm": NameLimit(
        "name", 255, _api("AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm")),
    "aws:cloudwatch/eventRule:EventRule": NameLimit(
        "name", 64, _api("eventbridge/latest/APIReference/API_PutRule")),
    "aws:lambda/function:Function": NameLimit("name", 64, _api("lambda/latest/api/API_CreateFunction")),
    "aws:dynamodb/table:Table": NameLimit(
        "name", 255, _api("amazondynamodb/latest/APIReference/API_CreateTable")),
    "aws:sqs/queue:Queue": NameLimit(
        "name", 80, _api("AWSSimpleQueueService/latest/APIReference/API_CreateQueue")),
    "aws:secretsmanager/secret:Secret": NameLimit(
        "name", 512, _api("secretsmanager/latest/apireference/API_CreateSecret")),
    "aws:kms/alias:Alias": NameLimit("name", 256, _api("kms/latest/APIReference/API_CreateAlias")),
    "aws:sns/topic:Topic": NameLimit("name", 256, _api("sns/latest/api/API_CreateTopic")),
    "aws:wafv2/webAcl:WebAcl": NameLimit("name", 128, _api("waf/latest/APIReference/API_CreateWebACL")),
    "aws:ecr/repository:Repository": NameLimit(
        "name", 256, _api("AmazonECR/latest/APIReference/API_CreateRepository")),
    "aws:elasticache/serverlessCache:ServerlessCache": NameLimit(
        "name", ELASTICACHE_NAME_LIMIT, _api("AmazonElastiCache/latest/APIReference/API_CreateServerlessCache")),
    "aws:sfn/stateMachine:StateMachine": NameLimit(
        "name", 80, _api("step-functions/latest/apireference/API_CreateStateMachine")),
    "aws:scheduler/schedule:Schedule": NameLimit(
        "name", 64, _api("scheduler/latest/APIReference/API_CreateSchedule")),
    "aws:ec2/securityGroup:SecurityGroup": NameLimit(
        "name", 255, _api("AWSEC2/latest/APIReference/API_CreateSecurityGroup")),
}


class AwsQuotas(Strict):
    """The adjustable quotas this account has raised (Service Quotas), so the checks use their values."""
    rules_per_alb: int = Field(
        RULES_PER_ALB.value, ge=RULES_PER_ALB.value,
        description=f"'{RULES_PER_ALB.what}' ({RULES_PER_ALB.quota_code}), as raised in every region")
    rules_per_security_group: int = Field(
        RULES_PER_SECURITY_GROUP.value, ge=RULES_PER_SECURITY_GROUP.value, le=MAX_RULES_TIMES_GROUPS_PER_ENI,
        description=f"'{RULES_PER_SECURITY_GROUP.what}' ({RULES_PER_SECURITY_GROUP.quota_code}), as raised in "
                    "every region; AWS then lowers the security groups a network interface may have so that "
                    "the two multiplied stay <= 1,000")
