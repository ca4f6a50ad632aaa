"""The pack config's generated parameters: what the spec decides, stored where Pulumi reads it."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, stack_config

from mcp_estate.checking.pack_config import (
    EDGE_POLICY,
    RESIDENCY_POLICY,
    config_path,
    generated,
    render,
    with_spec,
)
from mcp_estate.cli import main
from mcp_estate.contract.cloudflare_plan import ALLOWANCES, MANAGED_RULESETS
from mcp_estate.contract.validate import parse_spec
from mcp_estate.policies.edge_origin import PLAN_MANAGED_RULESETS

STACKS = ("dev", "staging", "prod")


@pytest.mark.parametrize("stack", STACKS)
def test_the_shipped_pack_config_is_what_the_spec_generates(stack):
    """A pull request that relaxes residency must change the spec: the stored config follows it."""
    spec = parse_spec(stack_config(stack)["mcp-estate:estate"])
    stored = config_path(spec.environment).read_text()
    assert stored == render(with_spec(json.loads(stored), spec))


def test_prod_keeps_the_eu_group_strict_in_its_two_regions():
    config = json.loads(config_path("prod").read_text())
    assert config[RESIDENCY_POLICY]["residencyGroups"]["eu"] == {
        "strict": True, "regions": ["eu-central-1", "eu-west-1"],
        "countries": ["AT", "BE", "DE", "DK", "ES", "FI", "FR", "IE", "IT", "NL", "PL", "PT", "SE"],
        "cloudflareRegions": ["WEU"]}   # the Cloudflare region its data centers route to it (components/edge.py)
    assert config[EDGE_POLICY] == {"hostname": "mcp.example.travel", "cloudflarePlan": "pro",
                                   "healthPath": "/booking/healthz"}


def test_hand_written_levels_and_parameters_survive_regeneration():
    spec = parse_spec(stack_config("dev")["mcp-estate:estate"])
    merged = with_spec({RESIDENCY_POLICY: "advisory", "ecs-exec-disabled-in-prod": {"environment": "dev"}}, spec)
    assert merged[RESIDENCY_POLICY]["enforcementLevel"] == "advisory"
    assert merged["ecs-exec-disabled-in-prod"] == {"environment": "dev"}
    assert merged[RESIDENCY_POLICY]["residencyGroups"] == generated(spec)[RESIDENCY_POLICY]["residencyGroups"]


def test_a_hand_edit_that_relaxes_residency_is_overwritten_by_the_spec():
    spec = parse_spec(stack_config("prod")["mcp-estate:estate"])
    relaxed = json.loads(config_path("prod").read_text())
    relaxed[RESIDENCY_POLICY]["residencyGroups"]["eu"]["strict"] = False
    assert with_spec(relaxed, spec)[RESIDENCY_POLICY]["residencyGroups"]["eu"]["strict"] is True


def test_pack_config_check_fails_on_a_stale_file(tmp_path, capsys):
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    text = (ROOT / "stacks" / "Pulumi.prod.yaml").read_text().replace("strict: true", "strict: false")
    (stacks / "Pulumi.prod.yaml").write_text(text)
    assert main(["pack-config", "--stack", "prod", "--stacks-dir", str(stacks), "--check"]) == 1
    assert "is not what stack prod's spec generates" in capsys.readouterr().err
    assert main(["pack-config", "--stack", "prod", "--check"]) == 0


def test_the_pack_knows_each_plans_managed_rulesets_as_the_edge_builds_them():
    for plan, allowance in ALLOWANCES.items():
        assert PLAN_MANAGED_RULESETS[plan] == tuple(MANAGED_RULESETS[k] for k in allowance.managed_rulesets)
