"""The MCP surface: a server's approved tools are refused at the edge and the origin alike, and every
MCP path is rate limited at both.

A tools allowlist at one layer only is one misconfiguration away from none: the Cloudflare rule is
skipped by a request reaching the ALB another way (it cannot: the security group admits Cloudflare
only, but a second zone or a Worker can); the AWS WAF rule alone lets abuse cross the edge. Rules
are recognised by the headers and paths they read, not by names, so a renamed copy is judged too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import StackValidationArgs

from .control import Report, Risk, as_list, as_mapping, stack_policy

CF_RULESET = "cloudflare:index/ruleset:Ruleset"
WEB_ACL = "aws:wafv2/webAcl:WebAcl"
LISTENER_RULES = ("aws:lb/listenerRule:ListenerRule", "aws:alb/listenerRule:ListenerRule")
NAME_HEADER = "mcp-name"
_CF_KEY = re.compile(r'headers(?:\.names\[\*\] eq |\[)"([^"]+)"', re.IGNORECASE)
_CF_PATH = re.compile(r'http\.request\.uri\.path eq "([^"]+)"')


def _cf_rules(resources: list, phase: str) -> list[tuple[Any, Mapping]]:
    return [(rs, as_mapping(rule)) for rs in resources if rs.resource_type == CF_RULESET
            and rs.props.get("phase") == phase for rule in as_list(rs.props.get("rules"))]


def _top_level_or(expression: str) -> bool:
    """`or` outside every parenthesis: the rule matches more than its host and path."""
    depth, words = 0, re.finditer(r"\(|\)|\bor\b|\|\||\"(?:[^\"\\]|\\.)*\"", expression)
    for word in words:
        text = word.group()
        depth += text == "("
        depth -= text == ")"
        if depth == 0 and text in ("or", "||"):
            return True
    return expression.strip().startswith("(") and _top_level_or(expression.strip()[1:-1]) \
        if _wrapped(expression.strip()) else False


def _wrapped(expression: str) -> bool:
    """The whole expression is one parenthesised group."""
    depth = 0
    for i, char in enumerate(expression):
        depth += char == "("
        depth -= char == ")"
        if depth == 0 and i < len(expression) - 1:
            return False
    return expression.startswith("(")


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


@stack_policy(
    "mcp-surface-enforced-at-edge-and-origin",
    "A server's tools allowlist is enforced by an enabled, blocking Cloudflare custom rule (lowercase header "
    "keys, no `or` outside its host and path) and by a blocking AWS WAF rule on every web ACL, for the same "
    "path; and every MCP path has a blocking rate limit at the edge and a blocking AWS WAF rate-based rule"
    ". Reads outputs (listener rules' target group ARNs): on a first preview it cannot run, "
    "so `estate check` in every pull request is the gate",
    risks=[Risk.PROMPT_INJECTION, Risk.SAMPLING_ABUSE, Risk.AVAILABILITY],
    remediation="Keep the rules mcp_estate/contract/surface_rules.py builds (components/edge.py, "
                "components/region_compute.py): action block, enabled, header names lowercase at Cloudflare.")
def mcp_surface_enforced_at_edge_and_origin(args: StackValidationArgs, report: Report) -> None:
    resources = list(args.resources)
    acls = [r for r in resources if r.resource_type == WEB_ACL]
    edge_paths = set()
    for ruleset, rule in _cf_rules(resources, "http_request_firewall_custom"):
        expression = str(rule.get("expression") or "")
        if NAME_HEADER not in expression.lower():
            continue
        label = f"Cloudflare rule {rule.get('ref') or rule.get('description')!r} of {ruleset.name}"
        problems = _edge_rule_problems(rule, expression)
        if problems:
            report(f"{label} does not enforce the tools allowlist: {'; '.join(problems)}", ruleset.urn)
            continue
        edge_paths |= set(_CF_PATH.findall(expression))
    origin = {acl.name: {p for p in _mcp_paths(resources) if _origin_allowlist(acl, p)} for acl in acls}
    for acl in acls:
        for path in sorted(edge_paths - origin[acl.name]):
            report(f"Web ACL {acl.name} has no blocking rule on {path} comparing the {NAME_HEADER} header: the "
                   "edge refuses unapproved tools but the origin would run them; add the server's origin "
                   "rules", acl.urn)
        for path in sorted(origin[acl.name] - edge_paths):
            report(f"Web ACL {acl.name} refuses unapproved tools on {path}, but no enabled blocking Cloudflare "
                   "rule does: restore the server's surface rule at the edge", acl.urn)
    _rate_limited(resources, acls, report)


def _edge_rule_problems(rule: Mapping, expression: str) -> list[str]:
    problems = []
    if rule.get("enabled") is False:
        problems.append("it is disabled")
    if rule.get("action") != "block":
        problems.append(f"its action is {rule.get('action')!r}, not 'block'")
    upper = sorted({key for key in _CF_KEY.findall(expression) if key != key.lower()})
    if upper:
        problems.append(f"header keys {', '.join(upper)} are not lowercase (Cloudflare keys headers in "
                        "lowercase, so the condition never matches)")
    if _top_level_or(expression):
        problems.append("an `or` outside its host-and-path condition")
    return problems


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


