"""mcp-surface-enforced-at-edge-and-origin: the edge rules the spec generates, as generated; the allowlist at
the origin; rate limits on every MCP path."""

from __future__ import annotations

import copy

import pytest

from mcp_estate.checking.check import evaluate
from mcp_estate.checking.pack_config import SURFACE_POLICY, with_spec
from mcp_estate.components.estate import Estate
from mcp_estate.contract.validate import parse_spec
from mcp_estate.offline.fidelity import inspect_resource
from mcp_estate.offline.runner import run_offline
from mcp_estate.policies.mcp_surface import normalised
from conftest import Plan, stack_config
from corpus import attack, legitimate

POLICY = "mcp-surface-enforced-at-edge-and-origin"
RULESET = "cloudflare:index/ruleset:Ruleset"
EXEMPTION = " and not ip.src in {203.0.113.7}"


def built(plan: str) -> tuple[list[dict], dict]:
    """The dev estate with a tools allowlist and a per-tool limit on booking, and its generated pack config."""
    estate = copy.deepcopy(stack_config("dev")["mcp-estate:estate"])
    estate["servers"][0]["surface"] = {"tools": ["get_booking", "search_trips"], "tool_limits": {
        "search_trips": {"per_ip_per_minute": 30, "per_traveller_per_minute": 20}}}
    estate["domain"]["cloudflare_plan"] = plan
    spec = parse_spec(estate)
    planned = run_offline(lambda: Estate("mcp-estate", spec), stack="dev", account_id=spec.aws_account_id,
                          config={}, inspect=inspect_resource)
    return [r.export() for r in Plan(planned).resources], with_spec({}, spec)


@pytest.fixture(scope="module")
def pro() -> tuple[list[dict], dict]:
    return built("pro")


@pytest.fixture(scope="module")
def enterprise() -> tuple[list[dict], dict]:
    """Enterprise: the edge also gets the server's per-tool rate limiting rules."""
    return built("enterprise")


def messages(estate: tuple[list[dict], dict], change=None, config: dict | None = None) -> list[str]:
    resources = copy.deepcopy(estate[0])
    if change:
        change(resources)
    return sorted(v.message for v in evaluate(resources, estate[1] if config is None else config)
                  if v.policy == POLICY)


def ruleset(resources: list[dict], phase: str) -> dict:
    return next(r for r in resources if r["type"] == RULESET and r["outputs"]["phase"] == phase)


def edge_rule(resources: list[dict]) -> dict:
    rules = ruleset(resources, "http_request_firewall_custom")["outputs"]["rules"]
    return next(rule for rule in rules if "mcp-name" in rule["expression"])


def tool_limit(resources: list[dict]) -> dict:
    rules = ruleset(resources, "http_ratelimit")["outputs"]["rules"]
    return next(rule for rule in rules if '"search_trips")' in rule["expression"])


def acls(resources: list[dict]) -> list[dict]:
    return [r for r in resources if r["type"] == "aws:wafv2/webAcl:WebAcl"]   # policies read outputs


def test_the_pack_config_carries_the_generated_rules(pro, enterprise):
    surface = pro[1][SURFACE_POLICY]
    [rule] = surface["edgeRules"]
    assert rule == edge_rule(pro[0])["expression"] and surface["allowlistPaths"] == ["/booking/mcp"]
    assert surface["edgeRatelimits"] == []   # below Enterprise a rate limit cannot read headers
    limit = next(r for r in enterprise[1][SURFACE_POLICY]["edgeRatelimits"] if '"search_trips")' in r["expression"])
    assert limit["ratelimit"] == {"characteristics": ["cf.colo.id", "ip.src"], "period": 60,
                                  "requestsPerPeriod": 30, "mitigationTimeout": 600}


@legitimate("mcp-surface-enforced-at-edge-and-origin")
def test_the_built_estate_passes(pro):
    assert messages(pro) == []


@legitimate("mcp-surface-enforced-at-edge-and-origin")
def test_the_built_enterprise_estate_with_its_rate_limits_passes(enterprise):
    assert messages(enterprise) == []


HEAD = "The Cloudflare custom rule the spec generates for /booking/mcp"
DIFFERS = (f"{HEAD} is not in the zone's custom rules; rule 'mcp_surface_booking' of mcp-estate-edge-firewall reads "
           "the same path or header but its expression differs from the generated one")


def split(rules: list[dict]) -> None:
    """The rule as two: the path and methods in one, the tools clause in another that only logs."""
    rule = next(r for r in rules if "mcp-name" in r["expression"])
    head, tools = rule["expression"].rsplit(" or (any(http.request.headers[\"mcp-method\"][*] eq \"tools/call\")", 1)
    rule["expression"] = head + "))"
    rules.append({**rule, "ref": "mcp_surface_booking_tools", "action": "log",
                  "expression": head.split(" and (not http.request.method")[0] + " and ((any(http.request.headers"
                                '["mcp-method"][*] eq "tools/call")' + tools})


@pytest.mark.parametrize("change, expected", [
    # The audit's bypass: a client exemption, blocking and enabled, with every header key in lowercase.
    (lambda rule: rule.update(expression="(" + rule["expression"] + ")" + EXEMPTION), DIFFERS),
    (lambda rule: rule.update(expression=rule["expression"][:-1] + EXEMPTION + ")"), DIFFERS),
    (lambda rule: rule.update(expression=rule["expression"] + ' or http.host ne ""'), DIFFERS),
    (lambda rule: rule.update(expression="(" + rule["expression"] + " or true)"), DIFFERS),
    (lambda rule: rule.update(expression=rule["expression"].replace(' and (not http.request.method', ' and (false or'
                                                                    ' not http.request.method')), DIFFERS),
    # another tool let through, the header key in another case (Cloudflare keys headers in lowercase)
    (lambda rule: rule.update(expression=rule["expression"].replace('"search_trips"}', '"search_trips" "refund"}')),
     DIFFERS),
    (lambda rule: rule.update(expression=rule["expression"].replace('["mcp-name"]', '["Mcp-Name"]')), DIFFERS),
    (lambda rule: rule.update(expression=rule["expression"] + " and false"), DIFFERS),   # never matches
    (lambda rule: rule.update(enabled=False), f"{HEAD} is there as 'mcp_surface_booking' of mcp-estate-edge-firewall, "
                                              "but it is disabled: it refuses nothing"),
    (lambda rule: rule.update(action="log"), f"{HEAD} is there as 'mcp_surface_booking' of mcp-estate-edge-firewall, "
                                             "but its action is 'log', not 'block'"),
    (lambda rule: rule.update(action="skip"), "its action is 'skip', not 'block'"),
])
@attack("mcp-surface-enforced-at-edge-and-origin")
def test_an_edge_rule_that_is_not_the_generated_one_is_reported(pro, change, expected):
    found = messages(pro, lambda resources: change(edge_rule(resources)))
    assert len(found) == 1 and expected in found[0], found


@attack("mcp-surface-enforced-at-edge-and-origin")
def test_an_edge_rule_split_with_its_tools_half_logging_is_reported(pro):
    found = messages(pro, lambda resources: split(ruleset(resources, "http_request_firewall_custom")["outputs"]["rules"]))
    assert len(found) == 1 and found[0].startswith(HEAD + " is not in the zone's custom rules; rule "
                                                   "'mcp_surface_booking' of mcp-estate-edge-firewall, "
                                                   "'mcp_surface_booking_tools'"), found


@attack("mcp-surface-enforced-at-edge-and-origin")
def test_the_generated_rule_in_another_zone_or_an_unexecuted_ruleset_is_reported(pro):
    def other_zone(resources):
        ruleset(resources, "http_request_firewall_custom")["outputs"]["zoneId"] = "9" * 32

    def custom_kind(resources):   # a `custom` ruleset runs only when an entrypoint rule executes it
        ruleset(resources, "http_request_firewall_custom")["outputs"]["kind"] = "custom"
    for change in (other_zone, custom_kind):
        assert messages(pro, change) == [f"{HEAD} is not in the zone's custom rules: restore the rule "
                                         "mcp_estate/contract/surface_rules.py generates"]


@attack("mcp-surface-enforced-at-edge-and-origin")
def test_a_pack_config_without_the_edge_rules_cannot_judge_and_says_so(pro):
    config = copy.deepcopy(pro[1])
    del config[SURFACE_POLICY]
    found = messages(pro, config=config)
    edge = ("The pack config gives no edgeRules for mcp-surface-enforced-at-edge-and-origin, so whether "
            "the edge's MCP surface rules are the ones the spec generates cannot be judged: pass the config "
            "`estate pack-config --stack <stack> --write` generates (policies/config/<environment>.json)")
    origin = ("The pack config gives no originRules for mcp-surface-enforced-at-edge-and-origin, so whether the "
              "web ACL's MCP rules are the ones the spec generates cannot be judged: pass the config "
              "`estate pack-config --stack <stack> --write` generates")
    assert found[0] == edge and found[1:] and set(found[1:]) == {origin}   # once per web ACL


def reformatted(rule: dict) -> None:
    """The same expression in another layout and the Rules language's C-like notation."""
    text = rule["expression"].replace(" and ", "\n  && ").replace(" or ", " || ").replace("not ", "! ")
    rule["expression"] = "( " + text.replace(" eq ", " == ").replace("(", "( ") + " )"


@legitimate("mcp-surface-enforced-at-edge-and-origin")
def test_the_generated_rule_reformatted_or_in_c_like_notation_passes(pro):
    assert messages(pro, lambda resources: reformatted(edge_rule(resources))) == []


@legitimate("mcp-surface-enforced-at-edge-and-origin")
def test_a_further_blocking_rule_beside_the_generated_ones_passes(pro):
    def stricter(resources):
        rules = ruleset(resources, "http_request_firewall_custom")["outputs"]["rules"]
        rules.append({**edge_rule(resources), "ref": "booking_no_refunds",
                      "expression": 'any(http.request.headers["mcp-name"][*] eq "refund")'})
    assert messages(pro, stricter) == []


@legitimate("mcp-surface-enforced-at-edge-and-origin")
def test_the_same_edge_rules_in_another_order_pass(pro):
    def reverse(resources):
        for rules in (r for r in resources if r["type"] == RULESET):
            for key in ("inputs", "outputs"):
                rules[key]["rules"] = list(reversed(rules[key]["rules"]))
    assert messages(pro, reverse) == []


def test_expressions_are_compared_token_by_token_with_case_and_set_order_kept():
    generated = '(http.host eq "a.example" and not ip.src in {192.0.2.1 192.0.2.2})'
    assert normalised('http.host == "a.example"  &&\n! ip.src in { 192.0.2.1 192.0.2.2 }') == normalised(generated)
    assert normalised('((' + generated + '))') == normalised(generated)
    for other in ('(http.host eq "A.example" and not ip.src in {192.0.2.1 192.0.2.2})',
                  '(http.host eq "a.example" and not ip.src in {192.0.2.2 192.0.2.1})',
                  '(http.host eq "a.example" and not ip.src in {192.0.2.1192.0.2.2})',
                  '(http.host eq "a.example") and (not ip.src in {192.0.2.1 192.0.2.2})'):
        assert normalised(other) != normalised(generated), other


# -- the edge's rate limits (Enterprise) ------------------------------------------------------------

LIMIT = "The Cloudflare rate limit the spec generates for /booking/mcp (30.0 requests per 60.0 s by cf.colo.id, ip.src"


@pytest.mark.parametrize("change, expected", [
    (lambda rule: rule["ratelimit"].update(requestsPerPeriod=3000), "but it counts 3000.0 requests per 60.0 s"),
    (lambda rule: rule["ratelimit"].update(characteristics=["cf.colo.id"]), "but it counts 30.0 requests per 60.0 s "
                                                                             "by cf.colo.id, blocking"),
    (lambda rule: rule["ratelimit"].update(mitigationTimeout=0), "blocking for 0.0 s"),
    (lambda rule: rule.update(action="log"), "but its action is 'log', not 'block'"),
    (lambda rule: rule.update(enabled=False), "but it is disabled"),
    (lambda rule: rule.update(expression="(" + rule["expression"] + EXEMPTION + ")"),
     "is not in the zone's rate limiting rules with its generated expression"),
])
@attack("mcp-surface-enforced-at-edge-and-origin")
def test_an_edge_rate_limit_that_is_not_the_generated_one_is_reported(enterprise, change, expected):
    found = messages(enterprise, lambda resources: change(tool_limit(resources)))
    assert len(found) == 1 and found[0].startswith(LIMIT) and expected in found[0], found


@legitimate("mcp-surface-enforced-at-edge-and-origin")
def test_a_rate_limit_counting_the_same_characteristics_in_another_order_passes(enterprise):
    assert messages(enterprise, lambda resources: tool_limit(resources)["ratelimit"].update(
        characteristics=["ip.src", "cf.colo.id"])) == []


# -- the origin and the estate-wide limits -----------------------------------------------------------

@attack("mcp-surface-enforced-at-edge-and-origin")
def test_an_origin_without_the_allowlist_is_reported(pro):
    def without(resources):
        for acl in acls(resources):
            acl["outputs"]["rules"] = [r for r in acl["outputs"]["rules"] if not r["name"].endswith("-tools")]
    found = messages(pro, without)
    assert any("no blocking rule on /booking/mcp comparing the mcp-name header" in m for m in found)
    assert any(m.endswith("rule mcp-booking-tools is missing: keep the rules region_compute.py builds; change the "
                          "server's `surface` instead") for m in found)


@attack("mcp-surface-enforced-at-edge-and-origin")
def test_an_origin_rule_set_to_count_is_reported(pro):
    def counting(resources):
        for acl in acls(resources):
            for rule in acl["outputs"]["rules"]:
                if rule["name"].endswith("-tools"):
                    rule["action"] = {"count": {}}
    assert any("no blocking rule on /booking/mcp" in m for m in messages(pro, counting))


def exempting_a_client(resources):
    """The bypass of the edge, at the origin: the tools rule spares one client IP."""
    spared = {"notStatement": {"statement": {"ipSetReferenceStatement": {"arn": "arn:aws:wafv2:x"}}}}
    for acl in acls(resources):
        for rule in acl["outputs"]["rules"]:
            if rule["name"] == "mcp-booking-tools":
                rule["statement"]["andStatement"]["statements"].append(spared)


def allowing_first(resources):
    """A rule that allows, placed before the MCP rules: allow is terminating, the rules after it never run."""
    for acl in acls(resources):
        acl["outputs"]["rules"].insert(0, {"name": "partner", "priority": 1, "action": {"allow": {}}, "statement": {
            "ipSetReferenceStatement": {"arn": "arn:aws:wafv2:x"}}})


def raising_a_limit(resources):
    for acl in acls(resources):
        for rule in acl["outputs"]["rules"]:
            if rule["name"].startswith("mcp-per-ip-"):
                rule["statement"]["rateBasedStatement"]["limit"] *= 100


@attack("mcp-surface-enforced-at-edge-and-origin")
@pytest.mark.parametrize("change, expected", [
    (exempting_a_client, "rule mcp-booking-tools is not as the spec generates it (statement differ)"),
    (allowing_first, "rule partner allows: every rule after it is skipped"),
    (raising_a_limit, "is not as the spec generates it (statement differ)")])
def test_an_origin_rule_that_spares_or_skips_is_reported(pro, change, expected):
    assert any(expected in m for m in messages(pro, change)), messages(pro, change)


@legitimate("mcp-surface-enforced-at-edge-and-origin")
def test_origin_rules_reordered_or_renamed_metrics_pass(pro):
    def reordered(resources):
        for acl in acls(resources):
            acl["outputs"]["rules"].reverse()
            for rule in acl["outputs"]["rules"]:
                rule["visibilityConfig"] = {**rule.get("visibilityConfig", {}), "metricName": "renamed"}
    assert messages(pro, reordered) == []


@attack("mcp-surface-enforced-at-edge-and-origin")
def test_a_rate_limit_on_another_path_is_reported(pro):
    def elsewhere(resources):
        for acl in acls(resources):   # the ACL-wide per-IP rule covers every path: take it away first
            acl["outputs"]["rules"] = [r for r in acl["outputs"]["rules"] if r["name"] != "rate-per-client-ip"]
            for rule in acl["outputs"]["rules"]:
                # One rule counts every server sharing a limit: move booking's paths out of the per-IP
                # ones, and let the per-traveller ones only count.
                if rule["name"].startswith(("mcp-per-ip-", "mcp-tools-per-ip-")):
                    rule["statement"] = eval(repr(rule["statement"]).replace("booking", "other"))  # noqa: S307
                if rule["name"].startswith(("mcp-per-traveller-", "mcp-tools-per-traveller-")) \
                        and "booking" in repr(rule["statement"]):
                    rule["action"] = {"count": {}}
    found = messages(pro, elsewhere)
    assert any("no blocking rate-based rule on /booking/mcp" in m for m in found), found
    assert any("is not as the spec generates it (statement differ)" in m for m in found), found


@attack("mcp-surface-enforced-at-edge-and-origin")
def test_an_edge_rate_limit_on_another_path_is_reported(pro):
    def elsewhere(resources):
        for rule in ruleset(resources, "http_ratelimit")["outputs"]["rules"]:
            rule["expression"] = rule["expression"].replace("/booking/mcp", "/other/mcp")
    assert messages(pro, elsewhere) == ["No enabled blocking Cloudflare rate limit covers /booking/mcp: a flood "
                                        "reaches the origin unthrottled; restore the Edge's rate limiting rules"]


@attack("mcp-surface-enforced-at-edge-and-origin")
def test_a_load_balancer_whose_rulesets_are_gone_misses_every_generated_rule(enterprise):
    def without(resources):
        resources[:] = [r for r in resources if r["type"] != RULESET]
    found = messages(enterprise, without)
    assert f"{HEAD} is not in the zone's custom rules: restore the rule mcp_estate/contract/surface_rules.py " \
           "generates" in found and sum("rate limit the spec generates" in m for m in found) == len(
        enterprise[1][SURFACE_POLICY]["edgeRatelimits"]) == 1, found


@legitimate("mcp-surface-enforced-at-edge-and-origin")
def test_a_stack_without_an_edge_has_no_edge_rules_to_judge(pro):
    def foundation(resources):   # deploy_stage foundation: no Cloudflare resources, no web ACLs, no routes
        resources[:] = [r for r in resources if not r["type"].startswith("cloudflare:")
                        and r["type"] != "aws:wafv2/webAcl:WebAcl" and "listenerRule" not in r["type"]]
    assert messages(pro, foundation) == []
