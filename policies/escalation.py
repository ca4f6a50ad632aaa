"""Privilege escalation: permissions that are harmless one by one and dangerous together, judged over
everything an identity holds (design.md §1, confused deputy; issue 12, "dangerous only together").

An identity's permissions are the Allow statements of every policy that reaches it: its inline policies
(own resources and a role's inline_policies) and the managed policies this stack writes, by any
attachment route; a user's also include every group it is in (UserGroupMembership, GroupMembership), so
a method split between a user and its group is one method. A user in a group this stack does not
define is refused: what that group grants cannot be seen. Where the stack writes its permissions
boundary, what it may do is the intersection (IAM grants an action only when both the identity-based
policies, a group's included, and the boundary allow it: IAM User Guide, access_policies_boundaries,
"Identity-based policies with boundaries"). A Deny statement
is not subtracted: a check that missed a deny would pass what IAM refuses only in the safe direction.

The methods follow the public research on IAM privilege escalation: Rhino Security Labs' "AWS IAM
Privilege Escalation - Methods and Mitigation" (Spencer Gietzen), as cloudsplaining encodes it
(cloudsplaining/shared/constants.py, PRIVILEGE_ESCALATION_METHODS, with the pathfinding.cloud additions).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase

from pulumi_policy import PolicyResource, Severity, StackValidationArgs

from .control import Report, Risk, allows, as_list, lookup, pinned_conditions, stack_policy
from .least_privilege import ATTACHMENTS, MANAGED_POLICY, ROLE, WILDCARDS, is_every_resource

USER, GROUP = "aws:iam/user:User", "aws:iam/group:Group"
USER_GROUPS = "aws:iam/userGroupMembership:UserGroupMembership"
GROUP_MEMBERS = "aws:iam/groupMembership:GroupMembership"
# identity type -> (its kind, the prop its own inline-policy resources name it by, their type)
HOLDERS = {ROLE: ("role", "role", "aws:iam/rolePolicy:RolePolicy"),
           USER: ("user", "user", "aws:iam/userPolicy:UserPolicy"),
           GROUP: ("group", "group", "aws:iam/groupPolicy:GroupPolicy")}
# attachment type -> the props naming the identities it attaches to, by kind
ATTACHED_TO = {
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": {"role": "role"},
    "aws:iam/userPolicyAttachment:UserPolicyAttachment": {"user": "user"},
    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment": {"group": "group"},
    "aws:iam/policyAttachment:PolicyAttachment": {"role": "roles", "user": "users", "group": "groups"},
    "aws:iam/rolePolicyAttachmentsExclusive:RolePolicyAttachmentsExclusive": {"role": "roleName"},
    "aws:iam/userPolicyAttachmentsExclusive:UserPolicyAttachmentsExclusive": {"user": "userName"},
    "aws:iam/groupPolicyAttachmentsExclusive:GroupPolicyAttachmentsExclusive": {"group": "groupName"},
}

# With iam:PassRole on roles it does not name, whoever may also start one of these hands a role of its
# choosing to code of its own and acts with that role's permissions (Rhino's "iam:PassRole" methods and
# pathfinding.cloud's new-passrole paths).
LAUNCHES = {
    "ec2:runinstances": "a new EC2 instance", "ec2:requestspotinstances": "a new EC2 spot instance",
    "lambda:createfunction": "a new Lambda function", "glue:createdevendpoint": "a new Glue dev endpoint",
    "glue:createjob": "a new Glue job", "glue:updatejob": "an updated Glue job",
    "cloudformation:createstack": "a new CloudFormation stack",
    "cloudformation:createstackset": "a new CloudFormation stack set",
    "cloudformation:updatestackset": "an updated CloudFormation stack set",
    "datapipeline:createpipeline": "a new Data Pipeline", "ecs:registertaskdefinition": "a new ECS task definition",
    "codebuild:createproject": "a new CodeBuild project", "apprunner:createservice": "a new App Runner service",
    "sagemaker:createnotebookinstance": "a new SageMaker notebook",
    "sagemaker:createtrainingjob": "a new SageMaker training job",
    "sagemaker:createprocessingjob": "a new SageMaker processing job",
}
# Actions that change who may do what (the identity's own permissions, its boundary, its trust, another
# user's credentials) or the code a role runs: on a resource it does not name, or on itself, the holder
# grants itself more (Rhino's methods 1-3 and 5, and the boundary that is only a boundary while the
# identity cannot lift it).
SELF_GRANTING = frozenset({
    "iam:createaccesskey", "iam:createloginprofile", "iam:updateloginprofile", "iam:addusertogroup",
    "iam:createpolicyversion", "iam:setdefaultpolicyversion", "iam:attachuserpolicy", "iam:attachgrouppolicy",
    "iam:attachrolepolicy", "iam:putuserpolicy", "iam:putgrouppolicy", "iam:putrolepolicy",
    "iam:updateassumerolepolicy", "iam:putrolepermissionsboundary", "iam:deleterolepermissionsboundary",
    "iam:putuserpermissionsboundary", "iam:deleteuserpermissionsboundary", "iam:deleterolepolicy",
    "iam:detachrolepolicy", "lambda:updatefunctioncode", "glue:updatedevendpoint"})
ASSUME_ROLE = "sts:assumerole"
PASS_ROLE = "iam:passrole"


@dataclass(frozen=True)
class Grant:
    """One Allow statement: the action patterns it matches (or, with NotAction, those it does not), the
    resource patterns it reaches (`*` for NotResource), and the services iam:PassedToService pins."""
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    passed_to: tuple[str, ...]

    @classmethod
    def of(cls, statement: Mapping) -> Grant:
        not_action = "NotAction" in statement
        actions = tuple(str(a).lower() for a in as_list(statement.get("NotAction" if not_action else "Action")))
        resources = ("*",) if "NotResource" in statement else tuple(str(r) for r in as_list(statement.get("Resource")))
        return cls(actions, not_action, resources, tuple(pinned_conditions(statement).get("iam:passedtoservice", [])))

    def matches(self, action: str) -> bool:
        hit = any(fnmatchcase(action, pattern) for pattern in self.actions)
        return hit != self.not_action


def widely(resource: str) -> bool:
    """Whether a resource pattern reaches resources it does not name: every resource of a kind, or any
    pattern at all over IAM and STS names (`role/mcp-*` reaches every role so named, the admin's too)."""
    return is_every_resource(resource) or (":iam::" in resource or ":sts::" in resource) \
        and bool(set(resource) & WILDCARDS)


@dataclass
class Identity:
    resource: PolicyResource
    kind: str
    grants: list[Grant]
    boundary: list[Grant] | None   # None: no boundary this stack writes, so nothing narrows the grants
    own_arns: list[str]            # its ARN, its boundary's and its managed policies': changing one is changing it
    unknown_groups: list[str]      # groups it is in that this stack does not define: their grants are unseen

    def allows(self, action: str) -> list[Grant]:
        """The grants allowing `action`, when the boundary (if any) allows it too."""
        if self.boundary is not None and not any(b.matches(action) for b in self.boundary):
            return []
        return [g for g in self.grants if g.matches(action)]

    def reaches_beyond(self, action: str, grants: list[Grant] | None = None, own: bool = True) -> list[str]:
        """The resources on which `action` is allowed (by `grants`, else all) that it does not name, or
        (with `own`) that are the identity's own."""
        found = []
        for grant in self.allows(action) if grants is None else grants:
            for resource in grant.resources:
                if (widely(resource) or own and any(fnmatchcase(mine, resource) for mine in self.own_arns)) \
                        and self._boundary_reaches(action, resource):
                    found.append(resource)
        return sorted(set(found))

    def _boundary_reaches(self, action: str, resource: str) -> bool:
        if self.boundary is None:
            return True
        return any(b.matches(action) and any(widely(r) or fnmatchcase(resource, r) for r in b.resources)
                   for b in self.boundary)


def _name(resource: PolicyResource) -> str:
    return str(lookup(resource.props, "name"))


def _arn(resource: PolicyResource) -> str | None:
    arn = lookup(resource.props, "arn")
    return arn if isinstance(arn, str) else None


def identities(resources: list[PolicyResource]) -> Iterator[Identity]:
    """Every role, user and group of the stack with the grants that reach it: a user holds its groups'
    grants too (IAM evaluates a user's policies and those of every group it is in, all narrowed by the
    user's boundary), and changing one of its groups, or their policies, is changing the user."""
    written = {arn: r for r in resources if r.resource_type == MANAGED_POLICY and (arn := _arn(r))}
    groups = {_name(g): g for g in resources if g.resource_type == GROUP}
    members = memberships(resources)
    for holder in (r for r in resources if r.resource_type in HOLDERS):
        kind, name = HOLDERS[holder.resource_type][0], _name(holder)
        documents, attached = _held(resources, holder, written)
        joined = sorted(members.get(name, ())) if kind == "user" else []
        for group in (groups[g] for g in joined if g in groups):
            group_documents, group_attached = _held(resources, group, written)
            documents += group_documents
            attached += [a for a in [_arn(group), *group_attached] if isinstance(a, str)]
        boundary_arn = lookup(holder.props, "permissionsBoundary")
        boundary = written.get(boundary_arn) if isinstance(boundary_arn, str) else None
        yield Identity(holder, kind, [Grant.of(s) for d in documents for s in allows(d)],
                       [Grant.of(s) for s in allows(boundary.props.get("policy"))] if boundary else None,
                       [a for a in [_arn(holder), boundary_arn, *attached] if isinstance(a, str)],
                       [g for g in joined if g not in groups])


def _held(resources: list[PolicyResource], holder: PolicyResource, written: dict) -> tuple[list, list[str]]:
    """The policy documents reaching an identity directly (inline, and the managed policies this stack
    writes and attaches to it) and the ARNs of every managed policy attached to it."""
    kind, key, inline_type = HOLDERS[holder.resource_type]
    name = _name(holder)
    documents = [r.props.get("policy") for r in resources
                 if r.resource_type == inline_type and _iam_name(r.props.get(key)) == name]
    documents += [p.get("policy") for p in as_list(holder.props.get("inlinePolicies")) if isinstance(p, Mapping)]
    attached = _attached_arns(resources, holder, kind, name)
    return documents + [written[arn].props.get("policy") for arn in attached if arn in written], attached


def memberships(resources: list[PolicyResource]) -> dict[str, set[str]]:
    """User name -> the names of the groups it is in, by either membership resource."""
    found: dict[str, set[str]] = {}
    for r in resources:
        if r.resource_type == USER_GROUPS:
            groups = map(_iam_name, as_list(r.props.get("groups")))
            found.setdefault(_iam_name(r.props.get("user")), set()).update(groups)
        elif r.resource_type == GROUP_MEMBERS:
            for user in as_list(r.props.get("users")):
                found.setdefault(_iam_name(user), set()).add(_iam_name(r.props.get("group")))
    return found


def _iam_name(reference: object) -> str:
    """An IAM role, user or group named by its name or its ARN (whatever its path)."""
    text = str(reference)
    return text.rsplit("/", 1)[-1] if text.startswith("arn:") and re.search(r":(role|user|group)/", text) else text


def _attached_arns(resources: list[PolicyResource], holder: PolicyResource, kind: str, name: str) -> list[str]:
    arns = [str(a) for a in as_list(holder.props.get("managedPolicyArns"))] if kind == "role" else []
    for attachment in (r for r in resources if r.resource_type in ATTACHED_TO):
        key = ATTACHED_TO[attachment.resource_type].get(kind)
        if key and name in {_iam_name(n) for n in as_list(attachment.props.get(key))}:
            arns += [str(a) for a in as_list(attachment.props.get(ATTACHMENTS[attachment.resource_type]))]
    return arns


def _service_words(service: str) -> set[str]:
    return set(re.split(r"[.-]", service.lower()))


def escalations(identity: Identity) -> list[str]:
    """How the identity could grant itself more, one sentence each."""
    found = []
    passing = [g for g in identity.allows(PASS_ROLE) if identity.reaches_beyond(PASS_ROLE, [g], own=False)]
    if passing:
        roles = ", ".join(identity.reaches_beyond(PASS_ROLE, passing, own=False))
        for action, what in LAUNCHES.items():
            service = action.split(":")[0]
            # iam:PassedToService pins which service may receive the role: only that one's launches count
            if identity.allows(action) and any(not g.passed_to or any(service in _service_words(s)
                                                                        for s in g.passed_to) for g in passing):
                found.append(f"iam:PassRole on {roles} with {action}: it "
                             f"can hand any of those roles to {what} and act as it")
    for action in sorted(SELF_GRANTING):
        if reached := identity.reaches_beyond(action):
            found.append(f"{action} on {', '.join(reached)}: it can change its own or another identity's "
                         "permissions or code")
    if reached := [r for r in identity.reaches_beyond(ASSUME_ROLE) if is_every_resource(r)]:
        found.append(f"sts:AssumeRole on {', '.join(reached)}: it can become any role that trusts the account")
    return found


@stack_policy(
    "no-privilege-escalation-paths",
    "No role, user or group holds, across every policy that reaches it (inline, its inline_policies, the "
    "managed policies this stack writes and attaches by any route; for a user, also every group it is in, and "
    "a group this stack does not define is refused), narrowed by a permissions boundary the "
    "stack writes: iam:PassRole on roles it does not name together with an action that starts code with a "
    "passed role (ec2:RunInstances, lambda:CreateFunction, ecs:RegisterTaskDefinition, "
    "cloudformation:CreateStack, glue:CreateJob, codebuild:CreateProject, ...; an iam:PassedToService "
    "condition limits the launches that count); an action that changes permissions, a boundary, a trust "
    "policy, credentials or a function's code (iam:PutRolePolicy, iam:AttachRolePolicy, "
    "iam:CreatePolicyVersion, iam:DeleteRolePermissionsBoundary, iam:UpdateAssumeRolePolicy, "
    "iam:CreateAccessKey, lambda:UpdateFunctionCode, ...) on a resource it does not name or on itself, its "
    "boundary or its own managed policies; sts:AssumeRole on every role. After Rhino Security Labs' IAM "
    "privilege-escalation methods as cloudsplaining lists them. A Deny statement is not subtracted"
    ". Reads outputs (role, policy and attachment ARNs): on a first preview it cannot run, "
    "so `estate check` in every pull request is the gate",
    risks=[Risk.CONFUSED_DEPUTY], severity=Severity.CRITICAL,
    remediation="Name the roles iam:PassRole may pass (and pin iam:PassedToService), name the resources "
                "permission-changing actions reach and never the identity itself, or bound the identity "
                "with a permissions boundary written in this stack that leaves the action out.")
def no_privilege_escalation_paths(args: StackValidationArgs, report: Report) -> None:
    for identity in identities(args.resources):
        for group in identity.unknown_groups:
            report(f"user {identity.resource.name} is in group {group}, which this stack does not define, so what "
                   "the group grants it cannot be judged: define the group (and its policies) in this stack, or "
                   "leave the user out of it", identity.resource.urn)
        for path in escalations(identity):
            report(f"{identity.kind} {identity.resource.name} can escalate its privileges: {path}",
                   identity.resource.urn)
