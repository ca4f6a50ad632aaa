"""The edge and origin controls over real SDK resources: what passes, and every way to fall short."""

from __future__ import annotations

import copy
import json
from typing import Callable

import pulumi_aws as aws
import pulumi_cloudflare as cloudflare
import pytest

from mcp_estate.components.estate import Estate
from mcp_estate.checking.check import evaluate
from mcp_estate.offline.fidelity import inspect_resource
from mcp_estate.offline.runner import run_offline
from mcp_estate.checking.pack_config import with_spec
from mcp_estate.contract.validate import parse_spec
from mcp_estate.policies.catalogue import CONTROLS
from corpus import attack, legitimate
from conftest import Plan, stack_config
from mcp_estate.components.region_compute import managed_rule_group, rate_limit_rule, visibility, web_acl_rules
from conftest import run_program, violations

CERT = "arn:aws:acm:us-east-1:111122223333:certificate/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"
ZONE = "0" * 32
CF_ACCOUNT = "f" * 32
SUBNETS = ["subnet-0a1b2c3d4e5f60718", "subnet-0b1c2d3e4f5a60718"]
REDIRECT = {"type": "redirect", "redirect": {"protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"}}
NOT_FOUND = {"type": "fixed-response", "fixed_response": {"content_type": "application/json", "status_code": "404"}}


def messages(plan, name: str, config: dict | None = None) -> list[str]:
    """The policy's messages, sorted: resources register concurrently, in no fixed order."""
    return sorted(v.message for v in violations(plan, config, policy=name))


def alb(name: str = "front", **overrides) -> aws.lb.LoadBalancer:
    return aws.lb.LoadBalancer(name, **{"load_balancer_type": "application", "subnets": SUBNETS,
                                        "drop_invalid_header_fields": True, **overrides})


# -- albs-drop-invalid-headers ----------------------------------------------------------------------

@attack("albs-drop-invalid-headers")
def test_albs_must_drop_invalid_headers_whichever_type_token_declares_them():
    def program():
        alb("dropping")
        alb("forwarding", drop_invalid_header_fields=False)
        aws.lb.LoadBalancer("defaulted", subnets=SUBNETS)   # application, header fields kept
        aws.alb.LoadBalancer("alias", subnets=SUBNETS)
        aws.lb.LoadBalancer("network", load_balancer_type="network", subnets=SUBNETS)
    assert messages(run_program(program), "albs-drop-invalid-headers") == sorted([
        f"ALB {name} forwards invalid header fields: set drop_invalid_header_fields=True"
        for name in ("forwarding", "defaulted", "alias")])


# -- listeners-use-tls-1-2-or-newer -----------------------------------------------------------------

def listener(name: str, **args) -> None:
    aws.lb.Listener(name, load_balancer_arn=alb(f"{name}-alb").arn, **args)


@legitimate("listeners-use-tls-1-2-or-newer")
def test_https_with_a_tls_1_2_policy_and_an_http_redirect_pass():
    def program():
        listener("https", port=443, protocol="HTTPS", certificate_arn=CERT,
                 ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06", default_actions=[NOT_FOUND])
        listener("http", port=80, protocol="HTTP", default_actions=[REDIRECT])
    assert messages(run_program(program), "listeners-use-tls-1-2-or-newer") == []


def test_https_without_a_policy_gets_tls_1_0_and_fails_as_does_an_old_policy():
    def program():
        listener("default-policy", port=443, protocol="HTTPS", certificate_arn=CERT, default_actions=[NOT_FOUND])
        aws.alb.Listener("old-policy", load_balancer_arn=alb("old-policy-alb").arn, port=443, protocol="HTTPS",
                         certificate_arn=CERT, ssl_policy="ELBSecurityPolicy-TLS-1-1-2017-01",
                         default_actions=[NOT_FOUND])
    assert messages(run_program(program), "listeners-use-tls-1-2-or-newer") == sorted([
        "Listener default-policy has no ssl_policy, so AWS applies ELBSecurityPolicy-2016-08 (TLS 1.0): "
        "set ssl_policy='ELBSecurityPolicy-TLS13-1-2-2021-06'",
        "Listener old-policy uses ssl_policy ELBSecurityPolicy-TLS-1-1-2017-01, not a reviewed TLS 1.2+ policy: "
        "set ssl_policy='ELBSecurityPolicy-TLS13-1-2-2021-06'"])


def test_plain_http_that_serves_anything_but_a_redirect_to_https_fails():
    def program():
        listener("forwarding", port=80, protocol="HTTP",
                 default_actions=[{"type": "forward", "target_group_arn": "arn:aws:elasticloadbalancing:"
                                   "us-east-1:111122223333:targetgroup/mcp/0123456789abcdef"}])
        listener("same-scheme", port=80, default_actions=[   # protocol defaults to HTTP; so does the redirect's
            {"type": "redirect", "redirect": {"port": "8080", "status_code": "HTTP_301"}}])
        listener("mixed", port=80, protocol="HTTP", default_actions=[REDIRECT, NOT_FOUND])
    assert messages(run_program(program), "listeners-use-tls-1-2-or-newer") == sorted([
        *(f"Listener {name} serves plain HTTP: make every default action a redirect to HTTPS, "
          f"or set protocol='HTTPS'" for name in ("forwarding", "same-scheme", "mixed"))])


@pytest.mark.parametrize("protocol", ["TCP", "UDP", "TCP_UDP", "GENEVE"])
@legitimate("listeners-use-tls-1-2-or-newer")
def test_pass_through_listeners_terminate_no_tls_and_are_not_judged(protocol):
    forward = {"type": "forward", "target_group_arn": "arn:aws:elasticloadbalancing:us-east-1:111122223333:"
                                                      "targetgroup/dns/0123456789abcdef"}
    def program():
        kind = "gateway" if protocol == "GENEVE" else "network"
        balancer = aws.lb.LoadBalancer(f"{kind}-lb", load_balancer_type=kind, subnets=SUBNETS)
        aws.lb.Listener("pass-through", load_balancer_arn=balancer.arn, default_actions=[forward],
                        **({} if protocol == "GENEVE" else {"port": 53, "protocol": protocol}))
    plan = run_program(program)
    assert messages(plan, "listeners-use-tls-1-2-or-newer") == []


# -- http-listener-rules-only-redirect-to-https -----------------------------------------------------

def test_a_forwarding_rule_on_the_http_listener_fails_and_on_the_https_listener_passes():
    def program():
        front = alb()
        https = aws.lb.Listener("https", load_balancer_arn=front.arn, port=443, protocol="HTTPS",
                                certificate_arn=CERT, ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06",
                                default_actions=[NOT_FOUND])
        http = aws.lb.Listener("http", load_balancer_arn=front.arn, port=80, protocol="HTTP",
                               default_actions=[REDIRECT])
        forward = [{"type": "forward", "target_group_arn": "arn:aws:elasticloadbalancing:us-east-1:"
                                                           "111122223333:targetgroup/mcp/0123456789abcdef"}]
        conditions = [{"path_pattern": {"values": ["/mcp"]}}]
        aws.lb.ListenerRule("on-https", listener_arn=https.arn, priority=10, conditions=conditions, actions=forward)
        aws.lb.ListenerRule("on-http", listener_arn=http.arn, priority=10, conditions=conditions, actions=forward)
        aws.lb.ListenerRule("redirect", listener_arn=http.arn, priority=20, conditions=conditions,
                            actions=[REDIRECT])
    assert messages(run_program(program), "http-listener-rules-only-redirect-to-https") == [
        "Listener rule on-http serves plain HTTP on listener http: "
        "attach it to the HTTPS listener, or make it redirect to HTTPS"]


# -- web-acls-block-with-managed-rules-and-rate-limits ----------------------------------------------

def web_acl(name: str, rules: list[dict] | None = None, **args) -> aws.wafv2.WebAcl:
    return aws.wafv2.WebAcl(name, scope="REGIONAL", default_action={"allow": {}}, visibility_config=visibility(name),
                            **({"rules": rules} if rules is not None else {}), **args)


@legitimate("web-acls-block-with-managed-rules-and-rate-limits")
def test_the_origin_web_acl_with_enforced_managed_groups_and_a_blocking_rate_rule_passes():
    plan = run_program(lambda: web_acl("origin", web_acl_rules(1000)))
    assert messages(plan, "web-acls-block-with-managed-rules-and-rate-limits") == []


@attack("web-acls-block-with-managed-rules-and-rate-limits")
def test_a_web_acl_that_counts_a_managed_group_or_rate_limits_without_blocking_fails():
    counted = {**managed_rule_group("AWSManagedRulesCommonRuleSet", 10), "override_action": {"count": {}}}
    counting_rate = {**rate_limit_rule(1000, 20), "action": {"count": {}}}
    plan = run_program(lambda: web_acl("origin", [counted, counting_rate]))
    assert messages(plan, "web-acls-block-with-managed-rules-and-rate-limits") == sorted([
        "Web ACL origin counts AWS managed rule group AWSManagedRulesCommonRuleSet instead of enforcing it: "
        "set its override_action={'none': {}}, or name it in countedRuleGroups with the reason",
        "Web ACL origin enforces no AWS managed rule group: add e.g. AWSManagedRulesCommonRuleSet with "
        "override_action={'none': {}} in its rules",
        "Web ACL origin has no blocking rate-based rule: add a rule with rate_based_statement and "
        "action={'block': {}} in its rules"])


def test_one_counted_managed_group_fails_even_beside_enforced_ones():
    rules = [*web_acl_rules(1000), {**managed_rule_group("AWSManagedRulesSQLiRuleSet", 50),
                                    "override_action": {"count": {}}}]
    assert messages(run_program(lambda: web_acl("origin", rules)),
                    "web-acls-block-with-managed-rules-and-rate-limits") == [
        "Web ACL origin counts AWS managed rule group AWSManagedRulesSQLiRuleSet instead of enforcing it: "
        "set its override_action={'none': {}}, or name it in countedRuleGroups with the reason"]


COUNTED = {"web-acls-block-with-managed-rules-and-rate-limits": {"countedRuleGroups": {
    "AWSManagedRulesSQLiRuleSet": "rolled out in count mode for two weeks, ticket SEC-123"}}}


@legitimate("web-acls-block-with-managed-rules-and-rate-limits")
def test_a_managed_group_counted_on_purpose_passes_when_the_config_names_it_with_a_reason():
    rules = [*web_acl_rules(1000), {**managed_rule_group("AWSManagedRulesSQLiRuleSet", 50),
                                    "override_action": {"count": {}}}]
    assert messages(run_program(lambda: web_acl("origin", rules)), "web-acls-block-with-managed-rules-and-rate-limits",
                    COUNTED) == []


@attack("web-acls-block-with-managed-rules-and-rate-limits")
def test_a_listed_counted_group_is_never_the_enforcing_one_and_other_groups_stay_refused():
    counted_sqli = {**managed_rule_group("AWSManagedRulesSQLiRuleSet", 10), "override_action": {"count": {}}}
    counted_crs = {**managed_rule_group("AWSManagedRulesCommonRuleSet", 20), "override_action": {"count": {}}}
    plan = run_program(lambda: web_acl("origin", [rate_limit_rule(1000, 5), counted_sqli, counted_crs]))
    assert messages(plan, "web-acls-block-with-managed-rules-and-rate-limits", COUNTED) == [
        "Web ACL origin counts AWS managed rule group AWSManagedRulesCommonRuleSet instead of enforcing it: "
        "set its override_action={'none': {}}, or name it in countedRuleGroups with the reason",
        "Web ACL origin enforces no AWS managed rule group: add e.g. AWSManagedRulesCommonRuleSet with "
        "override_action={'none': {}} in its rules"]


@attack("web-acls-block-with-managed-rules-and-rate-limits")
def test_rules_given_as_unreadable_json_are_reported_not_skipped():
    plan = run_program(lambda: web_acl("garbled", [*web_acl_rules(1000)], rule_json="[{not json"))
    assert "Web ACL garbled: rule_json is not JSON, so its rules cannot be judged" in \
        messages(plan, "web-acls-block-with-managed-rules-and-rate-limits")


@attack("web-acls-block-with-managed-rules-and-rate-limits")
def test_an_empty_web_acl_fails_and_rules_given_as_json_are_read():
    api_rules = [
        {"Name": "rate", "Priority": 1, "Action": {"Block": {}},
         "Statement": {"RateBasedStatement": {"Limit": 1000, "AggregateKeyType": "IP"}},
         "VisibilityConfig": {"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True, "MetricName": "r"}},
        {"Name": "crs", "Priority": 2, "OverrideAction": {"None": {}},
         "Statement": {"ManagedRuleGroupStatement": {"VendorName": "AWS", "Name": "AWSManagedRulesCommonRuleSet"}},
         "VisibilityConfig": {"SampledRequestsEnabled": True, "CloudWatchMetricsEnabled": True, "MetricName": "c"}}]

    def program():
        web_acl("empty")
        web_acl("from-json", rule_json=json.dumps(api_rules))
        api_rules[1]["OverrideAction"] = {"Count": {}}
        web_acl("json-counting", rule_json=json.dumps(api_rules))
    found = messages(run_program(program), "web-acls-block-with-managed-rules-and-rate-limits")
    assert [m.split(" ", 3)[2] for m in found] == ["empty", "empty", "json-counting", "json-counting"]
    assert "Web ACL json-counting counts AWS managed rule group AWSManagedRulesCommonRuleSet instead of " \
           "enforcing it: set its override_action={'none': {}}, or name it in countedRuleGroups with the reason" \
           in found


def test_managed_groups_counted_through_separate_rule_resources_fail():
    acl = "arn:aws:wafv2:us-east-1:111122223333:regional/webacl/origin/a1b2c3d4-5678-90ab-cdef-111122223333"

    def program():
        aws.wafv2.WebAclRule("counted-rule", web_acl_arn=acl, priority=60, override_action={"count": {}},
                             statement={"managed_rule_group_statement": {"vendor_name": "AWS",
                                                                         "name": "AWSManagedRulesLinuxRuleSet"}},
                             visibility_config=visibility("counted-rule"))
        aws.wafv2.WebAclRuleGroupAssociation("counted-group", web_acl_arn=acl, rule_name="unix", priority=70,
                                             override_action="count", managed_rule_group={
                                                 "vendor_name": "AWS", "name": "AWSManagedRulesUnixRuleSet"})
        aws.wafv2.WebAclRuleGroupAssociation("enforced-group", web_acl_arn=acl, rule_name="php", priority=80,
                                             override_action="none", managed_rule_group={
                                                 "vendor_name": "AWS", "name": "AWSManagedRulesPHPRuleSet"})
    assert messages(run_program(program), "web-acls-block-with-managed-rules-and-rate-limits") == sorted([
        "Web ACL rule counted-rule counts an AWS managed rule group instead of enforcing it: "
        "set override_action={'none': {}}",
        "Web ACL rule group association counted-group counts an AWS managed rule group instead of enforcing it: "
        "set override_action='none'"])


# -- internet-facing-albs-have-waf ------------------------------------------------------------------

@attack("internet-facing-albs-have-waf")
def test_internet_facing_albs_need_a_web_acl_association_and_internal_ones_do_not():
    def program():
        acl = web_acl("origin", web_acl_rules(1000))
        guarded = alb("guarded", internal=False)
        aws.wafv2.WebAclAssociation("guarded-waf", resource_arn=guarded.arn, web_acl_arn=acl.arn)
        alb("exposed")
        alb("internal", internal=True)
    assert messages(run_program(program), "internet-facing-albs-have-waf") == [
        "Internet-facing ALB exposed has no WAF: associate a web ACL with it "
        "(aws.wafv2.WebAclAssociation, resource_arn=the ALB's arn)"]


# -- cloudflare-load-balancer-proxied-with-session-affinity ------------------------------------------

def cf_load_balancer(name: str, **overrides) -> cloudflare.LoadBalancer:
    pool = "0123456789abcdef0123456789abcdef"
    return cloudflare.LoadBalancer(name, **{
        "zone_id": ZONE, "name": f"{name}.example.travel", "default_pools": [pool], "fallback_pool": pool,
        "proxied": True, "session_affinity": "header",
        "session_affinity_attributes": {"headers": ["Mcp-Session-Id"], "require_all_headers": True}, **overrides})


@legitimate("cloudflare-load-balancer-proxied-with-session-affinity")
def test_a_proxied_load_balancer_pinning_sessions_by_their_mcp_header_passes_in_any_case():
    def program():
        cf_load_balancer("mcp")
        cf_load_balancer("lower", session_affinity_attributes={"headers": ["mcp-session-id"]})
    assert messages(run_program(program), "cloudflare-load-balancer-proxied-with-session-affinity") == []


@attack("cloudflare-load-balancer-proxied-with-session-affinity")
def test_an_unproxied_or_unpinned_load_balancer_fails():
    def program():
        cf_load_balancer("dns-only", proxied=False)
        cf_load_balancer("cookie", session_affinity="cookie", session_affinity_attributes=None)
        cf_load_balancer("other-header", session_affinity_attributes={"headers": ["X-Session"]})
        cf_load_balancer("rule-off", rules=[{"name": "eu", "condition": 'http.host eq "eu.example.com"',
                                             "overrides": {"session_affinity": "none"}}])
    assert messages(run_program(program), "cloudflare-load-balancer-proxied-with-session-affinity") == sorted([
        "Cloudflare load balancer dns-only is not proxied: set proxied=True",
        "Cloudflare load balancer cookie has session_affinity 'cookie': set session_affinity='header' so a "
        "session stays in the region holding its state",
        "Cloudflare load balancer other-header does not pin sessions by Mcp-Session-Id: "
        "set session_affinity_attributes={'headers': ['Mcp-Session-Id']}",
        "Cloudflare load balancer rule-off rule eu has session_affinity 'none': set session_affinity='header' so "
        "a session stays in the region holding its state"])


# -- cloudflare-pools-monitored ---------------------------------------------------------------------

def pools_program(*, country_lists: dict[str, list[str]], **routes) -> Callable[[], None]:
    """A monitored pool `watched` and an unmonitored `blind`; a load balancer routing to them by name."""
    def program():
        origins = [{"name": "us-east-1", "address": "front-123.us-east-1.elb.amazonaws.com", "enabled": True}]
        monitor = cloudflare.LoadBalancerMonitor("monitor", account_id=CF_ACCOUNT, type="https", path="/healthz")
        pools = {"watched": cloudflare.LoadBalancerPool("watched", account_id=CF_ACCOUNT, name="watched",
                                                        origins=origins, monitor=monitor.id).id,
                 "blind": cloudflare.LoadBalancerPool("blind", account_id=CF_ACCOUNT, name="blind",
                                                      origins=origins).id}

        def ids(names: list[str]) -> list:
            return [pools[n] for n in names]
        cf_load_balancer("mcp", steering_policy="geo", default_pools=ids(routes.get("default", ["watched"])),
                         fallback_pool=pools[routes.get("fallback", "watched")],
                         region_pools={r: ids(n) for r, n in routes.get("regions", {}).items()},
                         country_pools={c: ids(n) for c, n in country_lists.items()})
    return program


BLIND = ("Cloudflare pool blind has no health monitor, so traffic keeps flowing to a failed region{}: set "
         "monitor=<a LoadBalancerMonitor id>, or use it only as the last pool of countryPools or regionPools lists")


@legitimate("cloudflare-pools-monitored")
def test_an_unmonitored_pool_may_only_be_the_last_resort_of_country_lists():
    program = pools_program(country_lists={"DE": ["watched", "blind"], "FR": ["blind"]})
    assert messages(run_program(program), "cloudflare-pools-monitored") == []


@legitimate("cloudflare-pools-monitored")
def test_an_unmonitored_pool_may_end_a_cloudflare_regions_list():
    # A strict group's Cloudflare regions end with its last resort (components/edge.py).
    program = pools_program(country_lists={}, regions={"WEU": ["watched", "blind"]})
    assert messages(run_program(program), "cloudflare-pools-monitored") == []


@pytest.mark.parametrize("routes, where", [
    ({"country_lists": {}}, ""),   # used nowhere: nothing shows it is a last resort
    ({"country_lists": {"DE": ["blind", "watched"]}}, " (through mcp's countryPools.DE)"),
    ({"country_lists": {"DE": ["watched", "blind"]}, "default": ["watched", "blind"]}, " (through mcp's defaultPools)"),
    ({"country_lists": {"DE": ["watched", "blind"]}, "fallback": "blind"}, " (through mcp's fallbackPool)"),
    ({"country_lists": {}, "regions": {"WEU": ["blind", "watched"]}}, " (through mcp's regionPools.WEU)"),
])
@attack("cloudflare-pools-monitored")
def test_an_unmonitored_pool_anywhere_else_is_reported(routes, where):
    assert messages(run_program(pools_program(**routes)), "cloudflare-pools-monitored") == [BLIND.format(where)]


# -- cloudflare-zone-tls-strict ---------------------------------------------------------------------

@legitimate("cloudflare-zone-tls-strict")
def test_strict_ssl_and_tls_1_2_pass():
    def program():
        cloudflare.ZoneSetting("ssl", zone_id=ZONE, setting_id="ssl", value="strict")
        cloudflare.ZoneSetting("ssl-only-origin-pull", zone_id=ZONE, setting_id="ssl", value="origin_pull")
        cloudflare.ZoneSetting("tls", zone_id=ZONE, setting_id="min_tls_version", value="1.2")
        cloudflare.ZoneSetting("tls13", zone_id=ZONE, setting_id="tls_1_3", value="on")
        cloudflare.ZoneSetting("https", zone_id=ZONE, setting_id="always_use_https", value="on")
    assert messages(run_program(program), "cloudflare-zone-tls-strict") == []


@attack("cloudflare-zone-tls-strict")
def test_ssl_below_strict_or_tls_below_1_2_fails_wherever_it_is_set():
    def program():
        cloudflare.ZoneSetting("ssl", zone_id=ZONE, setting_id="ssl", value="full")
        cloudflare.ZoneSetting("tls", zone_id=ZONE, setting_id="min_tls_version", value="1.0")
        cloudflare.HostnameTlsSetting("legacy-host", zone_id=ZONE, hostname="legacy.example.travel",
                                      setting_id="min_tls_version", value="1.1")
        cloudflare.Ruleset("config", zone_id=ZONE, name="config", kind="zone", phase="http_config_settings",
                           rules=[{"ref": "flexible_mcp", "action": "set_config", "expression": "true",
                                   "action_parameters": {"ssl": "flexible"}}])
        cloudflare.PageRule("page", zone_id=ZONE, target="mcp.example.travel/*", actions={"ssl": "off"})
        cloudflare.ZoneSetting("https", zone_id=ZONE, setting_id="always_use_https", value="off")
    assert messages(run_program(program), "cloudflare-zone-tls-strict") == sorted([
        "Zone setting https sets always_use_https='off': set value='on'",
        "Zone setting ssl sets ssl='full': set value='strict'",
        "Zone setting tls sets min_tls_version='1.0': set value='1.2'",
        "Hostname TLS setting legacy-host sets min_tls_version='1.1': set value='1.2'",
        "Ruleset config rule flexible_mcp lowers ssl to 'flexible': remove the override or set it to 'strict'",
        "Page rule page lowers ssl to 'off': remove the override or set it to 'strict'"])


# -- cloudflare-load-balancer-zones-set-tls ---------------------------------------------------------

@attack("cloudflare-load-balancer-zones-set-tls")
def test_a_load_balancers_zone_must_set_ssl_and_minimum_tls_in_the_stack():
    def program():
        cf_load_balancer("mcp")
        cloudflare.ZoneSetting("ssl", zone_id=ZONE, setting_id="ssl", value="strict")
        cloudflare.ZoneSetting("https", zone_id=ZONE, setting_id="always_use_https", value="on")
        cf_load_balancer("elsewhere", zone_id="1" * 32)
        cloudflare.ZoneSetting("other-tls", zone_id="1" * 32, setting_id="min_tls_version", value="1.2")
        cloudflare.ZoneSetting("other-ssl", zone_id="1" * 32, setting_id="ssl", value="strict")
    assert messages(run_program(program), "cloudflare-load-balancer-zones-set-tls") == [
        f"Cloudflare load balancer elsewhere's zone {'1' * 32} has no always_use_https setting in this stack (the "
        f"zone's default may be below it): add cloudflare.ZoneSetting(setting_id='always_use_https', value='on')",
        f"Cloudflare load balancer mcp's zone {ZONE} has no min_tls_version setting in this stack (the zone's "
        f"default may be below it): add cloudflare.ZoneSetting(setting_id='min_tls_version', value='1.2')"]


# -- cloudflare-edge-protections-enforced ---------------------------------------------------------

EDGE = "cloudflare-edge-protections-enforced"
OWASP, CF_MANAGED = "4814384a9e5d4991b9815dcfc25d2f1f", "efb7b8c949ac4650a09736fc376e9aee"


def dev_edge(plan_name: str = "pro") -> tuple[list[dict], dict]:
    """The dev stack's export with its zone on `plan_name`, and the pack config its spec generates."""
    estate = copy.deepcopy(stack_config("dev")["mcp-estate:estate"])
    estate["domain"]["cloudflare_plan"] = plan_name
    if plan_name == "free":   # Free counts per 10 s: the spec wants a multiple of 6
        estate.setdefault("edge", {})["rate_limit_per_minute"] = 600
    spec = parse_spec(estate)
    built = run_offline(lambda: Estate("mcp-estate", spec), stack="dev", account_id=spec.aws_account_id,
                        config={}, inspect=inspect_resource)
    return [r.export() for r in Plan(built).resources], with_spec({}, spec)


@pytest.fixture(scope="module")
def pro_edge() -> tuple[list[dict], dict]:
    return dev_edge("pro")


def edge_findings(resources: list[dict], config: dict) -> list[str]:
    [control] = [c for c in CONTROLS if c.name == EDGE]
    return [v.message for v in evaluate(resources, config, controls=[control])]


def changed(edge: tuple[list[dict], dict], kind: str, change: Callable[[dict], object]) -> list[str]:
    """The findings once `change(outputs)` edited every resource of `kind` (type token suffix or
    ruleset phase), in outputs and inputs alike; a change returning "drop" removes the resource."""
    resources, kept = copy.deepcopy(edge[0]), []
    for resource in resources:
        hit = resource["type"].endswith(kind) or (resource.get("outputs") or {}).get("phase") == kind
        if hit and any(change(resource[key]) == "drop" for key in ("inputs", "outputs") if resource.get(key)):
            continue
        kept.append(resource)
    return edge_findings(kept, edge[1])


def first_rule(phase_outputs: dict) -> dict:
    return phase_outputs["rules"][0]


@pytest.mark.parametrize("plan_name", ["free", "pro", "business", "enterprise"])
@legitimate("cloudflare-edge-protections-enforced")
def test_what_each_plan_builds_passes(plan_name):
    assert edge_findings(*dev_edge(plan_name)) == []


def test_the_edge_cannot_be_judged_without_the_generated_config(pro_edge):
    assert edge_findings(pro_edge[0], {}) == [
        "The pack config gives no hostname and cloudflarePlan for cloudflare-edge-protections-enforced, so the "
        "edge's protections cannot be judged: pass the config `estate pack-config --stack <stack> --write` "
        "generates (policies/config/<environment>.json)"]


@attack("cloudflare-edge-protections-enforced")
def test_a_custom_rule_in_log_mode_blocks_nothing(pro_edge):
    found = changed(pro_edge, "http_request_firewall_custom", lambda o: first_rule(o).update(action="log"))
    assert found[0] == ("Ruleset mcp-estate-edge-firewall rule 'mcp_paths_only' only logs (action 'log'): it blocks "
                        "nothing; set action 'block'")
    assert found[1].startswith("No enabled custom WAF rule on the zone of Cloudflare load balancer mcp-estate-edge-lb "
                               "blocks by http.request.uri.path on mcp.dev.example.travel")


def test_a_disabled_custom_rule_or_one_scoped_to_another_host_is_absent(pro_edge):
    disabled = changed(pro_edge, "http_request_firewall_custom", lambda o: o["rules"][1].update(enabled=False))
    assert [m.split(" on the zone")[0] for m in disabled] == ["No enabled custom WAF rule"]
    assert "by http.request.method" in disabled[0]
    elsewhere = changed(pro_edge, "http_request_firewall_custom", lambda o: [
        r.update(expression=r["expression"].replace('"mcp.dev.example.travel"', '"mcp.dev.example.travel.invalid"'))
        for r in o["rules"]])
    assert len(elsewhere) == 2


def test_a_skip_rule_that_switches_the_managed_phase_off_is_refused(pro_edge):
    skip = {"ref": "bypass", "action": "skip", "expression": "true", "enabled": True,
            "actionParameters": {"phases": ["http_request_firewall_managed", "http_ratelimit"]}}
    found = changed(pro_edge, "http_request_firewall_custom", lambda o: o["rules"].insert(0, skip))
    assert found == ["Ruleset mcp-estate-edge-firewall rule 'bypass' skips other rules or phases (action 'skip'), "
                     "switching protections off for what it matches: remove it"]


def test_a_removed_or_toothless_rate_limit_is_refused(pro_edge):
    removed = changed(pro_edge, "http_ratelimit", lambda o: "drop")
    per_colo = changed(pro_edge, "http_ratelimit", lambda o: first_rule(o)["ratelimit"].update(
        characteristics=["cf.colo.id"]))
    logged = changed(pro_edge, "http_ratelimit", lambda o: first_rule(o).update(action="log"))
    for found in (removed, per_colo, logged):
        assert found[-1].startswith("No enabled rate limiting rule on the zone of Cloudflare load balancer "
                                    "mcp-estate-edge-lb blocks per client IP")


@pytest.mark.parametrize("overrides, named", [
    ({"enabled": False}, "ruleset"),
    ({"action": "log"}, "ruleset"),
    ({"categories": [{"category": "sqli", "action": "log"}]}, "category:sqli"),
    ({"rules": [{"id": "5de7edfa648c4d6891dc3e7f84534ffa", "enabled": False}]},
     "rule:5de7edfa648c4d6891dc3e7f84534ffa"),
])
@attack("cloudflare-edge-protections-enforced")
def test_a_managed_ruleset_switched_off_or_to_logging_is_refused_unless_accepted(pro_edge, overrides, named):
    def override_owasp(outputs):
        [rule] = [r for r in outputs["rules"] if r["actionParameters"]["id"] == OWASP]
        rule["actionParameters"]["overrides"] = overrides
    found = changed(pro_edge, "http_request_firewall_managed", override_owasp)
    assert found == [f"Ruleset mcp-estate-edge-managed rule 'owasp_core' runs managed ruleset {OWASP} with {named}: "
                     "remove the override, or accept it in the pack config's acceptedManagedOverrides with the reason"]
    accepted = {**pro_edge[1][EDGE], "acceptedManagedOverrides": [
        {"ruleset": OWASP, "override": named, "reason": "rolled out in log mode until 2027-01-15, ticket SEC-412"}]}
    assert changed((pro_edge[0], {EDGE: accepted}), "http_request_firewall_managed", override_owasp) == []


def test_a_managed_ruleset_the_plan_includes_must_run(pro_edge):
    def drop_cf_managed(outputs):
        outputs["rules"] = [r for r in outputs["rules"] if r["actionParameters"]["id"] != CF_MANAGED]
    assert changed(pro_edge, "http_request_firewall_managed", drop_cf_managed) == [
        f"Managed ruleset {CF_MANAGED}, which the zone's pro plan includes, is not executed on the zone of Cloudflare "
        "load balancer mcp-estate-edge-lb: restore it in the Edge's http_request_firewall_managed ruleset"]
    disabled = changed(pro_edge, "http_request_firewall_managed", lambda o: o["rules"][0].update(enabled=False))
    assert len(disabled) == 1 and "is not executed" in disabled[0]


@pytest.mark.parametrize("change, problem", [
    ({"type": "http"}, "type 'http' (set 'https')"),
    ({"path": "/"}, "path '/' (set '/booking/healthz')"),
    ({"allowInsecure": True}, "allow_insecure=True (the ALB's certificate must verify)"),
])
@attack("cloudflare-edge-protections-enforced")
def test_a_monitor_that_does_not_probe_the_health_path_over_verified_https_is_refused(pro_edge, change, problem):
    [message] = changed(pro_edge, "loadBalancerMonitor:LoadBalancerMonitor", lambda o: o.update(change))
    assert message.endswith(f"does not probe the MCP health path over verified HTTPS: {problem}")
