"""The pack config's facts about the estate, generated from the spec (`estate pack-config`).

Some controls must know what the estate promises, and must not learn it from tags a change can
rewrite: which residency groups are strict, their regions and countries (class 10 of issue 12),
the edge's hostname, health path and Cloudflare plan; and, with `auth` on, each server's token
settings (issuer, JWKS, audience) and where its tokens are validated. They read it from their policy config,
which this module computes from the spec. `estate check --stack` computes it on the fly;
`pulumi preview --policy-pack-config policies/config/<environment>.json` reads the copy
`estate pack-config --stack <stack> --write` stored there, and tests/test_pack_config.py holds
that copy equal to what the spec generates: a pull request that relaxes residency must change the
spec (and so be reviewed as such), never the pack config or a tag alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mcp_estate.contract.geography import AWS_REGIONS
from mcp_estate.contract.resource_server import resource_server
from mcp_estate.contract.rollout import in_region_of
from mcp_estate.contract.spec import EstateSpec
from mcp_estate.contract.surface_rules import edge_surface, origin_rules, surface_servers
from mcp_estate.contract.validate import origin_travellers

RESIDENCY_POLICY = "strict-residency-stays-in-its-group"
EDGE_POLICY = "cloudflare-edge-protections-enforced"
ENDPOINTS_POLICY = "no-unauthenticated-endpoints-beside-the-edge"
PER_USER_DATA_POLICY = "no-unscoped-state-access-when-auth-is-on"
GATE_POLICY = "production-services-deploy-through-a-gate"
MANAGED_POLICY = "attached-policies-from-the-stack-or-the-allow-list"
# ECS's role for shifting traffic (components/deployment_gate.py): attached only with a staged server.
ECS_ELB_POLICY = "AmazonECSInfrastructureRolePolicyForLoadBalancers"
TOKENS_POLICY = "mcp-routes-validate-tokens"
CHALLENGE_POLICY = "mcp-paths-answer-401-with-a-challenge"
SURFACE_POLICY = "mcp-surface-enforced-at-edge-and-origin"
# The policies told which parts of the edge the caller owns (policies/edge_delegation.py).
DELEGATION_POLICIES = (SURFACE_POLICY, EDGE_POLICY, "cloudflare-load-balancer-zones-set-tls",
                       "cloudflare-pools-monitored",
                       "every-serving-region-is-routed-protected-and-replicated",
                       "edge-controls-judged-in-this-stack")


def generated(spec: EstateSpec) -> dict[str, dict[str, Any]]:
    """Policy name -> the parameters the spec decides (sorted: the file is diffed in review)."""
    groups = {g.name: {"strict": g.strict, "regions": sorted(r.name for r in g.regions),
                       "countries": sorted(g.countries),
                       "cloudflareRegions": sorted({AWS_REGIONS[r.name].cloudflare_region for r in g.regions})}
              for g in sorted(spec.residency_groups, key=lambda g: g.name)}
    health = next(s for s in spec.servers if s.name == spec.edge.health_server)
    edge = {"hostname": spec.domain.hostname, "cloudflarePlan": spec.domain.cloudflare_plan,
            "healthPath": f"/{health.name}{health.health_check_path}"}
    auth_enabled = spec.auth is not None and not spec.auth.disabled
    staged = [s for s in spec.servers if in_region_of(s.rollout, spec.rollout).staged]
    # ROLLING stays allowed in prod only where ECS must not own the route: the ALB validates tokens.
    rolling = sorted(s.name for s in spec.servers if s not in staged and s.auth.token_validation == "alb")
    parameters = {RESIDENCY_POLICY: {"residencyGroups": groups}, EDGE_POLICY: edge,
                  ENDPOINTS_POLICY: {"hostname": spec.domain.hostname}, GATE_POLICY: {"rollingServers": rolling},
                  PER_USER_DATA_POLICY: {"authEnabled": auth_enabled}, SURFACE_POLICY: _surface_parameters(spec),
                  **_token_parameters(spec)}
    if staged:
        parameters[MANAGED_POLICY] = {"allowedManagedPolicies": [ECS_ELB_POLICY]}
    if delegated := _delegated_edge(spec):   # only then: a stack owning its whole edge keeps its config as it was
        for policy in DELEGATION_POLICIES:
            parameters[policy] = {**parameters.get(policy, {}), "delegatedEdge": delegated}
    return parameters


def _delegated_edge(spec: EstateSpec) -> list[str]:
    """The parts of the edge the spec leaves to the caller, as the pack config names them."""
    return [part for part, owner in (("zone", spec.edge.zone), ("loadBalancer", spec.edge.load_balancer))
            if owner == "caller"]


def _token_parameters(spec: EstateSpec) -> dict[str, dict[str, Any]]:
    """Who validates each server's tokens, and with what: a server that validates its own tokens
    (`token_validation: server`) is listed as such here, so the exception is reviewed with the spec."""
    settings = {s.name: (s, resource_server(spec, s)) for s in sorted(spec.servers, key=lambda s: s.name)}
    tokens: dict[str, Any] = {"environment": spec.environment}
    challenge: dict[str, Any] = {"environment": spec.environment}
    if spec.auth is not None and not spec.auth.disabled:
        tokens |= {"issuer": spec.auth.issuer, "jwksEndpoint": spec.auth.jwks_url, "servers": {
            name: {"audience": t.resource, "scopes": list(t.scopes), "validatedBy": "alb" if t.at_alb else "server",
                   "healthPath": f"/{name}{server.health_check_path}"}
            for name, (server, t) in settings.items()}}
        challenge["servers"] = {name: {"path": t.path, "challenge": t.challenge} for name, (_, t) in settings.items()}
    return {TOKENS_POLICY: tokens, CHALLENGE_POLICY: challenge}


def _surface_parameters(spec: EstateSpec) -> dict[str, Any]:
    """The edge rules the spec's surfaces generate, from the generator the Edge is given them by
    (`edge_surface`, as components/estate.py `_surface_edge`): the policy compares the zone's rules with
    these expressions and never derives one itself."""
    rules, limits = edge_surface(spec)
    return {"edgeRules": sorted(r["expression"] for r in rules),
            "edgeRatelimits": sorted(({"expression": r["expression"], "ratelimit": _camel(r["ratelimit"])}
                                      for r in limits), key=lambda r: r["expression"]),
            "allowlistPaths": sorted(s.mcp_path for s in spec.servers if s.surface.tools is not None),
            # Priorities and metrics aside: what each origin rule matches, counts and does.
            "originRules": [_deep_camel({k: v for k, v in rule.items() if k not in ("priority", "visibility_config")})
                            for rule in origin_rules(surface_servers(spec), origin_travellers(spec))]}


def _deep_camel(value: Any) -> Any:
    """Every key as the provider records it (rate_based_statement -> rateBasedStatement), at any depth."""
    if isinstance(value, dict):
        return {_camel_key(k): _deep_camel(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_camel(v) for v in value]
    return value


def _camel_key(key: str) -> str:
    return key.split("_")[0] + "".join(w.title() for w in key.split("_")[1:])


def _camel(ratelimit: dict[str, Any]) -> dict[str, Any]:
    """A rate limit's keys as the provider records them (requests_per_period -> requestsPerPeriod)."""
    return {_camel_key(key): value for key, value in ratelimit.items()}


def with_spec(config: dict[str, Any], spec: EstateSpec) -> dict[str, Any]:
    """`config` (a --policy-pack-config object) with the spec's parameters in place: its levels and
    hand-written parameters are kept, the generated ones replaced."""
    merged = dict(config)
    for policy, parameters in generated(spec).items():
        entry = merged.get(policy)
        entry = {"enforcementLevel": entry} if isinstance(entry, str) else dict(entry or {})
        merged[policy] = {**entry, **parameters}
    return merged


def render(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def config_path(environment: str) -> Path:
    """The shipped pack config of an environment (policies/config/<environment>.json)."""
    from mcp_estate import policies  # the pack's own directory: `estate check` reads the same file
    return Path(policies.__file__).resolve().parent / "config" / f"{environment}.json"
