"""Per-user data: a server reads and writes only the caller's state items (issue 13 §4, §6; README:
Who may call what).

A grant of item actions on a state table (any DynamoDB table of the stack) is *scoped to the traveller*
when it grants only actions whose request names their partition keys, under
`ForAllValues:StringEquals` on `dynamodb:LeadingKeys` whose every value is literal text around
`${aws:PrincipalTag/<tag>}` variables only. Anything else reads or writes every traveller's items:
- `ForAnyValue` passes a BatchGetItem naming one own key and many foreign ones; `StringLike` with `*`
  or a value without a principal-tag variable pins no traveller; `aws:RequestTag` and `${aws:userid}`
  are chosen by the caller, a principal tag only by whoever may tag the session (the trust);
- Scan, PartiQLSelect (a full-table scan), an export, the table's stream name no key: ForAllValues
  on a key absent from the request is true (IAM User Guide, "Multivalued context key examples").

Every policy of a role counts: its inline policies, its RolePolicy resources, and the managed policies
attached by any route (least_privilege._attached); AWS-managed policies that read tables are reported
as unscoped, and so is a table's resource policy granting item actions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from fnmatch import fnmatchcase
from typing import Any

from pulumi_policy import PolicyResource, Severity, StackValidationArgs

from .control import Report, Risk, allows, as_list, as_mapping, grants_everyone, stack_policy, statements, tag
from .least_privilege import MANAGED_POLICY, ROLE, _attached, _references, _role_name

TABLE = "aws:dynamodb/table:Table"
TABLE_POLICY = "aws:dynamodb/resourcePolicy:ResourcePolicy"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
# The item actions LeadingKeys limits: their requests always name the partition keys they touch.
SCOPED = frozenset(a.lower() for a in (
    "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem", "dynamodb:DeleteItem",
    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"))
# Actions that read or write items without naming a key: never scoped by LeadingKeys.
UNKEYED = frozenset(a.lower() for a in (
    "dynamodb:Scan", "dynamodb:PartiQLSelect", "dynamodb:PartiQLInsert", "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete", "dynamodb:ExportTableToPointInTime", "dynamodb:GetRecords"))
ITEM_ACTIONS = SCOPED | UNKEYED
# AWS-managed policies that read every table of the account (or everything).
TABLE_READING_MANAGED = re.compile(r"(?i)arn:aws[a-z-]*:iam::aws:policy/(.*/)?"
                                   r"(.*DynamoDB.*|AdministratorAccess|PowerUserAccess|ReadOnlyAccess)")
_PRINCIPAL_TAG = re.compile(r"\$\{aws:PrincipalTag/([^}]+)\}", re.IGNORECASE)
_VARIABLE = re.compile(r"\$\{[^}]*\}")
AUTH_CONFIG = {"authEnabled": {"type": "boolean"}}
SERVER_TAG, GROUP_TAG = "server", "residency-group"   # mcp-estate:<key> (control.tag)


# -- what a statement grants on the state tables ------------------------------------------------------------

def _granted_item_actions(statement: Mapping) -> set[str]:
    """The item actions (lower case) an Allow statement grants, by Action or NotAction patterns."""
    if "NotAction" in statement:
        excluded = [str(p).lower() for p in as_list(statement.get("NotAction"))]
        return {a for a in ITEM_ACTIONS if not any(fnmatchcase(a, p) for p in excluded)}
    patterns = [str(p).lower() for p in as_list(statement.get("Action"))]
    return {a for a in ITEM_ACTIONS if any(fnmatchcase(a, p) for p in patterns)}


def _reaches(resource: str, table: str) -> bool:
    """Whether an ARN pattern covers the table, one of its indexes or its stream."""
    if resource == "*":
        return True
    fields = resource.split(":", 5)
    if len(fields) < 6 or not fnmatchcase("dynamodb", fields[2]):
        return False
    if fields[5].startswith(f"table/{table}/"):   # one of its indexes, its stream, an export
        return True
    return any(fnmatchcase(tail, fields[5]) for tail in (f"table/{table}", f"table/{table}/index/x",
                                                           f"table/{table}/stream/x"))


def _on_state(statement: Mapping, tables: set[str]) -> bool:
    if "NotResource" in statement:
        excluded = [str(r) for r in as_list(statement.get("NotResource"))]
        return any(not any(_reaches(r, t) for r in excluded) for t in tables)
    return any(_reaches(str(r), t) for r in as_list(statement.get("Resource")) for t in tables)


def state_grant(statement: Mapping, tables: set[str]) -> set[str]:
    """The item actions a statement grants on a state table (empty: it grants none)."""
    return _granted_item_actions(statement) if tables and _on_state(statement, tables) else set()


def leading_key_tags(statement: Mapping) -> set[str] | None:
    """The principal tags a statement's LeadingKeys condition binds the partition key to, or None when
    it binds none: the condition must be ForAllValues:StringEquals and every value literal text around
    `${aws:PrincipalTag/...}` variables, at least one."""
    condition = as_mapping(statement.get("Condition"))
    block = as_mapping(condition.get("ForAllValues:StringEquals"))
    values = [str(v) for k, value in block.items() if k.lower() == "dynamodb:leadingkeys" for v in as_list(value)]
    tags: set[str] = set()
    for value in values:
        bound = _PRINCIPAL_TAG.findall(value)
        rest = _VARIABLE.sub("", value)
        if not bound or len(bound) != len(_VARIABLE.findall(value)) or any(c in rest for c in "*?"):
            return None
        tags.update(bound)
    return tags or None


def unscoped_reason(statement: Mapping, tables: set[str]) -> str | None:
    """Why a statement's grant on a state table is not limited to the caller's items (None: it is, or
    it grants nothing there)."""
    granted = state_grant(statement, tables)
    if not granted:
        return None
    unkeyed = sorted(granted & UNKEYED)
    if unkeyed:
        return (f"grants {', '.join(unkeyed)}, which name no partition key: a LeadingKeys condition does "
                "not limit them (ForAllValues is true without the key)")
    if leading_key_tags(statement) is None:
        return ("grants item actions without ForAllValues:StringEquals on dynamodb:LeadingKeys bound to "
                "${aws:PrincipalTag/<tag>}")
    return None


# -- every policy of a role ---------------------------------------------------------------------------------

def _tables(resources: list[PolicyResource]) -> set[str]:
    return {str(r.props.get("name")) for r in resources if r.resource_type == TABLE and r.props.get("name")}


def role_documents(resources: list[PolicyResource], role: PolicyResource) -> Iterator[tuple[str, Any]]:
    """(what it is, document) of every identity policy a role holds: inline, RolePolicy resources and
    managed policies attached by any route (a written one's document, an AWS-managed one's ARN)."""
    name = str(role.props.get("name"))
    for inline in as_list(role.props.get("inlinePolicies")):
        if isinstance(inline, Mapping):
            yield f"inline policy {inline.get('name')}", inline.get("policy")
    for policy in resources:
        if policy.resource_type == ROLE_POLICY and _role_name(policy.props.get("role")) == name:
            yield f"role policy {policy.name}", policy.props.get("policy")
    written = {str(p.props.get("arn")): p for p in resources if p.resource_type == MANAGED_POLICY}
    for holder, arn in _attached(resources):
        if name not in _holders(holder):
            continue
        if arn in written:
            yield f"managed policy {written[arn].name} (attached by {holder.name})", written[arn].props.get("policy")
        elif TABLE_READING_MANAGED.fullmatch(arn):
            yield f"AWS-managed {arn} (attached by {holder.name})", None


def _holders(attachment: PolicyResource) -> set[str]:
    """The roles an attachment resource attaches to (a role itself, for its managed_policy_arns)."""
    if attachment.resource_type == ROLE:
        return {str(attachment.props.get("name"))}
    props = attachment.props
    return {_role_name(r) for r in [props.get("role"), props.get("roleName"), *as_list(props.get("roles"))] if r}


def _role_findings(resources: list[PolicyResource], role: PolicyResource, tables: set[str]) -> Iterator[str]:
    for what, document in role_documents(resources, role):
        if document is None:
            yield f"{what} reads every table of the account"
            continue
        for statement in allows(document):
            reason = unscoped_reason(statement, tables)
            if reason:
                yield f"{what} {reason}"


def _scopes_by_traveller(resources: list[PolicyResource], role: PolicyResource) -> bool:
    """A per-user data role: it may be assumed with session tags, or it binds any grant to a principal tag."""
    trusts = allows(role.props.get("assumeRolePolicy"))
    if any(fnmatchcase("sts:tagsession", str(a).lower()) for s in trusts for a in as_list(s.get("Action"))):
        return True
    return any(leading_key_tags(s) for _, d in role_documents(resources, role) for s in allows(d))


@stack_policy(
    "per-user-data-roles-scoped-by-leading-keys",
    "A per-user data role (one assumable with session tags, or binding a grant to a principal tag) reaches "
    "a state table only through grants limited to the caller's items: only actions naming their partition "
    "keys (GetItem, Query, PutItem, UpdateItem, DeleteItem, Batch*, ConditionCheckItem; never Scan, "
    "PartiQL, exports or the stream), under ForAllValues:StringEquals on dynamodb:LeadingKeys whose values "
    "are bound to ${aws:PrincipalTag/<tag>}. Every policy of the role counts: inline, RolePolicy resources "
    "and attached managed policies"
    ". Reads outputs (role and table ARNs): on a first preview it cannot run, "
    "so `estate check` in every pull request is the gate",
    risks=[Risk.CONFUSED_DEPUTY, Risk.PROMPT_INJECTION], severity=Severity.CRITICAL,
    remediation="Grant the keyed item actions only, with Condition {\"ForAllValues:StringEquals\": "
                "{\"dynamodb:LeadingKeys\": [\"<server>#${aws:PrincipalTag/mcp-estate-traveller}\"]}, "
                "\"Null\": {\"dynamodb:LeadingKeys\": \"false\"}} (components/per_user_data.py).")
def per_user_data_roles_scoped_by_leading_keys(args: StackValidationArgs, report: Report) -> None:
    tables = _tables(args.resources)
    for role in (r for r in args.resources if r.resource_type == ROLE):
        if _scopes_by_traveller(args.resources, role):
            for finding in _role_findings(args.resources, role, tables):
                report(f"per-user data role {role.name}: {finding}", role.urn)


@stack_policy(
    "no-unscoped-state-access-when-auth-is-on",
    "With the estate's `auth` on (pack config `authEnabled`, generated by `estate pack-config`), no role "
    "reaches a state table's items unscoped: every grant of item actions on it, in any policy of any role, "
    "is limited to the caller's items by LeadingKeys bound to a principal tag (a task role holds none: "
    "it assumes its per-user data role), no role holds an AWS-managed policy reading every table, and no "
    "table resource policy grants item actions"
    ". Reads outputs (role and table ARNs): on a first preview it cannot run, "
    "so `estate check` in every pull request is the gate",
    risks=[Risk.CONFUSED_DEPUTY, Risk.PROMPT_INJECTION], severity=Severity.CRITICAL,
    remediation="Remove the table grant from the role: servers reach state through their data role "
                "(MCP_DATA_ROLE_ARN, README: Who may call what).",
    config=AUTH_CONFIG)
def no_unscoped_state_access_when_auth_is_on(args: StackValidationArgs, report: Report) -> None:
    if args.get_config().get("authEnabled") is not True:
        return
    tables = _tables(args.resources)
    for role in (r for r in args.resources if r.resource_type == ROLE):
        for finding in _role_findings(args.resources, role, tables):
            report(f"role {role.name}: {finding}", role.urn)
    for policy in (r for r in args.resources if r.resource_type == TABLE_POLICY):
        for statement in allows(policy.props.get("policy")):
            granted = _granted_item_actions(statement)
            if granted:
                report(f"table resource policy {policy.name} grants {', '.join(sorted(granted))}: with auth on, "
                       "state is reached only through per-user data roles", policy.urn)


# -- who may become a per-user data role --------------------------------------------------------------------

ASSUME_ACTIONS = frozenset({"sts:assumerole", "sts:tagsession"})


def _requires_tag(condition: Mapping, tag_key: str) -> bool:
    """The trust requires the session tag with a non-empty value, and no other tag key."""
    request_tag = f"aws:requesttag/{tag_key}".lower()
    present = any(k.lower() == request_tag and all(str(v) not in ("", "*") for v in as_list(value))
                  for op in ("StringLike", "StringEquals") for k, value in as_mapping(condition.get(op)).items())
    keys = [str(v) for k, value in as_mapping(condition.get("ForAllValues:StringEquals")).items()
            if k.lower() == "aws:tagkeys" for v in as_list(value)]
    return present and keys == [tag_key]


# -- a worker acting as the traveller: the consumer of a queue only the task role may send to ----------------

QUEUE, QUEUE_POLICY = "aws:sqs/queue:Queue", "aws:sqs/queuePolicy:QueuePolicy"


def _left_only_to(statement: Mapping, action: str, queue: str) -> str | None:
    """The one role a queue policy's Deny leaves `action` to: Principal everyone, the action among its
    Action patterns, the queue among its Resources, and exactly one condition, StringNotEquals
    aws:PrincipalArn naming one role ARN (any further condition would let the Deny lapse)."""
    if statement.get("Effect") != "Deny" or not grants_everyone(statement) or "NotPrincipal" in statement:
        return None
    if not any(fnmatchcase(action, str(p).lower()) for p in as_list(statement.get("Action"))):
        return None
    if not any(r == "*" or fnmatchcase(queue, str(r).rsplit(":", 1)[-1]) for r in as_list(statement.get("Resource"))):
        return None
    condition = as_mapping(statement.get("Condition"))
    keys = as_mapping(condition.get("StringNotEquals"))
    arns = [v for k, value in keys.items() if k.lower() == "aws:principalarn" for v in as_list(value)]
    if set(condition) != {"StringNotEquals"} or len(keys) != 1 or len(arns) != 1 or ":role/" not in str(arns[0]):
        return None
    return _role_name(arns[0])


def _queue_documents(resources: list[PolicyResource]) -> Iterator[tuple[str, Any]]:
    """(queue name, policy) of every SQS queue policy: a queue's own `policy` and QueuePolicy resources."""
    for resource in resources:
        if resource.resource_type == QUEUE and resource.props.get("policy"):
            yield str(resource.props.get("name")), resource.props.get("policy")
        elif resource.resource_type == QUEUE_POLICY:
            yield str(resource.props.get("queueUrl")).rstrip("/").rsplit("/", 1)[-1], resource.props.get("policy")


def sender_consumer_pairs(resources: list[PolicyResource]) -> set[tuple[str, str]]:
    """(sender, consumer) role names of every queue that only the sender may send to and only the
    consumer may receive from: the consumer acts only on messages the sender wrote."""
    pairs = set()
    for queue, document in _queue_documents(resources):
        only = {action: {r for s in statements(document) if (r := _left_only_to(s, action, queue))}
                for action in ("sqs:sendmessage", "sqs:receivemessage")}
        senders, consumers = only["sqs:sendmessage"], only["sqs:receivemessage"]
        if len(senders) == 1 and len(consumers) == 1:
            pairs.add((next(iter(senders)), next(iter(consumers))))
    return pairs


def _trusted_roles(principal: Any, pairs: set[tuple[str, str]]) -> str | None:
    """Why a trust's principal is not one task role, or a task role and the consumer of its queue."""
    arns = [str(a) for a in as_list(principal.get("AWS"))] \
        if isinstance(principal, Mapping) and set(principal) == {"AWS"} else []
    if not 1 <= len(arns) <= 2 or not all(a.startswith("arn:") and ":role/" in a for a in arns):
        return f"trusts {principal!r}: name exactly one task role ARN, or it and its worker's"
    if len(arns) == 2 and (_role_name(arns[0]), _role_name(arns[1])) not in pairs | {(c, s) for s, c in pairs}:
        return (f"trusts {arns[0]} and {arns[1]}: a second role is admitted only as the worker acting for the "
                "first, the only consumer (sqs:ReceiveMessage) of a queue only the first may send to "
                "(a queue policy denying each action to every other aws:PrincipalArn)")
    return None


def trust_problems(role: PolicyResource, task_roles: dict[str, PolicyResource], tags: set[str],
                   pairs: set[tuple[str, str]]) -> Iterator[str]:
    """Why a per-user data role may be assumed by more than its server's task role (and the worker acting
    on that role's messages) with the traveller tag."""
    for statement in allows(role.props.get("assumeRolePolicy")):
        principal = statement.get("Principal")
        problem = _trusted_roles(principal, pairs)
        if problem:
            yield problem
            continue
        for arn in (str(a) for a in as_list(as_mapping(principal).get("AWS"))):
            task = task_roles.get(_role_name(arn))
            if task is None:
                yield f"trusts {arn}, which no task definition runs tasks as"
            elif any(tag(role.props, k) != tag(task.props, k) for k in (SERVER_TAG, GROUP_TAG)):
                yield f"trusts {arn}, the task role of another server or residency group"
        actions = {str(a).lower() for a in as_list(statement.get("Action"))}
        if not actions <= ASSUME_ACTIONS or "NotAction" in statement:
            yield f"lets its principal {', '.join(sorted(actions)) or 'NotAction'}: allow only sts:AssumeRole " \
                  "and sts:TagSession"
        condition = as_mapping(statement.get("Condition"))
        if len(tags) != 1 or not _requires_tag(condition, next(iter(tags))):
            yield ("does not require the session tag its grants are bound to "
                   f"({', '.join(sorted(tags)) or 'none'}), non-empty and alone (aws:RequestTag/<tag> and "
                   "ForAllValues:StringEquals aws:TagKeys)")


@stack_policy(
    "per-user-data-role-trusts-only-its-task-role",
    "A per-user data role (one binding grants to a principal tag) is assumable only by one role that the "
    "stack's task definitions run tasks as, of the same server and residency group (its tags), and at most "
    "its worker: a second such role that is the only consumer of a queue only the first may send to (the "
    "worker acts as the traveller the task role's message names), with only "
    "sts:AssumeRole and sts:TagSession, and only when the request sets the principal tag its grants are "
    "bound to, non-empty, and no other tag: whoever else could assume it, or set another tag, would read "
    "any traveller's items"
    ". Reads outputs (task role ARNs): on a first preview it cannot run, "
    "so `estate check` in every pull request is the gate",
    risks=[Risk.CONFUSED_DEPUTY], severity=Severity.CRITICAL,
    remediation="Trust {\"AWS\": <the server's task role ARN> (and its worker's)} for "
                "[\"sts:AssumeRole\", \"sts:TagSession\"] with "
                "Condition {\"StringLike\": {\"aws:RequestTag/<tag>\": \"?*\"}, \"ForAllValues:StringEquals\": "
                "{\"aws:TagKeys\": [\"<tag>\"]}} (components/per_user_data.py).")
def per_user_data_role_trusts_only_its_task_role(args: StackValidationArgs, report: Report) -> None:
    roles = [r for r in args.resources if r.resource_type == ROLE]
    data_roles = {role: {t for _, d in role_documents(args.resources, role) for s in allows(d)
                         for t in (leading_key_tags(s) or ())} for role in roles}
    data_roles = {role: tags for role, tags in data_roles.items() if tags}
    if not data_roles:
        return
    task_names, _ = _references(args.resources)
    task_roles = {str(r.props.get("name")): r for r in roles if str(r.props.get("name")) in task_names}
    pairs = sender_consumer_pairs(args.resources)
    for role, tags in data_roles.items():
        for problem in trust_problems(role, task_roles, tags, pairs):
            report(f"per-user data role {role.name} {problem}", role.urn)
