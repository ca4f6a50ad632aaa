"""Edge and origin: every request reaches a server through Cloudflare and an ALB that inspect it,
over TLS 1.2 or newer on every hop, and a session stays in the region that holds its state.

The path is visitor -> Cloudflare (proxied load balancer, zone TLS settings) -> the region's ALB
(HTTPS listener, WAF) -> the task. A plaintext or downgraded hop lets whoever sits on it read
tool results or rewrite them (tool injection); a hop without WAF or rate limits lets abuse
through; an unmonitored pool or a lost session affinity breaks MCP sessions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Iterable

from pulumi_policy import ResourceValidationArgs, Severity, StackValidationArgs

from .control import (
    UNKNOWN,
    Report,
    Risk,
    as_list,
    as_mapping,
    lookup,
    resource_policy,
    stack_policy,
)
from .edge_delegation import DELEGATION_CONFIG, LOAD_BALANCER, ZONE, delegated

LOAD_BALANCERS = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
LISTENERS = ("aws:lb/listener:Listener", "aws:alb/listener:Listener")
LISTENER_RULES = ("aws:lb/listenerRule:ListenerRule", "aws:alb/listenerRule:ListenerRule")
WEB_ACL = "aws:wafv2/webAcl:WebAcl"
WEB_ACL_RULE = "aws:wafv2/webAclRule:WebAclRule"
WEB_ACL_RULE_GROUP = "aws:wafv2/webAclRuleGroupAssociation:WebAclRuleGroupAssociation"
WEB_ACL_ASSOCIATION = "aws:wafv2/webAclAssociation:WebAclAssociation"
CF_LOAD_BALANCER = "cloudflare:index/loadBalancer:LoadBalancer"
CF_POOL = "cloudflare:index/loadBalancerPool:LoadBalancerPool"
CF_ZONE_SETTING = "cloudflare:index/zoneSetting:ZoneSetting"
CF_HOSTNAME_TLS = "cloudflare:index/hostnameTlsSetting:HostnameTlsSetting"
CF_RULESET = "cloudflare:index/ruleset:Ruleset"
CF_PAGE_RULE = "cloudflare:index/pageRule:PageRule"

# ELB security policies for HTTPS/TLS listeners that accept TLS 1.2 and 1.3 only (none accepts
# TLS 1.0/1.1), from AWS's "Security policies for your Application Load Balancer" page. An
# unlisted name fails: add it here after checking its protocols.
TLS12_POLICIES = frozenset({
    "ELBSecurityPolicy-TLS13-1-3-2021-06", "ELBSecurityPolicy-TLS13-1-2-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Res-2021-06", "ELBSecurityPolicy-TLS13-1-2-Ext1-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Ext2-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-FIPS-2023-04", "ELBSecurityPolicy-TLS13-1-2-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-2023-04", "ELBSecurityPolicy-TLS13-1-2-Ext0-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-2-Ext1-FIPS-2023-04", "ELBSecurityPolicy-TLS13-1-2-Ext2-FIPS-2023-04",
    "ELBSecurityPolicy-TLS13-1-3-PQ-2025-09", "ELBSecurityPolicy-TLS13-1-2-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09", "ELBSecurityPolicy-TLS13-1-2-Ext1-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Ext2-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-3-FIPS-PQ-2025-09", "ELBSecurityPolicy-TLS13-1-2-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS13-1-2-Res-FIPS-PQ-2025-09",
    "ELBSecurityPolicy-TLS-1-2-2017-01", "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
    "ELBSecurityPolicy-FS-1-2-2019-08", "ELBSecurityPolicy-FS-1-2-Res-2019-08",
    "ELBSecurityPolicy-FS-1-2-Res-2020-10",
})
PROVIDER_DEFAULT_POLICY = "ELBSecurityPolicy-2016-08"   # what AWS applies when ssl_policy is absent: TLS 1.0+
RECOMMENDED_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# Network (TCP, UDP, TCP_UDP) and gateway (GENEVE) listeners pass traffic through unread: the load
# balancer terminates no TLS there, so there is no TLS policy to judge.
PASS_THROUGH = frozenset({"TCP", "UDP", "TCP_UDP", "GENEVE"})

STRICT_SSL_MODES = frozenset({"strict", "origin_pull"})   # both validate the origin's certificate
MIN_TLS_VERSIONS = frozenset({"1.2", "1.3"})
SESSION_HEADER = "mcp-session-id"   # MCP Streamable HTTP's session header (header names are case-insensitive)


def _is_application(props: Any) -> bool:
    return props.get("loadBalancerType") in (None, "application")   # the provider's default is application


# -- ALB --------------------------------------------------------------------------------------------

@resource_policy(
    "albs-drop-invalid-headers",
    "Application load balancers drop requests with invalid HTTP header fields",
    applies_to=LOAD_BALANCERS,
    risks=[Risk.PROMPT_INJECTION], severity=Severity.MEDIUM,
    remediation="Set drop_invalid_header_fields=True on the aws.lb.LoadBalancer.")
def albs_drop_invalid_headers(args: ResourceValidationArgs, report: Report) -> None:
    # Invalid header names are how request smuggling and header-confusion attacks reach the
    # server past the WAF, which parses them differently.
    if _is_application(args.props) and args.props.get("dropInvalidHeaderFields") is not True:
        report(f"ALB {args.name} forwards invalid header fields: set drop_invalid_header_fields=True")


@resource_policy(
    "listeners-use-tls-1-2-or-newer",
    "Load balancer listeners serve HTTPS/TLS with a TLS 1.2+ security policy; a plain HTTP listener "
    "only redirects to HTTPS (TCP, UDP, TCP_UDP and GENEVE listeners terminate no TLS and are not judged)",
    applies_to=LISTENERS,
    risks=[Risk.TOOL_INJECTION, Risk.DATA_LOSS], severity=Severity.HIGH,
    remediation=f"Set protocol='HTTPS' and ssl_policy='{RECOMMENDED_POLICY}', or make every default action of "
                "an HTTP listener {'type': 'redirect', 'redirect': {'protocol': 'HTTPS', 'port': '443', "
                "'status_code': 'HTTP_301'}}.")
def listeners_use_tls_1_2_or_newer(args: ResourceValidationArgs, report: Report) -> None:
    props, what = args.props, f"Listener {args.name}"
    # Unset, an ALB listener (it needs a port) is HTTP; a listener without a port is a gateway
    # load balancer's, which has no protocol to set: GENEVE.
    protocol = props.get("protocol") or ("HTTP" if props.get("port") is not None else "GENEVE")
    if protocol in ("HTTPS", "TLS"):
        policy = props.get("sslPolicy")
        if policy is None:
            report(f"{what} has no ssl_policy, so AWS applies {PROVIDER_DEFAULT_POLICY} (TLS 1.0): "
                   f"set ssl_policy='{RECOMMENDED_POLICY}'")
        elif policy not in TLS12_POLICIES:
            report(f"{what} uses ssl_policy {policy}, not a reviewed TLS 1.2+ policy: "
                   f"set ssl_policy='{RECOMMENDED_POLICY}'")
    elif protocol == "HTTP":
        actions = as_list(props.get("defaultActions"))
        if not actions or not all(_redirects_to_https(a) for a in actions):
            report(f"{what} serves plain HTTP: make every default action a redirect to HTTPS, "
                   f"or set protocol='HTTPS'")
    elif protocol not in PASS_THROUGH:
        report(f"{what} uses protocol {protocol}, which the load balancer does not encrypt: "
               f"use HTTPS (or TLS) with ssl_policy='{RECOMMENDED_POLICY}'")


def _redirects_to_https(action: Any) -> bool:
    action = as_mapping(action)
    return action.get("type") == "redirect" and as_mapping(action.get("redirect")).get("protocol") == "HTTPS"


@stack_policy(
    "http-listener-rules-only-redirect-to-https",
    "No listener rule on a plain HTTP listener serves traffic: it may only redirect to HTTPS"
    ". Reads outputs (listener ARNs): on a first preview it cannot run, "
    "so `estate check` in every pull request is the gate",
    risks=[Risk.TOOL_INJECTION, Risk.DATA_LOSS], severity=Severity.HIGH,
    remediation="Attach forwarding rules to the HTTPS listener; on the HTTP listener only redirect to HTTPS.")
def http_listener_rules_only_redirect_to_https(args: StackValidationArgs, report: Report) -> None:
    # The resource policy sees an HTTP listener's default actions, not the rules attached to it,
    # which would serve plaintext just the same.
    plaintext = {r.props.get("arn"): r.name for r in args.resources
                 if r.resource_type in LISTENERS and (r.props.get("protocol") or "HTTP") == "HTTP"}
    for rule in args.resources:
        if rule.resource_type not in LISTENER_RULES:
            continue
        listener = plaintext.get(rule.props.get("listenerArn"))
        actions = as_list(rule.props.get("actions"))
        if listener and not all(_redirects_to_https(a) for a in actions):
            report(f"Listener rule {rule.name} serves plain HTTP on listener {listener}: "
                   f"attach it to the HTTPS listener, or make it redirect to HTTPS", rule.urn)


# -- WAF --------------------------------------------------------------------------------------------

@resource_policy(
    "web-acls-block-with-managed-rules-and-rate-limits",
    "Web ACLs block with at least one AWS managed rule group and a rate-based rule, and never "
    "override an AWS managed rule group to count, unless the `countedRuleGroups` config names the group "
    "with the reason (a group rolled out in count mode on purpose; it never counts as the enforcing one). "
    "Rules given as unreadable `rule_json` are reported, not skipped",
    applies_to=[WEB_ACL, WEB_ACL_RULE, WEB_ACL_RULE_GROUP],
    risks=[Risk.PROMPT_INJECTION, Risk.AVAILABILITY], severity=Severity.HIGH,
    remediation="Add e.g. AWSManagedRulesCommonRuleSet with override_action={'none': {}} and a rule with "
                "rate_based_statement and action={'block': {}}; to relax one rule of a managed group, use "
                "its rule_action_overrides rather than counting the whole group.",
    config={"countedRuleGroups": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1},
                                  "description": "AWS managed rule group name -> why it runs in count mode"}})
def web_acls_block_with_managed_rules_and_rate_limits(args: ResourceValidationArgs, report: Report) -> None:
    counted = as_mapping(args.get_config().get("countedRuleGroups"))
    if args.resource_type == WEB_ACL:
        _check_web_acl(args, report, counted)
    elif args.resource_type == WEB_ACL_RULE and _counts_aws_group(args.props) \
            and not counted.get(_aws_group(args.props).get("name")):
        report(f"Web ACL rule {args.name} counts an AWS managed rule group instead of enforcing it: "
               f"set override_action={{'none': {{}}}}")
    elif args.resource_type == WEB_ACL_RULE_GROUP and args.props.get("overrideAction") == "count" \
            and as_mapping(args.props.get("managedRuleGroup")).get("vendorName") == "AWS" \
            and not counted.get(as_mapping(args.props.get("managedRuleGroup")).get("name")):
        report(f"Web ACL rule group association {args.name} counts an AWS managed rule group instead of "
               f"enforcing it: set override_action='none'")


def _check_web_acl(args: ResourceValidationArgs, report: Report, counted: Mapping) -> None:
    what = f"Web ACL {args.name}"
    rules = list(_web_acl_rules(args.props, what, report))
    for rule in rules:
        if _counts_aws_group(rule) and not counted.get(_aws_group(rule).get("name")):
            report(f"{what} counts AWS managed rule group {_aws_group(rule).get('name')} instead of enforcing "
                   f"it: set its override_action={{'none': {{}}}}, or name it in countedRuleGroups with the reason")
    if not any(_aws_group(r) and "none" in as_mapping(r.get("overrideAction")) for r in rules):
        report(f"{what} enforces no AWS managed rule group: add e.g. AWSManagedRulesCommonRuleSet with "
               f"override_action={{'none': {{}}}} in its rules")
    if not any(as_mapping(r.get("statement")).get("rateBasedStatement") and "block" in as_mapping(r.get("action"))
               for r in rules):
        report(f"{what} has no blocking rate-based rule: add a rule with rate_based_statement and "
               f"action={{'block': {{}}}} in its rules")


def _web_acl_rules(props: Any, what: str, report: Report) -> Iterable[Mapping]:
    """The web ACL's rules, from `rules` or from `rule_json` (the WAF API's own shape, PascalCase)."""
    for rule in as_list(props.get("rules")):
        yield as_mapping(rule)
    raw = props.get("ruleJson")
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            report(f"{what}: rule_json is not JSON, so its rules cannot be judged")
            return
        for rule in as_list(parsed):
            yield as_mapping(_camel_keys(rule))


def _camel_keys(value: Any) -> Any:
    """`{"ManagedRuleGroupStatement": {"VendorName": ...}}` -> `{"managedRuleGroupStatement": {"vendorName": ...}}`."""
    if isinstance(value, Mapping):
        return {k[:1].lower() + k[1:]: _camel_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_camel_keys(v) for v in value]
    return value


def _aws_group(rule: Mapping) -> Mapping:
    group = as_mapping(as_mapping(rule.get("statement")).get("managedRuleGroupStatement"))
    return group if group.get("vendorName") == "AWS" else {}


def _counts_aws_group(rule: Mapping) -> bool:
    return bool(_aws_group(rule)) and "count" in as_mapping(rule.get("overrideAction"))


@stack_policy(
    "internet-facing-albs-have-waf",
    "Every internet-facing application load balancer is associated with a WAF web ACL"
    ". Reads outputs (ALB ARNs): on a first preview it cannot run, "
    "so `estate check` in every pull request is the gate",
    risks=[Risk.PROMPT_INJECTION, Risk.AVAILABILITY], severity=Severity.HIGH,
    remediation="Add aws.wafv2.WebAclAssociation(resource_arn=alb.arn, web_acl_arn=acl.arn) in the ALB's region.")
def internet_facing_albs_have_waf(args: StackValidationArgs, report: Report) -> None:
    protected = {r.props.get("resourceArn") for r in args.resources if r.resource_type == WEB_ACL_ASSOCIATION}
    for alb in args.resources:
        if alb.resource_type in LOAD_BALANCERS and _is_application(alb.props) \
                and alb.props.get("internal") is not True and alb.props.get("arn") not in protected:
            report(f"Internet-facing ALB {alb.name} has no WAF: associate a web ACL with it "
                   f"(aws.wafv2.WebAclAssociation, resource_arn=the ALB's arn)", alb.urn)


# -- Cloudflare -------------------------------------------------------------------------------------

@resource_policy(
    "cloudflare-load-balancer-proxied-with-session-affinity",
    "Cloudflare load balancers are proxied (Cloudflare's WAF and rate limits apply) and pin each MCP "
    "session to a region by its Mcp-Session-Id header",
    applies_to=[CF_LOAD_BALANCER],
    risks=[Risk.PROMPT_INJECTION, Risk.AVAILABILITY], severity=Severity.HIGH,
    remediation="Set proxied=True, session_affinity='header' and session_affinity_attributes="
                "{'headers': ['Mcp-Session-Id']}; rule overrides must keep that affinity.")
def cloudflare_load_balancer_proxied_with_session_affinity(args: ResourceValidationArgs, report: Report) -> None:
    props, what = args.props, f"Cloudflare load balancer {args.name}"
    if props.get("proxied") is not True:
        # DNS-only: visitors reach the ALB directly, past Cloudflare's WAF, and learn its address.
        report(f"{what} is not proxied: set proxied=True")
    if problem := _affinity_problem(props.get("sessionAffinity"), props.get("sessionAffinityAttributes")):
        report(f"{what} {problem}")
    for rule in as_list(props.get("rules")):
        overrides = as_mapping(as_mapping(rule).get("overrides"))
        affinity, attributes = overrides.get("sessionAffinity"), overrides.get("sessionAffinityAttributes")
        if affinity is None and attributes is None:
            continue   # the rule keeps the load balancer's affinity
        if problem := _affinity_problem(affinity or props.get("sessionAffinity"),
                                        attributes or props.get("sessionAffinityAttributes")):
            report(f"{what} rule {as_mapping(rule).get('name')} {problem}")


def _affinity_problem(affinity: Any, attributes: Any) -> str | None:
    if affinity != "header":
        return (f"has session_affinity {affinity!r}: set session_affinity='header' so a session stays in "
                f"the region holding its state")
    headers = [str(h).lower() for h in as_list(as_mapping(attributes).get("headers"))]
    if SESSION_HEADER not in headers:
        return ("does not pin sessions by Mcp-Session-Id: "
                "set session_affinity_attributes={'headers': ['Mcp-Session-Id']}")
    return None


@stack_policy(
    "cloudflare-pools-monitored",
    "Cloudflare load balancer pools have a health monitor, so traffic fails over from an unhealthy region; "
    "a pool without one serves only as the last pool of countryPools or regionPools lists (a last resort, which "
    "Cloudflare always counts usable, used once every monitored pool before it is down)"
    ". Reads outputs (pool and monitor ids): on a first preview it cannot run, "
    "so `estate check` in every pull request is the gate",
    risks=[Risk.AVAILABILITY], severity=Severity.MEDIUM,
    remediation="Set monitor=<cloudflare.LoadBalancerMonitor id> (or monitor_group) on the pool, or use the "
                "unmonitored pool only as the last pool of a load balancer's countryPools or regionPools lists.",
    config=DELEGATION_CONFIG)
def cloudflare_pools_monitored(args: StackValidationArgs, report: Report) -> None:
    balancers = [r for r in args.resources if r.resource_type == CF_LOAD_BALANCER]
    # With the load balancer delegated and none here, where an unmonitored (last-resort) pool sits in the
    # lists is the caller's to get right: edge-controls-judged-in-this-stack names this control among the moved.
    placed_elsewhere = not balancers and LOAD_BALANCER in delegated(args.get_config())
    for pool in args.resources:
        monitored = lookup(pool.props, "monitor") or lookup(pool.props, "monitorGroup")
        if pool.resource_type != CF_POOL or monitored or placed_elsewhere:
            continue
        pool_id = pool.props.get("id")
        uses = [(lb, where, last) for lb in balancers for where, last in _pool_uses(pool_id, lb.props)]
        misused = [f"{lb.name}'s {where}" for lb, where, last in uses if not last]
        if misused or not uses:
            places = f" (through {', '.join(dict.fromkeys(misused))})" if misused else ""
            report(f"Cloudflare pool {pool.name} has no health monitor, so traffic keeps flowing to a failed "
                   f"region{places}: set monitor=<a LoadBalancerMonitor id>, or use it only as the last pool "
                   "of countryPools or regionPools lists", pool.urn)


def _pool_uses(pool_id: Any, lb: Any) -> Iterable[tuple[str, bool]]:
    """Where a load balancer routes to the pool, and whether that is the last pool of a country's or a
    Cloudflare region's list (a strict group's regions end with its last resort, components/edge.py)."""
    lists = [(key, as_list(lb.get(key))) for key in ("defaultPools", "fallbackPool")]
    for key in ("regionPools", "popPools", "countryPools"):
        lists += [(f"{key}.{area}", as_list(ids)) for area, ids in as_mapping(lb.get(key)).items()]
    for rule in as_list(lb.get("rules")):
        overrides = as_mapping(as_mapping(rule).get("overrides"))
        lists += [(f"rule {as_mapping(rule).get('name')!r}", ids) for ids in (
            as_list(overrides.get("defaultPools")), as_list(overrides.get("fallbackPool")),
            *(as_list(i) for key in ("regionPools", "popPools", "countryPools")
              for i in as_mapping(overrides.get(key)).values()))]
    for where, ids in lists:
        for index, used in enumerate(ids):
            if used == pool_id:
                yield where, where.startswith(("countryPools.", "regionPools.")) and index == len(ids) - 1


@resource_policy(
    "cloudflare-zone-tls-strict",
    "Cloudflare validates the origin's certificate (SSL strict), visitors need TLS 1.2 or newer and plain "
    "HTTP is redirected to HTTPS (always_use_https); no hostname, configuration rule or page rule lowers them",
    applies_to=[CF_ZONE_SETTING, CF_HOSTNAME_TLS, CF_RULESET, CF_PAGE_RULE],
    risks=[Risk.TOOL_INJECTION, Risk.DATA_LOSS], severity=Severity.HIGH,
    remediation="ZoneSetting(setting_id='ssl', value='strict'), ZoneSetting(setting_id='min_tls_version', "
                "value='1.2') and ZoneSetting(setting_id='always_use_https', value='on'); remove ssl overrides "
                "below strict from rulesets and page rules.")
def cloudflare_zone_tls_strict(args: ResourceValidationArgs, report: Report) -> None:
    props = args.props
    if args.resource_type in (CF_ZONE_SETTING, CF_HOSTNAME_TLS):
        setting, value = props.get("settingId"), props.get("value")
        if setting == "ssl" and value not in STRICT_SSL_MODES:
            # off/flexible reach the origin in plaintext; full accepts any certificate, so anyone
            # on the path can impersonate the origin.
            report(f"Zone setting {args.name} sets ssl={value!r}: set value='strict'")
        elif setting == "min_tls_version" and value not in MIN_TLS_VERSIONS:
            report(f"{'Zone' if args.resource_type == CF_ZONE_SETTING else 'Hostname TLS'} setting {args.name} "
                   f"sets min_tls_version={value!r}: set value='1.2'")
        elif setting == "always_use_https" and value != "on":
            # Off, Cloudflare answers plain-HTTP visitors itself: their requests and the tool results
            # travel in clear text on the visitor's side of the edge.
            report(f"Zone setting {args.name} sets always_use_https={value!r}: set value='on'")
    elif args.resource_type == CF_RULESET:
        for rule in as_list(props.get("rules")):
            ssl = as_mapping(as_mapping(rule).get("actionParameters")).get("ssl")
            if ssl is not None and ssl not in STRICT_SSL_MODES:
                report(f"Ruleset {args.name} rule {as_mapping(rule).get('ref') or as_mapping(rule).get('description')} "
                       f"lowers ssl to {ssl!r}: remove the override or set it to 'strict'")
    elif args.resource_type == CF_PAGE_RULE:
        ssl = as_mapping(props.get("actions")).get("ssl")
        if ssl is not None and ssl not in STRICT_SSL_MODES:
            report(f"Page rule {args.name} lowers ssl to {ssl!r}: remove the override or set it to 'strict'")


@stack_policy(
    "cloudflare-load-balancer-zones-set-tls",
    "A zone serving a Cloudflare load balancer sets its SSL mode, minimum TLS version and always_use_https "
    "in this stack (whose values cloudflare-zone-tls-strict checks) rather than inheriting whatever the zone has",
    risks=[Risk.TOOL_INJECTION, Risk.DATA_LOSS], severity=Severity.MEDIUM,
    remediation="Add cloudflare.ZoneSetting(setting_id='ssl', value='strict'), "
                "cloudflare.ZoneSetting(setting_id='min_tls_version', value='1.2') and "
                "cloudflare.ZoneSetting(setting_id='always_use_https', value='on') on the load balancer's zone.",
    config=DELEGATION_CONFIG)
def cloudflare_load_balancer_zones_set_tls(args: StackValidationArgs, report: Report) -> None:
    settings = {(r.props.get("zoneId"), r.props.get("settingId")) for r in args.resources
                if r.resource_type == CF_ZONE_SETTING}
    # A zone the spec delegates (pack config `delegatedEdge`) is set by its owner's stack, unless this one sets it.
    owners_zone = ZONE in delegated(args.get_config())
    for lb in args.resources:
        if lb.resource_type != CF_LOAD_BALANCER:
            continue
        zone = lb.props.get("zoneId")
        if owners_zone and not any(z == zone for z, _ in settings):
            continue
        for setting, value in (("ssl", "strict"), ("min_tls_version", "1.2"), ("always_use_https", "on")):
            if (zone, setting) not in settings:
                report(f"Cloudflare load balancer {lb.name}'s zone {zone} has no {setting} setting in this stack "
                       f"(the zone's default may be below it): add cloudflare.ZoneSetting(setting_id='{setting}', "
                       f"value='{value}')", lb.urn)


# -- the edge's protections are present and enforcing ---------------------------------------------

CF_MONITOR = "cloudflare:index/loadBalancerMonitor:LoadBalancerMonitor"
FIREWALL_PHASE, RATELIMIT_PHASE, MANAGED_PHASE = \
    "http_request_firewall_custom", "http_ratelimit", "http_request_firewall_managed"
# Actions that stop a request; `log` only records it, `skip` switches other rules off.
ENFORCING = frozenset({"block", "managed_challenge", "challenge", "js_challenge"})
# The managed rulesets each Cloudflare plan lets the edge execute (Cloudflare's published ids,
# waf/managed-rules): the Free Managed Ruleset on Free, Cloudflare Managed and OWASP Core above.
PLAN_MANAGED_RULESETS = {
    "free": ("77454fe2d30c4220b5701f6fdfb893ba",),
    "pro": ("efb7b8c949ac4650a09736fc376e9aee", "4814384a9e5d4991b9815dcfc25d2f1f"),
    "business": ("efb7b8c949ac4650a09736fc376e9aee", "4814384a9e5d4991b9815dcfc25d2f1f"),
    "enterprise": ("efb7b8c949ac4650a09736fc376e9aee", "4814384a9e5d4991b9815dcfc25d2f1f"),
}
EDGE_CONFIG = {
    "hostname": {"type": "string", "description": "domain.hostname (generated by `estate pack-config`)"},
    "cloudflarePlan": {"type": "string", "enum": sorted(PLAN_MANAGED_RULESETS)},
    "healthPath": {"type": "string", "pattern": "^/"},
    "acceptedManagedOverrides": {
        "type": "array", "description": "Managed rules or categories knowingly switched off or set to log (a "
                                        "rollout in count mode): each with the reason, reviewed with the config",
        "items": {"type": "object", "additionalProperties": False, "required": ["ruleset", "override", "reason"],
                  "properties": {"ruleset": {"type": "string"}, "override": {"type": "string"},
                                 "reason": {"type": "string", "minLength": 10}}}},
}


@stack_policy(
    "cloudflare-edge-protections-enforced",
    "The edge protections the README promises exist on the load balancer's zone and enforce: a custom WAF "
    "rule blocking paths and one blocking methods, a per-client-IP rate limit that blocks, every managed "
    "ruleset the zone's plan includes executed without being disabled or set to log (unless the pack config "
    "accepts that override with a reason), no rule that skips them, and pools monitored over HTTPS on the "
    "MCP health path with the certificate verified. Reads outputs (pool and monitor ids): on a first preview "
    "it cannot run, so `estate check` in every pull request is the gate",
    risks=[Risk.PROMPT_INJECTION, Risk.AVAILABILITY], severity=Severity.HIGH,
    remediation="Keep the Edge's rulesets as built (components/edge.py): enabled rules with action 'block', "
                "no 'log' or 'skip' rules, no overrides that disable managed rules (or list the override in "
                "acceptedManagedOverrides with its reason), and an https monitor on the health path.",
    config={**EDGE_CONFIG, **DELEGATION_CONFIG})
def cloudflare_edge_protections_enforced(args: StackValidationArgs, report: Report) -> None:
    resources, config = list(args.resources), args.get_config()
    zones = _edge_zones(resources, delegated(config))
    pools = [r for r in resources if r.resource_type == CF_POOL]
    if not zones and not pools:
        return
    if not config.get("hostname") or config.get("cloudflarePlan") not in PLAN_MANAGED_RULESETS:
        report("The pack config gives no hostname and cloudflarePlan for cloudflare-edge-protections-enforced, so "
               "the edge's protections cannot be judged: pass the config `estate pack-config --stack <stack> "
               "--write` generates (policies/config/<environment>.json)", [*zones.values(), *pools][0].urn)
        return
    for zone, subject in zones.items():
        rulesets = [r for r in resources if r.resource_type == CF_RULESET and r.props.get("zoneId") == zone]
        # A delegated zone holding none of the estate's entry points here is its owner's to judge
        # (edge-controls-judged-in-this-stack says so); one holding any is judged in full.
        if ZONE in delegated(config) and not any(r.props.get("kind") == "zone" for r in rulesets):
            continue
        _rules_enforce(rulesets, config, subject, report)
    _monitors_speak_https(resources, config, report)


def _edge_zones(resources: list, parts: frozenset[str]) -> dict[Any, Any]:
    """Zone id -> the resource its findings are reported on: the zones of the stack's load balancers; with
    the load balancer delegated, also the zones of its zone entry-point rulesets (nothing else names them)."""
    zones = {lb.props.get("zoneId"): lb for lb in resources if lb.resource_type == CF_LOAD_BALANCER}
    if LOAD_BALANCER in parts:
        for ruleset in resources:
            if ruleset.resource_type == CF_RULESET and ruleset.props.get("kind") == "zone":
                zones.setdefault(ruleset.props.get("zoneId"), ruleset)
    return zones


def _phase_rules(rulesets: list, phase: str) -> list[tuple[Any, Mapping]]:
    """(ruleset, rule) of the enabled rules of a phase: a rule is enabled unless it says otherwise."""
    return [(rs, as_mapping(rule)) for rs in rulesets if rs.props.get("phase") == phase
            for rule in as_list(rs.props.get("rules")) if as_mapping(rule).get("enabled") is not False]


def _rule_name(ruleset: Any, rule: Mapping) -> str:
    return f"Ruleset {ruleset.name} rule {rule.get('ref') or rule.get('description') or rule.get('id')!r}"


def _covers_host(rule: Mapping, hostname: str) -> bool:
    """A rule applies to the estate's host: it names it, or does not read the host at all."""
    expression = str(rule.get("expression") or "")
    return expression.strip() not in ("", "false") and (
        "http.host" not in expression or f'"{hostname}"' in expression)


def _rules_enforce(rulesets: list, config: Mapping, lb: Any, report: Report) -> None:
    """`lb`: the zone's load balancer, or (the load balancer delegated) one of its rulesets."""
    hostname = config["hostname"]
    where = (f"the zone of Cloudflare load balancer {lb.name}" if lb.resource_type == CF_LOAD_BALANCER
             else f"zone {lb.props.get('zoneId')} (the load balancer is the caller's)")
    for phase in (FIREWALL_PHASE, RATELIMIT_PHASE, MANAGED_PHASE):
        for ruleset, rule in _phase_rules(rulesets, phase):
            if rule.get("action") == "log":
                report(f"{_rule_name(ruleset, rule)} only logs (action 'log'): it blocks nothing; set action "
                       "'block'", ruleset.urn)
            elif rule.get("action") == "skip":
                report(f"{_rule_name(ruleset, rule)} skips other rules or phases (action 'skip'), switching "
                       "protections off for what it matches: remove it", ruleset.urn)
    # A server's MCP surface rule (policies/mcp_surface.py) reads the path too, but refuses calls on
    # its own path only: it cannot stand in for the rule that keeps every other path out.
    blocking = [rule for _, rule in _phase_rules(rulesets, FIREWALL_PHASE)
                if rule.get("action") in ENFORCING and _covers_host(rule, hostname)
                and "http.request.headers" not in str(rule.get("expression"))]
    for field, promise in (("http.request.uri.path", "only the MCP paths"),
                           ("http.request.method", "only the MCP methods")):
        if not any(field in str(r.get("expression")) for r in blocking):
            report(f"No enabled custom WAF rule on {where} blocks by {field} on {hostname}: the edge no longer "
                   f"admits {promise}; restore the Edge's {FIREWALL_PHASE} ruleset", lb.urn)
    limits = [rule for _, rule in _phase_rules(rulesets, RATELIMIT_PHASE)
              if rule.get("action") in ENFORCING and _covers_host(rule, hostname)
              and "ip.src" in as_list(as_mapping(rule.get("ratelimit")).get("characteristics"))]
    if not limits:
        report(f"No enabled rate limiting rule on {where} blocks per client IP (ratelimit characteristics with "
               f"ip.src) on {hostname}: restore the Edge's {RATELIMIT_PHASE} ruleset", lb.urn)
    _managed_enforced(rulesets, config, where, lb, report)


def _managed_enforced(rulesets: list, config: Mapping, where: str, lb: Any, report: Report) -> None:
    accepted = {(a.get("ruleset"), a.get("override")) for a in as_list(config.get("acceptedManagedOverrides"))
                if isinstance(a, Mapping)}
    executed = {}
    for ruleset, rule in _phase_rules(rulesets, MANAGED_PHASE):
        target = as_mapping(rule.get("actionParameters")).get("id")
        if rule.get("action") == "execute" and _covers_host(rule, config["hostname"]):
            executed[target] = (ruleset, rule)
    for ruleset_id in PLAN_MANAGED_RULESETS[config["cloudflarePlan"]]:
        if ruleset_id not in executed:
            report(f"Managed ruleset {ruleset_id}, which the zone's {config['cloudflarePlan']} plan includes, is not "
                   f"executed on {where}: restore it in the Edge's {MANAGED_PHASE} ruleset", lb.urn)
            continue
        ruleset, rule = executed[ruleset_id]
        for override in _weakening_overrides(as_mapping(as_mapping(rule.get("actionParameters")).get("overrides"))):
            if (ruleset_id, override) not in accepted:
                report(f"{_rule_name(ruleset, rule)} runs managed ruleset {ruleset_id} with {override}: remove the "
                       "override, or accept it in the pack config's acceptedManagedOverrides with the reason",
                       ruleset.urn)


def _weakening_overrides(overrides: Mapping) -> list[str]:
    """The overrides that switch managed rules off or to logging, named as the exemptions name them:
    `ruleset`, `category:<name>`, `rule:<id>`."""
    def weakens(entry: Mapping) -> bool:
        return entry.get("enabled") is False or entry.get("action") == "log"
    found = ["ruleset"] if weakens(overrides) else []
    found += [f"category:{c.get('category')}" for c in map(as_mapping, as_list(overrides.get("categories")))
              if weakens(c)]
    return found + [f"rule:{r.get('id')}" for r in map(as_mapping, as_list(overrides.get("rules"))) if weakens(r)]


def _monitors_speak_https(resources: list, config: Mapping, report: Report) -> None:
    """Every monitor a pool uses probes the MCP health path over HTTPS, verifying the certificate."""
    monitors = {lookup(m.props, "id"): m for m in resources if m.resource_type == CF_MONITOR}
    for pool in resources:
        if pool.resource_type != CF_POOL or not (used := lookup(pool.props, "monitor")) or used is UNKNOWN:
            continue
        monitor = monitors.get(used)
        if monitor is None:
            report(f"Cloudflare pool {pool.name} uses monitor {used}, which is not in this stack, so what it "
                   "probes cannot be checked: use the Edge's monitor", pool.urn)
            continue
        props, problems = monitor.props, []
        if props.get("type") != "https":
            problems.append(f"type {props.get('type')!r} (set 'https')")
        if props.get("path") != config.get("healthPath"):
            problems.append(f"path {props.get('path')!r} (set {config.get('healthPath')!r})")
        if props.get("allowInsecure") is True:
            problems.append("allow_insecure=True (the ALB's certificate must verify)")
        if problems:
            report(f"Monitor {monitor.name} (of pool {pool.name}) does not probe the MCP health path over verified "
                   f"HTTPS: {', '.join(problems)}", monitor.urn)
