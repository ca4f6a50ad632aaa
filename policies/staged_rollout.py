"""Staged rollout: a production release reaches travellers through a gate that can undo it.

ECS's native CANARY and LINEAR deployments run an MCP probe (a lifecycle hook) against the new
revision before production traffic shifts, and roll back on deployment alarms during the bake.
A ROLLING production service is accepted only when the pack config lists its server
(`rollingServers`, written by `estate pack-config` from the spec: servers validating tokens at the
ALB, whose route ECS must not own, docs/decisions/0001), with the circuit breaker and alarms
rolling back. Which server a service runs comes from its tag, which a change could rewrite; the
tag only selects the ROLLING exception, whose list comes from the reviewed spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pulumi_policy import ResourceValidationArgs, Severity, StackValidationArgs

from .control import (
    ENVIRONMENT_CONFIG,
    UNKNOWN,
    Report,
    Risk,
    as_list,
    as_mapping,
    environment,
    lookup,
    resource_policy,
    stack_policy,
    tag,
)

SERVICE = "aws:ecs/service:Service"
RULE = "aws:lb/listenerRule:ListenerRule"
STAGED, ROLLING = frozenset({"CANARY", "LINEAR"}), "ROLLING"
# Stages at which a hook sees the new revision before production traffic reaches it.
GATING_STAGES = frozenset({"POST_SCALE_UP", "TEST_TRAFFIC_SHIFT", "POST_TEST_TRAFFIC_SHIFT",
                           "PRE_PRODUCTION_TRAFFIC_SHIFT"})
CONFIG = {**ENVIRONMENT_CONFIG, "rollingServers": {"type": "array", "items": {"type": "string"},
                                                   "description": "Servers that may deploy ROLLING in prod"}}


def _minutes(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _alarm_problems(props: Mapping) -> list[str]:
    alarms = as_mapping(props.get("alarms"))
    problems = [f"alarms.{key} is not true" for key in ("enable", "rollback") if alarms.get(key) is not True]
    names = lookup(alarms, "alarmNames")
    if names is not UNKNOWN and not as_list(names):
        problems.append("no deployment alarm is named")
    return problems


def _staged_problems(configuration: Mapping, strategy: str) -> list[str]:
    problems = []
    hooks = [as_mapping(h) for h in as_list(configuration.get("lifecycleHooks"))]
    gating = [h for h in hooks if GATING_STAGES & {str(s) for s in as_list(h.get("lifecycleStages"))}
              and h.get("hookTargetArn") and (h.get("targetType") or "AWS_LAMBDA") == "AWS_LAMBDA"]
    if not gating:
        problems.append("no Lambda lifecycle hook runs before production traffic shifts "
                        f"(stages {', '.join(sorted(GATING_STAGES))})")
    if strategy == "CANARY":
        canary = as_mapping(configuration.get("canaryConfiguration"))
        percent, bake = canary.get("canaryPercent"), _minutes(canary.get("canaryBakeTimeInMinutes"))
        if not isinstance(percent, (int, float)) or percent >= 100:
            problems.append(f"the canary takes {percent}% of traffic: a canary is a share below 100%")
        if not bake:
            problems.append("the canary bakes 0 minutes before the full shift")
    else:
        linear = as_mapping(configuration.get("linearConfiguration"))
        percent, bake = linear.get("stepPercent"), _minutes(linear.get("stepBakeTimeInMinutes"))
        if not isinstance(percent, (int, float)) or percent >= 100:
            problems.append(f"each linear step shifts {percent}%: one step of 100% is no staging")
        if not bake:
            problems.append("the linear steps bake 0 minutes")
    return problems


@resource_policy(
    "production-services-deploy-through-a-gate",
    "Production ECS services deploy with ECS's CANARY or LINEAR strategy (exact spelling), a Lambda lifecycle "
    "hook before production traffic shifts, a canary share below 100% (or linear steps below 100%) with a "
    "non-zero bake between shifts, and deployment alarms with rollback; or ROLLING (or no strategy) only for a "
    "server the `rollingServers` config lists, with the circuit breaker and deployment alarms rolling back.",
    applies_to=[SERVICE],
    risks=[Risk.AVAILABILITY], severity=Severity.HIGH,
    remediation="Set servers[<name>].rollout.strategy: CANARY (and auth.token_validation: server) in the prod "
                "stack; or, for a server validating tokens at the ALB, regenerate the pack config with "
                "`estate pack-config --stack prod --write`.",
    config=CONFIG)
def production_services_deploy_through_a_gate(args: ResourceValidationArgs, report: Report) -> None:
    if environment(args, report) != "prod":
        return
    props, what = args.props, f"Production ECS service {args.props.get('name') or args.name}"
    configuration = as_mapping(props.get("deploymentConfiguration"))
    strategy = configuration.get("strategy") or ROLLING
    if strategy in STAGED:
        problems = _staged_problems(configuration, strategy) + _alarm_problems(props)
    elif strategy == ROLLING:
        server = tag(props, "server")
        allowed = {str(s) for s in as_list(args.get_config().get("rollingServers"))}
        problems = [] if server in allowed else [
            f"it deploys ROLLING, but its server {server!r} is not in rollingServers (servers validating tokens "
            "at the ALB)"]
        breaker = as_mapping(props.get("deploymentCircuitBreaker"))
        problems += [f"deployment_circuit_breaker.{k} is not true" for k in ("enable", "rollback")
                     if breaker.get(k) is not True]
        problems += _alarm_problems(props)
    else:
        problems = [f"its deployment strategy {strategy!r} is none of CANARY, LINEAR, ROLLING (ECS spells them "
                    "in capitals)"]
    if problems:
        report(f"{what} is not deployed through a gate that rolls back: {'; '.join(problems)}")


@stack_policy(
    "staged-services-own-their-production-rule",
    "A CANARY/LINEAR service's production and test listener rules are its own: no other service names them, "
    "the two differ, and each forwards only to the service's two target groups (its target group and the "
    "alternate). Otherwise ECS would shift another server's traffic, or send this one's elsewhere."
    " Reads outputs (listener rule and target group ARNs): on a first preview it cannot run, "
    "so `estate check` in every pull request is the gate",
    risks=[Risk.AVAILABILITY], severity=Severity.HIGH,
    remediation="Let McpService create the rules and the alternate target group of each staged service.")
def staged_services_own_their_production_rule(args: StackValidationArgs, report: Report) -> None:
    rules = {str(r.props.get("arn")): r for r in args.resources if r.resource_type == RULE and r.props.get("arn")}
    owners: dict[str, str] = {}
    for service in (r for r in args.resources if r.resource_type == SERVICE):
        for balancer in (as_mapping(b) for b in as_list(service.props.get("loadBalancers"))):
            advanced = as_mapping(balancer.get("advancedConfiguration"))
            if not advanced:
                continue
            groups = {str(balancer.get("targetGroupArn")), str(advanced.get("alternateTargetGroupArn"))}
            production, test = str(advanced.get("productionListenerRule")), str(advanced.get("testListenerRule"))
            if production == test:
                report(f"ECS service {service.name} uses one rule as production and test rule", service.urn)
            for kind, arn in (("production", production), ("test", test)):
                if arn in owners and owners[arn] != service.name:
                    report(f"ECS service {service.name}'s {kind} rule {arn} is also {owners[arn]}'s", service.urn)
                owners.setdefault(arn, service.name)
                rule = rules.get(arn)
                if rule is None:
                    report(f"ECS service {service.name}'s {kind} rule {arn} is not a listener rule of this stack, "
                           "so what it routes cannot be judged", service.urn)
                    continue
                foreign = sorted(_forwarded(rule.props) - groups)
                if foreign:
                    report(f"ECS service {service.name}'s {kind} rule {rule.name} forwards to {', '.join(foreign)}, "
                           "which is not one of the service's target groups", service.urn)


def _forwarded(props: Mapping) -> set[str]:
    groups: set[str] = set()
    for action in (as_mapping(a) for a in as_list(props.get("actions"))):
        if action.get("targetGroupArn"):
            groups.add(str(action.get("targetGroupArn")))
        for group in as_list(as_mapping(action.get("forward")).get("targetGroups")):
            groups.add(str(as_mapping(group).get("arn")))
    return groups
