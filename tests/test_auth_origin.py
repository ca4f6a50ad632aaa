"""Who may call what at the origin and the edge: the spec's auth rules, the ALB's JWT check, the open
metadata and health rules, the AWS WAF 401 challenge and Cloudflare's challenge header."""

from __future__ import annotations

import copy
import json

import pytest
from test_estate import SMALL, plan_of
from test_spec import VALID, assert_problem, problems_of, server

from mcp_estate.components.token_validation import edge_challenge_rules, jwt_validation
from mcp_estate.contract.resource_server import companion_priorities, resource_server
from mcp_estate.contract.validate import parse_spec
from mcp_estate.offline.cloudflare_rules import evaluate, ruleset_problems
from mcp_estate.offline.fidelity import inspect_resource

ISSUER, JWKS = "https://login.example.travel/", "https://login.example.travel/jwks.json"
BOOKING = "https://mcp.example.travel/booking/mcp"
METADATA = "https://mcp.example.travel/.well-known/oauth-protected-resource/booking/mcp"


def with_(base: dict, change) -> dict:
    raw = copy.deepcopy(base)
    change(raw)
    return raw


def canary(raw: dict) -> None:
    raw["rollout"] = {"in_region": {"strategy": "CANARY"}}
    # the deployment hook's token (README: Shipping a change), required with auth on
    raw["monitoring"] = {"probe_credentials_secret": "canary-oauth-client", "probe_token_cidrs": ["203.0.113.0/24"]}


# -- the spec ------------------------------------------------------------------------------------------

def test_tool_scopes_must_name_approved_tools_when_the_server_has_an_allowlist():
    def change(raw):
        server(raw)["surface"] = {"tools": ["search_trips"]}
        server(raw)["auth"] = {"tool_scopes": {"search_trips": ["trips:read"], "cancel_trip": ["trips:write"]}}
    assert_problem(change, "servers[booking].auth.tool_scopes.cancel_trip",
                   "'cancel_trip' is not in the server's approved tools (surface.tools: search_trips)")


def test_tool_scopes_without_an_allowlist_are_accepted():
    raw = with_(VALID, lambda r: server(r).__setitem__("auth", {"tool_scopes": {"cancel_trip": ["trips:write"]}}))
    assert parse_spec(raw).servers[0].auth.tool_scopes == {"cancel_trip": ["trips:write"]}


@pytest.mark.parametrize("where", ["estate", "server"])
def test_alb_validation_is_refused_where_ecs_owns_the_route(where):
    def change(raw):
        if where == "estate":
            canary(raw)
        else:
            server(raw)["rollout"] = {"strategy": "LINEAR"}
    problems = problems_of(change)
    assert any(p.startswith("servers[booking].auth.token_validation:") and "docs/decisions/0001" in p
               for p in problems), problems


def test_a_canary_server_that_validates_its_own_tokens_is_accepted():
    def change(raw):
        canary(raw)
        for s in raw["servers"]:
            s["auth"] = {"token_validation": "server"}
    spec = parse_spec(with_(VALID, change))
    assert [resource_server(spec, s).at_alb for s in spec.servers] == [False, False]


def test_more_scopes_than_the_alb_checks_are_refused():
    def change(raw):
        raw["auth"]["scopes"] = [f"estate:{i}" for i in range(6)]
        server(raw)["auth"] = {"scopes": [f"booking:{i}" for i in range(5)]}
    assert_problem(change, "servers[booking].auth.scopes", "11 scopes with the estate's: the ALB checks at most 10")


def test_an_issuer_longer_than_the_alb_takes_is_refused():
    long = "https://login.example.travel/" + "a" * 240
    assert_problem(lambda raw: raw["auth"].__setitem__("issuer", long), "auth.issuer",
                   "is 269 characters: the ALB's JWT validation takes 256 at most")


def test_metadata_larger_than_an_alb_fixed_response_is_refused():
    servers = [f"https://as{i}.login.example.travel/" for i in range(30)]
    assert_problem(lambda raw: raw["auth"].__setitem__("authorization_servers", servers), "servers[booking].auth",
                   "over the 1024 an ALB fixed response holds")


def test_a_route_priority_taking_anothers_companion_rules_is_refused():
    def change(raw):
        server(raw)["route_priority"] = 100
        server(raw, "inventory")["route_priority"] = 101
    assert_problem(change, "servers[booking].route_priority",
                   "the server's health rule takes ALB priority 101, already the route of 'inventory'")


def test_server_auth_settings_are_refused_when_the_estate_opts_out():
    def change(raw):
        raw["environment"] = "dev"
        raw["auth"] = {"disabled": True}
        server(raw)["auth"] = {"scopes": ["booking:read"]}
    assert_problem(change, "servers[booking].auth", "the estate's `auth` is disabled")


def test_the_challenge_names_the_metadata_and_the_scopes_a_call_needs():
    raw = with_(VALID, lambda r: (r["auth"].__setitem__("scopes", ["mcp"]),
                                  server(r).__setitem__("auth", {"scopes": ["booking:read"]})))
    spec = parse_spec(raw)
    settings = resource_server(spec, spec.servers[0])
    assert settings.challenge == f'Bearer resource_metadata="{METADATA}", scope="mcp booking:read"'
    assert json.loads(settings.metadata_document) == {
        "resource": BOOKING, "authorization_servers": [ISSUER], "bearer_methods_supported": ["header"],
        "resource_name": "MCP server booking", "scopes_supported": ["mcp", "booking:read"]}


# -- the ALB -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_plan():
    return plan_of(SMALL)


def route(plan, name="mcp-estate-us-east-1-booking"):
    return plan.named(f"{name}-route").inputs


def test_the_route_validates_the_jwt_then_forwards_only_the_mcp_paths(small_plan):
    rule = route(small_plan)
    assert rule["conditions"] == [{"pathPattern": {"values": ["/booking/mcp", "/booking/mcp/*"]}}]
    assert [a["type"] for a in rule["actions"]] == ["jwt-validation", "forward"]
    assert rule["actions"][0] == {"type": "jwt-validation", "order": 1, "jwtValidation": {
        "issuer": ISSUER, "jwksEndpoint": JWKS,
        "additionalClaims": [{"name": "aud", "format": "single-string", "values": [BOOKING]}]}}
    assert rule["actions"][1]["order"] == 2


def test_the_health_path_and_the_metadata_stay_open_on_rules_of_their_own(small_plan):
    spec = parse_spec(SMALL)
    health_priority, metadata_priority = companion_priorities(spec.servers[0])
    health = small_plan.named("mcp-estate-us-east-1-booking-health").inputs
    assert (health["priority"], health["conditions"]) == (
        health_priority, [{"pathPattern": {"values": ["/booking/healthz"]}}])
    assert [a["type"] for a in health["actions"]] == ["forward"]
    assert health["transforms"] == route(small_plan)["transforms"]   # the container still sees /healthz
    metadata = small_plan.named("mcp-estate-us-east-1-booking-metadata").inputs
    assert metadata["priority"] == metadata_priority
    assert metadata["conditions"] == [{"pathPattern": {"values": [
        "/.well-known/oauth-protected-resource/booking/mcp"]}}]
    response = metadata["actions"][0]["fixedResponse"]
    assert (response["statusCode"], response["contentType"]) == ("200", "application/json")
    assert json.loads(response["messageBody"])["resource"] == BOOKING


def test_a_canary_server_keeps_a_forward_only_route_and_still_publishes_its_metadata():
    def change(raw):
        canary(raw)
        for s in raw["servers"]:
            s["auth"] = {"token_validation": "server"}
    plan = plan_of(with_(SMALL, change))
    rule = route(plan)
    assert [a["type"] for a in rule["actions"]] == ["forward"]
    assert rule["conditions"] == [{"pathPattern": {"values": ["/booking/mcp", "/booking/mcp/*", "/booking/healthz"]}}]
    rules = sorted(r.name for r in plan.of_type("aws:lb/listenerRule:ListenerRule")
                   if r.name.startswith("mcp-estate-us-east-1-booking-"))
    # the test rule ECS points at the new revision (README: Shipping a change) is forward-only too
    assert rules == ["mcp-estate-us-east-1-booking-metadata", "mcp-estate-us-east-1-booking-route",
                     "mcp-estate-us-east-1-booking-test-route"]
    test_rule = plan.named("mcp-estate-us-east-1-booking-test-route").inputs
    assert [a["type"] for a in test_rule["actions"]] == ["forward"]


def test_without_auth_nothing_changes_at_the_origin():
    plan = plan_of(with_(SMALL, lambda r: (r.__setitem__("environment", "dev"),
                                           r.__setitem__("auth", {"disabled": True}))))
    assert [a["type"] for a in route(plan)["actions"]] == ["forward"]
    assert not [r for r in plan.resources if r.name.endswith(("-metadata", "-health"))]
    acl = plan.named("mcp-estate-us-east-1-front-waf").inputs
    # The estate's rules, then the MCP surface rules (priorities 200 and up): no 401 challenge among them.
    names = [r["name"] for r in acl["rules"]]
    assert names[:3] == ["rate-per-client-ip", "AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"]
    assert all(r["priority"] >= 200 for r in acl["rules"][3:]) and not [n for n in names if "challenge" in n]
    assert "customResponseBodies" not in acl
    assert not [r for r in plan.of_type("cloudflare:index/ruleset:Ruleset")
                if r.inputs["phase"] == "http_response_headers_transform"]


def test_the_provider_would_refuse_a_claim_format_the_alb_does_not_know(small_plan):
    rule = copy.deepcopy(route(small_plan))
    assert inspect_resource("aws:lb/listenerRule:ListenerRule", "route", rule) == []
    rule["actions"][0]["jwtValidation"]["additionalClaims"][0]["format"] = "space-separated"
    [problem] = inspect_resource("aws:lb/listenerRule:ListenerRule", "route", rule)
    assert "space-separated" in problem and "single-string" in problem


def test_scopes_become_a_space_separated_scope_claim():
    spec = parse_spec(with_(VALID, lambda r: r["auth"].__setitem__("scopes", ["mcp", "travel"])))
    claims = jwt_validation(resource_server(spec, spec.servers[0]))["jwt_validation"]["additional_claims"]
    assert claims[1] == {"name": "scope", "format": "space-separated-values", "values": ["mcp", "travel"]}


# -- AWS WAF and Cloudflare ----------------------------------------------------------------------------

def test_the_web_acl_keeps_its_rules_and_adds_a_challenge_per_server(small_plan):
    acl = small_plan.named("mcp-estate-us-east-1-front-waf").inputs
    # The MCP surface rules follow from priority 200 (tests/test_mcp_surface.py pins them).
    assert [(r["name"], r["priority"]) for r in acl["rules"] if r["priority"] < 200] == [
        ("rate-per-client-ip", 20), ("AWSManagedRulesCommonRuleSet", 30),
        ("AWSManagedRulesKnownBadInputsRuleSet", 40), ("bearer-token-booking", 50), ("bearer-token-loyalty", 51)]
    booking = acl["rules"][3]
    assert booking["statement"] == {"andStatement": {"statements": [
        {"byteMatchStatement": {"fieldToMatch": {"uriPath": {}}, "positionalConstraint": "STARTS_WITH",
                                "searchString": "/booking/mcp",
                                "textTransformations": [{"priority": 0, "type": "NONE"}]}},
        {"notStatement": {"statement": {"byteMatchStatement": {
            "fieldToMatch": {"singleHeader": {"name": "authorization"}}, "positionalConstraint": "STARTS_WITH",
            "searchString": "bearer ", "textTransformations": [{"priority": 0, "type": "LOWERCASE"}]}}}}]}}
    assert booking["action"]["block"]["customResponse"]["responseHeaders"] == [
        {"name": "WWW-Authenticate", "value": f'Bearer resource_metadata="{METADATA}"'}]
    assert acl["customResponseBodies"] == [{"key": "bearer-token-required", "contentType": "APPLICATION_JSON",
                                            "content": json.dumps({"error": "invalid_token", "error_description":
                                                                   "This MCP server needs a bearer token"},
                                                                  separators=(",", ":"))}]


def test_cloudflare_sets_the_challenge_on_every_401_of_each_mcp_path(small_plan):
    [ruleset] = [r.inputs for r in small_plan.of_type("cloudflare:index/ruleset:Ruleset")
                 if r.inputs["phase"] == "http_response_headers_transform"]
    booking = ruleset["rules"][0]
    assert booking["expression"] == ('(http.host eq "mcp.example.travel" and (http.request.uri.path eq "/booking/mcp" '
                                     'or starts_with(http.request.uri.path, "/booking/mcp/")) '
                                     'and http.response.code eq 401 and not any(http.response.headers'
                                     '["www-authenticate"][*] contains "resource_metadata="))')
    assert booking["actionParameters"] == {"headers": {"WWW-Authenticate": {
        "operation": "set", "value": f'Bearer resource_metadata="{METADATA}"'}}}
    assert [r["ref"] for r in ruleset["rules"]] == ["bearer_challenge_booking", "bearer_challenge_loyalty"]


@pytest.mark.parametrize("status, sent, challenged", [
    (401, {}, True),                                                              # the ALB's bare 401
    (401, {"WWW-Authenticate": ['Bearer error="invalid_token"']}, True),          # a challenge without metadata
    (401, {"WWW-Authenticate": [f'Bearer error="insufficient_scope", scope="trips:write", '
                                f'resource_metadata="{METADATA}"']}, False),      # the server's own: kept
    (200, {}, False), (403, {}, False)])
def test_the_edge_sets_the_challenge_only_where_none_names_the_metadata(status, sent, challenged):
    spec = parse_spec(SMALL)
    [rule, _] = edge_challenge_rules("mcp.example.travel", [resource_server(spec, s) for s in spec.servers])
    response = {"host": "mcp.example.travel", "path": "/booking/mcp", "status": status, "response_headers": sent}
    assert evaluate(rule["expression"], response) is challenged


def test_the_challenge_expression_reads_a_response_field_only_a_response_phase_has():
    spec = parse_spec(SMALL)
    [rule, _] = edge_challenge_rules("mcp.example.travel", [resource_server(spec, s) for s in spec.servers])
    check = lambda phase: ruleset_problems({"phase": phase, "rules": [{"expression": rule["expression"]}]})  # noqa: E731
    assert check("http_response_headers_transform") == []
    assert check("http_request_firewall_custom") != []


def test_the_edge_lets_the_metadata_through(small_plan):
    [firewall] = [r.inputs for r in small_plan.of_type("cloudflare:index/ruleset:Ruleset")
                  if r.inputs["phase"] == "http_request_firewall_custom"]
    paths_only = next(r for r in firewall["rules"] if r["ref"] == "mcp_paths_only")
    assert 'starts_with(http.request.uri.path, "/.well-known/")' in paths_only["expression"]
