"""Who may call what: no request reaches an MCP server's tasks without a token the estate's issuer
signed for that server, and every refusal tells the client where to get one.

A listener rule that forwards to a server's target group without checking the JWT lets anyone
call its tools (confused deputy: the server then acts for nobody in particular); a rule that
checks another issuer's tokens, keys from another host, or no audience accepts tokens minted for
something else. The estate's parameters (issuer, JWKS, each server's audience, and which servers
validate tokens themselves under ECS canary deployments, docs/decisions/0001) come from the pack
config `estate pack-config` generates from the spec, so an exception is a reviewed spec change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterable

from pulumi_policy import Severity, StackValidationArgs

from .control import Report, Risk, as_list, as_mapping, stack_policy

LISTENERS = ("aws:lb/listener:Listener", "aws:alb/listener:Listener")
LISTENER_RULES = ("aws:lb/listenerRule:ListenerRule", "aws:alb/listenerRule:ListenerRule")
TARGET_GROUPS = ("aws:lb/targetGroup:TargetGroup", "aws:alb/targetGroup:TargetGroup")
ECS_SERVICE = "aws:ecs/service:Service"
WEB_ACL = "aws:wafv2/webAcl:WebAcl"
CHALLENGE_HEADER = "www-authenticate"

SERVER_CONFIG = {"type": "object", "additionalProperties": {"type": "object"}}
TOKENS_CONFIG = {"environment": {"type": "string", "enum": ["dev", "staging", "prod"]},
                 "issuer": {"type": "string"}, "jwksEndpoint": {"type": "string"}, "servers": SERVER_CONFIG}
CHALLENGE_CONFIG = {"environment": {"type": "string", "enum": ["dev", "staging", "prod"]}, "servers": SERVER_CONFIG}
MISSING_CONFIG = ("the pack config gives no servers for {policy} in prod, so it cannot judge the routes: pass the "
                  "config `estate pack-config --stack <stack> --write` generates (policies/config/prod.json)")


# -- which target groups serve which MCP server ----------------------------------------------------

def _mcp_target_groups(resources: list) -> dict[str, str]:
    """Target group ARN and URN -> the MCP server whose ECS service it feeds (its container's name).
    The URN, from the service's recorded dependencies, also names a group whose ARN preview cannot know."""
    arns = {r.urn: r.props.get("arn") for r in resources if r.resource_type in TARGET_GROUPS}
    served: dict[str, str] = {}
    for service in (r for r in resources if r.resource_type == ECS_SERVICE):
        balancers = [as_mapping(b) for b in as_list(service.props.get("loadBalancers"))]
        for balancer in balancers:
            advanced = as_mapping(balancer.get("advancedConfiguration"))
            for arn in (balancer.get("targetGroupArn"), advanced.get("alternateTargetGroupArn")):
                if isinstance(arn, str):
                    served[arn] = str(balancer.get("containerName"))
        fallback = str(balancers[0].get("containerName")) if balancers else service.name
        for dependency in service.property_dependencies.get("loadBalancers") or ():
            if dependency.resource_type in TARGET_GROUPS:
                served[dependency.urn] = served.get(arns.get(dependency.urn), fallback)
    return served


def _forwarded(action: Mapping) -> list[Any]:
    """The target groups an action forwards to, in either of its spellings."""
    if action.get("type") != "forward":
        return []
    groups = [action.get("targetGroupArn")]
    groups += [as_mapping(g).get("arn") for g in as_list(as_mapping(action.get("forward")).get("targetGroups"))]
    return [g for g in groups if g not in (None, "")]


def _servers_fed(resource: Any, actions: list[Mapping], key: str, mcp: dict[str, str]) -> set[str]:
    fed = {mcp[g] for a in actions for g in _forwarded(a) if isinstance(g, str) and g in mcp}
    fed |= {mcp[d.urn] for d in resource.property_dependencies.get(key) or () if d.urn in mcp}
    return fed


# -- mcp-routes-validate-tokens ---------------------------------------------------------------------

def _config_servers(args: StackValidationArgs, report: Report, policy: str, resources: list) -> Mapping | None:
    config = args.get_config()
    servers = as_mapping(config.get("servers"))
    if not servers and config.get("environment") == "prod" and resources:
        report(MISSING_CONFIG.format(policy=policy), resources[0].urn)
        return None
    return servers or None


def _only_paths(rule_props: Any, allowed: set[str]) -> bool:
    """Every request the rule matches has one of `allowed` paths: one of its path conditions lists
    only those, literally (ALB ANDs conditions and ORs the values of one)."""
    for condition in map(as_mapping, as_list(rule_props.get("conditions"))):
        values = as_list(as_mapping(condition.get("pathPattern")).get("values"))
        if values and all(isinstance(v, str) and v in allowed for v in values):
            return True
    return False


def _jwt_problem(actions: list[Mapping], config: Mapping, server: Mapping) -> str | None:
    """Why the actions do not validate the estate's tokens for the server, or None."""
    checks = [a for a in actions if a.get("type") == "jwt-validation"]
    if not checks:
        return "forwards without validating a JWT"
    jwt = as_mapping(checks[0].get("jwtValidation"))
    if jwt.get("issuer") != config.get("issuer"):
        return f"validates tokens of issuer {jwt.get('issuer')!r}, not the estate's {config.get('issuer')!r}"
    if jwt.get("jwksEndpoint") != config.get("jwksEndpoint"):
        return f"takes signing keys from {jwt.get('jwksEndpoint')!r}, not the estate's {config.get('jwksEndpoint')!r}"
    claims = {c.get("name"): c for c in map(as_mapping, as_list(jwt.get("additionalClaims")))}
    audience = list(as_list(as_mapping(claims.get("aud")).get("values")))
    if audience != [server.get("audience")]:
        return f"accepts the audience {audience or 'of any token'}, not only {server.get('audience')!r}"
    required = set(as_list(server.get("scopes")))
    scopes = set(as_list(as_mapping(claims.get("scope")).get("values")))
    if not required <= scopes:
        return f"does not require the scopes {', '.join(sorted(required - scopes))}"
    return None


@stack_policy(
    "mcp-routes-validate-tokens",
    "In prod, every listener rule and listener default action that forwards to an MCP server's target group "
    "validates a JWT first: the estate's issuer and JWKS endpoint, the server's own URL as the only audience and "
    "the scopes every call needs. Exceptions: the server's exact health path, and servers the pack config lists "
    "as validating tokens themselves (`validatedBy: server`, generated from the spec's token_validation)"
    ". Reads outputs (target group ARNs): on a first preview it cannot run, "
    "so `estate check` in every pull request is the gate",
    risks=[Risk.CONFUSED_DEPUTY, Risk.PROMPT_INJECTION], severity=Severity.CRITICAL,
    remediation="Build the route with components/token_validation.py (jwt-validation, then forward); serve the "
                "health path on its own rule; for ECS canary services set `auth.token_validation: server` in the "
                "spec and regenerate the pack config.",
    config=TOKENS_CONFIG)
def mcp_routes_validate_tokens(args: StackValidationArgs, report: Report) -> None:
    mcp = _mcp_target_groups(args.resources)
    config = args.get_config()
    if config.get("environment") != "prod" or not mcp:
        return
    servers = _config_servers(args, report, "mcp-routes-validate-tokens", list(args.resources))
    if servers is None:
        return
    for resource in args.resources:
        if resource.resource_type in LISTENER_RULES:
            _check_forwarding(resource, "actions", f"Listener rule {resource.name}", mcp, config, servers, report)
        elif resource.resource_type in LISTENERS:
            _check_forwarding(resource, "defaultActions", f"Listener {resource.name}'s default action",
                              mcp, config, servers, report, default=True)


def _check_forwarding(resource: Any, key: str, what: str, mcp: dict[str, str], config: Mapping,
                      servers: Mapping, report: Report, default: bool = False) -> None:
    actions = [as_mapping(a) for a in as_list(resource.props.get(key))]
    for name in sorted(_servers_fed(resource, actions, key, mcp)):
        server = as_mapping(servers.get(name))
        if not server:
            report(f"{what} forwards to the target group of {name!r}, a server the pack config does not know: "
                   "regenerate it with `estate pack-config --stack <stack> --write`", resource.urn)
            continue
        if server.get("validatedBy") == "server":
            continue
        if not default and _only_paths(resource.props, {server.get("healthPath")}):
            continue
        problem = _jwt_problem(actions, config, server)
        if problem:
            report(f"{what} {problem} before forwarding to MCP server {name!r}: every call must carry a token the "
                   "estate's issuer signed for the server", resource.urn)


# -- mcp-paths-answer-401-with-a-challenge ----------------------------------------------------------

def _starts_with(statement: Mapping, field: str, text: str) -> bool:
    match = as_mapping(statement.get("byteMatchStatement"))
    return (match.get("positionalConstraint") == "STARTS_WITH" and match.get("searchString") == text
            and field in as_mapping(match.get("fieldToMatch")))


def _challenges(rule: Mapping, path: str) -> bool:
    """The rule is the challenge of `path`: requests to it without `Authorization: Bearer` (any case)."""
    statements = [as_mapping(s) for s in as_list(as_mapping(as_mapping(rule.get("statement"))
                                                            .get("andStatement")).get("statements"))]
    if len(statements) != 2 or not _starts_with(statements[0], "uriPath", path):
        return False
    negated = as_mapping(as_mapping(statements[1].get("notStatement")).get("statement"))
    match = as_mapping(negated.get("byteMatchStatement"))
    header = as_mapping(as_mapping(match.get("fieldToMatch")).get("singleHeader")).get("name")
    lowered = [as_mapping(t).get("type") for t in as_list(match.get("textTransformations"))] == ["LOWERCASE"]
    return (str(header).lower() == "authorization" and lowered
            and _starts_with(negated, "singleHeader", "bearer "))


def _answer(rule: Mapping) -> tuple[Any, dict[str, Any]]:
    response = as_mapping(as_mapping(as_mapping(rule.get("action")).get("block")).get("customResponse"))
    headers = {str(as_mapping(h).get("name")).lower(): as_mapping(h).get("value")
               for h in as_list(response.get("responseHeaders"))}
    return response.get("responseCode"), headers


def _first_allow(rules: Iterable[Mapping]) -> float:
    priorities = [r.get("priority") for r in rules if "allow" in as_mapping(r.get("action"))]
    return min((p for p in priorities if isinstance(p, (int, float))), default=float("inf"))


@stack_policy(
    "mcp-paths-answer-401-with-a-challenge",
    "With auth on, in prod, every web ACL answers a request to each MCP path without `Authorization: Bearer` "
    "with 401 and `WWW-Authenticate: Bearer resource_metadata=...` naming the server's metadata (the challenge "
    "MCP clients follow; the ALB cannot send it), before any rule that allows"
    ". Reads outputs (listener rules' target group ARNs): on a first preview it cannot run, "
    "so `estate check` in every pull request is the gate",
    risks=[Risk.CONFUSED_DEPUTY], severity=Severity.HIGH,
    remediation="Keep the web ACL's bearer-token rules as components/token_validation.py builds them.",
    config=CHALLENGE_CONFIG)
def mcp_paths_answer_401_with_a_challenge(args: StackValidationArgs, report: Report) -> None:
    acls = [r for r in args.resources if r.resource_type == WEB_ACL]
    if args.get_config().get("environment") != "prod" or not acls:
        return
    servers = _config_servers(args, report, "mcp-paths-answer-401-with-a-challenge", acls)
    for acl in acls if servers else ():
        rules = [as_mapping(r) for r in as_list(acl.props.get("rules"))]
        if acl.props.get("ruleJson"):
            report(f"Web ACL {acl.name} gives its rules as rule_json, which this policy cannot read: declare "
                   "them as `rules`", acl.urn)
            continue
        for name, server in sorted(servers.items()):
            _check_challenge(acl, rules, name, as_mapping(server), report)


def _check_challenge(acl: Any, rules: list[Mapping], name: str, server: Mapping, report: Report) -> None:
    path, challenge = server.get("path"), server.get("challenge")
    found = [r for r in rules if _challenges(r, path)]
    answered = [r for r in found if _answer(r)[0] == 401 and _answer(r)[1].get(CHALLENGE_HEADER) == challenge]
    if not answered:
        report(f"Web ACL {acl.name} does not answer requests to {path} without a bearer token with 401 and "
               f"`WWW-Authenticate: {challenge}`: MCP clients cannot find where to get a token", acl.urn)
        return
    if min(r.get("priority", 0) for r in answered) > _first_allow(rules):
        report(f"Web ACL {acl.name} allows requests before its 401 challenge of {path} runs: give the challenge "
               "a lower priority than every rule that allows", acl.urn)
