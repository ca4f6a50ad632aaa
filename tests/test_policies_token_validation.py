"""Who may call what, as the pack judges it: the shipped prod estate passes, and every way a route can
reach an MCP server without the estate's token check is caught (policies/token_validation.py)."""

from __future__ import annotations

import copy
import json

import pytest

from conftest import shipped_plan
from corpus import attack, legitimate
from mcp_estate.checking.check import CONFIG_DIR, evaluate
from mcp_estate.checking.pack_config import CHALLENGE_POLICY, TOKENS_POLICY

ROUTE = "mcp-estate-us-east-1-booking-route"
HEALTH = "mcp-estate-us-east-1-booking-health"
ACL = "mcp-estate-us-east-1-front-waf"
LISTENER = "mcp-estate-us-east-1-front-https"
AUDIENCE = "https://mcp.example.travel/booking/mcp"


@pytest.fixture
def export() -> list[dict]:
    """The shipped prod estate as `estate check` reads it: fresh for each test to change."""
    return copy.deepcopy([r.export() for r in shipped_plan("prod").resources])


@pytest.fixture
def config() -> dict:
    # The file `estate check` reads (beside the installed policies package), not a path in the checkout.
    return json.loads((CONFIG_DIR / "prod.json").read_text())


def named(export: list[dict], name: str) -> dict:
    [found] = [r for r in export if r["urn"].endswith(f"::{name}")]
    return found


def props(resource: dict) -> dict:
    """Both views the export holds: a change must reach the one the policies read."""
    return resource["outputs"]


def set_prop(resource: dict, key: str, value) -> None:
    resource["inputs"][key] = copy.deepcopy(value)
    resource["outputs"][key] = copy.deepcopy(value)


def messages(export: list[dict], config: dict, policy: str) -> list[str]:
    return sorted(v.message for v in evaluate(export, config) if v.policy == policy)


def tokens(export, config) -> list[str]:
    return messages(export, config, TOKENS_POLICY)


def challenge(export, config) -> list[str]:
    return messages(export, config, CHALLENGE_POLICY)


def jwt(export: list[dict], name: str = ROUTE) -> dict:
    return props(named(export, name))["actions"][0]["jwtValidation"]


def copy_route(export: list[dict], name: str, **changes) -> dict:
    """Another listener rule, a copy of booking's route in us-east-1 with `changes`."""
    rule = copy.deepcopy(named(export, ROUTE))
    rule["urn"] = rule["urn"].replace(f"::{ROUTE}", f"::{name}")
    for key, value in changes.items():
        set_prop(rule, key, value)
    export.append(rule)
    return rule


def forward_to_booking(export: list[dict]) -> dict:
    return props(named(export, ROUTE))["actions"][1]


# -- the shipped estate -------------------------------------------------------------------------------

@legitimate("mcp-routes-validate-tokens")
@legitimate("mcp-paths-answer-401-with-a-challenge")
def test_shipped_prod_validates_every_route_and_challenges_every_mcp_path(export, config):
    assert tokens(export, config) == []
    assert challenge(export, config) == []


def test_the_route_carries_the_estate_issuer_jwks_and_the_servers_own_audience(export):
    assert jwt(export) == {"issuer": "https://login.example.travel/",
                           "jwksEndpoint": "https://login.example.travel/.well-known/jwks.json",
                           "additionalClaims": [{"format": "single-string", "values": [AUDIENCE], "name": "aud"}]}


# -- mcp-routes-validate-tokens: what it catches ------------------------------------------------------

@attack("mcp-routes-validate-tokens")
def test_a_route_without_jwt_validation_is_refused(export, config):
    rule = named(export, ROUTE)
    set_prop(rule, "actions", [forward_to_booking(export)])
    assert tokens(export, config) == [
        f"Listener rule {ROUTE} forwards without validating a JWT before forwarding to MCP server "
        "'booking': every call must carry a token the estate's issuer signed for the server"]


@pytest.mark.parametrize("key, value, fragment", [
    ("issuer", "https://evil.example/", "validates tokens of issuer 'https://evil.example/'"),
    ("jwksEndpoint", "https://keys.evil.example/jwks.json", "takes signing keys from 'https://keys.evil.example"),
    ("additionalClaims", [], "accepts the audience of any token"),
    ("additionalClaims", [{"format": "string-array", "name": "aud",
                           "values": [AUDIENCE, "https://mcp.example.travel/loyalty/mcp"]}],
     "accepts the audience ['https://mcp.example.travel/booking/mcp', 'https://mcp.example.travel/loyalty/mcp']"),
])
@attack("mcp-routes-validate-tokens")
def test_a_jwt_check_of_another_issuer_host_or_audience_is_refused(export, config, key, value, fragment):
    rule = named(export, ROUTE)
    actions = copy.deepcopy(props(rule)["actions"])
    actions[0]["jwtValidation"][key] = value
    set_prop(rule, "actions", actions)
    [message] = tokens(export, config)
    assert fragment in message and "mcp-estate-us-east-1-booking-route" in message


@attack("mcp-routes-validate-tokens")
def test_a_second_rule_forwarding_to_the_same_target_group_without_jwt_is_refused(export, config):
    # Higher priority, another spelling of the path: the ALB would run it before the checked route.
    copy_route(export, "shortcut", priority=60, conditions=[{"pathPattern": {"values": ["/booking/mcp*"]}}],
               actions=[forward_to_booking(export)])
    assert tokens(export, config) == [
        "Listener rule shortcut forwards without validating a JWT before forwarding to MCP server 'booking': "
        "every call must carry a token the estate's issuer signed for the server"]


@attack("mcp-routes-validate-tokens")
def test_a_weighted_forward_without_jwt_is_refused(export, config):
    arn = forward_to_booking(export)["targetGroupArn"]
    copy_route(export, "weighted", priority=61, actions=[
        {"type": "forward", "forward": {"targetGroups": [{"arn": "arn:aws:elasticloadbalancing:us-east-1:1:x"},
                                                         {"arn": arn, "weight": 1}]}}])
    assert [m.split(" forwards")[0] for m in tokens(export, config)] == ["Listener rule weighted"]


@attack("mcp-routes-validate-tokens")
def test_a_listener_default_action_forwarding_to_an_mcp_target_group_is_refused(export, config):
    set_prop(named(export, LISTENER), "defaultActions", [forward_to_booking(export)])
    assert tokens(export, config) == [
        f"Listener {LISTENER}'s default action forwards without validating a JWT before forwarding to "
        "MCP server 'booking': every call must carry a token the estate's issuer signed for the server"]


@attack("mcp-routes-validate-tokens")
def test_a_check_and_a_forward_split_across_two_rules_is_refused(export, config):
    # The JWT check on one rule (ending in a fixed response) does not protect the forward on another.
    rule = named(export, ROUTE)
    set_prop(rule, "actions", [forward_to_booking(export)])
    copy_route(export, "checker", priority=62, actions=[
        jwt_action := props(named(export, "mcp-estate-us-west-2-booking-route"))["actions"][0],
        {"type": "fixed-response", "order": 2, "fixedResponse": {"statusCode": "200"}}])
    assert jwt_action["type"] == "jwt-validation"
    assert [m.split(" forwards")[0] for m in tokens(export, config)] == [f"Listener rule {ROUTE}"]


@attack("mcp-routes-validate-tokens")
def test_the_health_exception_holds_only_for_the_exact_health_path(export, config):
    health = named(export, HEALTH)
    assert props(health)["conditions"] == [{"pathPattern": {"values": ["/booking/healthz"]}}]
    set_prop(health, "conditions", [{"pathPattern": {"values": ["/booking/healthz", "/booking/mcp"]}}])
    assert [m.split(" forwards")[0] for m in tokens(export, config)] == [f"Listener rule {HEALTH}"]
    set_prop(health, "conditions", [{"pathPattern": {"values": ["/booking/healthz*"]}}])
    assert [m.split(" forwards")[0] for m in tokens(export, config)] == [f"Listener rule {HEALTH}"]


@legitimate("mcp-routes-validate-tokens")
def test_a_server_listed_as_validating_its_own_tokens_may_forward_without_jwt(export, config):
    set_prop(named(export, ROUTE), "actions", [forward_to_booking(export)])
    config[TOKENS_POLICY]["servers"]["booking"]["validatedBy"] = "server"
    assert tokens(export, config) == []


@attack("mcp-routes-validate-tokens")
def test_a_missing_scope_claim_is_refused_when_the_spec_requires_scopes(export, config):
    config[TOKENS_POLICY]["servers"]["booking"]["scopes"] = ["mcp:call"]
    assert {m.split(" does not")[0] for m in tokens(export, config)} == {
        f"Listener rule mcp-estate-{region}-booking-route"
        for region in ("eu-central-1", "eu-west-1", "us-east-1", "us-west-2")}


@legitimate("mcp-routes-validate-tokens")
def test_outside_prod_the_routes_are_not_judged(export, config):
    set_prop(named(export, ROUTE), "actions", [forward_to_booking(export)])
    config[TOKENS_POLICY]["environment"] = "staging"
    assert tokens(export, config) == []


def test_prod_without_the_generated_config_cannot_pass(export, config):
    config[TOKENS_POLICY] = {"environment": "prod"}
    assert tokens(export, config)[0].startswith("the pack config gives no servers for mcp-routes-validate-tokens")


# -- mcp-paths-answer-401-with-a-challenge --------------------------------------------------------------

def acl_rules(export: list[dict]) -> list[dict]:
    return copy.deepcopy(props(named(export, ACL))["rules"])


def challenge_rule(rules: list[dict], server: str = "booking") -> dict:
    [rule] = [r for r in rules if r["name"] == f"bearer-token-{server}"]
    return rule


def test_the_web_acl_answers_401_with_the_challenge(export):
    rule = challenge_rule(acl_rules(export))
    assert rule["action"]["block"]["customResponse"] == {
        "responseCode": 401, "customResponseBodyKey": "bearer-token-required",
        "responseHeaders": [{"name": "WWW-Authenticate", "value":
                             'Bearer resource_metadata="https://mcp.example.travel/.well-known/'
                             'oauth-protected-resource/booking/mcp"'}]}
    # The estate's rules and the 401 challenges below 200; the MCP surface rules from 200 on.
    assert sorted(r["priority"] for r in acl_rules(export) if r["priority"] < 200) == [20, 30, 40, 50, 51, 52]


@attack("mcp-paths-answer-401-with-a-challenge")
def test_a_missing_challenge_is_refused(export, config):
    set_prop(named(export, ACL), "rules", [r for r in acl_rules(export) if r["name"] != "bearer-token-booking"])
    assert challenge(export, config) == [
        f"Web ACL {ACL} does not answer requests to /booking/mcp without a bearer token with 401 and "
        "`WWW-Authenticate: Bearer resource_metadata=\"https://mcp.example.travel/.well-known/"
        "oauth-protected-resource/booking/mcp\"`: MCP clients cannot find where to get a token"]


@pytest.mark.parametrize("change", ["header", "status", "narrowed", "case-sensitive"])
@attack("mcp-paths-answer-401-with-a-challenge")
def test_a_challenge_that_answers_wrong_or_matches_less_is_refused(export, config, change):
    rules = acl_rules(export)
    rule = challenge_rule(rules)
    response = rule["action"]["block"]["customResponse"]
    if change == "header":
        response["responseHeaders"][0]["value"] = "Bearer"
    elif change == "status":
        response["responseCode"] = 403
    elif change == "narrowed":   # matches only requests that also carry some header: nobody's
        rule["statement"]["andStatement"]["statements"].append(rule["statement"]["andStatement"]["statements"][0])
    else:                        # "Bearer " only: a "bearer x" header would slip through unchallenged
        rule["statement"]["andStatement"]["statements"][1]["notStatement"]["statement"]["byteMatchStatement"][
            "textTransformations"] = [{"priority": 0, "type": "NONE"}]
    set_prop(named(export, ACL), "rules", rules)
    assert [m.split(" does not")[0] for m in challenge(export, config)] == [f"Web ACL {ACL}"]


@attack("mcp-paths-answer-401-with-a-challenge")
def test_an_allow_rule_before_the_challenge_is_refused(export, config):
    rules = acl_rules(export)
    rules.append({**copy.deepcopy(challenge_rule(rules, "loyalty")), "name": "let-all", "priority": 5,
                  "action": {"allow": {}}})
    set_prop(named(export, ACL), "rules", rules)
    assert challenge(export, config) == [
        f"Web ACL {ACL} allows requests before its 401 challenge of /{server}/mcp runs: give the "
        "challenge a lower priority than every rule that allows" for server in ("booking", "inventory", "loyalty")]


@legitimate("mcp-paths-answer-401-with-a-challenge")
def test_a_rule_that_blocks_before_the_challenge_passes(export, config):
    # Only a rule that lets requests through can skip the challenge; one that blocks earlier cannot.
    rules = acl_rules(export)
    rules.append({**copy.deepcopy(challenge_rule(rules, "loyalty")), "name": "block-first", "priority": 5,
                  "action": {"block": {}}})
    set_prop(named(export, ACL), "rules", rules)
    assert challenge(export, config) == []
