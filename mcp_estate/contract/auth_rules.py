"""Cross-field rules of `auth`: what the spec must refuse before AWS refuses it at `pulumi up`.

Limits, from the Elastic Load Balancing API reference (JwtValidationActionConfig,
JwtValidationActionAdditionalClaim, FixedResponseActionConfig) and the AWS WAF API reference
(CustomHTTPHeader) and developer guide (string match statement WCUs).
"""

from __future__ import annotations

from .problems import Problem
from .resource_server import ECS_OWNED_RULE, companion_priorities, resource_server, strategy_of
from .rollout import in_region_of, test_priority
from .spec import EstateSpec, Server

ALB_URL_CHARS = 256            # Issuer, JwksEndpoint
ALB_CLAIM_VALUES = 10          # values of one additional claim
ALB_CLAIM_VALUE_CHARS = 256
FIXED_RESPONSE_CHARS = 1024    # MessageBody of a fixed response
WAF_HEADER_VALUE_CHARS = 255   # CustomHTTPHeader Value
# A server's 401-challenge rule in the origin web ACL: two starts-with matches (2 each) and one
# lowercase transformation (10). validate.py adds it to the ACL's whole capacity.
WAF_CHALLENGE_WCU = 14


def resource_server_problems(spec: EstateSpec) -> list[Problem]:
    if spec.auth.disabled:
        return [Problem(f"servers[{s.name}].auth", "sets scopes or token validation, but the estate's `auth` "
                                                   "is disabled: remove it, or enable `auth`")
                for s in spec.servers if s.auth.model_fields_set]
    problems = [problem for server in spec.servers for problem in _server(spec, server)]
    return problems + _priorities(spec) + _canary(spec)


def _canary(spec: EstateSpec) -> list[Problem]:
    """The canary and the deployment hooks need a token, and a way to the token endpoint, to probe
    servers behind `auth`."""
    monitoring = spec.monitoring
    if monitoring.probe_credentials_secret is None:
        staged = [s.name for s in spec.servers if strategy_of(spec, s) in ECS_OWNED_RULE]
        if staged:   # the hook's probe of each new revision gets a 401, and ECS rolls every deployment back
            return [Problem("monitoring.probe_credentials_secret", (
                f"missing: the deployment hook probes each new revision of {', '.join(staged)} (CANARY/LINEAR) "
                "with a token from it, and without one every deployment fails and rolls back; name the estate "
                "secret holding the probe's client credentials (README: Who may call what)"))]
        if spec.environment != "prod":   # elsewhere the canary's probes may fail with 401 until it is set
            return []
        return [Problem("monitoring.probe_credentials_secret", (
            "missing: with `auth` on, every server refuses the canary's probes without a token (and its failed "
            "probes roll deployments back); name the estate secret holding the canary's client credentials "
            "(README: Who may call what)"))]
    if not monitoring.probe_token_cidrs:
        return [Problem("monitoring.probe_token_cidrs", "missing: the address ranges of the IdP's token "
                                                        "endpoint, which the canary must reach over HTTPS "
                                                        "(e.g. [203.0.113.0/24])")]
    return []


def _server(spec: EstateSpec, server: Server) -> list[Problem]:
    path, settings = f"servers[{server.name}].auth", resource_server(spec, server)
    problems = _tool_scopes(server)
    if settings.at_alb:
        strategy = strategy_of(spec, server)
        if strategy in ECS_OWNED_RULE:
            problems.append(Problem(f"{path}.token_validation", (
                f"'alb' with the {strategy} deployment strategy: ECS owns the route rule and rewrites its "
                "actions, so the ALB's JWT check would be dropped or frozen (docs/decisions/0001); set "
                "`token_validation: server` (the server validates every token) or deploy ROLLING")))
        problems += _alb_limits(path, settings)
    if len(settings.metadata_document) > FIXED_RESPONSE_CHARS:
        problems.append(Problem(path, (
            f"the server's Protected Resource Metadata is {len(settings.metadata_document)} characters, over the "
            f"{FIXED_RESPONSE_CHARS} an ALB fixed response holds: advertise fewer authorization_servers or scopes")))
    if len(settings.challenge) > WAF_HEADER_VALUE_CHARS:
        problems.append(Problem(path, (
            f"the 401 challenge (`{settings.challenge}`) is {len(settings.challenge)} characters, over the "
            f"{WAF_HEADER_VALUE_CHARS} of an AWS WAF response header: use fewer or shorter scopes")))
    return problems


def _tool_scopes(server: Server) -> list[Problem]:
    tools = server.surface.tools
    if tools is None:
        return []
    return [Problem(f"servers[{server.name}].auth.tool_scopes.{tool}", (
        f"'{tool}' is not in the server's approved tools (surface.tools: {', '.join(tools) or 'none'}): "
        "its calls are refused anyway; remove the entry or approve the tool"))
            for tool in sorted(server.auth.tool_scopes) if tool not in tools]


def _alb_limits(path: str, settings) -> list[Problem]:
    problems = [Problem(f"auth.{field}", f"'{url}' is {len(url)} characters: the ALB's JWT validation takes "
                                         f"{ALB_URL_CHARS} at most")
                for field, url in (("issuer", settings.issuer), ("jwks_url", settings.jwks_url))
                if len(url) > ALB_URL_CHARS]
    if len(settings.scopes) > ALB_CLAIM_VALUES:
        problems.append(Problem(f"{path}.scopes", (
            f"{len(settings.scopes)} scopes with the estate's: the ALB checks at most {ALB_CLAIM_VALUES} values of "
            "the scope claim; move some to tool_scopes (the server checks those) or use `token_validation: server`")))
    if len(settings.resource) > ALB_CLAIM_VALUE_CHARS:
        problems.append(Problem(path, f"the audience '{settings.resource}' is over the {ALB_CLAIM_VALUE_CHARS} "
                                      "characters of an ALB claim value: use a shorter hostname"))
    return problems


def _priorities(spec: EstateSpec) -> list[Problem]:
    """The open health and metadata rules beside each route need priorities no other rule uses."""
    owners = {s.priority: f"the route of '{s.name}'" for s in spec.servers}
    owners |= {test_priority(s.priority): f"the test rule of '{s.name}'" for s in spec.servers
               if in_region_of(s.rollout, spec.rollout).staged}   # CANARY/LINEAR: the route's priority - 1
    problems = []
    for server in spec.servers:
        health, metadata = companion_priorities(server)
        wanted = {metadata: "metadata"}
        if resource_server(spec, server).at_alb:
            wanted[health] = "health"
        for priority, role in sorted(wanted.items()):
            if priority in owners:
                problems.append(Problem(f"servers[{server.name}].route_priority", (
                    f"the server's {role} rule takes ALB priority {priority}, already {owners[priority]}: "
                    "set route_priority so that the two priorities after it are free")))
            owners.setdefault(priority, f"the {role} rule of '{server.name}'")
    return problems
