"""The MCP surface at the edge (Cloudflare) and the origin (AWS WAF), and its spec checks per plan.

Every generated Cloudflare expression is golden (syrupy), read by the expression checker for its
phase, and run against sample requests with the subset evaluator.
"""

from __future__ import annotations

import copy
import re

import pytest

from mcp_estate.contract.surface import Surface
from mcp_estate.contract.surface_rules import (
    SurfaceServer,
    edge_ratelimits,
    edge_rule,
    edge_rules,
    greater_than_pattern,
    origin_rules,
    origin_server_rules,
    wcu,
)
from mcp_estate.contract.validate import parse_spec
from mcp_estate.offline.cloudflare_rules import REQUEST_FIELDS, evaluate, expression_problems, phase_fields
from tests.test_spec import VALID, assert_problem, server

HOST = "mcp.example.travel"
BOOKING = SurfaceServer("booking", "/booking/mcp", Surface(
    tools=["get_booking", "search_trips"], max_body_kb=256,
    tool_limits={"search_trips": {"per_traveller_per_minute": 30, "per_ip_per_minute": 60}}))
MODERN = SurfaceServer("loyalty", "/loyalty/mcp", Surface(protocols=["2026-07-28"], tools=["points"]))
PLANS = ("free", "pro", "business", "enterprise")


def call(tool: str | None = "get_booking", method: str = "tools/call", version: str | None = "2026-07-28",
         http: str = "POST", path: str = "/booking/mcp", body_size: int = 100, **extra) -> dict:
    headers = {"MCP-Protocol-Version": [version]} if version else {}
    if method:
        headers["Mcp-Method"] = [method]
    if tool:
        headers["Mcp-Name"] = [tool]
    headers.update(extra)
    return {"host": HOST, "method": http, "path": path, "headers": headers, "body_size": body_size}


def blocked(rule: dict, request: dict) -> bool:
    return evaluate(rule["expression"], request)


@pytest.mark.parametrize("plan", PLANS)
def test_edge_rules_are_golden_and_read_by_the_checker(plan, snapshot):
    rules = edge_rules(HOST, [BOOKING, MODERN], plan)
    ratelimits = edge_ratelimits(HOST, [BOOKING, MODERN], plan, plan == "enterprise", 60, 600)
    assert {"rules": rules, "ratelimits": ratelimits} == snapshot
    for rule in rules:
        assert expression_problems(rule["expression"], "e", phase_fields("http_request_firewall_custom"),
                                   "custom", lambda f: f in ("any", "all", "starts_with", "lower")) == []
    for rule in ratelimits:
        assert expression_problems(rule["expression"], "e", phase_fields("http_ratelimit"),
                                   "ratelimit", lambda f: f in ("any", "all", "starts_with", "lower")) == []


@pytest.mark.parametrize("plan", PLANS)
def test_the_allowed_tool_passes_and_every_refusal_bites(plan):
    rule = edge_rule(HOST, BOOKING, plan)
    assert not blocked(rule, call())
    assert not blocked(rule, call(method="tools/list", tool=None))
    assert not blocked(rule, call(version=None, method=None, tool=None))            # a 2025 client: no headers
    assert not blocked(rule, call(version="2025-11-25", method=None, tool=None, http="GET"))
    assert not blocked(rule, call(tool="delete_booking", path="/inventory/mcp"))    # another server's path
    assert blocked(rule, call(tool="delete_booking"))
    assert blocked(rule, call(tool="delete_booking", path="/booking/mcp/"))
    assert blocked(rule, call(tool=None))                                           # tools/call without a name
    assert blocked(rule, call(tool="GET_BOOKING"))                                  # values are case-sensitive
    assert blocked(rule, call(**{"mcp-name": ["get_booking", "delete_all"]}))      # a repeated header
    assert blocked(rule, call(method="admin/exec", tool=None))
    assert blocked(rule, call(method=None, tool=None))          # 2026-07-28 must name its method
    assert blocked(rule, call(version="2024-11-05"))
    assert blocked(rule, call(http="PUT"))


RESPELLED = [call(), call(method="tools/list", tool=None), call(tool="delete_booking"),
             call(method="admin/exec", tool=None), call(method=None, tool=None),
             call(version="2025-11-25", method="evil/method", tool=None), call(version="2024-11-05")]


@pytest.mark.parametrize("spelling", [str.lower, str.upper, str.title], ids=["http2", "upper", "http1"])
def test_header_names_are_judged_whatever_case_the_client_sends(spelling):
    # `http.request.headers.names` keeps the client's case (Cloudflare fields reference): an HTTP/1.1
    # client's `Mcp-Method` must count as present, or 2026-07-28 calls are refused and bad methods pass.
    rule = edge_rule(HOST, BOOKING, "pro")
    verdicts = [blocked(rule, {**r, "headers": {spelling(k): v for k, v in r["headers"].items()}}) for r in RESPELLED]
    assert verdicts == [False, False, True, True, True, True, True]


def test_the_body_cap_follows_the_plan():
    big, small = call(body_size=256 * 1024 + 1), call(body_size=256 * 1024)
    enterprise = edge_rule(HOST, BOOKING, "enterprise")
    assert blocked(enterprise, big) and not blocked(enterprise, small)
    assert "http.request.body.size gt 262144" in enterprise["expression"]
    business = edge_rule(HOST, BOOKING, "business")
    assert f'matches "{greater_than_pattern(262144)}"' in business["expression"]
    for plan in ("free", "pro"):
        rule = edge_rule(HOST, BOOKING, plan)
        assert "body" not in rule["expression"] and "content-length" not in rule["expression"]


@pytest.mark.parametrize("limit", [1, 9, 10, 99, 100, 262144, 1048576, 999])
def test_the_greater_than_pattern_is_exact(limit):
    pattern = re.compile(greater_than_pattern(limit))
    for n in {0, 1, limit - 1, limit, limit + 1, limit * 10, limit * 10 + 7, 10 ** len(str(limit))}:
        if n >= 0:
            assert bool(pattern.match(str(n))) == (n > limit), n
    assert pattern.match("00" + str(limit + 1)) and not pattern.match("abc")


def test_a_modern_only_server_takes_post_with_its_version_only():
    rule = edge_rule(HOST, MODERN, "pro")
    ok = call(tool="points", path="/loyalty/mcp")
    assert not blocked(rule, ok)
    assert blocked(rule, {**ok, "method": "GET"}) and blocked(rule, {**ok, "method": "DELETE"})
    assert blocked(rule, call(tool="points", path="/loyalty/mcp", version=None))
    assert blocked(rule, call(tool="points", path="/loyalty/mcp", version="2025-11-25"))
    assert not blocked(rule, {**ok, "method": "OPTIONS", "headers": {}})          # CORS preflight


def test_a_server_without_allowlist_gets_no_tool_condition():
    rule = edge_rule(HOST, SurfaceServer("open", "/open/mcp", Surface()), "pro")
    assert "mcp-name" not in rule["expression"]
    assert not blocked(rule, call(tool="anything", path="/open/mcp"))


def test_rate_limits_per_plan():
    assert all(edge_ratelimits(HOST, [BOOKING], p, False, 60, 600) == [] for p in ("free", "pro", "business"))
    plain = edge_ratelimits(HOST, [BOOKING], "enterprise", False, 60, 600)
    assert [r["ref"] for r in plain] == ["mcp_ip_booking_search_trips"]
    assert plain[0]["ratelimit"] == {"characteristics": ["cf.colo.id", "ip.src"], "period": 60,
                                     "requests_per_period": 60, "mitigation_timeout": 600}
    advanced = edge_ratelimits(HOST, [BOOKING], "enterprise", True, 60, 600)
    assert [r["ref"] for r in advanced] == ["mcp_ip_booking", "mcp_ip_booking_search_trips",
                                            "mcp_traveller_booking", "mcp_traveller_booking_search_trips"]
    assert advanced[2]["ratelimit"]["characteristics"] == [
        "cf.colo.id", 'http.request.headers["authorization"]', 'http.request.headers["mcp-method"]',
        'http.request.headers["mcp-name"]']
    assert advanced[2]["ratelimit"]["requests_per_period"] == 120
    # The server-wide counter leaves the tool with its own limit to its own rule.
    assert not evaluate(advanced[0]["expression"], call(tool="search_trips"))
    assert evaluate(advanced[0]["expression"], call(tool="get_booking"))
    assert evaluate(advanced[1]["expression"], call(tool="search_trips"))


def test_every_header_key_is_lowercase_in_every_expression():
    for plan in PLANS:
        for rule in edge_rules(HOST, [BOOKING, MODERN], plan) + edge_ratelimits(HOST, [BOOKING], plan, True, 60, 600):
            text = rule["expression"] + str(rule.get("ratelimit", ""))
            assert re.findall(r'headers(?:\.names\[\*\] eq )?\["?([^"\]]+)', text) == \
                [k.lower() for k in re.findall(r'headers(?:\.names\[\*\] eq )?\["?([^"\]]+)', text)]


def test_origin_rules_exactly():
    server = SurfaceServer("pay", "/pay/mcp", Surface(tools=["refund"], tool_limits={
        "refund": {"per_traveller_per_minute": 10, "per_ip_per_minute": 20}}))
    rules = origin_server_rules(server, travellers=False)
    none = [{"priority": 0, "type": "NONE"}]
    path = {"regex_match_statement": {"regex_string": "^/pay/mcp(?:/.*)?$", "field_to_match": {"uri_path": {}},
                                      "text_transformations": none}}
    name_is = {"regex_match_statement": {"regex_string": "^(?:refund)$", "text_transformations": none,
                                         "field_to_match": {"single_header": {"name": "mcp-name"}}}}
    call_is = {"byte_match_statement": {"search_string": "tools/call", "positional_constraint": "EXACTLY",
                                        "field_to_match": {"single_header": {"name": "mcp-method"}},
                                        "text_transformations": none}}
    assert [r["name"] for r in rules] == ["mcp-pay-methods", "mcp-pay-tools", "mcp-pay-per-ip", "mcp-pay-refund-per-ip"]
    assert rules[1]["action"] == {"block": {}}
    assert rules[1]["statement"] == {"and_statement": {"statements": [
        path, call_is, {"not_statement": {"statement": name_is}}]}}
    assert rules[2]["statement"] == {"rate_based_statement": {
        "limit": 600, "evaluation_window_sec": 60, "aggregate_key_type": "CUSTOM_KEYS",
        "custom_keys": [{"forwarded_ip": {}}, {"header": {"name": "mcp-name", "text_transformations": none}}],
        "forwarded_ip_config": {"header_name": "CF-Connecting-IP", "fallback_behavior": "MATCH"},
        "scope_down_statement": {"and_statement": {"statements": [
            path, {"not_statement": {"statement": name_is}}]}}}}
    own = rules[3]["statement"]["rate_based_statement"]
    assert own["limit"] == 20 and own["custom_keys"] == [{"forwarded_ip": {}}, {"http_method": {}}]
    methods = rules[0]["statement"]["and_statement"]["statements"]
    assert methods[1]["size_constraint_statement"]["comparison_operator"] == "GT"
    pattern = methods[2]["not_statement"]["statement"]["regex_match_statement"]["regex_string"]
    assert re.match(pattern, "tools/call") and not re.match(pattern, "tools/calls")
    assert not re.match(pattern, "tools_list") and len(pattern) <= 512


def test_origin_rules_take_the_200_band_and_count_travellers_when_asked():
    rules = origin_rules([BOOKING, MODERN], travellers=True)
    assert [r["priority"] for r in rules] == list(range(200, 200 + len(rules)))
    assert "mcp-booking-per-traveller" in [r["name"] for r in rules]
    keys = next(r for r in rules if r["name"] == "mcp-booking-per-traveller")["statement"]["rate_based_statement"]
    assert keys["custom_keys"][0]["header"]["name"] == "authorization" and "forwarded_ip_config" not in keys
    assert wcu(rules[0]["statement"]) == 3 + 1 + 3


def test_long_tool_lists_split_into_regexes_of_512_characters():
    tools = [f"tool_number_{i:03d}_with_a_long_name" for i in range(40)]
    rules = origin_server_rules(SurfaceServer("big", "/big/mcp", Surface(tools=tools)), travellers=False)
    tools_rule = next(r for r in rules if r["name"] == "mcp-big-tools")["statement"]["and_statement"]["statements"]
    patterns = [s["not_statement"]["statement"]["regex_match_statement"]["regex_string"] for s in tools_rule[2:]]
    assert len(patterns) > 1 and all(len(p) <= 512 for p in patterns)
    assert sorted(t for p in patterns for t in re.findall(r"tool_number_\d+_with_a_long_name", p)) == tools


# -- spec checks --------------------------------------------------------------------------------

def surface(raw, name="booking", **fields):
    server(raw, name)["surface"] = fields


def test_tool_limits_must_name_approved_tools():
    assert_problem(lambda raw: surface(raw, tools=["a"], tool_limits={"b": {}}),
                   "servers[booking].surface.tool_limits.b", "not an approved tool")


def test_limits_below_the_origin_minimum_are_refused():
    assert_problem(lambda raw: surface(raw, limits={"per_traveller_per_minute": 5}),
                   "servers[booking].surface.limits.per_traveller_per_minute", "at least 10")


def test_advanced_rate_limiting_needs_enterprise():
    assert_problem(lambda raw: raw["edge"].update(advanced_rate_limiting=True), "edge.advanced_rate_limiting",
                   "Enterprise add-on")


def test_the_free_plan_counts_one_custom_rule_per_server():
    def mutate(raw):
        raw["domain"]["cloudflare_plan"] = "free"
        raw["edge"]["rate_limit_per_minute"] = 600
        for i in range(2):
            raw["servers"].append({**copy.deepcopy(raw["servers"][1]), "name": f"extra{i}",
                                   "image": raw["servers"][1]["image"].replace("inventory", f"extra{i}")})
    assert_problem(mutate, "servers", "the free plan allows 5")


def test_enterprise_without_advanced_rate_limiting_has_five_rate_rules():
    def mutate(raw):
        raw["domain"]["cloudflare_plan"] = "enterprise"
        surface(raw, tools=list("abcde"), tool_limits={t: {} for t in "abcde"})
    assert_problem(mutate, "servers", "the enterprise plan allows 5")
    raw = copy.deepcopy(VALID)
    mutate(raw)
    raw["edge"]["advanced_rate_limiting"] = True
    surface(raw, tools=list("abcde"), tool_limits={t: {} for t in "ab"})
    parse_spec(raw)


def test_an_expression_over_4096_characters_is_refused():
    assert_problem(lambda raw: surface(raw, tools=[f"t{i:03d}_" + "x" * 100 for i in range(40)]), "servers",
                   "Cloudflare takes 4096")


def test_too_many_rate_based_rules_at_the_origin_are_refused():
    assert_problem(lambda raw: surface(raw, tools=list("abcde"), tool_limits={t: {} for t in "abcde"}),
                   "servers", "AWS WAF allows 10")


def test_request_fields_used_exist():
    assert {"http.request.body.size", "http.request.headers", "http.request.headers.names"} <= REQUEST_FIELDS
