"""Least privilege: each identity holds exactly what its job needs, and only the estate's ECS tasks
can become one (design.md §1, confused deputy).

Checked: identity policies, whose holder is implicit (inline role, user and group policies,
managed policies, a role's inline_policies), the managed policies attached to identities, and
roles' trust policies. Resource policies are out of scope on purpose: AWS's default KMS key
policy grants the account root `kms:*` on "*" (it delegates the key to IAM, where these rules
apply), and a bucket policy's `Deny s3:*` only narrows access; who a bucket policy admits is
checked by private_networking.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from pulumi_policy import PolicyResource, ResourceValidationArgs, Severity, StackValidationArgs

from .control import (TASK_DEFINITION, Report, Risk, allows, as_list, grants_everyone, pinned_conditions,
                      resource_policy, stack_policy)
from .iam_actions import requires_wildcard_resource

ROLE = "aws:iam/role:Role"
IDENTITY_POLICIES = {
    "aws:iam/rolePolicy:RolePolicy": "role policy",
    "aws:iam/userPolicy:UserPolicy": "user policy",
    "aws:iam/groupPolicy:GroupPolicy": "group policy",
    "aws:iam/policy:Policy": "managed policy",
}


def _documents(args: ResourceValidationArgs) -> list[tuple[str, Any]]:
    """(what it is, document) of every identity policy the resource carries."""
    if args.resource_type in IDENTITY_POLICIES:
        return [(f"{IDENTITY_POLICIES[args.resource_type]} {args.name}", args.props.get("policy"))]
    if args.resource_type == ROLE:
        return [(f"role {args.name} inline policy {inline.get('name')}", inline.get("policy"))
                for inline in as_list(args.props.get("inlinePolicies")) if isinstance(inline, Mapping)]
    return []


def allowed(args: ResourceValidationArgs) -> Iterator[tuple[str, Mapping]]:
    """(what it is, statement) of every Allow statement of the resource's identity policies."""
    for what, document in _documents(args):
        for statement in allows(document):
            sid = f" (statement {statement['Sid']})" if statement.get("Sid") else ""
            yield what + sid, statement


def _actions(statement: Mapping) -> list[str]:
    return [str(action) for action in as_list(statement.get("Action"))]


def is_service_wide(action: str) -> bool:
    """Whether an action pattern grants a whole service or more: a wildcard (`*` or `?`) in the
    service part (`*:*`, `s*:GetItem`, `s?:Get*`), an action part of wildcards only (`s3:*`,
    `s3:*?`), or any `*` without a colon (`*`). `s3:Get*` is a partial pattern, not flagged."""
    service, colon, name = action.partition(":")
    if not colon:
        return "*" in action
    return bool(set(service) & WILDCARDS) or (bool(name) and set(name) <= WILDCARDS and "*" in name)


WILDCARDS = frozenset("*?")
SEPARATORS = frozenset("/:")
# The ARN's resource part after an optional type prefix (`table/`, `secret:`, `key/`).
_RESOURCE_PART = re.compile(r"(?:[\w.-]+[/:])?(?P<rest>.*)", re.S)


def is_every_resource(resource: str) -> bool:
    """Whether a Resource pattern matches every resource of a kind: `*`, an ARN with a wildcard in
    its partition, service or account (`arn:aws:*:...`, `arn:aws:dynamodb:*:*:table/x`), or whose
    resource part is only wildcards after an optional type prefix (`arn:...:table/*`,
    `arn:...:secret:*`, `arn:...:key/*`, `arn:...:*/*`) or whose id under its type is only wildcards
    (`table/*/index/*`). Scoped patterns such as `repository/mcp/*`,
    `log-group:/x:*` or `secret:name-??????` are not."""
    if resource == "*":
        return True
    fields = resource.split(":", 5)
    if len(fields) < 6 or fields[0] != "arn":
        return bool(resource) and set(resource) <= WILDCARDS
    partition, service, _, account, rest = fields[1:]
    if WILDCARDS & set(partition + service + account):
        return True
    if service == "s3" and not account:
        # An object's ARN has no type prefix: `arn:aws:s3:::bucket/*` is one bucket's objects, `*/*` all.
        return set(rest.split("/")[0]) <= WILDCARDS
    # `*/*` or `*:*` (any type, any id) is every resource too: separators between wildcards narrow nothing;
    # and so is a wildcard id under its type, whatever follows (`table/*/index/*`: every table's indexes).
    remainder, segments = _RESOURCE_PART.fullmatch(rest)["rest"], re.split(r"[/:]", rest)
    return (bool(set(remainder) & WILDCARDS) and set(remainder) <= WILDCARDS | SEPARATORS) \
        or (len(segments) > 2 and bool(segments[1]) and set(segments[1]) <= WILDCARDS)


# Resource types whose ids AWS assigns when it creates one: the request to create one cannot
# name its ARN, so AWS documents `<type>/*` for it (e.g. ec2:CreateNetworkInterface on
# `network-interface/*`, with the subnet and security group named).
ASSIGNED_IDS = frozenset({("ec2", "network-interface"), ("ec2", "instance"), ("ec2", "volume")})
# Condition keys that narrow which existing resources of a type a statement reaches.
NARROWING_KEYS = ("ec2:subnet", "ec2:vpc", "aws:resourcetag/", "ec2:resourcetag/")
_TYPED = re.compile(r"arn:aws[a-z-]*:(?P<service>[a-z0-9-]+):[a-z0-9-]*:\d{12}:(?P<type>[a-z-]+)/\*")


# What Lambda does to a VPC function's interfaces once created. It checks these permissions when it
# creates the function, on ids of its own: AWS documents a grant on every resource id of the account in
# the region (`arn:aws:ec2:<region>:<account>:*/*`) as the form that works (Lambda developer guide,
# configuration-vpc, "Required IAM permissions"); that form exactly, no broader, is excused for them.
LAMBDA_INTERFACE_UPKEEP = frozenset({"ec2:deletenetworkinterface", "ec2:assignprivateipaddresses",
                                     "ec2:unassignprivateipaddresses"})
_EVERY_EC2_ID_OF_A_REGION = re.compile(r"arn:aws[a-z-]*:ec2:[a-z]{2}(?:-[a-z]+)+-\d:\d{12}:\*/\*")


def _excused(action: str, resource: str, narrowed: bool) -> bool:
    """Whether a resource pattern matching every resource of a kind is what the action needs: it
    creates a resource whose id AWS assigns (`<type>/*` of one account), a condition pins which
    resources of the type it reaches, or it is Lambda's upkeep of a VPC function's interfaces."""
    if action.lower() in LAMBDA_INTERFACE_UPKEEP and _EVERY_EC2_ID_OF_A_REGION.fullmatch(resource):
        return True
    typed = _TYPED.fullmatch(resource)
    if not typed:
        return False
    service, _, name = action.lower().partition(":")
    creates = service == typed["service"] and name.startswith(("create", "run")) \
        and (typed["service"], typed["type"]) in ASSIGNED_IDS
    return creates or narrowed


def _narrowed(statement: Mapping) -> bool:
    return any(key.startswith(NARROWING_KEYS) for key in pinned_conditions(statement))


@resource_policy(
    "no-wildcard-actions",
    "Identity policies allow no `*`, `*:*` or `service:*` action: they list the actions the job needs. "
    "Partial patterns such as `s3:Get*` are not flagged",
    risks=[Risk.CONFUSED_DEPUTY], severity=Severity.HIGH,
    remediation="List the actions the job needs (the spec's grants, e.g. dynamodb:GetItem).")
def no_wildcard_actions(args: ResourceValidationArgs, report: Report) -> None:
    for what, statement in allowed(args):
        wildcards = [action for action in _actions(statement) if is_service_wide(action)]
        if wildcards:
            report(f"{what} allows {', '.join(wildcards)}: list the actions the job needs instead")


@resource_policy(
    "no-not-action-or-not-resource-allows",
    "Identity policies never Allow with NotAction or NotResource: both grant everything not listed, "
    "including actions and resources AWS adds later",
    risks=[Risk.CONFUSED_DEPUTY], severity=Severity.HIGH,
    remediation="Allow the listed Action on the listed Resource; use a Deny statement to carve exceptions.")
def no_not_action_or_not_resource_allows(args: ResourceValidationArgs, report: Report) -> None:
    for what, statement in allowed(args):
        for key in ("NotAction", "NotResource"):
            if key in statement:
                report(f"{what} allows with {key}, which grants everything it does not list: "
                       f"use Action and Resource instead")


@resource_policy(
    "resource-wildcard-only-where-aws-requires-it",
    "Identity policies allow Resource \"*\" only for actions AWS cannot scope to a resource (no "
    "resource-level permission in AWS's service authorization reference, e.g. ecr:GetAuthorizationToken, "
    "sts:GetCallerIdentity); a statement mixing them with scopable actions is flagged. Every resource of a "
    "kind (`table/*`, `key/*`, an ARN with a wildcard account) counts as \"*\", except `<type>/*` of one "
    "account for creating a resource whose id AWS assigns (network-interface/*) or under a condition that "
    "pins which ones (ec2:Subnet, ec2:Vpc, aws:ResourceTag/...), and `arn:aws:ec2:<region>:<account>:*/*` "
    "for ec2:DeleteNetworkInterface, ec2:AssignPrivateIpAddresses and ec2:UnassignPrivateIpAddresses, the "
    "form AWS documents for a VPC Lambda function's role",
    risks=[Risk.CONFUSED_DEPUTY], severity=Severity.HIGH,
    remediation="Name the ARNs the actions need; keep \"*\" in a statement of its own for the actions "
                "AWS cannot scope.")
def resource_wildcard_only_where_aws_requires_it(args: ResourceValidationArgs, report: Report) -> None:
    for what, statement in allowed(args):
        everything = [str(r) for r in as_list(statement.get("Resource")) if is_every_resource(str(r))]
        if not everything:
            continue
        narrowed = _narrowed(statement)
        scopable = [action for action in _actions(statement) if not requires_wildcard_resource(action)
                    and not all(_excused(action, resource, narrowed) for resource in everything)]
        if scopable:
            report(f"{what} allows {', '.join(scopable)} on every resource ({', '.join(everything)}), but AWS "
                   "lets these actions be scoped: name the ARNs they need")


# -- attached managed policies -----------------------------------------------------------------------------

ATTACHMENTS = {
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": "policyArn",
    "aws:iam/userPolicyAttachment:UserPolicyAttachment": "policyArn",
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment": "policyArn",
    "aws:iam/policyAttachment:PolicyAttachment": "policyArn",
    "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive": "policyArns",
    "aws:iam/userPolicyAttachmentsExclusive:UserPolicyAttachmentsExclusive": "policyArns",
    "aws:iam/groupPolicyAttachmentsExclusive:GroupPolicyAttachmentsExclusive": "policyArns",
    ROLE: "managedPolicyArns",
}
AWS_MANAGED_POLICY = re.compile(r"arn:aws[a-z-]*:iam::aws:policy/(?:.+/)?(?P<name>[^/]+)")


def is_admin_policy(arn: Any) -> bool:
    """AWS-managed AdministratorAccess (and its -Amplify... variants), PowerUserAccess, and every
    `...FullAccess` policy (IAMFullAccess, AmazonS3FullAccess...)."""
    match = AWS_MANAGED_POLICY.fullmatch(str(arn))
    name = match["name"] if match else ""
    return name.startswith("AdministratorAccess") or name == "PowerUserAccess" or name.endswith("FullAccess")


@resource_policy(
    "no-aws-managed-admin-policies",
    "No identity gets AWS's AdministratorAccess, PowerUserAccess or any AWS-managed ...FullAccess "
    "policy (through an attachment or a role's managed_policy_arns)",
    risks=[Risk.CONFUSED_DEPUTY], severity=Severity.CRITICAL,
    remediation="Write an inline policy with the actions and resources the job needs.")
def no_aws_managed_admin_policies(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type not in ATTACHMENTS:
        return
    for arn in as_list(args.props.get(ATTACHMENTS[args.resource_type])):
        if is_admin_policy(arn):
            report(f"{args.name} attaches {arn}, far more than one job needs: write an inline policy "
                   "with the actions and resources the job needs")


# -- trust policies -----------------------------------------------------------------------------------------

def _trusts(args: ResourceValidationArgs | PolicyResource) -> list[Mapping]:
    return allows(args.props.get("assumeRolePolicy")) if args.resource_type == ROLE else []


@resource_policy(
    "no-trust-policy-open-to-everyone",
    "No role trusts everyone (Principal \"*\", {\"AWS\": \"*\"} or a NotPrincipal), with or without "
    "conditions: a trust policy names the services or roles that may assume it",
    risks=[Risk.CONFUSED_DEPUTY], severity=Severity.CRITICAL,
    remediation="Trust a named principal: a service (ecs-tasks.amazonaws.com) or a role ARN.")
def no_trust_policy_open_to_everyone(args: ResourceValidationArgs, report: Report) -> None:
    for statement in _trusts(args):
        if grants_everyone(statement):
            report(f"role {args.name} can be assumed by anyone: trust a named service or role ARN instead")


ECS_TASKS = "ecs-tasks.amazonaws.com"
SOURCE_KEYS = frozenset({"aws:sourceaccount", "aws:sourcearn"})


def _trusts_ecs_tasks(statement: Mapping) -> bool:
    principal = statement.get("Principal")
    services = principal.get("Service") if isinstance(principal, Mapping) else None
    return ECS_TASKS in as_list(services)


def _role_name(reference: Any) -> str:
    """The role a task definition names: ECS takes a role's ARN (any path) or its name alone."""
    text = str(reference)
    return text.rsplit("/", 1)[-1] if text.startswith("arn:") and ":role/" in text else text


def _unguarded(role: PolicyResource) -> bool:
    """Whether a role trusts ecs-tasks.amazonaws.com in a statement pinning neither source key."""
    return any(_trusts_ecs_tasks(s) and not SOURCE_KEYS & pinned_conditions(s).keys() for s in _trusts(role))


def _references(resources: list[PolicyResource]) -> tuple[set[str], set[str]]:
    """The roles task definitions run tasks as (taskRoleArn) and start them with (executionRoleArn)."""
    uses: dict[str, set[str]] = {"taskRoleArn": set(), "executionRoleArn": set()}
    for definition in (r for r in resources if r.resource_type == TASK_DEFINITION):
        for key, names in uses.items():
            if definition.props.get(key):
                names.add(_role_name(definition.props.get(key)))
    return uses["taskRoleArn"], uses["executionRoleArn"]


@stack_policy(
    "ecs-task-trust-has-source-conditions",
    "A role trusted by ecs-tasks.amazonaws.com pins aws:SourceAccount or aws:SourceArn on that statement, "
    "so ECS assumes it only for the estate's own tasks (confused-deputy protection, as AWS documents for "
    "task roles). Exempt only a role the stack's task definitions use as executionRoleArn and never as "
    "taskRoleArn: AWS documents no such condition for a task execution role, which the ECS agent assumes. "
    "What a role is comes from the task definitions, never from its name, tags or description",
    risks=[Risk.CONFUSED_DEPUTY], severity=Severity.HIGH,
    remediation="Add Condition {\"StringEquals\": {\"aws:SourceAccount\": <account>}, "
                "\"ArnLike\": {\"aws:SourceArn\": \"arn:aws:ecs:<region>:<account>:*\"}} "
                "to a task role's trust.")
def ecs_task_trust_has_source_conditions(args: StackValidationArgs, report: Report) -> None:
    unguarded = [r for r in args.resources if r.resource_type == ROLE and _unguarded(r)]
    if not unguarded:
        return   # nothing to exempt: no need to read task definitions (unknown at a first preview)
    task_roles, execution_roles = _references(args.resources)
    for role in unguarded:
        name = str(role.props.get("name"))
        if name in execution_roles and name not in task_roles:
            continue
        why = "task definitions run tasks as it (taskRoleArn)" if name in task_roles \
            else "no task definition uses it only as its execution role"
        report(f"role {role.name} trusts {ECS_TASKS} for any account's tasks and {why}: add a condition on "
               "aws:SourceAccount or aws:SourceArn (StringEquals / ArnLike)", role.urn)
