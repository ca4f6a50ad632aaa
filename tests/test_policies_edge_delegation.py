"""A delegated edge, end to end: the dev stack with `edge.zone` and `edge.load_balancer` set to `caller`
plans (strict fidelity inspector), exports what the caller builds, and passes `estate check` with an
advisory finding naming the controls that moved; the delegation never hides what the stack does hold."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, shipped_plan, stack_config
from corpus import attack, legitimate

from mcp_estate.checking import pack_config
from mcp_estate.checking.check import evaluate, pack_config_for
from mcp_estate.cli import main
from mcp_estate.contract.problems import SpecError
from mcp_estate.contract.validate import parse_spec
from mcp_estate.offline.plan import Plan, plan_stack, summary

RULESET = "cloudflare:index/ruleset:Ruleset"
ZONE_SETTING = "cloudflare:index/zoneSetting:ZoneSetting"
LOAD_BALANCER = "cloudflare:index/loadBalancer:LoadBalancer"
POOL = "cloudflare:index/loadBalancerPool:LoadBalancerPool"
MONITOR = "cloudflare:index/loadBalancerMonitor:LoadBalancerMonitor"
ADVISORY = "edge-controls-judged-in-this-stack"
SURFACE, PROTECTIONS = "mcp-surface-enforced-at-edge-and-origin", "cloudflare-edge-protections-enforced"
ROUTED = "every-serving-region-is-routed-protected-and-replicated"
ZONE_TLS, MONITORED = "cloudflare-load-balancer-zones-set-tls", "cloudflare-pools-monitored"


def dev_with(**edge: str) -> dict:
    document = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    document["config"]["mcp-estate:estate"]["edge"] |= edge
    return document


def write_stacks(tmp: Path, **edge: str) -> Path:
    (tmp / "Pulumi.dev.yaml").write_text(yaml.safe_dump(dev_with(**edge)))
    return tmp


@pytest.fixture(scope="module")
def caller_zone(tmp_path_factory) -> Path:
    return write_stacks(tmp_path_factory.mktemp("zone"), zone="caller")


@pytest.fixture(scope="module")
def caller_balancer(tmp_path_factory) -> Path:
    return write_stacks(tmp_path_factory.mktemp("balancer"), load_balancer="caller")


@pytest.fixture(scope="module")
def caller_both(tmp_path_factory) -> Path:
    return write_stacks(tmp_path_factory.mktemp("both"), zone="caller", load_balancer="caller")


@functools.cache
def planned(stacks: Path) -> Plan:
    return plan_stack("dev", stacks)   # raises FidelityError on any input the providers would refuse


def of_type(plan, token: str) -> list:
    return [r for r in plan.resources if r.type == token]


def outputs(plan) -> dict:
    [stack] = of_type(plan, "pulumi:pulumi:Stack")
    return stack.outputs


def camel(value):
    if isinstance(value, dict):
        return {k.split("_")[0] + "".join(w.title() for w in k.split("_")[1:]): camel(v) for k, v in value.items()}
    return [camel(v) for v in value] if isinstance(value, list) else value


def config_of(stacks: Path) -> dict:
    """The pack config `estate check --stack dev` evaluates with: the shipped file, the spec's parameters."""
    spec = parse_spec(yaml.safe_load((stacks / "Pulumi.dev.yaml").read_text())["config"]["mcp-estate:estate"])
    return pack_config.with_spec(pack_config_for(None, "dev"), spec)


def found(resources: list[dict], config: dict) -> list[tuple[str, str]]:
    return sorted((v.policy, v.enforcement_level) for v in evaluate(resources, config))


# -- the spec --------------------------------------------------------------------------------------

def test_the_shipped_stacks_own_their_whole_edge():
    for stack in ("dev", "staging", "prod"):
        edge = parse_spec(stack_config(stack)["mcp-estate:estate"]).edge
        assert (edge.zone, edge.load_balancer) == ("estate", "estate")


@pytest.mark.parametrize("field, value", [("zone", "theirs"), ("load_balancer", "Caller"), ("zone", None)])
def test_an_owner_outside_estate_and_caller_is_refused_naming_the_field(field, value):
    raw = copy.deepcopy(stack_config("dev")["mcp-estate:estate"])
    raw["edge"][field] = value
    with pytest.raises(SpecError) as error:
        parse_spec(raw)
    assert f"edge.{field}: Input should be 'estate' or 'caller'; got {value!r}" in str(error.value)


# -- a caller-owned zone ---------------------------------------------------------------------------

def test_a_caller_owned_zone_plans_without_rulesets_or_settings(caller_zone):
    plan = planned(caller_zone)
    assert of_type(plan, RULESET) == [] and of_type(plan, ZONE_SETTING) == []
    assert len(of_type(plan, LOAD_BALANCER)) == 1


def test_the_stack_exports_the_zone_rules_exactly_as_the_estate_writes_them(caller_zone):
    handed = outputs(planned(caller_zone))["delegated_edge"]
    written = {r.inputs["phase"]: r.inputs["rules"] for r in of_type(shipped_plan("dev"), RULESET)}
    assert {phase: camel(rules) for phase, rules in handed["zone_rules"].items()} == written
    assert handed["zone_settings"] == {s.inputs["settingId"]: s.inputs["value"]
                                       for s in of_type(shipped_plan("dev"), ZONE_SETTING)}
    assert set(handed) == {"zone_rules", "zone_settings"}


@attack(ADVISORY)
@legitimate(SURFACE)
@legitimate(PROTECTIONS)
@legitimate(ZONE_TLS)
def test_a_caller_owned_zone_passes_the_pack_with_one_advisory_finding(caller_zone, capsys):
    message = the_one_advisory_finding(caller_zone, capsys)
    assert "spec edge.zone: caller" in message and SURFACE in message
    assert "delegated_edge.zone_rules" in message


def test_without_the_delegation_the_same_stack_fails_the_edge_controls(caller_zone):
    """What the pack config's `delegatedEdge` changes: the very export, judged as an estate owning its zone."""
    resources = [r.export() for r in planned(caller_zone).resources]
    assert {SURFACE, PROTECTIONS, "cloudflare-load-balancer-zones-set-tls"} <= {
        policy for policy, level in found(resources, pack_config_for(None, "dev")) if level == "mandatory"}


@attack(SURFACE)
@attack(PROTECTIONS)
def test_a_delegated_zone_never_hides_rulesets_the_stack_holds(caller_zone):
    """The shipped dev stack (rulesets built) with its surface rule set to log, judged under a zone
    delegation: the rules it holds are judged as ever, and no advisory claims they moved."""
    resources = [r.export() for r in shipped_plan("dev").resources]
    for entry in resources:
        if entry["type"] == RULESET and entry["outputs"]["phase"] == "http_request_firewall_custom":
            entry["outputs"] = copy.deepcopy(entry["outputs"])
            for rule in entry["outputs"]["rules"]:
                rule["action"] = "log"
    verdicts = found(resources, config_of(caller_zone))
    assert (SURFACE, "mandatory") in verdicts and (PROTECTIONS, "mandatory") in verdicts
    assert ADVISORY not in {policy for policy, _ in verdicts}


@attack(SURFACE)
@attack(PROTECTIONS)
def test_a_delegated_zone_holding_one_entry_point_here_is_judged_in_full(caller_zone):
    """Only the cache rule kept in this stack: the zone is not wholly the owner's, so the missing WAF and
    surface rules fail here instead of passing as delegated."""
    resources = [r.export() for r in shipped_plan("dev").resources if r.type != RULESET
                 or r.inputs["phase"] == "http_request_cache_settings"]
    verdicts = found(resources, config_of(caller_zone))
    assert (SURFACE, "mandatory") in verdicts and (PROTECTIONS, "mandatory") in verdicts
    assert ADVISORY not in {policy for policy, _ in verdicts}


# -- a caller-owned load balancer ------------------------------------------------------------------

def test_a_caller_owned_balancer_plans_pools_and_monitor_but_no_load_balancer(caller_balancer):
    plan = planned(caller_balancer)
    assert of_type(plan, LOAD_BALANCER) == []
    assert [p.name for p in of_type(plan, POOL)] == ["mcp-estate-edge-pool-eu-west-1"]
    assert len(of_type(plan, MONITOR)) == 1 and len(of_type(plan, RULESET)) == 4


def test_the_stack_exports_the_pool_ids_and_the_balancer_the_estate_would_build(caller_balancer):
    plan = planned(caller_balancer)
    handed = outputs(plan)["delegated_edge"]
    [pool] = of_type(plan, POOL)
    assert handed["pool_ids"] == {"eu-west-1": pool.id} and handed["last_resort_pool_ids"] == {}
    [built] = of_type(shipped_plan("dev"), LOAD_BALANCER)
    [shipped_pool] = of_type(shipped_plan("dev"), POOL)
    # The shipped balancer's arguments, with this plan's pool id where the shipped plan had its own.
    expected = json.loads(json.dumps(built.inputs).replace(shipped_pool.id, pool.id))
    assert camel(handed["load_balancer"]) == expected
    assert handed["load_balancer"]["session_affinity_attributes"]["headers"] == ["Mcp-Session-Id"]
    assert set(handed) == {"pool_ids", "last_resort_pool_ids", "load_balancer"}


@attack(ADVISORY)
@legitimate(ROUTED)
@legitimate(MONITORED)
def test_a_caller_owned_balancer_passes_the_pack_with_one_advisory_finding(caller_balancer, capsys):
    message = the_one_advisory_finding(caller_balancer, capsys)
    assert "spec edge.load_balancer: caller" in message
    assert "strict-residency-stays-in-its-group" in message


def the_one_advisory_finding(stacks, capsys) -> str:
    """`estate check` of dev in `stacks` passes with exactly one finding, the delegation advisory: its message."""
    assert main(["check", "--stack", "dev", "--stacks-dir", str(stacks), "--format", "json"]) == 0
    [finding] = json.loads(capsys.readouterr().out)["violations"]
    assert (finding["policy"], finding["enforcement_level"]) == (ADVISORY, "advisory")
    return finding["message"]


def test_without_the_delegation_the_unrouted_pool_fails(caller_balancer):
    resources = [r.export() for r in planned(caller_balancer).resources]
    assert (ROUTED, "mandatory") in found(resources, pack_config_for(None, "dev"))


@attack(PROTECTIONS)
def test_with_the_balancer_delegated_the_estates_rulesets_and_monitor_are_still_judged(caller_balancer):
    """No load balancer names the zone any more: the zone of the estate's rulesets is judged instead,
    and the pools' monitor is judged whether or not a load balancer uses them."""
    resources = [r.export() for r in planned(caller_balancer).resources]
    kept = [r for r in resources if not (r["type"] == RULESET and r["outputs"]["phase"] == "http_ratelimit")]
    for entry in kept:
        if entry["type"] == MONITOR:
            entry["outputs"] = {**entry["outputs"], "type": "http"}
    messages = [v.message for v in evaluate(kept, config_of(caller_balancer)) if v.policy == PROTECTIONS]
    assert any("No enabled rate limiting rule on zone" in m and "the load balancer is the caller's" in m
               for m in messages), messages
    assert any(m.startswith("Monitor mcp-estate-edge-monitor") and "type 'http'" in m for m in messages), messages


@attack(ROUTED)
def test_a_delegated_balancer_still_needs_a_pool_on_every_serving_region(caller_balancer):
    resources = [r.export() for r in planned(caller_balancer).resources if r.type != POOL]
    messages = [v.message for v in evaluate(resources, config_of(caller_balancer)) if v.policy == ROUTED]
    assert any("has no enabled Cloudflare pool whose origin is its ALB" in m for m in messages), messages


# -- both ------------------------------------------------------------------------------------------

@attack(ADVISORY)
def test_with_both_delegated_the_pack_names_both_moves_and_fails_nothing(caller_both, capsys):
    plan = planned(caller_both)
    assert not of_type(plan, RULESET) and not of_type(plan, ZONE_SETTING) and not of_type(plan, LOAD_BALANCER)
    assert set(outputs(plan)["delegated_edge"]) == {"zone_rules", "zone_settings", "pool_ids",
                                                    "last_resort_pool_ids", "load_balancer"}
    assert main(["check", "--stack", "dev", "--stacks-dir", str(caller_both), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)["violations"]
    assert sorted((v["policy"], v["enforcement_level"]) for v in report) == [(ADVISORY, "advisory")] * 2


@legitimate(ADVISORY)
def test_a_stack_without_an_edge_yet_has_nothing_delegated_to_name(caller_both):
    resources = [r.export() for r in planned(caller_both).resources if not r.type.startswith("cloudflare:")]
    assert ADVISORY not in {policy for policy, _ in found(resources, config_of(caller_both))}


@legitimate(ADVISORY)
def test_an_estate_owning_its_edge_gets_no_delegation_note():
    resources = [r.export() for r in shipped_plan("dev").resources]
    assert ADVISORY not in {policy for policy, _ in found(resources, config_of(ROOT / "stacks"))}


@legitimate(ADVISORY)
def test_a_delegated_zone_whose_rules_this_stack_holds_gets_no_delegation_note(caller_zone):
    """A program composing the estate with the zone's rules in the same stack: nothing moved."""
    resources = [r.export() for r in shipped_plan("dev").resources]
    assert found(resources, config_of(caller_zone)) == []


# -- the pack config ---------------------------------------------------------------------------------

def test_the_pack_config_names_the_delegated_parts_to_each_edge_control(caller_both):
    spec = parse_spec(dev_with(zone="caller", load_balancer="caller")["config"]["mcp-estate:estate"])
    generated = pack_config.generated(spec)
    assert {policy for policy, parameters in generated.items() if "delegatedEdge" in parameters} == {
        SURFACE, PROTECTIONS, "cloudflare-load-balancer-zones-set-tls", "cloudflare-pools-monitored", ROUTED,
        ADVISORY}
    assert generated[SURFACE]["delegatedEdge"] == ["zone", "loadBalancer"]
    assert generated[SURFACE]["edgeRules"] == pack_config.generated(parse_spec(
        stack_config("dev")["mcp-estate:estate"]))[SURFACE]["edgeRules"], "the rules are still given"


def test_a_pack_config_naming_another_part_is_refused(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({ADVISORY: {"delegatedEdge": ["waf"]}}))
    assert main(["check", "--stack", "dev", "--config", str(config)]) == 2
    assert f"'{ADVISORY}'.delegatedEdge[0]: 'waf' is not one of ['zone', 'loadBalancer']" in capsys.readouterr().err


def test_the_plan_summary_says_what_the_caller_builds(caller_zone, caller_both):
    assert ("  built by the caller, not here: the zone's rulesets and settings (stack output delegated_edge)"
            in summary(planned(caller_zone)).splitlines())
    assert ("  built by the caller, not here: the zone's rulesets and settings and the load balancer "
            "(stack output delegated_edge)") in summary(planned(caller_both)).splitlines()
    assert "built by the caller" not in summary(plan_stack("dev", ROOT / "stacks"))
