"""Who may call what, at the origin and the edge: the rules that keep calls without a valid token
away from the servers (README: Who may call what).

Builds, as plain data from `ResourceServer` (mcp_estate/contract/resource_server.py):
- the ALB `jwt-validation` action of a server's route rule (issuer, JWKS, `aud` = the server's
  canonical URL, the scopes every call needs) when the ALB validates its tokens; the route then
  covers only the MCP paths, and the health path gets an open rule of its own;
- the fixed response serving each server's Protected Resource Metadata (RFC 9728), open to all;
- the AWS WAF rules answering an MCP request without `Authorization: Bearer ...` with 401 and
  `WWW-Authenticate: Bearer resource_metadata="..."`, which the ALB cannot send;
- the Cloudflare response-header transform rules setting that header on every 401 of an MCP
  path, so the ALB's own rejections of invalid tokens carry it too.
And creates the health and metadata listener rules of a server (`companion_rules`).

ECS owns the route rule of CANARY/LINEAR services (docs/decisions/0001): those validate tokens in
the server (`token_validation: server`, enforced by the spec) and their rule stays forward-only.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from mcp_estate.contract.resource_server import CHALLENGE_HEADER, ResourceServer, companion_priorities
from mcp_estate.contract.spec import Server

from .naming import child_opts

CHALLENGE_BODY_KEY = "bearer-token-required"
CHALLENGE_BODY = '{"error":"invalid_token","error_description":"This MCP server needs a bearer token"}'
CHALLENGE_PRIORITY = 50       # AWS WAF: after the existing rules (20, 30, 40), one per server
SCOPE_CLAIM = "scope"         # RFC 8693 §4.2 / RFC 9068 §2.2.3: space-separated scope tokens


def jwt_validation(settings: ResourceServer) -> dict:
    """The ALB's JWT check: signature, `iss`, `exp` (and `nbf`/`iat` when present) by itself; the
    audience and the scopes every call needs as additional claims."""
    claims = [{"name": "aud", "format": "single-string", "values": [settings.resource]}]
    if settings.scopes:
        claims.append({"name": SCOPE_CLAIM, "format": "space-separated-values", "values": list(settings.scopes)})
    return {"type": "jwt-validation", "order": 1, "jwt_validation": {
        "issuer": settings.issuer, "jwks_endpoint": settings.jwks_url, "additional_claims": claims}}


def route_paths(server: Server, settings: ResourceServer | None) -> list[str]:
    """The route rule's paths: with the ALB validating, the health path is served by its own rule."""
    mcp = [server.mcp_path, f"{server.mcp_path}/*"]
    return mcp if settings and settings.at_alb else [*mcp, f"/{server.name}{server.health_check_path}"]


def route_actions(settings: ResourceServer | None, target_group_arn: pulumi.Input[str]) -> list[dict]:
    forward = {"type": "forward", "target_group_arn": target_group_arn}
    if settings and settings.at_alb:
        return [jwt_validation(settings), {**forward, "order": 2}]
    return [forward]


def metadata_response(settings: ResourceServer) -> dict:
    return {"type": "fixed-response", "fixed_response": {
        "content_type": "application/json", "status_code": "200", "message_body": settings.metadata_document}}


def companion_rules(parent: pulumi.Resource, name: str, server: Server, settings: ResourceServer,
                    listener_arn: pulumi.Input[str], target_group_arn: pulumi.Input[str],
                    transform: dict, tags: dict[str, str]) -> list[aws.lb.ListenerRule]:
    """The server's open rules beside its route: its metadata and, when the route validates tokens,
    its health path (Cloudflare's monitor and the target group's checks carry no token)."""
    health_priority, metadata_priority = companion_priorities(server)
    rules = [aws.lb.ListenerRule(
        f"{name}-metadata", listener_arn=listener_arn, priority=metadata_priority,
        conditions=[{"path_pattern": {"values": [settings.metadata_path]}}],
        actions=[metadata_response(settings)], tags=tags, opts=child_opts(parent))]
    if settings.at_alb:
        rules.append(aws.lb.ListenerRule(
            f"{name}-health", listener_arn=listener_arn, priority=health_priority,
            conditions=[{"path_pattern": {"values": [f"/{server.name}{server.health_check_path}"]}}],
            transforms=[transform], actions=[{"type": "forward", "target_group_arn": target_group_arn}],
            tags=tags, opts=child_opts(parent)))
    return rules


# -- AWS WAF: the 401 challenge -------------------------------------------------------------------

def _starts_with(field: dict, prefix: str, transformation: str) -> dict:
    return {"byte_match_statement": {"field_to_match": field, "positional_constraint": "STARTS_WITH",
                                     "search_string": prefix,
                                     "text_transformations": [{"priority": 0, "type": transformation}]}}


def waf_challenge_rule(settings: ResourceServer, priority: int, visibility: dict) -> dict:
    """Block a request to the server's MCP path (and below) without a bearer token: 401 with the challenge.
    The scheme is case-insensitive (RFC 9110 §11.1), hence the lowercase transformation."""
    return {"name": f"bearer-token-{settings.server}", "priority": priority,
            "action": {"block": {"custom_response": {
                "response_code": 401, "custom_response_body_key": CHALLENGE_BODY_KEY,
                "response_headers": [{"name": CHALLENGE_HEADER, "value": settings.challenge}]}}},
            "statement": {"and_statement": {"statements": [
                _starts_with({"uri_path": {}}, settings.path, "NONE"),
                {"not_statement": {"statement": _starts_with(
                    {"single_header": {"name": "authorization"}}, "bearer ", "LOWERCASE")}}]}},
            "visibility_config": visibility}


def waf_challenge_body() -> dict:
    return {"key": CHALLENGE_BODY_KEY, "content_type": "APPLICATION_JSON", "content": CHALLENGE_BODY}


# -- Cloudflare: the header on every 401 of an MCP path --------------------------------------------

def edge_challenge_rules(hostname: str, servers: list[ResourceServer]) -> list[dict]:
    """Response Header Transform rules (phase http_response_headers_transform), one per server:
    the ALB rejects an invalid token without `WWW-Authenticate`; Cloudflare adds it. A challenge
    that already names the metadata (the server's own, with its `error=` and `scope=`) is kept."""
    rules = []
    for settings in sorted(servers, key=lambda s: s.server):
        path = settings.path
        rules.append({
            "ref": f"bearer_challenge_{settings.server.replace('-', '_')}", "action": "rewrite", "enabled": True,
            "description": f"401 of {path}: name the server's Protected Resource Metadata (RFC 9728)",
            "expression": (f'(http.host eq "{hostname}" and (http.request.uri.path eq "{path}" or '
                           f'starts_with(http.request.uri.path, "{path}/")) and http.response.code eq 401 and not '
                           f'any(http.response.headers["www-authenticate"][*] contains "resource_metadata="))'),
            "action_parameters": {"headers": {CHALLENGE_HEADER: {"operation": "set", "value": settings.challenge}}}})
    return rules
