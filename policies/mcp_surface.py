"""The MCP surface: a server's approved tools are refused at the edge and the origin alike, and every
MCP path is rate limited at both.

A tools allowlist at one layer only is one misconfiguration away from none: the Cloudflare rule is
skipped by a request reaching the ALB another way (it cannot: the security group admits Cloudflare
only, but a second zone or a Worker can); the AWS WAF rule alone lets abuse cross the edge.

The edge's rules are not judged by their shape: a rule that reads the right headers and blocks can
still exempt a client (`and not ip.src in {...}`), match less, or leave a clause out. The pack config
carries the expressions the spec generates (mcp_estate/contract/surface_rules.py, through
`estate pack-config`), and each must be in the zone's rules as generated: the set of expressions is
compared, so the check holds however many servers one rule covers. The origin's AWS WAF rules are
compared the same way (by name: action, statement and labels as generated), and a web ACL rule that
allows is refused: it would end evaluation before the MCP rules for whatever it matches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import StackValidationArgs

from .control import Report, Risk, as_list, as_mapping, stack_policy
from .edge_delegation import CF_POOL, DELEGATION_CONFIG, ZONE, delegated, has_zone_rulesets

CF_RULESET = "cloudflare:index/ruleset:Ruleset"
WEB_ACL = "aws:wafv2/webAcl:WebAcl"
CF_LOAD_BALANCER = "cloudflare:index/loadBalancer:LoadBalancer"
LISTENER_RULES = ("aws:lb/listenerRule:ListenerRule", "aws:alb/listenerRule:ListenerRule")
NAME_HEADER = "mcp-name"
_CF_PATH = re.compile(r'http\.request\.uri\.path eq "([^"]+)"')


def _cf_rules(resources: list, phase: str) -> list[tuple[Any, Mapping]]:
    return [(rs, as_mapping(rule)) for rs in resources if rs.resource_type == CF_RULESET
            and rs.props.get("phase") == phase for rule in as_list(rs.props.get("rules"))]


def _plain(value: Any) -> Any:
    """Props arrive as read-checking proxies: plain dicts and lists, to search their text."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


def _waf_text(rule: Mapping) -> str:
    return str(_plain(rule.get("statement"))).lower()


def _mcp_paths(resources: list) -> set[str]:
    """The MCP endpoints the ALBs route to a server: path patterns ending in /mcp of rules that forward
    (a fixed response, such as the token metadata at /.well-known/.../mcp, reaches no server)."""
    found = set()
    for rule in resources:
        forwards = any(as_mapping(a).get("type") == "forward" for a in as_list(rule.props.get("actions")))
        if rule.resource_type in LISTENER_RULES and forwards:
            for condition in map(as_mapping, as_list(rule.props.get("conditions"))):
                found |= {v for v in as_list(as_mapping(condition.get("pathPattern")).get("values"))
                          if isinstance(v, str) and v.endswith("/mcp")}
    return found


SURFACE_CONFIG = {
    "edgeRules": {"type": "array", "items": {"type": "string"},
                  "description": "The expressions of the Cloudflare custom rules the spec's surfaces generate "
                                 "(mcp_estate/contract/surface_rules.py, written by `estate pack-config`)"},
    "edgeRatelimits": {"type": "array", "items": {"type": "object", "required": ["expression", "ratelimit"]},
                       "description": "The Cloudflare rate limiting rules the spec's surfaces generate"},
    "allowlistPaths": {"type": "array", "items": {"type": "string"},
                       "description": "MCP paths of servers with a tools allowlist (surface.tools)"},
    "originRules": {"type": "array", "items": {"type": "object", "required": ["name", "action", "statement"]},
                    "description": "The AWS WAF rules the spec's surfaces generate for every web ACL "
                                   "(name, action, statement; priorities and metrics aside)"},
    **DELEGATION_CONFIG,
}
MISSING_ORIGIN_CONFIG = ("The pack config gives no originRules for mcp-surface-enforced-at-edge-and-origin, so "
                         "whether the web ACL's MCP rules are the ones the spec generates cannot be judged: pass "
                         "the config `estate pack-config --stack <stack> --write` generates")
MISSING_CONFIG = ("The pack config gives no edgeRules for mcp-surface-enforced-at-edge-and-origin, so whether the "
                  "edge's MCP surface rules are the ones the spec generates cannot be judged: pass the config "
                  "`estate pack-config --stack <stack> --write` generates (policies/config/<environment>.json)")


@stack_policy(
    "mcp-surface-enforced-at-edge-and-origin",
    "Every Cloudflare custom rule and rate limiting rule the spec's server surfaces generate (pack config "
    "`edgeRules`, `edgeRatelimits`) is in the zone's entrypoint ruleset, enabled, blocking, with the very "
    "expression generated (whitespace, redundant outer parentheses and the C-like spelling of operators aside) "
    "and, for a rate limit, the same counting; every AWS WAF rule they generate (`originRules`) is in every web "
    "ACL with the very action and statement generated, and no web ACL rule allows (an allow is terminating); "
    "every server with a tools allowlist has a blocking AWS WAF rule for its path on every web ACL; "
    "every MCP path has a blocking rate limit at the edge and a blocking "
    "AWS WAF rate-based rule. Reads outputs (listener rules' target group ARNs): on a first preview it cannot "
    "run, so `estate check` in every pull request is the gate",
    risks=[Risk.PROMPT_INJECTION, Risk.SAMPLING_ABUSE, Risk.AVAILABILITY],
    remediation="Keep the rules mcp_estate/contract/surface_rules.py builds (components/edge.py, "
                "components/region_compute.py) as they are; change a server's `surface` in the spec and "
                "regenerate the pack config (`estate pack-config --stack <stack> --write`) instead.",
    config=SURFACE_CONFIG)
def mcp_surface_enforced_at_edge_and_origin(args: StackValidationArgs, report: Report) -> None:
    resources, config = list(args.resources), args.get_config()
    acls = [r for r in resources if r.resource_type == WEB_ACL]
    custom = _zone_rules(resources, "http_request_firewall_custom")
    # A stack without an edge (a foundation stage) has no Cloudflare rules to judge; one whose load balancer
    # or pools lost their rulesets is judged, and every generated rule is missing, unless the spec delegates
    # the zone (pack config `delegatedEdge`): its rules are then the zone owner's to hold, and their absence
    # here is reported by edge-controls-judged-in-this-stack (advisory). A stack holding any zone entry point
    # is judged in full, as cloudflare-edge-protections-enforced judges it.
    built = any(r.resource_type in (CF_LOAD_BALANCER, CF_POOL) for r in resources)
    edge = bool(custom) or (built and (ZONE not in delegated(config) or has_zone_rulesets(resources)))
    if not isinstance(config.get("edgeRules"), Sequence):
        if custom:
            report(MISSING_CONFIG, custom[0][0].urn)
    elif edge:
        for expression in config["edgeRules"]:
            _generated_rule_enforced(str(expression), custom, report)
        for expected in map(as_mapping, as_list(config.get("edgeRatelimits"))):
            _generated_limit_enforced(expected, _zone_rules(resources, "http_ratelimit"), report)
    for acl in acls:
        _origin_rules_enforced(acl, config, report)
        for path in sorted(set(as_list(config.get("allowlistPaths")))):
            if not _origin_allowlist(acl, path):
                report(f"Web ACL {acl.name} has no blocking rule on {path} comparing the {NAME_HEADER} header: the "
                       "edge refuses unapproved tools but the origin would run them; add the server's origin "
                       "rules", acl.urn)
    _rate_limited(resources, acls, report)


# -- the edge's rules, compared with the ones the spec generates ------------------------------------

def _zone_rules(resources: list, phase: str) -> list[tuple[Any, Mapping]]:
    """(ruleset, rule) of a phase's zone entrypoints on the estate's zones (its load balancers' zones;
    any zone when the stack has no load balancer): a `custom` ruleset of the phase runs only when an
    entrypoint executes it, and another zone's rules guard another hostname."""
    zones = {lb.props.get("zoneId") for lb in resources if lb.resource_type == CF_LOAD_BALANCER}
    return [(rs, rule) for rs, rule in _cf_rules(resources, phase)
            if rs.props.get("kind") == "zone" and (not zones or rs.props.get("zoneId") in zones)]


def _enforcing(rule: Mapping) -> bool:
    return rule.get("enabled") is not False and rule.get("action") == "block"


def _label(ruleset: Any, rule: Mapping) -> str:
    return f"{rule.get('ref') or rule.get('description') or rule.get('id')!r} of {ruleset.name}"


def _generated_rule_enforced(expression: str, rules: list[tuple[Any, Mapping]], report: Report) -> None:
    wanted = normalised(expression)
    same = [(rs, rule) for rs, rule in rules if normalised(str(rule.get("expression") or "")) == wanted]
    if any(_enforcing(rule) for _, rule in same):
        return
    head = f"The Cloudflare custom rule the spec generates for {_paths(expression)}"
    if same:
        rs, rule = same[0]
        report(f"{head} is there as {_label(rs, rule)}, but {_weakness(rule)}: it refuses nothing; set it "
               "enabled with action 'block'", rs.urn)
        return
    near = [_label(rs, rule) for rs, rule in rules if NAME_HEADER in str(rule.get("expression")).lower()
            or set(_CF_PATH.findall(str(rule.get("expression")))) & set(_CF_PATH.findall(expression))]
    report(f"{head} is not in the zone's custom rules"
           + (f"; rule {', '.join(near)} reads the same path or header but its expression differs from the "
              "generated one (an exemption, an `or`, a clause left out, or a split the pack cannot judge)"
              if near else "") + ": restore the rule mcp_estate/contract/surface_rules.py generates",
           rules[0][0].urn if rules else None)


def _generated_limit_enforced(expected: Mapping, rules: list[tuple[Any, Mapping]], report: Report) -> None:
    expression = str(expected.get("expression") or "")
    same = [(rs, rule) for rs, rule in rules if normalised(str(rule.get("expression") or "")) == normalised(expression)]
    wanted = _counting(as_mapping(expected.get("ratelimit")))
    if any(_enforcing(rule) and _counting(as_mapping(rule.get("ratelimit"))) == wanted for _, rule in same):
        return
    head = f"The Cloudflare rate limit the spec generates for {_paths(expression)} ({_counted(wanted)})"
    if same:
        rs, rule = same[0]
        found = _counting(as_mapping(rule.get("ratelimit")))
        why = _weakness(rule) if not _enforcing(rule) else f"it counts {_counted(found)}"
        report(f"{head} is there as {_label(rs, rule)}, but {why}: restore the generated rule", rs.urn)
        return
    report(f"{head} is not in the zone's rate limiting rules with its generated expression: restore the rule "
           "mcp_estate/contract/surface_rules.py generates", rules[0][0].urn if rules else None)


def _weakness(rule: Mapping) -> str:
    found = ["it is disabled"] if rule.get("enabled") is False else []
    if rule.get("action") != "block":
        found.append(f"its action is {rule.get('action')!r}, not 'block'")
    return " and ".join(found)


def _counting(ratelimit: Mapping) -> tuple:
    """What a rate limit counts, and how much: characteristics as a set (their order means nothing)."""
    def number(key: str) -> float | None:
        value = ratelimit.get(key)
        return float(value) if isinstance(value, (int, float)) else None
    return (tuple(sorted(map(str, as_list(ratelimit.get("characteristics"))))), number("period"),
            number("requestsPerPeriod"), number("mitigationTimeout"))


def _counted(counting: tuple) -> str:
    keys, period, requests, timeout = counting
    return f"{requests} requests per {period} s by {', '.join(keys) or 'nothing'}, blocking for {timeout} s"


def _paths(expression: str) -> str:
    return ", ".join(sorted(set(_CF_PATH.findall(expression)))) or "the estate"


# -- expressions, compared as the Rules language reads them ---------------------------------------
# The comparison is of tokens, not of meaning: whitespace between tokens, parentheses around the whole
# expression and the C-like spelling of an operator (`&&` for `and`: both notations are the Rules
# language's, developers.cloudflare.com/ruleset-engine/rules-language/operators/) change nothing, so they
# pass. Case is kept: string comparisons and header keys are case-sensitive, and a keyword spelled in
# another case is one the pack cannot vouch for. Anything else (another order of set values, a split rule)
# is refused: it may mean the same, but proving that is a solver's job, and the pack refuses what it
# cannot judge.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|&&|\|\||\^\^|==|!=|<=|>=|[A-Za-z0-9_.:/\-]+|\S')
_C_LIKE = {"&&": "and", "||": "or", "^^": "xor", "!": "not", "==": "eq", "!=": "ne", "<": "lt", "<=": "le",
           ">": "gt", ">=": "ge", "~": "matches"}


def normalised(expression: str) -> tuple[str, ...]:
    tokens = [_C_LIKE.get(t, t) for t in _TOKEN.findall(expression)]
    while tokens and tokens[0] == "(" and _closing(tokens) == len(tokens) - 1:
        tokens = tokens[1:-1]
    return tuple(tokens)


def _closing(tokens: list[str]) -> int:
    """The index of the parenthesis closing the first token's."""
    depth = 0
    for i, token in enumerate(tokens):
        depth += token == "("
        depth -= token == ")"
        if depth == 0:
            return i
    return -1


def _origin_rules_enforced(acl: Any, config: Mapping, report: Report) -> None:
    """Each generated origin rule is in the web ACL as generated, and no rule allows: an `allow` is
    terminating, so one placed before the MCP rules (a client exempted by IP, a path) skips them."""
    rules = [as_mapping(r) for r in as_list(acl.props.get("rules"))]
    for rule in rules:
        if "allow" in as_mapping(rule.get("action")):
            report(f"Web ACL {acl.name} rule {rule.get('name')} allows: every rule after it is skipped for the "
                   "requests it matches (the MCP rules among them); remove it", acl.urn)
    expected = config.get("originRules")
    if not isinstance(expected, Sequence):
        report(MISSING_ORIGIN_CONFIG, acl.urn)
        return
    present = {r.get("name"): r for r in rules}
    for wanted in map(as_mapping, expected):
        rule = as_mapping(present.get(wanted.get("name")))
        changed = [key for key in ("action", "statement", "ruleLabels")
                   if _plain(rule.get(key)) != _plain(wanted.get(key))]
        if changed:
            report(f"Web ACL {acl.name} rule {wanted.get('name')} is "
                   + (f"not as the spec generates it ({', '.join(changed)} differ)" if rule else "missing")
                   + ": keep the rules region_compute.py builds; change the server's `surface` instead", acl.urn)


def _origin_allowlist(acl: Any, path: str) -> bool:
    escaped = re.escape(path).lower()
    return any("block" in as_mapping(r.get("action")) and NAME_HEADER in _waf_text(r)
               and "tools/call" in _waf_text(r) and "ratebasedstatement" not in _waf_text(r).replace("_", "")
               and escaped in _waf_text(r).replace("\\\\", "\\")
               for r in map(as_mapping, as_list(acl.props.get("rules"))))


def _rate_limited(resources: list, acls: list, report: Report) -> None:
    limits = [rule for _, rule in _cf_rules(resources, "http_ratelimit")
              if rule.get("enabled") is not False and rule.get("action") == "block"]
    for path in sorted(_mcp_paths(resources)):
        if limits and not any(f'"{path}"' in str(r.get("expression")) for r in limits):
            report(f"No enabled blocking Cloudflare rate limit covers {path}: a flood reaches the origin "
                   "unthrottled; restore the Edge's rate limiting rules")
        escaped = re.escape(path).lower()
        for acl in acls:
            if not any(_rate_on(rule, escaped) for rule in map(as_mapping, as_list(acl.props.get("rules")))):
                report(f"Web ACL {acl.name} has no blocking rate-based rule on {path}: add the server's "
                       "per-caller rate rules", acl.urn)


def _rate_on(rule: Mapping, escaped_path: str) -> bool:
    statement = as_mapping(as_mapping(rule.get("statement")).get("rateBasedStatement"))
    return bool(statement) and "block" in as_mapping(rule.get("action")) and (
        "scopeDownStatement" not in statement   # an ACL-wide rate rule covers every path
        or escaped_path in str(_plain(statement.get("scopeDownStatement"))).lower().replace("\\\\", "\\"))


