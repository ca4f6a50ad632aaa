"""The two IAM roles of one MCP server in one residency group, used by its services in the group's regions.

Creates, per server and residency group:
- a task role: what the server's code may call, exactly the grants declared in the spec, resolved to
  the group's own state table (and its indexes), key and secret replicas (one inline policy statement
  per grant; no grants, no policy);
- an execution role: what ECS needs to start the server's tasks, scoped to the server's repository,
  log group and secrets in the group's regions, and the group's key for those secrets.

A strict group's data is reachable only by roles of that group: a task in another group's region
runs with that group's roles, which name none of its table, key or secrets.

The task role trusts only ECS tasks of the estate's account in the group's regions (`aws:SourceAccount`
and `aws:SourceArn`, AWS's confused-deputy guard for task roles, ECS developer guide "Amazon ECS task
IAM role"). The execution role trusts ecs-tasks.amazonaws.com without conditions: AWS documents none
for it ("Amazon ECS task execution IAM role"), the ECS agent assumes it, and an undocumented condition
would risk every task failing to start. Neither gets a managed policy: `AmazonECSTaskExecutionRolePolicy`
grants every repository and log group of the account, far more than one server needs.

Both roles are named from stable keys (`<prefix>-<server>-<group>-task` / `-exec`, shortened with a
hash past IAM's 64 characters), so change detection knows them at plan time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from mcp_estate.contract.iam_documents import document, service_trust
from mcp_estate.contract.names import iam_name

from .naming import child_opts

ECS_TASKS = "ecs-tasks.amazonaws.com"


@dataclass(frozen=True)
class Grant:
    """One declared permission of a server, its resources resolved to ARNs."""

    actions: list[str]
    resources: list[str]


@dataclass
class ServerIdentityArgs:
    server: str
    group: str                                  # the residency group whose regions the roles serve
    name_prefix: str                            # the estate's physical-name prefix, e.g. mcp-estate-prod
    account_id: str
    regions: list[str]                          # the group's regions: the roles work only there
    grants: list[Grant]
    repository_arns: list[str]                  # the server's ECR repository in each of the regions
    log_group_arns: list[str]                   # its log group per region (`...:log-group:<name>:*`)
    secret_arns: list[str]                      # its secrets per region (`...:secret:<name>-??????`)
    key_arns: list[pulumi.Input[str]]           # the group's key in each region (it encrypts the secrets)
    tags: dict[str, str]
    # Keys of the state tables the grants reach, per region: a CMK-encrypted table answers a
    # caller only if the caller may use its key (through DynamoDB).
    state_key_arns: dict[str, pulumi.Input[str]] = field(default_factory=dict)
    # What `async` adds: send to its task queue, keep its task records (components/worker_identity.py).
    capability_statements: list[dict] = field(default_factory=list)


def role_name(name_prefix: str, server: str, group: str, kind: str) -> str:
    """The physical name of a server's `task` or `exec` role in a group."""
    return iam_name(f"{name_prefix}-{server}-{group}-{kind}")


class ServerIdentity(pulumi.ComponentResource):
    def __init__(self, name: str, args: ServerIdentityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:server_identity:ServerIdentity", name, None, opts)
        where = f"MCP server {args.server}, residency group {args.group}"
        execution_name, task_name = (role_name(args.name_prefix, args.server, args.group, kind)
                                     for kind in ("exec", "task"))
        self.role_names = [execution_name, task_name]

        self.task_role = aws.iam.Role(
            f"{name}-task", name=task_name, tags=args.tags,
            assume_role_policy=json.dumps(task_trust_policy(args.account_id, args.regions)),
            description=f"{where}: what its code may call", opts=child_opts(self))
        self.task_role_arn: pulumi.Output[str] = self.task_role.arn
        if args.grants or args.capability_statements:
            grants = aws.iam.RolePolicy(
                f"{name}-task-grants", role=self.task_role.id,
                policy=pulumi.Output.json_dumps(task_policy(args.grants, args.state_key_arns,
                                                            args.capability_statements)),
                opts=child_opts(self))
            self.task_role_arn = _ready(self.task_role, grants)

        self.execution_role = aws.iam.Role(
            f"{name}-execution", name=execution_name, tags=args.tags,
            assume_role_policy=json.dumps(execution_trust_policy()),
            description=f"ECS, starting {where}: pull its image, write its logs, read its secrets",
            opts=child_opts(self))
        execution = aws.iam.RolePolicy(
            f"{name}-execution-policy", role=self.execution_role.id,
            policy=pulumi.Output.json_dumps(execution_policy(args)), opts=child_opts(self))
        self.execution_role_arn = _ready(self.execution_role, execution)

        self.register_outputs({"task_role_arn": self.task_role_arn,
                               "execution_role_arn": self.execution_role_arn})


def _ready(role: aws.iam.Role, policy: aws.iam.RolePolicy) -> pulumi.Output[str]:
    """The role's ARN, resolved only once its policy exists: a task definition using it then
    waits for the policy, so no first task fails (and trips the circuit breaker) for want of it."""
    return pulumi.Output.all(role.arn, policy.id).apply(lambda values: values[0])


def task_trust_policy(account_id: str, regions: list[str]) -> dict:
    """ECS tasks may assume the task role only for tasks of this account in these regions."""
    return service_trust(ECS_TASKS, {
        "StringEquals": {"aws:SourceAccount": [account_id]},
        "ArnLike": {"aws:SourceArn": [f"arn:aws:ecs:{region}:{account_id}:*" for region in sorted(regions)]},
    })


def execution_trust_policy() -> dict:
    """The trust AWS documents for a task execution role: the ECS tasks service, no condition."""
    return service_trust(ECS_TASKS)


def task_policy(grants: list[Grant], state_key_arns: dict[str, pulumi.Input[str]] | None = None,
                capability_statements: list[dict] | None = None) -> dict:
    """Exactly the declared grants. No Sid: a positional one would change when the list is
    reordered; statements are sorted so that reordering the spec changes nothing. With state
    keys, the use of those keys that DynamoDB makes on the server's behalf, and no other."""
    statements = sorted(({"Effect": "Allow", "Action": list(g.actions), "Resource": list(g.resources)}
                         for g in grants), key=lambda s: (s["Action"], s["Resource"]))
    if state_key_arns:
        statements.append(state_key_statement(state_key_arns))
    return document([*statements, *(capability_statements or [])])


def state_key_statement(state_key_arns: dict[str, pulumi.Input[str]]) -> dict:
    """The use of the state tables' keys that DynamoDB makes on a caller's behalf, and no other."""
    return {
        "Effect": "Allow", "Action": STATE_KEY_ACTIONS,
        "Resource": [state_key_arns[region] for region in sorted(state_key_arns)],
        "Condition": {"StringEquals": {
            "kms:ViaService": [f"dynamodb.{region}.amazonaws.com" for region in sorted(state_key_arns)]}}}


# What a caller of a table encrypted with a customer-managed key needs on that key.
STATE_KEY_ACTIONS = ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"]


def execution_policy(args: ServerIdentityArgs) -> dict:
    statements = [
        # GetAuthorizationToken has no resource-level permission: AWS only accepts "*" here.
        # The token alone pulls nothing: the next statement decides which images can be read.
        {"Sid": "EcrLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        {"Sid": "PullOwnImage", "Effect": "Allow",
         "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
         "Resource": list(args.repository_arns)},
        {"Sid": "WriteOwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": list(args.log_group_arns)},
    ]
    if args.secret_arns:
        statements += [
            {"Sid": "ReadOwnSecrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
             "Resource": list(args.secret_arns)},
            # The keys also protect other data: decrypt only on Secrets Manager's behalf.
            {"Sid": "DecryptOwnSecrets", "Effect": "Allow", "Action": "kms:Decrypt",
             "Resource": list(args.key_arns),
             "Condition": {"StringEquals": {
                 "kms:ViaService": [f"secretsmanager.{region}.amazonaws.com"
                                    for region in sorted(args.regions)]}}},
        ]
    return document(statements)
