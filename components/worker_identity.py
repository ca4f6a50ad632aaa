"""The role of a server's asynchronous worker in one residency group, and the task grants of both sides.

Creates, per server declaring `async` and per residency group, the worker's task role: it trusts
only ECS tasks of the estate's account in the group's regions (the same guard as a server's task
role) and may do exactly this, in the group's regions only:
- receive, delete and change the visibility of messages on the server's own task queue, and decrypt
  them with the group's key, only through SQS (`kms:ViaService`);
- keep the server's task records in the group's state table, how depending on `auth`:
  - with `auth` on, it acts as the traveller a message names: its only right on the table is to
    become the server's per-user data role of the group (`sts:AssumeRole` with `sts:TagSession`),
    setting the traveller tag from the message, exactly as the server does from the validated token
    (MCP_DATA_ROLE_ARN / MCP_TRAVELLER_TAG in its environment, inherited from the server's
    container). It may be trusted to: only the server's task role may send to the queue
    (async_worker.queue_policy), and that role set the traveller from a validated token. The data
    role trusts exactly these two roles (per_user_data.data_trust_policy);
  - with `auth` off (dev), it reads and writes the items of its own server, `<server>#*`, and no
    further (IAM cannot narrow a sort key), with the table's key through DynamoDB.

The worker starts with the server's execution role (same image, log group and secrets).

The task-record key contract (README: Fast answers, later answers) is the per-user data contract
(mcp_estate/contract/per_user_data.py): partition key `<server>#<traveller key>`, sort key
`task#<task id>`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mcp_estate.contract.iam_documents import document
from mcp_estate.contract.per_user_data import partition_key

from .naming import child_opts
from .per_user_data import ASSUME_WITH_TAG
from .server_identity import STATE_KEY_ACTIONS, task_trust_policy

RECEIVE_ACTIONS = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage"]
SEND_ACTIONS = ["sqs:SendMessage"]
# What a producer to an SSE-KMS queue needs on its key, and a consumer (SQS key management guide).
SEND_KEY_ACTIONS, RECEIVE_KEY_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey"], ["kms:Decrypt"]
WORKER_RECORD_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"]
SERVER_RECORD_ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"]


def task_partition_pattern(server: str) -> str:
    """Every partition key of `server`, whoever the traveller: `<server>#*` (names contain no `#`)."""
    return partition_key(server, "*")


@dataclass
class TaskResources:
    """The server's task resources in the regions of one residency group (plain ARNs, plan-time)."""
    server: str
    regions: list[str]
    queue_arns: list[str]
    table_arns: list[str]
    key_arns: dict[str, pulumi.Input[str]]   # region -> the group's key there
    data_role_arn: str | None = None         # with auth on: the server's per-user data role in the group


def _via(service: str, regions: list[str]) -> dict:
    return {"StringEquals": {"kms:ViaService": [f"{service}.{r}.amazonaws.com" for r in sorted(regions)]}}


def _keys(resources: TaskResources) -> list[pulumi.Input[str]]:
    return [resources.key_arns[r] for r in sorted(resources.key_arns)]


def _records(resources: TaskResources, actions: list[str]) -> list[dict]:
    return [
        {"Effect": "Allow", "Action": actions, "Resource": list(resources.table_arns),
         "Condition": {"ForAllValues:StringLike": {
             "dynamodb:LeadingKeys": [task_partition_pattern(resources.server)]}}},
        {"Effect": "Allow", "Action": STATE_KEY_ACTIONS, "Resource": _keys(resources),
         "Condition": _via("dynamodb", resources.regions)}]


def sender_statements(resources: TaskResources, records: bool = True) -> list[dict]:
    """The server's side: send to its own queue and, unless its per-user data role keeps them (auth on:
    `records=False`), keep its own task records to answer polls."""
    return [{"Effect": "Allow", "Action": SEND_ACTIONS, "Resource": list(resources.queue_arns)},
            {"Effect": "Allow", "Action": SEND_KEY_ACTIONS, "Resource": _keys(resources),
             "Condition": _via("sqs", resources.regions)},
            *(_records(resources, SERVER_RECORD_ACTIONS) if records else [])]


def worker_policy(resources: TaskResources) -> dict:
    """Consume the server's queue; keep task records as the message's traveller (auth on: become the
    data role, which checks the tag) or under the server's own partition keys (auth off)."""
    records = [{"Effect": "Allow", "Action": ASSUME_WITH_TAG, "Resource": resources.data_role_arn}] \
        if resources.data_role_arn else _records(resources, WORKER_RECORD_ACTIONS)
    return document([
        {"Effect": "Allow", "Action": RECEIVE_ACTIONS, "Resource": list(resources.queue_arns)},
        {"Effect": "Allow", "Action": RECEIVE_KEY_ACTIONS, "Resource": _keys(resources),
         "Condition": _via("sqs", resources.regions)},
        *records])


@dataclass
class WorkerIdentityArgs:
    role_name: str
    group: str
    account_id: str
    resources: TaskResources
    tags: dict[str, str]


class WorkerIdentity(pulumi.ComponentResource):
    def __init__(self, name: str, args: WorkerIdentityArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:worker_identity:WorkerIdentity", name, None, opts)
        where = f"MCP server {args.resources.server}'s worker, residency group {args.group}"
        self.role_name = args.role_name
        self.role = aws.iam.Role(
            f"{name}-role", name=args.role_name, tags=args.tags, description=f"{where}: consume its task queue",
            assume_role_policy=json.dumps(task_trust_policy(args.account_id, args.resources.regions)),
            opts=child_opts(self))
        policy = aws.iam.RolePolicy(f"{name}-policy", role=self.role.id, opts=child_opts(self),
                                    policy=pulumi.Output.json_dumps(worker_policy(args.resources)))
        # Resolved once the policy exists: the first worker task must not start without it.
        self.role_arn = pulumi.Output.all(self.role.arn, policy.id).apply(lambda values: values[0])
        self.register_outputs({"role_arn": self.role_arn})
