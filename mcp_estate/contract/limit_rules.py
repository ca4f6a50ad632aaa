"""The apply-time limits whose counts follow from the spec alone, refused before anything is built.

Every server runs in every region behind that region's ALB, so its listener rules add up there:
the server's route; when `auth` is on, its metadata rule (RFC 9728) and, when the ALB validates
tokens, its open health rule; for CANARY/LINEAR, its test rule. The residency guard takes one
rule per 5 refused countries (README: Quick start, the plan's checks).
"""

from __future__ import annotations

from .aws_limits import CONDITION_VALUES_PER_RULE, RULES_PER_ALB
from .problems import Problem
from .resource_server import resource_server
from .rollout import in_region_of
from .spec import EstateSpec, ResidencyGroup, Server


def refused_countries(spec: EstateSpec, group: ResidencyGroup) -> list[str]:
    """The residency guard of a region's ALB: the countries of every strict group but its own."""
    return sorted({c for g in spec.residency_groups if g.strict and g.name != group.name for c in g.countries})


def server_listener_rules(spec: EstateSpec, server: Server) -> int:
    """Listener rules the server adds to the ALB of each region it runs in."""
    tokens = resource_server(spec, server)
    staged = in_region_of(server.rollout, spec.rollout).staged
    return 1 + (tokens is not None) + (tokens is not None and tokens.at_alb) + staged


def listener_rules(spec: EstateSpec) -> dict[str, int]:
    """Region -> the listener rules of its ALB (the default rules do not count)."""
    per_server = {server.name: server_listener_rules(spec, server) for server in spec.servers}
    counts = {region: -(-len(refused_countries(spec, group)) // CONDITION_VALUES_PER_RULE.value)
              for region, group in spec.group_of.items()}
    for server in spec.servers:
        for region in spec.server_regions(server):
            counts[region] += per_server[server.name]
    return counts


def limit_problems(spec: EstateSpec) -> list[Problem]:
    limit = spec.aws_quotas.rules_per_alb
    over = {region: count for region, count in sorted(listener_rules(spec).items()) if count > limit}
    if not over:
        return []
    regions = ", ".join(f"{region} {count}" for region, count in over.items())
    return [Problem("servers", (
        f"the ALB of each region would hold more listener rules than AWS's '{RULES_PER_ALB.what}' of {limit} "
        f"({regions}): each server takes 1 rule (route), +1 with auth (metadata), +1 when the ALB validates "
        f"tokens (health), +1 for CANARY/LINEAR (test), and the residency guard 1 per 5 refused countries. "
        f"Use fewer servers, `auth.token_validation: server` for some, or raise the quota "
        f"({RULES_PER_ALB.quota_code}) and set aws_quotas.rules_per_alb ({RULES_PER_ALB.url})"))]
