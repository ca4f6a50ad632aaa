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
from typing import TYPE_CHECKING, Iterable, NamedTuple

from .cloudflare_plan import ALLOWANCES, EXPRESSION_MAX_CHARS
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

if TYPE_CHECKING:   # the spec's module builds on this one's models, not the other way round
    from .spec import EstateSpec

AUTH_HEADER = "authorization"
CLIENT_IP_HEADER = "CF-Connecting-IP"   # the visitor's address as Cloudflare forwards it
ORIGIN_PRIORITY_BASE = 200              # AWS WAF band of these rules (other bands: 1-199)
ORIGIN_WINDOW = 60                      # seconds: limits are per minute
ORIGIN_MIN_LIMIT = 10                   # AWS WAF's smallest rate-based limit
WAF_REGEX_MAX = 512                     # characters of one AWS WAF regex string
OWN_LIMIT_LABEL = "mcp-estate:own-limit"  # on calls of tools with their own limits (origin_rules)


@dataclass(frozen=True)
class SurfaceServer:
    name: str
    mcp_path: str
    surface: Surface


def surface_servers(spec: EstateSpec) -> list[SurfaceServer]:
    return [SurfaceServer(s.name, s.mcp_path, s.surface) for s in spec.servers]


class EdgeSurface(NamedTuple):
    rules: list[dict]         # WAF custom rules (Cloudflare `http_request_firewall_custom`)
    ratelimits: list[dict]    # rate limiting rules (`http_ratelimit`)


def edge_surface(spec: EstateSpec) -> EdgeSurface:
    """The edge's share of each server's MCP surface, as the zone's plan can express it: what the
    Edge is given (components/estate.py), what the spec checks measure (validate.py) and what the
    pack config tells the policy to expect (checking/pack_config.py), from one call."""
    plan, hostname, servers = spec.domain.cloudflare_plan, spec.domain.hostname, surface_servers(spec)
    allowance, advanced = ALLOWANCES[plan], spec.edge.advanced_rate_limiting and plan == "enterprise"
    return EdgeSurface(edge_rules(hostname, servers, plan),
                       edge_ratelimits(hostname, servers, plan, advanced, allowance.ratelimit_period,
                                       allowance.mitigation_timeout))


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


def _clause(paths: list[str], refused: list[str]) -> str:
    where = _path(paths[0]) if len(paths) == 1 else "(" + " or ".join(map(_path, paths)) + ")"
    return f"{where} and (" + " or ".join(refused) + ")"


def _expression(hostname: str, clauses: list[str]) -> str:
    """One clause keeps the one-server form; several are OR'd inside the host condition, so no `or`
    stands outside the host and path (the MCP-surface control refuses such a rule)."""
    inner = clauses[0] if len(clauses) == 1 else "(" + " or ".join(f"({c})" for c in clauses) + ")"
    return f'(http.host eq "{hostname}" and {inner})'


def _surface_rule(hostname: str, names: list[str], clauses: list[str]) -> dict:
    ref = f"mcp_surface_{_slug(names[0])}" + (f"_and_{len(names) - 1}_more" if len(names) > 1 else "")
    whose = f"{names[0]}: only its" if len(names) == 1 else f"{', '.join(names)}: only their"
    return {"ref": ref, "action": "block", "enabled": True,
            "description": f"{whose} MCP revisions, methods and approved tools"[:500],
            "expression": _expression(hostname, clauses)}


def edge_rule(hostname: str, server: SurfaceServer, plan: str) -> dict:
    return _surface_rule(hostname, [server.name], [_clause([server.mcp_path], refusals(server, plan))])


def edge_rules(hostname: str, servers: Iterable[SurfaceServer], plan: str) -> list[dict]:
    """As few custom rules as Cloudflare's 4096-character expressions allow: servers with the same
    refusals share one clause (their paths OR'd), clauses are packed in server-name order. A request
    matches one server's path, so it is judged by that server's refusals alone, as with a rule each."""
    same: dict[tuple[str, ...], list[SurfaceServer]] = {}
    for server in sorted(servers, key=lambda s: s.name):
        same.setdefault(tuple(refusals(server, plan)), []).append(server)
    rules, names, clauses = [], [], []
    for refused, group in same.items():
        for members in _fitting(hostname, group, list(refused)):
            clause = _clause([s.mcp_path for s in members], list(refused))
            if clauses and len(_expression(hostname, [*clauses, clause])) > EXPRESSION_MAX_CHARS:
                rules.append(_surface_rule(hostname, names, clauses))
                names, clauses = [], []
            names += [s.name for s in members]
            clauses.append(clause)
    return rules + ([_surface_rule(hostname, names, clauses)] if clauses else [])


def _fitting(hostname: str, group: list[SurfaceServer], refused: list[str]) -> list[list[SurfaceServer]]:
    """The servers of one clause, split where their paths would take it over the expression limit
    (a server alone over it stays alone: the spec check names it)."""
    parts: list[list[SurfaceServer]] = [[]]
    for server in group:
        paths = [s.mcp_path for s in parts[-1] + [server]]
        if parts[-1] and len(_expression(hostname, [_clause(paths, refused)])) > EXPRESSION_MAX_CHARS:
            parts.append([])
        parts[-1].append(server)
    return parts


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


def origin_server_rules(server: SurfaceServer) -> list[dict]:
    """One server's blocking rules, without priorities. NOT(a or b) is written AND(NOT a, NOT b): the
    provider takes three levels of nested statements."""
    surface, path = server.surface, _waf_path(server.mcp_path)
    present = {"size_constraint_statement": {"comparison_operator": "GT", "size": 0,
                                             **_text({"single_header": {"name": METHOD_HEADER}})}}
    rules = [_waf_block(f"mcp-{server.name}-methods", _waf_and(
        [path, present, *map(_waf_not, _waf_one_of(METHOD_HEADER, client_methods(surface.protocols)))]))]
    if surface.tools is not None:
        rules.append(_waf_block(f"mcp-{server.name}-tools", _waf_and(
            [path, _waf_header_is(METHOD_HEADER, "tools/call"),
             *map(_waf_not, _waf_one_of(NAME_HEADER, surface.tools))])))
    return rules


def _waf_or(statements: list[dict]) -> dict:
    return {"or_statement": {"statements": statements}} if len(statements) > 1 else statements[0]


def _waf_paths(paths: Iterable[str]) -> dict:
    """Any of `paths` or below them: anchored alternations of at most 512 characters (OR of them)."""
    chunks: list[list[str]] = [[]]
    for path in sorted(paths):
        if chunks[-1] and len(_paths_regex(chunks[-1] + [path])) > WAF_REGEX_MAX:
            chunks.append([])
        chunks[-1].append(path)
    return _waf_or([_waf_regex({"uri_path": {}}, _paths_regex(c)) for c in chunks])


def _paths_regex(paths: list[str]) -> str:
    return _waf_path(paths[0])["regex_match_statement"]["regex_string"] if len(paths) == 1 else \
        "^(?:" + "|".join(map(re.escape, paths)) + ")(?:/.*)?$"


def _calls(tools_by_path: dict[str, list[str]]) -> dict:
    """tools/call of one of a path's tools, for each path: OR of AND(path, tools/call, name), one
    AND per 512-character name regex (two levels: it fits under a scope-down statement)."""
    return _waf_or([_waf_and([_waf_path(path), _waf_header_is(METHOD_HEADER, "tools/call"), names])
                    for path, tools in sorted(tools_by_path.items()) for names in _waf_one_of(NAME_HEADER, tools)])


def own_limit_rule(servers: Iterable[SurfaceServer]) -> dict | None:
    """Counts (labels) calls of tools with their own limits, which the server-wide counters leave
    to the tool's own rule. A label, not the condition itself: NOT(OR(AND(...))) under a scope-down
    would nest four levels, the provider takes three."""
    own = {s.mcp_path: sorted(s.surface.tool_limits) for s in servers if s.surface.tool_limits}
    if not own:
        return None
    return {"name": "mcp-own-limit-calls", "action": {"count": {}}, "rule_labels": [{"name": OWN_LIMIT_LABEL}],
            "statement": _calls(own), "visibility_config": _visibility("mcp-own-limit-calls")}


def origin_rate_rules(servers: Iterable[SurfaceServer], travellers: bool) -> list[dict]:
    """One rate-based rule per caller and distinct limit, not per server (AWS WAF allows 10 a web
    ACL): its keys (caller, URI path, Mcp-Name) count each server and each tool apart, as one rule
    per server did; its scope-down is the paths (or the tool calls) that share the limit."""
    servers = sorted(servers, key=lambda s: s.name)
    rules = []
    for caller in ("ip", "traveller") if travellers else ("ip",):
        wide: dict[int, list[SurfaceServer]] = {}
        for server in servers:
            wide.setdefault(_per(server.surface.limits, caller), []).append(server)
        for limit, group in sorted(wide.items()):
            scope = _waf_paths(s.mcp_path for s in group)
            if any(s.surface.tool_limits for s in group):
                scope = _waf_and([scope, _waf_not(_label_is(OWN_LIMIT_LABEL))])
            rules.append(_waf_rate(f"mcp-per-{caller}-{limit}", caller, limit, scope))
        tools: dict[int, dict[str, list[str]]] = {}
        for server in servers:
            for tool, limits in server.surface.tool_limits.items():
                tools.setdefault(_per(limits, caller), {}).setdefault(server.mcp_path, []).append(tool)
        for limit, by_path in sorted(tools.items()):
            rules.append(_waf_rate(f"mcp-tools-per-{caller}-{limit}", caller, limit, _calls(by_path)))
    return rules


def _label_is(label: str) -> dict:
    return {"label_match_statement": {"scope": "LABEL", "key": label}}


def _waf_rate(name: str, caller: str, per_minute: int, scope: dict) -> dict:
    # Requests missing a key are not counted (API: RateBasedStatementCustomKey); the path and the
    # name keep the counters per server and per tool (the path key is the path as sent: see README).
    none = [{"priority": 0, "type": "NONE"}]
    who = {"forwarded_ip": {}} if caller == "ip" else {"header": {"name": AUTH_HEADER, "text_transformations": none}}
    keys = [who, {"uri_path": {"text_transformations": none}},
            {"header": {"name": NAME_HEADER, "text_transformations": none}}]
    statement = {"limit": per_minute * ORIGIN_WINDOW // 60, "evaluation_window_sec": ORIGIN_WINDOW,
                 "aggregate_key_type": "CUSTOM_KEYS", "custom_keys": keys, "scope_down_statement": scope}
    if caller == "ip":
        statement["forwarded_ip_config"] = {"header_name": CLIENT_IP_HEADER, "fallback_behavior": "MATCH"}
    return {"name": name, "action": {"block": {}}, "statement": {"rate_based_statement": statement},
            "visibility_config": _visibility(name)}


def origin_rules(servers: Iterable[SurfaceServer], travellers: bool) -> list[dict]:
    """Every server's blocking rules in server-name order, the own-limit label, then the rate rules
    (a label is seen only by rules after the one adding it), numbered from ORIGIN_PRIORITY_BASE."""
    servers = sorted(servers, key=lambda s: s.name)
    label = own_limit_rule(servers)
    rules = [r for s in servers for r in origin_server_rules(s)] + ([label] if label else []) \
        + origin_rate_rules(servers, travellers)
    return [{**rule, "priority": ORIGIN_PRIORITY_BASE + i} for i, rule in enumerate(rules)]


# AWS WAF capacity (WCU pages of the developer guide): estimates, to refuse a web ACL AWS would
# refuse (WAF_WCU_MAX) before `pulumi up` does.
_WCU = {"byte_match_statement": 2, "regex_match_statement": 3, "size_constraint_statement": 1,
        "label_match_statement": 1}
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
