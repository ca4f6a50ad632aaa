"""What a CANARY or LINEAR ECS service needs beside a ROLLING one (used by `McpService`).

ECS's native CANARY/LINEAR deployment starts the new revision's tasks in the *alternate* target
group, points the *test* listener rule at them, runs the lifecycle hook (the MCP probe, see
components/deployment_gate.py), then shifts production traffic by rewriting the target-group
weights of the *production* rule: a share first (CANARY) or step by step (LINEAR), with bake
times, and keeps the old revision for `bake_minutes` so a rollback is one weight swap away. The
next deployment goes the other way: the two target groups take turns.

So ECS owns the weights of both rules. They are declared here in the shape ECS writes (a weighted
forward over both groups, the current one at 100) and Pulumi ignores their `actions` from then
on: re-applying the declared weights mid-deployment, or after a swap, would send travellers to a
target group that is draining or empty (aws-cdk#36649, terraform-aws-alb#409). The rules carry
only that forward (docs/decisions/0001): such servers validate tokens themselves.

The test rule must be unreachable for the public. It matches the server's MCP path, the header
`X-Mcp-Estate-Route: test` and a source address in the region's VPC. The ALB admits only
Cloudflare's ranges, the canary and the hook from outside the listener's point of view, and the
source address the ALB sees is the TCP peer (not X-Forwarded-For), which for anything coming
through Cloudflare is a Cloudflare address, never one of the VPC's: so no header an attacker
sends through the edge reaches the new revision early. The header only keeps the canary (which
also probes from inside the VPC) on the production rule. No secret is needed, so none can leak.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mcp_estate.contract.names import TEST_ROUTE_HEADER, TEST_ROUTE_VALUE
from mcp_estate.contract.rollout import InRegion, test_priority

# The hook runs once the test rule forwards to the new revision and before any production traffic.
HOOK_STAGES = ["POST_TEST_TRAFFIC_SHIFT"]
ECS_OWNED_RULE_FIELDS = ["actions"]


@dataclass
class Staged:
    """A CANARY/LINEAR service's settings and its region's gate (hook, roles)."""
    server: str
    in_region: InRegion
    hook_function_arn: pulumi.Input[str]
    hook_role_arn: pulumi.Input[str]
    infrastructure_role_arn: pulumi.Input[str]
    ready: list[pulumi.Resource]                     # the roles' grants, which the service waits for


def weighted_forward(current: pulumi.Input[str], other: pulumi.Input[str]) -> list[dict]:
    """A forward over both target groups, all traffic to `current`: the shape ECS rewrites."""
    return [{"type": "forward", "forward": {"target_groups": [
        {"arn": current, "weight": 100}, {"arn": other, "weight": 0}]}}]


def production_rule(name: str, listener_arn: pulumi.Input[str], priority: int, paths: list[str], transform: dict,
                    blue: pulumi.Input[str], green: pulumi.Input[str], tags: dict[str, str],
                    opts: pulumi.ResourceOptions) -> aws.lb.ListenerRule:
    """The server's route, owned by ECS once created (see the module docstring)."""
    return aws.lb.ListenerRule(
        name, listener_arn=listener_arn, priority=priority, conditions=[{"path_pattern": {"values": paths}}],
        transforms=[transform], actions=weighted_forward(blue, green), tags=tags,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=ECS_OWNED_RULE_FIELDS)))


def test_rule(name: str, listener_arn: pulumi.Input[str], route_priority: int, mcp_path: str, transform: dict,
              vpc_cidr: str, blue: pulumi.Input[str], green: pulumi.Input[str], tags: dict[str, str],
              opts: pulumi.ResourceOptions) -> aws.lb.ListenerRule:
    """The new revision's route for the hook only: from inside the VPC, with the test header."""
    return aws.lb.ListenerRule(
        name, listener_arn=listener_arn, priority=test_priority(route_priority),
        conditions=[{"path_pattern": {"values": [mcp_path, f"{mcp_path}/*"]}},
                    {"http_header": {"http_header_name": TEST_ROUTE_HEADER, "values": [TEST_ROUTE_VALUE]}},
                    {"source_ip": {"values": [vpc_cidr]}}],
        transforms=[transform], actions=weighted_forward(blue, green), tags=tags,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=ECS_OWNED_RULE_FIELDS)))


def deployment_configuration(staged: Staged) -> dict:
    """The ECS service's strategy, shift and bake times, and the MCP hook (times are strings in the SDK)."""
    settings = staged.in_region
    configuration = {
        "strategy": settings.strategy, "bake_time_in_minutes": str(settings.bake_minutes),
        "lifecycle_hooks": [{"hook_target_arn": staged.hook_function_arn, "role_arn": staged.hook_role_arn,
                             "lifecycle_stages": HOOK_STAGES,
                             "hook_details": pulumi.Output.json_dumps({"server": staged.server})}]}
    if settings.strategy == "CANARY":
        configuration["canary_configuration"] = {"canary_percent": settings.canary_percent,
                                                 "canary_bake_time_in_minutes": str(settings.step_bake_minutes)}
    else:
        configuration["linear_configuration"] = {"step_percent": settings.linear_step_percent,
                                                 "step_bake_time_in_minutes": str(settings.step_bake_minutes)}
    return configuration


def advanced_configuration(staged: Staged, green: pulumi.Input[str], production: aws.lb.ListenerRule,
                           test: aws.lb.ListenerRule) -> dict:
    return {"alternate_target_group_arn": green, "production_listener_rule": production.arn,
            "test_listener_rule": test.arn, "role_arn": staged.infrastructure_role_arn}
