"""The per-user data role of one MCP server in one residency group (README: Who may call what).

Built when the estate's `auth` is on and the server declares grants on `state`. Creates:
- the data role, trusted only by the server's task role in the group and, for a server declaring
  `async`, its worker's role there (which acts as the traveller a task message names: only the task
  role may send to the queue, components/worker_identity.py), for `sts:AssumeRole` with
  `sts:TagSession`, and only with exactly one session tag, the traveller (`mcp-estate-traveller`),
  non-empty;
- its policy: the server's declared `state` actions on the group's tables (no index: the table has
  none, and an index ARN would open queries keyed on another attribute), limited to the items whose
  partition key is `<server>#<traveller>`: `ForAllValues:StringEquals` on `dynamodb:LeadingKeys`
  against `${aws:PrincipalTag/mcp-estate-traveller}`, with `Null: false` on the key, because
  ForAllValues is true for a request that names no key at all (IAM User Guide, "Multivalued context
  key examples"); plus the use of the tables' keys through DynamoDB.

The server's task role then holds `sts:AssumeRole`/`sts:TagSession` on this role instead of any grant
on the table (Estate._identity), so the task's own credentials read nothing unscoped. What the
server's code must still do (set the tag only from a validated token...) is in the README's
"Who may call what".

`backend_egress` adds, for a server with backends, the egress its token exchange needs (each
backend's range and the IdP's token endpoint's, on 443).

The role is named from stable keys (`<prefix>-<server>-<group>-data`, PhysicalNames.data_role), so
change detection watches it from plan time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

import pulumi
import pulumi_aws as aws

from mcp_estate.contract.iam_documents import document
from mcp_estate.contract.per_user_data import TRAVELLER_TAG, leading_key_condition
from mcp_estate.contract.spec import Egress, Server

from .naming import child_opts
from .server_identity import state_key_statement

ASSUME_WITH_TAG = ["sts:AssumeRole", "sts:TagSession"]
HTTPS = 443


@dataclass
class DataRoleArgs:
    server: str
    group: str
    role_name: str
    task_role: aws.iam.Role        # the only principal trusted; the data role is created after it
    task_role_arn: str             # its ARN, known at plan time (the stack policies read the trust)
    actions: list[str]             # the server's `state` actions (the spec allows only keyed ones)
    table_arns: list[str]          # the group's table in each of its regions
    state_key_arns: dict[str, pulumi.Input[str]]   # region -> the group's key there
    tags: dict[str, str]
    worker_role: aws.iam.Role | None = None   # the server's worker's role in the group (`async`), trusted too
    worker_role_arn: str | None = None


class DataRole(pulumi.ComponentResource):
    def __init__(self, name: str, args: DataRoleArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:per_user_data:DataRole", name, None, opts)
        self.role_name = args.role_name
        self.role = aws.iam.Role(
            f"{name}-role", name=args.role_name, tags=args.tags,
            assume_role_policy=json.dumps(data_trust_policy(args.task_role_arn, args.worker_role_arn)),
            description=f"MCP server {args.server}, residency group {args.group}: one traveller's state items",
            # IAM refuses a trust naming a role that does not exist yet.
            opts=child_opts(self, depends_on=[r for r in (args.task_role, args.worker_role) if r]))
        self.policy = aws.iam.RolePolicy(
            f"{name}-items", role=self.role.id, opts=child_opts(self),
            policy=pulumi.Output.json_dumps(data_policy(args.server, args.actions, args.table_arns,
                                                        args.state_key_arns)))
        self.register_outputs({"role_arn": self.role.arn})


def data_trust_policy(task_role_arn: str, worker_role_arn: str | None = None) -> dict:
    """Only the server's task role (and its worker's), and only with the traveller tag set (and no other tag)."""
    principal = [task_role_arn, worker_role_arn] if worker_role_arn else task_role_arn
    return document([{
        "Effect": "Allow", "Principal": {"AWS": principal}, "Action": ASSUME_WITH_TAG,
        "Condition": {
            "StringLike": {f"aws:RequestTag/{TRAVELLER_TAG}": "?*"},   # present and not empty
            "ForAllValues:StringEquals": {"aws:TagKeys": [TRAVELLER_TAG]},
        },
    }])


def data_policy(server: str, actions: list[str], table_arns: list[str],
                state_key_arns: dict[str, pulumi.Input[str]]) -> dict:
    """The declared item actions on the caller's own items, and the tables' keys through DynamoDB."""
    return document([
        {"Effect": "Allow", "Action": sorted(actions), "Resource": sorted(table_arns),
         "Condition": {
             "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [leading_key_condition(server)]},
             "Null": {"dynamodb:LeadingKeys": "false"},
         }},
        state_key_statement(state_key_arns),
    ])


def backend_egress(server: Server, token_exchange_cidrs: list[str]) -> list[Egress]:
    """What a server's backends need beyond its declared egress: each backend's range and the IdP's
    token endpoint, on 443; a destination the server already declares is not repeated (one rule each)."""
    if not server.backends:
        return []
    # The backend's host, not its URL: EC2 refuses `?`, `%`, `~` in a rule's description.
    wanted = [(b.cidr, f"Backend {b.name} ({urlsplit(b.url).hostname})")
              for b in sorted(server.backends, key=lambda b: b.name)]
    wanted += [(cidr, "The IdP token endpoint (token exchange)") for cidr in sorted(token_exchange_cidrs)]
    seen = {(e.cidr, e.port) for e in server.egress}
    extra = []
    for cidr, description in wanted:
        if (cidr, HTTPS) not in seen:
            seen.add((cidr, HTTPS))
            extra.append(Egress(cidr=cidr, port=HTTPS, description=description))
    return extra
