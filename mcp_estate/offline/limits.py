"""AWS's apply-time limits, checked over the registered resources (mcp_estate.contract.aws_limits).

Two kinds of check, both O(resources):
- one resource at a time (`resource_limit_problems`, called by the fidelity inspector): physical
  names (explicit, or the autoname the provider would build), a task definition's size and
  container count, a listener rule's condition values and target groups per action;
- over the whole plan at the end of the run (`estate_limit_problems`): rules per security group
  (per direction and address family, prefix lists weighed by their size), listener rules and target
  groups per ALB, security groups per network interface (which depends on the raised rules quota).
  The resources are indexed once by id and ARN, then counted in dicts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any, Iterable

from pulumi.runtime import rpc

from mcp_estate.contract.aws_limits import (
    CONDITION_VALUES_PER_RULE,
    CONTAINERS_PER_TASK_DEFINITION,
    MAX_RULES_TIMES_GROUPS_PER_ENI,
    NAME_LIMITS,
    RULES_PER_ALB,
    RULES_PER_SECURITY_GROUP,
    SECURITY_GROUPS_PER_ENI,
    TARGET_GROUPS_PER_ACTION,
    TARGET_GROUPS_PER_ALB,
    TASK_DEFINITION_BYTES,
    AwsQuotas,
    Limit,
)

from .runner import Registered

TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
LISTENER_RULE = "aws:lb/listenerRule:ListenerRule"
LISTENER = "aws:lb/listener:Listener"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
ECS_SERVICE = "aws:ecs/service:Service"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
PREFIX_LIST = "aws:ec2/managedPrefixList:ManagedPrefixList"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS_RULE = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
LEGACY_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
# Where a resource lists the security groups of the network interfaces it creates.
ENI_GROUPS = {ECS_SERVICE: ("networkConfiguration", "securityGroups"),
              "aws:lambda/function:Function": ("vpcConfig", "securityGroupIds"),
              "aws:ec2/vpcEndpoint:VpcEndpoint": (None, "securityGroupIds"),
              LOAD_BALANCER: (None, "securityGroups")}


def _known(value: Any) -> Any:
    value = rpc.unwrap_rpc_secret(value)
    return None if value == rpc.UNKNOWN else value


# -- one resource at a time ----------------------------------------------------------------------

def resource_limit_problems(type_token: str, inputs: dict, resource_name: str = "") -> list[str]:
    problems = _name_problems(type_token, inputs) + _autoname_problems(type_token, inputs, resource_name)
    if type_token == TASK_DEFINITION:
        problems += _task_definition_problems(inputs)
    elif type_token == LISTENER_RULE:
        problems += _listener_rule_problems(inputs)
    return problems


def _name_problems(type_token: str, inputs: dict) -> list[str]:
    limit = NAME_LIMITS.get(type_token)
    name = _known(inputs.get(limit.key)) if limit else None
    if not isinstance(name, str) or len(name) <= limit.max:
        return []
    return [f"{limit.key} '{name}' has {len(name)} characters; AWS accepts at most {limit.max} ({limit.url}): "
            f"shorten the server, group or stack name it is built from"]


# An autoname is the resource's name, "-" and 7 random characters; the provider refuses one over the
# limit ("could not make instance of '<type>': name '<name>-' plus 7 random chars is longer than
# maximum length 32": NewUniqueName in pulumi/pulumi sdk/go/common/resource), it does not shorten it.
AUTONAME_SUFFIX = len("-") + 7


def _autoname_problems(type_token: str, inputs: dict, resource_name: str) -> list[str]:
    limit = NAME_LIMITS.get(type_token)
    if not limit or not resource_name or limit.key in inputs or f"{limit.key}Prefix" in inputs:
        return []
    if len(resource_name) + AUTONAME_SUFFIX <= limit.max:
        return []
    return [f"no {limit.key} is set, and the autoname '{resource_name}-' plus 7 random characters is longer than "
            f"the {limit.max} AWS accepts ({limit.url}): the provider refuses it at apply; set {limit.key} "
            f"(a bounded physical name) or shorten the resource name"]


def _task_definition_problems(inputs: dict) -> list[str]:
    """RegisterTaskDefinition's request, as the provider sends it, may not pass 64 KiB; nor hold
    more than 10 containers. Measured as compact JSON of the inputs but the tags (sent apart)."""
    containers = _known(inputs.get("containerDefinitions"))
    if not isinstance(containers, str):
        return []
    problems = []
    request = {k: v for k, v in inputs.items() if k not in ("tags", "containerDefinitions")}
    size = len(containers.encode()) + len(json.dumps(request, separators=(",", ":")).encode())
    if size > TASK_DEFINITION_BYTES.value:
        problems.append(f"the task definition is {size} bytes, over the {TASK_DEFINITION_BYTES.value} bytes "
                        f"(64 KiB) ECS accepts: move large environment values into secrets or files "
                        f"({TASK_DEFINITION_BYTES.fix('')})")
    try:
        parsed = json.loads(containers)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, list):
        return problems   # the fidelity inspector reports the JSON itself
    count = len(parsed)
    if count > CONTAINERS_PER_TASK_DEFINITION.value:
        problems.append(f"the task definition has {count} containers; ECS accepts at most "
                        f"{CONTAINERS_PER_TASK_DEFINITION.value} ({CONTAINERS_PER_TASK_DEFINITION.url})")
    return problems


def _listener_rule_problems(inputs: dict) -> list[str]:
    problems = []
    values = sum(_condition_values(c) for c in _known(inputs.get("conditions")) or [] if isinstance(c, dict))
    if values > CONDITION_VALUES_PER_RULE.value:
        problems.append(f"its conditions hold {values} values; an ALB rule holds at most "
                        f"{CONDITION_VALUES_PER_RULE.value} ({CONDITION_VALUES_PER_RULE.url}): split the rule")
    for i, action in enumerate(_known(inputs.get("actions")) or []):
        groups = _action_target_groups(action)
        if len(groups) > TARGET_GROUPS_PER_ACTION.value:
            problems.append(f"actions[{i}] forwards to {len(groups)} target groups; an action takes at most "
                            f"{TARGET_GROUPS_PER_ACTION.value} ({TARGET_GROUPS_PER_ACTION.url})")
    return problems


def _condition_values(condition: dict) -> int:
    """Values a condition spends of the rule's 5: each path, host, header value, method, source
    CIDR or query-string pair counts one."""
    count = 0
    for kind, body in condition.items():
        body = _known(body)
        if kind == "queryString" and isinstance(body, list):
            count += len(body)
        elif isinstance(body, dict) and isinstance(_known(body.get("values")), list):
            count += len(body["values"])
    return count


def _action_target_groups(action: Any) -> set[str]:
    if not isinstance(action, dict):
        return set()
    groups = {action["targetGroupArn"]} if isinstance(action.get("targetGroupArn"), str) else set()
    forward = _known(action.get("forward")) or {}
    return groups | {g["arn"] for g in forward.get("targetGroups") or [] if isinstance(g, dict) and "arn" in g}




# -- over the whole plan ---------------------------------------------------------------------------

def estate_limit_problems(resources: Iterable[Registered], quotas: AwsQuotas | None = None) -> list[str]:
    """Problems of counts across resources: one pass to index and count, one over the counts."""
    quotas = quotas or AwsQuotas()
    custom = [r for r in resources if r.custom]
    by_id = {r.id: r for r in custom if r.type in (SECURITY_GROUP, PREFIX_LIST)}
    by_arn = {r.outputs["arn"]: r for r in custom
              if r.type in (LISTENER, LOAD_BALANCER, LISTENER_RULE) and isinstance(r.outputs.get("arn"), str)}
    return [*_security_group_problems(custom, by_id, quotas), *_load_balancer_problems(custom, by_arn, quotas),
            *(p for r in custom if r.type in ENI_GROUPS for p in _groups_per_eni_problems(r, quotas))]


def _groups_per_eni_problems(r: Registered, quotas: AwsQuotas) -> list[str]:
    """Rules per group times groups per network interface may not pass 1,000: raising the rules
    quota lowers the groups an interface may have (5 by default, 16 at most)."""
    parent, key = ENI_GROUPS[r.type]
    holder = r.inputs.get(parent) if parent else r.inputs
    groups = holder.get(key) if isinstance(holder, dict) else None
    allowed = min(SECURITY_GROUPS_PER_ENI, MAX_RULES_TIMES_GROUPS_PER_ENI // quotas.rules_per_security_group)
    if not isinstance(groups, list) or len(groups) <= allowed:
        return []
    where = f"{parent}.{key}" if parent else key
    return [f"{r.type} '{r.name}': {where} lists {len(groups)} security groups; with "
            f"{quotas.rules_per_security_group} rules per group a network interface takes at most {allowed} "
            f"(rules x groups <= {MAX_RULES_TIMES_GROUPS_PER_ENI}, {RULES_PER_SECURITY_GROUP.url})"]


def _security_group_problems(custom: list[Registered], by_id: dict[str, Registered],
                             quotas: AwsQuotas) -> list[str]:
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])   # (group, direction) -> [v4, v6]
    for r in custom:
        for group, direction, v4, v6 in _rules_of(r, by_id):
            count = counts[group, direction]
            count[0] += v4
            count[1] += v6
    limit = quotas.rules_per_security_group
    problems = []
    for (group_id, direction), (v4, v6) in sorted(counts.items()):
        group = by_id.get(group_id)
        for family, count in (("IPv4", v4), ("IPv6", v6)):
            if count > limit and group is not None:
                problems.append(_over(group, f"{count} {direction} {family} rules", limit, RULES_PER_SECURITY_GROUP,
                                      "aws_quotas.rules_per_security_group",
                                      "each server adds an outbound rule to its region's ALB group, each "
                                      "declared egress a rule to its task group: fewer of them"))
    return problems


def _rules_of(r: Registered, by_id: dict[str, Registered]) -> list[tuple[str, str, int, int]]:
    """(group id, inbound|outbound, IPv4 weight, IPv6 weight) of each rule `r` adds."""
    if r.type in (INGRESS_RULE, EGRESS_RULE):
        direction = "inbound" if r.type == INGRESS_RULE else "outbound"
        return [(r.inputs.get("securityGroupId"), direction, *_weight(r.inputs, by_id))]
    if r.type == LEGACY_RULE:
        direction = "inbound" if r.inputs.get("type") == "ingress" else "outbound"
        return [(r.inputs.get("securityGroupId"), direction, *w) for w in _inline_weights(r.inputs, by_id)]
    if r.type == SECURITY_GROUP:
        return [(r.id, direction, *w) for key, direction in (("ingress", "inbound"), ("egress", "outbound"))
                for rule in r.inputs.get(key) or [] for w in _inline_weights(rule, by_id)]
    return []


def _weight(rule: dict, by_id: dict[str, Registered]) -> tuple[int, int]:
    """A CIDR counts in its family; a referenced group or AWS-managed prefix list once in each; a
    customer-managed prefix list its max_entries, in its family (VPC quotas page)."""
    if rule.get("cidrIpv4"):
        return 1, 0
    if rule.get("cidrIpv6"):
        return 0, 1
    listed = by_id.get(rule.get("prefixListId"))
    if listed is not None and listed.type == PREFIX_LIST:
        size = int(listed.inputs.get("maxEntries") or 0)
        return (size, 0) if listed.inputs.get("addressFamily") == "IPv4" else (0, size)
    return 1, 1


def _inline_weights(rule: dict, by_id: dict[str, Registered]) -> list[tuple[int, int]]:
    """An inline or legacy rule with several sources is one AWS rule per source."""
    if not isinstance(rule, dict):
        return []
    weights = [(1, 0)] * len(rule.get("cidrBlocks") or []) + [(0, 1)] * len(rule.get("ipv6CidrBlocks") or [])
    weights += [_weight({"prefixListId": p}, by_id) for p in rule.get("prefixListIds") or []]
    peers = [*(rule.get("securityGroups") or []), *([rule["sourceSecurityGroupId"]]
                                                      if rule.get("sourceSecurityGroupId") else [])]
    weights += [(1, 1)] * (len(peers) + bool(rule.get("self")))
    return weights


def _load_balancer_problems(custom: list[Registered], by_arn: dict[str, Registered],
                            quotas: AwsQuotas) -> list[str]:
    rules: dict[str, int] = defaultdict(int)                     # ALB ARN -> listener rules
    groups: dict[str, set[str]] = defaultdict(set)               # ALB ARN -> target group ARNs
    for r in custom:
        if r.type == LISTENER_RULE:
            alb = _alb_of_listener(r.inputs.get("listenerArn"), by_arn)
            rules[alb] += 1
            groups[alb].update(g for action in r.inputs.get("actions") or [] for g in _action_target_groups(action))
        elif r.type == LISTENER:
            groups[r.inputs.get("loadBalancerArn")].update(
                g for action in r.inputs.get("defaultActions") or [] for g in _action_target_groups(action))
        elif r.type == ECS_SERVICE:   # CANARY/LINEAR: the alternate group joins the production rule's ALB
            for lb in r.inputs.get("loadBalancers") or []:
                advanced = lb.get("advancedConfiguration") or {}
                rule = by_arn.get(advanced.get("productionListenerRule"))
                if rule is not None and advanced.get("alternateTargetGroupArn"):
                    groups[_alb_of_listener(rule.inputs.get("listenerArn"), by_arn)].add(
                        advanced["alternateTargetGroupArn"])
    problems = []
    for arn, alb in sorted((arn, by_arn[arn]) for arn in {*rules, *groups} if arn in by_arn):
        if rules[arn] > quotas.rules_per_alb:
            problems.append(_over(alb, f"{rules[arn]} listener rules", quotas.rules_per_alb, RULES_PER_ALB,
                                  "aws_quotas.rules_per_alb", "fewer servers or refused countries"))
        if len(groups[arn]) > TARGET_GROUPS_PER_ALB.value:
            problems.append(_over(alb, f"{len(groups[arn])} target groups", TARGET_GROUPS_PER_ALB.value,
                                  TARGET_GROUPS_PER_ALB, "", "fewer servers (CANARY/LINEAR servers take two)"))
    return problems


def _alb_of_listener(listener_arn: Any, by_arn: dict[str, Registered]) -> str | None:
    listener = by_arn.get(listener_arn) if isinstance(listener_arn, str) else None
    return listener.inputs.get("loadBalancerArn") if listener is not None else None


def _over(resource: Registered, what: str, limit: int, quota: Limit, raise_with: str, fewer: str) -> str:
    return (f"{resource.type} '{resource.name}': {what}, over the {limit} of AWS's '{quota.what}': "
            f"{fewer}; {quota.fix(raise_with)}")
