"""The MCP surface at the edge (Cloudflare) and the origin (AWS WAF), and its spec checks per plan.

Every generated Cloudflare expression is golden (syrupy), read by the expression checker for its
phase, and run against sample requests with the subset evaluator.
"""

from __future__ import annotations

import copy
import re

import pytest
from conftest import run_program
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_estate.components.estate import Estate
from mcp_estate.contract.surface import Surface
from mcp_estate.contract.surface_rules import (
    SurfaceServer,
    edge_ratelimits,
    edge_rule,
    edge_rules,
    edge_surface,
    greater_than_pattern,
    origin_rules,
    origin_server_rules,
    surface_servers,
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


@pytest.mark.parametrize("plan, advanced, refs", [
    ("business", False, []),
    ("enterprise", False, ["mcp_ip_booking_search_trips"]),
    ("enterprise", True, ["mcp_ip_booking", "mcp_ip_booking_search_trips", "mcp_traveller_booking",
                          "mcp_traveller_booking_search_trips"]),
])
def test_one_edge_surface_per_spec_takes_the_plans_allowances_and_its_advanced_add_on(plan, advanced, refs):
    # What the Edge is given, the spec checks measure and the pack config expects: one call.
    raw = copy.deepcopy(VALID)
    raw["domain"]["cloudflare_plan"] = plan
    raw["edge"] = {**raw.get("edge", {}), "advanced_rate_limiting": advanced}
    server(raw)["surface"] = {"tools": ["get_booking", "search_trips"], "tool_limits": {
        "search_trips": {"per_traveller_per_minute": 30, "per_ip_per_minute": 60}}}
    spec = parse_spec(raw)
    rules, ratelimits = edge_surface(spec)
    assert rules == edge_rules(HOST, surface_servers(spec), plan) and rules
    assert [r["ref"] for r in ratelimits if "booking" in r["ref"]] == refs
    assert all(r["ratelimit"]["period"] == 60 and r["ratelimit"]["mitigation_timeout"] == 600 for r in ratelimits)


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


NONE = [{"priority": 0, "type": "NONE"}]
CALL_IS = {"byte_match_statement": {"search_string": "tools/call", "positional_constraint": "EXACTLY",
                                    "field_to_match": {"single_header": {"name": "mcp-method"}},
                                    "text_transformations": NONE}}
PAY = SurfaceServer("pay", "/pay/mcp", Surface(tools=["refund"], tool_limits={
    "refund": {"per_traveller_per_minute": 10, "per_ip_per_minute": 20}}))
SHOP = SurfaceServer("shop", "/shop/mcp", Surface())


def regex(pattern: str, field: dict) -> dict:
    return {"regex_match_statement": {"regex_string": pattern, "field_to_match": field, "text_transformations": NONE}}


def test_origin_rules_exactly():
    rules = origin_rules([SHOP, PAY], travellers=False)
    path = regex("^/pay/mcp(?:/.*)?$", {"uri_path": {}})
    name_is = regex("^(?:refund)$", {"single_header": {"name": "mcp-name"}})
    assert [(r["name"], r["priority"]) for r in rules] == [
        ("mcp-pay-methods", 200), ("mcp-pay-tools", 201), ("mcp-shop-methods", 202), ("mcp-own-limit-calls", 203),
        ("mcp-per-ip-600", 204), ("mcp-tools-per-ip-20", 205)]
    assert rules[1]["action"] == {"block": {}}
    assert rules[1]["statement"] == {"and_statement": {"statements": [
        path, CALL_IS, {"not_statement": {"statement": name_is}}]}}
    own_call = {"and_statement": {"statements": [path, CALL_IS, name_is]}}
    assert {k: rules[3][k] for k in ("action", "rule_labels", "statement")} == {
        "action": {"count": {}}, "rule_labels": [{"name": "mcp-estate:own-limit"}], "statement": own_call}
    keys = [{"forwarded_ip": {}}, {"uri_path": {"text_transformations": NONE}},
            {"header": {"name": "mcp-name", "text_transformations": NONE}}]
    forwarded = {"header_name": "CF-Connecting-IP", "fallback_behavior": "MATCH"}
    assert rules[4]["statement"] == {"rate_based_statement": {
        "limit": 600, "evaluation_window_sec": 60, "aggregate_key_type": "CUSTOM_KEYS", "custom_keys": keys,
        "forwarded_ip_config": forwarded, "scope_down_statement": {"and_statement": {"statements": [
            regex("^(?:/pay/mcp|/shop/mcp)(?:/.*)?$", {"uri_path": {}}),
            {"not_statement": {"statement": {"label_match_statement": {"scope": "LABEL",
                                                                        "key": "mcp-estate:own-limit"}}}}]}}}}
    assert rules[5]["statement"] == {"rate_based_statement": {
        "limit": 20, "evaluation_window_sec": 60, "aggregate_key_type": "CUSTOM_KEYS", "custom_keys": keys,
        "forwarded_ip_config": forwarded, "scope_down_statement": own_call}}
    methods = rules[0]["statement"]["and_statement"]["statements"]
    assert methods[1]["size_constraint_statement"]["comparison_operator"] == "GT"
    pattern = methods[2]["not_statement"]["statement"]["regex_match_statement"]["regex_string"]
    assert re.match(pattern, "tools/call") and not re.match(pattern, "tools/calls")
    assert not re.match(pattern, "tools_list") and len(pattern) <= 512


def test_origin_rules_take_the_200_band_and_count_travellers_when_asked():
    rules = origin_rules([BOOKING, MODERN], travellers=True)
    assert [r["priority"] for r in rules] == list(range(200, 200 + len(rules)))
    assert [r["name"] for r in rules if "rate_based_statement" in r["statement"]] == [
        "mcp-per-ip-600", "mcp-tools-per-ip-60", "mcp-per-traveller-120", "mcp-tools-per-traveller-30"]
    keys = next(r for r in rules if r["name"] == "mcp-per-traveller-120")["statement"]["rate_based_statement"]
    assert keys["custom_keys"][0]["header"]["name"] == "authorization" and "forwarded_ip_config" not in keys
    assert wcu(rules[0]["statement"]) == 3 + 1 + 3
    assert wcu(next(r for r in rules if r["name"] == "mcp-per-ip-600")["statement"]) == 2 + 3 * 30 + 3 + 1


def test_long_tool_lists_split_into_regexes_of_512_characters():
    tools = [f"tool_number_{i:03d}_with_a_long_name" for i in range(40)]
    rules = origin_server_rules(SurfaceServer("big", "/big/mcp", Surface(tools=tools)))
    tools_rule = next(r for r in rules if r["name"] == "mcp-big-tools")["statement"]["and_statement"]["statements"]
    patterns = [s["not_statement"]["statement"]["regex_match_statement"]["regex_string"] for s in tools_rule[2:]]
    assert len(patterns) > 1 and all(len(p) <= 512 for p in patterns)
    assert sorted(t for p in patterns for t in re.findall(r"tool_number_\d+_with_a_long_name", p)) == tools


# -- packing: many servers in few rules, each judged as by a rule of its own -----------------------

def waf_matches(statement: dict, request: dict, labels: set[str]) -> bool:
    """The subset of AWS WAF these rules use, on {path, headers: {lowercase name: value}}."""
    (kind, body), = statement.items()
    if kind in ("and_statement", "or_statement"):
        found = [waf_matches(s, request, labels) for s in body["statements"]]
        return all(found) if kind == "and_statement" else any(found)
    if kind == "not_statement":
        return not waf_matches(body["statement"], request, labels)
    if kind == "label_match_statement":
        return body["key"] in labels
    field = body["field_to_match"]
    value = request["path"] if "uri_path" in field else request["headers"].get(field["single_header"]["name"])
    if value is None:
        return False
    if kind == "regex_match_statement":
        return re.search(body["regex_string"], value) is not None
    return value == body["search_string"]   # byte match EXACTLY


def combinators(statement: dict) -> int:
    (kind, body), = statement.items()
    if kind == "not_statement":
        return 1 + combinators(body["statement"])
    if kind in ("and_statement", "or_statement"):
        return 1 + max(map(combinators, body["statements"]))
    return 0


def counting_rules(rules: list[dict], request: dict) -> list[tuple[str, int]]:
    """(name, limit) of each rate rule that counts the request: the labels first, as AWS WAF does."""
    labels = {label["name"] for r in rules if "rule_labels" in r and waf_matches(r["statement"], request, set())
              for label in r["rule_labels"]}
    return [(r["name"], r["statement"]["rate_based_statement"]["limit"]) for r in rules
            if "rate_based_statement" in r["statement"]
            and waf_matches(r["statement"]["rate_based_statement"]["scope_down_statement"], request, labels)]


LIMITS = st.builds(dict, per_traveller_per_minute=st.sampled_from([10, 30, 120]),
                   per_ip_per_minute=st.sampled_from([20, 600]))


@st.composite
def estates(draw, most: int = 12) -> list[SurfaceServer]:
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True), min_size=1, max_size=most,
                          unique=True))
    servers = []
    for name in names:
        tools = draw(st.lists(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), max_size=4, unique=True))
        own = draw(st.lists(st.sampled_from(tools), unique=True)) if tools else []
        servers.append(SurfaceServer(name, f"/{name}/mcp", Surface(
            tools=tools or None, limits=draw(LIMITS), tool_limits={t: draw(LIMITS) for t in own})))
    return servers


@settings(max_examples=60, deadline=None)
@given(estates(), st.booleans())
def test_every_server_and_tool_is_counted_by_exactly_the_rule_of_its_limit(servers, travellers):
    rules = origin_rules(servers, travellers)
    callers = ("ip", "traveller") if travellers else ("ip",)
    for one in servers:
        for caller in callers:
            key = "per_ip_per_minute" if caller == "ip" else "per_traveller_per_minute"
            for sub in ("", "/x"):
                headers = {"mcp-method": "tools/call", "mcp-name": "Not-an-own-tool"}
                request = {"path": one.mcp_path + sub, "headers": headers}
                counted = [c for c in counting_rules(rules, request) if f"-per-{caller}-" in c[0]]
                assert counted == [(f"mcp-per-{caller}-{getattr(one.surface.limits, key)}",
                                    getattr(one.surface.limits, key))]
            for tool, limits in one.surface.tool_limits.items():
                request = {"path": one.mcp_path, "headers": {"mcp-method": "tools/call", "mcp-name": tool}}
                counted = [c for c in counting_rules(rules, request) if f"-per-{caller}-" in c[0]]
                assert counted == [(f"mcp-tools-per-{caller}-{getattr(limits, key)}", getattr(limits, key))]
    distinct = sum(len({getattr(s.surface.limits, k) for s in servers})
                   + len({getattr(lim, k) for s in servers for lim in s.surface.tool_limits.values()})
                   for k in ("per_ip_per_minute", "per_traveller_per_minute")[:len(callers)])
    assert sum("rate_based_statement" in r["statement"] for r in rules) == distinct
    for rule in rules:   # the provider's nesting: three levels, a scope-down counting as one
        statement = rule["statement"].get("rate_based_statement")
        assert combinators(statement["scope_down_statement"]) <= 2 if statement else \
            combinators(rule["statement"]) <= 3


def test_a_request_to_another_path_is_counted_by_no_server_rule():
    rules = origin_rules([PAY, SHOP], travellers=True)
    request = {"path": "/payments/mcp", "headers": {"mcp-method": "tools/call", "mcp-name": "refund"}}
    assert counting_rules(rules, request) == []


SAMPLES = [call(), call(tool="delete_booking"), call(tool=None), call(method="admin/exec", tool=None),
           call(version="2024-11-05"), call(http="PUT"), call(version=None, method=None, tool=None),
           call(method=None, tool=None), call(body_size=10 ** 7), call(tool="points")]


@settings(max_examples=15, deadline=None)
@given(estates(most=30), st.sampled_from(PLANS))
def test_packed_edge_rules_judge_each_server_as_its_own_rule(servers, plan):
    rules = edge_rules(HOST, servers, plan)
    assert all(len(r["expression"]) <= 4096 for r in rules)
    assert len(rules) <= len(servers) and len({r["ref"] for r in rules}) == len(rules)
    for one in servers[:4]:
        own = edge_rule(HOST, one, plan)
        for sample in SAMPLES:
            request = {**sample, "path": one.mcp_path}
            assert any(blocked(r, request) for r in rules) == blocked(own, request), (one, sample)


def test_fifty_servers_fit_a_pro_zone_and_one_web_acl():
    servers = [SurfaceServer(f"server-{n:02d}", f"/server-{n:02d}/mcp", BOOKING.surface) for n in range(50)]
    assert len(edge_rules(HOST, servers, "pro")) <= 20 - 2
    rules = origin_rules(servers, travellers=True)
    assert sum("rate_based_statement" in r["statement"] for r in rules) == 4
    assert 902 + 14 * 50 + sum(wcu(r["statement"]) for r in rules) <= 5000


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


def test_the_free_plan_refuses_what_its_five_custom_rules_cannot_hold():
    def mutate(raw):
        raw["domain"]["cloudflare_plan"] = "free"
        raw["edge"]["rate_limit_per_minute"] = 600
        for i in range(6):   # distinct surfaces: no two share a clause, each takes about 3000 characters
            raw["servers"].append({**copy.deepcopy(raw["servers"][1]), "name": f"extra{i}",
                                   "image": raw["servers"][1]["image"].replace("inventory", f"extra{i}"),
                                   "surface": {"tools": [f"t{i}_{j:02d}_" + "x" * 60 for j in range(30)]}})
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
    limits = {t: {"per_traveller_per_minute": 10 + i, "per_ip_per_minute": 100 + i} for i, t in enumerate("abcde")}
    assert_problem(lambda raw: surface(raw, tools=list("abcde"), tool_limits=limits), "servers",
                   "AWS WAF allows 10: give servers and tools the same limits")
    same = {t: {"per_traveller_per_minute": 10, "per_ip_per_minute": 100} for t in "abcde"}
    raw = copy.deepcopy(VALID)
    surface(raw, tools=list("abcde"), tool_limits=same)
    parse_spec(raw)   # five tools with one limit: one rule per caller


def test_request_fields_used_exist():
    assert {"http.request.body.size", "http.request.headers", "http.request.headers.names"} <= REQUEST_FIELDS


def test_the_label_rule_and_grouped_rate_rules_pass_the_provider_types():
    raw = copy.deepcopy(VALID)
    surface(raw, tools=["a", "b"], tool_limits={"a": {"per_traveller_per_minute": 30}})
    spec = parse_spec(raw)
    plan = run_program(lambda: Estate("mcp-estate", spec), config={"mcp-estate:estate": raw})
    acl = plan.of_type("aws:wafv2/webAcl:WebAcl")[0]
    names = [r["name"] for r in acl.inputs["rules"]]
    assert "mcp-own-limit-calls" in names and "mcp-tools-per-ip-600" in names
    label = next(r for r in acl.inputs["rules"] if r["name"] == "mcp-own-limit-calls")
    assert label["ruleLabels"] == [{"name": "mcp-estate:own-limit"}] and label["action"] == {"count": {}}
