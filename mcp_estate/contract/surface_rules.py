"""The MCP surface as edge and origin rules: plain rule documents, built from each server's `surface`.

Cloudflare (custom WAF rules and rate limiting rules, documents as pulumi_cloudflare's `Ruleset`
takes them) and AWS WAF (web ACL rules, as pulumi_aws's `wafv2.WebAcl` takes them). Plain data
in the contract layer, so the spec checks (validate.py) measure what the edge will be given:
rule counts and expression lengths per plan.

Cloudflare keys `http.request.headers` by lowercase name (fields reference); an uppercase key
never matches, so every header name here is lowercase. `http.request.headers.names` keeps the case
the client sent (HTTP/2 sends lowercase, HTTP/1.1 clients often do not): presence is checked on
the lowercased names. Header values are compared exactly: MCP
header values are case-sensitive. `all()` over every value as well as `any()` refuses a request
that repeats a header with one allowed and one refused value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from .mcp_protocol import (
    HEADER_REVISION,
    METHOD_HEADER,
    NAME_HEADER,
    VERSION_HEADER,
    client_methods,
    http_methods,
    legacy,
)
from .surface import Limits, Surface

AUTH_HEADER = "authorization"
CLIENT_IP_HEADER = "CF-Connecting-IP"   # the visitor's address as Cloudflare forwards it
ORIGIN_PRIORITY_BASE = 200              # AWS WAF band of these rules (other bands: 1-199)
ORIGIN_WINDOW = 60                      # seconds: limits are per minute
ORIGIN_MIN_LIMIT = 10                   # AWS WAF's smallest rate-based limit
WAF_REGEX_MAX = 512                     # characters of one AWS WAF regex string


@dataclass(frozen=True)
class SurfaceServer:
    name: str
    mcp_path: str
    surface: Surface


# -- Cloudflare ---------------------------------------------------------------------------------

def _set(values: Iterable[str]) -> str:
    return "{" + " ".join(f'"{v}"' for v in values) + "}"


def _header(name: str) -> str:
    return f'http.request.headers["{name}"][*]'


def _present(name: str) -> str:
    # `headers.names` keeps the case the client sent (HTTP/1.1 `Mcp-Method`), unlike the map's keys:
    # Cloudflare's own recipe for a required header lowercases the names first.
    return f'any(lower(http.request.headers.names[*])[*] eq "{name}")'


def _only(name: str, values: Iterable[str]) -> str:
    """The header is present and every one of its values is in `values`."""
    values = sorted(values)
    return f"(any({_header(name)} in {_set(values)}) and all({_header(name)} in {_set(values)}))"


def _path(path: str) -> str:
    return f'(http.request.uri.path eq "{path}" or starts_with(http.request.uri.path, "{path}/"))'


def greater_than_pattern(limit: int) -> str:
    """An anchored regex matching decimal numbers above `limit` (no backslashes: `[0-9]`)."""
    digits = str(limit)
    longer = f"[1-9][0-9]{{{len(digits)},}}"
    same = [f"{digits[:i]}[{int(d) + 1}-9]" + (f"[0-9]{{{len(digits) - i - 1}}}" if i < len(digits) - 1 else "")
            for i, d in enumerate(digits) if d != "9"]
    return "^0*(" + "|".join([longer, *same]) + ")$"


def body_size_check(plan: str, max_body_kb: int) -> str | None:
    """Enterprise reads the body's size; Business can match the Content-Length header with a regex
    (Business and up); Free and Pro have neither, the origin checks Content-Length (AWS WAF)."""
    limit = max_body_kb * 1024
    if plan == "enterprise":
        return f"http.request.body.size gt {limit}"
    if plan == "business":
        return f'any({_header("content-length")} matches "{greater_than_pattern(limit)}")'
    return None


def refusals(server: SurfaceServer, plan: str) -> list[str]:
    """The conditions, each refusing a request on the server's MCP path."""
    surface = server.surface
    methods, versions = client_methods(surface.protocols), sorted(surface.protocols)
    found = [f"not http.request.method in {_set(http_methods(surface.protocols))}",
             f"({_present(VERSION_HEADER)} and not all({_header(VERSION_HEADER)} in {_set(versions)}))",
             f"({_present(METHOD_HEADER)} and not all({_header(METHOD_HEADER)} in {_set(methods)}))"]
    if not legacy(surface.protocols):   # every client sends the version header on each POST
        found.append(f'(http.request.method eq "POST" and not {_present(VERSION_HEADER)})')
    if HEADER_REVISION in surface.protocols:   # its requests must name their method
        found.append(f'(any({_header(VERSION_HEADER)} eq "{HEADER_REVISION}") and not {_present(METHOD_HEADER)})')
    if surface.tools is not None:
        found.append(f'(any({_header(METHOD_HEADER)} eq "tools/call") and not {_only(NAME_HEADER, surface.tools)})')
    body = body_size_check(plan, surface.max_body_kb)
    return found + ([body] if body else [])


def edge_rule(hostname: str, server: SurfaceServer, plan: str) -> dict:
    expression = (f'(http.host eq "{hostname}" and {_path(server.mcp_path)} and ('
                  + " or ".join(refusals(server, plan)) + "))")
    return {"ref": f"mcp_surface_{_slug(server.name)}", "action": "block", "enabled": True,
            "description": f"{server.name}: only its MCP revisions, methods and approved tools",
            "expression": expression}


def edge_rules(hostname: str, servers: Iterable[SurfaceServer], plan: str) -> list[dict]:
    return [edge_rule(hostname, s, plan) for s in sorted(servers, key=lambda s: s.name)]


def edge_ratelimits(hostname: str, servers: Iterable[SurfaceServer], plan: str, advanced: bool,
                    period: int, mitigation_timeout: int) -> list[dict]:
    """Per-tool and per-method limits the plan can express (README: what each plan enforces).

    Enterprise with Advanced Rate Limiting counts per caller (IP, and the bearer token) and per
    method and name, as characteristics; Enterprise alone counts per IP only, so each tool with
    its own limit gets a rule; below Enterprise a rate limiting rule cannot read request headers,
    and the origin (AWS WAF) enforces the per-tool limits alone.
    """
    if plan != "enterprise":
        return []
    rules = []
    for server in sorted(servers, key=lambda s: s.name):
        where = f'http.host eq "{hostname}" and {_path(server.mcp_path)}'
        own = sorted(server.surface.tool_limits)
        callers = (("ip", "ip.src"), ("traveller", f'http.request.headers["{AUTH_HEADER}"]')) if advanced \
            else (("ip", "ip.src"),)
        for caller, key in callers:
            if advanced:
                rest = f' and not (any({_header(METHOD_HEADER)} eq "tools/call") and ' \
                       f'any({_header(NAME_HEADER)} in {_set(own)}))' if own else ""
                rules.append(_ratelimit(f"mcp_{caller}_{_slug(server.name)}", f"({where}{rest})",
                                        [key, f'http.request.headers["{METHOD_HEADER}"]',
                                         f'http.request.headers["{NAME_HEADER}"]'],
                                        _per(server.surface.limits, caller), period, mitigation_timeout,
                                        f"{server.name}: each method and name per {caller}"))
            for tool in own:
                expression = (f'({where} and any({_header(METHOD_HEADER)} eq "tools/call") and '
                              f'any({_header(NAME_HEADER)} eq "{tool}"))')
                rules.append(_ratelimit(f"mcp_{caller}_{_slug(server.name)}_{_slug(tool)}", expression, [key],
                                        _per(server.surface.tool_limits[tool], caller), period,
                                        mitigation_timeout, f"{server.name}: {tool} per {caller}"))
    return rules


def _per(limits: Limits, caller: str) -> int:
    return limits.per_ip_per_minute if caller == "ip" else limits.per_traveller_per_minute


def _ratelimit(ref: str, expression: str, keys: list[str], per_minute: int, period: int, timeout: int,
               description: str) -> dict:
    # cf.colo.id is required by the API: counters are kept per Cloudflare data center.
    return {"ref": ref, "action": "block", "enabled": True, "description": description,
            "expression": expression,
            "ratelimit": {"characteristics": ["cf.colo.id", *keys], "period": period,
                          "requests_per_period": per_minute * period // 60, "mitigation_timeout": timeout}}


def _slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", value).strip("_").lower()


# -- AWS WAF (the origin) -----------------------------------------------------------------------

def _text(field: dict) -> dict:
    return {"field_to_match": field, "text_transformations": [{"priority": 0, "type": "NONE"}]}


def _waf_header_is(name: str, value: str) -> dict:
    return {"byte_match_statement": {"search_string": value, "positional_constraint": "EXACTLY",
                                     **_text({"single_header": {"name": name}})}}


def _waf_regex(field: dict, pattern: str) -> dict:
    return {"regex_match_statement": {"regex_string": pattern, **_text(field)}}


def _waf_one_of(name: str, values: Iterable[str]) -> list[dict]:
    """Header value is one of `values`: anchored regexes of at most 512 characters (OR of them)."""
    chunks: list[list[str]] = [[]]
    for value in sorted(values):
        if len("^(?:" + "|".join(chunks[-1] + [re.escape(value)]) + ")$") > WAF_REGEX_MAX:
            chunks.append([])
        chunks[-1].append(re.escape(value))
    return [_waf_regex({"single_header": {"name": name}}, "^(?:" + "|".join(c) + ")$") for c in chunks]


def _waf_path(path: str) -> dict:
    return _waf_regex({"uri_path": {}}, f"^{re.escape(path)}(?:/.*)?$")


def _waf_not(statement: dict) -> dict:
    return {"not_statement": {"statement": statement}}


def _waf_and(statements: list[dict]) -> dict:
    return {"and_statement": {"statements": statements}} if len(statements) > 1 else statements[0]


def _visibility(name: str) -> dict:
    return {"cloudwatch_metrics_enabled": True, "metric_name": name, "sampled_requests_enabled": True}


def _waf_block(name: str, statement: dict) -> dict:
    return {"name": name, "action": {"block": {}}, "statement": statement, "visibility_config": _visibility(name)}


def origin_server_rules(server: SurfaceServer, travellers: bool) -> list[dict]:
    """One server's rules, without priorities. NOT(a or b) is written AND(NOT a, NOT b): the provider
    takes three levels of nested statements."""
    surface, path = server.surface, _waf_path(server.mcp_path)
    present = {"size_constraint_statement": {"comparison_operator": "GT", "size": 0,
                                             **_text({"single_header": {"name": METHOD_HEADER}})}}
    rules = [_waf_block(f"mcp-{server.name}-methods", _waf_and(
        [path, present, *map(_waf_not, _waf_one_of(METHOD_HEADER, client_methods(surface.protocols)))]))]
    if surface.tools is not None:
        rules.append(_waf_block(f"mcp-{server.name}-tools", _waf_and(
            [path, _waf_header_is(METHOD_HEADER, "tools/call"),
             *map(_waf_not, _waf_one_of(NAME_HEADER, surface.tools))])))
    own = sorted(surface.tool_limits)
    callers = ("ip", "traveller") if travellers else ("ip",)
    for caller in callers:
        rest = [_waf_not(s) for s in _waf_one_of(NAME_HEADER, own)] if own else []
        rules.append(_waf_rate(f"mcp-{server.name}-per-{caller}", caller, [NAME_HEADER],
                               _per(surface.limits, caller), _waf_and([path, *rest])))
        for tool in own:
            scope = _waf_and([path, _waf_header_is(METHOD_HEADER, "tools/call"), _waf_header_is(NAME_HEADER, tool)])
            rules.append(_waf_rate(f"mcp-{server.name}-{_slug(tool).replace('_', '-')}-per-{caller}", caller, [],
                                   _per(surface.tool_limits[tool], caller), scope))
    return rules


def _waf_rate(name: str, caller: str, headers: list[str], per_minute: int, scope: dict) -> dict:
    # A forwarded-IP key needs another key beside it (API: RateBasedStatementCustomKey): the
    # name, or for one tool's own rule, the HTTP method (always POST there).
    who = {"forwarded_ip": {}} if caller == "ip" else \
        {"header": {"name": AUTH_HEADER, "text_transformations": [{"priority": 0, "type": "NONE"}]}}
    keys = [who, *({"header": {"name": h, "text_transformations": [{"priority": 0, "type": "NONE"}]}}
                   for h in headers)]
    if len(keys) == 1 and caller == "ip":
        keys.append({"http_method": {}})
    statement = {"limit": per_minute * ORIGIN_WINDOW // 60, "evaluation_window_sec": ORIGIN_WINDOW,
                 "aggregate_key_type": "CUSTOM_KEYS", "custom_keys": keys, "scope_down_statement": scope}
    if caller == "ip":
        statement["forwarded_ip_config"] = {"header_name": CLIENT_IP_HEADER, "fallback_behavior": "MATCH"}
    return {"name": name, "action": {"block": {}}, "statement": {"rate_based_statement": statement},
            "visibility_config": _visibility(name)}


def origin_rules(servers: Iterable[SurfaceServer], travellers: bool) -> list[dict]:
    """Every server's rules, numbered from ORIGIN_PRIORITY_BASE in server-name order."""
    rules = [r for s in sorted(servers, key=lambda s: s.name) for r in origin_server_rules(s, travellers)]
    return [{**rule, "priority": ORIGIN_PRIORITY_BASE + i} for i, rule in enumerate(rules)]


# AWS WAF capacity (WCU pages of the developer guide): estimates, to refuse a web ACL AWS would
# refuse (WAF_WCU_MAX) before `pulumi up` does.
_WCU = {"byte_match_statement": 2, "regex_match_statement": 3, "size_constraint_statement": 1}
RATE_BASED_WCU, CUSTOM_KEY_WCU = 2, 30
# The web ACL's other rules (components/region_compute.py): Common 700, Known bad inputs 200, the IP rate rule.
BASE_ORIGIN_WCU = 700 + 200 + RATE_BASED_WCU


def wcu(statement: dict) -> int:
    (kind, body), = statement.items()
    if kind in _WCU:
        return _WCU[kind]
    if kind == "rate_based_statement":
        return RATE_BASED_WCU + CUSTOM_KEY_WCU * len(body.get("custom_keys", [])) + wcu(body["scope_down_statement"])
    if kind == "not_statement":
        return wcu(body["statement"])
    return sum(wcu(s) for s in body["statements"])   # and / or
