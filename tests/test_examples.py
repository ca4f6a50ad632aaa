"""The examples plan offline under the strict fidelity inspector, and do what their README says."""

from __future__ import annotations

import runpy

import pytest
from conftest import ROOT, run_program, shipped_plan, stack_config

REGION_EXAMPLE = ROOT / "examples" / "region_in_own_program" / "__main__.py"
SUBNET = "aws:ec2/subnet:Subnet"
REGION = "urn:pulumi:dev::mcp-estate::mcp-estate:index:Region"


def region_example():
    return run_program(lambda: runpy.run_path(str(REGION_EXAMPLE)), stack="dev", config=stack_config("dev"))


def test_a_region_in_a_teams_own_program_uses_the_teams_provider_and_vpc():
    plan = region_example()
    [provider] = [r for r in plan.resources if r.type == "pulumi:providers:aws"]
    assert provider.name == "platform-eu-west-1"
    in_region = [r for r in plan.resources if r.urn.startswith(REGION + "$") and r.custom]
    assert len(in_region) > 50
    assert {r.provider.rsplit("::", 1)[0] for r in in_region} == {provider.urn}
    [vpc] = plan.of_type("aws:ec2/vpc:Vpc")
    assert vpc.name == "platform-vpc"
    assert plan.of_type("mcp-estate:region_network:RegionNetwork") == []
    private = sorted(r.id for r in plan.of_type(SUBNET) if r.name.startswith("platform-private-"))
    assert len(private) == 2 and len(plan.of_type("aws:ecs/service:Service")) == 1
    for service in plan.of_type("aws:ecs/service:Service"):
        assert sorted(service.inputs["networkConfiguration"]["subnets"]) == private
        assert service.inputs["networkConfiguration"]["assignPublicIp"] is False
    groups = [r for r in plan.of_type("aws:ec2/securityGroup:SecurityGroup") if r.urn.startswith(REGION + "$")]
    assert groups and {g.inputs["vpcId"] for g in groups} == {vpc.id}
    public = sorted(r.id for r in plan.of_type(SUBNET) if r.name.startswith("platform-public-"))
    assert sorted(plan.one("aws:lb/loadBalancer:LoadBalancer").inputs["subnets"]) == public


def test_the_region_in_a_teams_program_keeps_the_estates_names_and_exports_its_front():
    plan = region_example()
    assert plan.one("aws:ecs/cluster:Cluster").inputs["name"] == "mcp-estate-dev-eu-west-1"
    assert plan.one("pulumi:pulumi:Stack").outputs["cluster_name"] == "mcp-estate-dev-eu-west-1"


# -- upgrading: every resource of a stack deployed before the split moves, none is replaced -----------

BEFORE_SPLIT = ROOT / "tests" / "data" / "urns_before_split"


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_urn_of_the_plan_before_the_split_is_reached_by_exactly_one_resource(stack):
    """The engine moves a resource whose URN or alias was in the old state instead of replacing it;
    two resources reaching one old URN would both claim it."""
    old = set((BEFORE_SPLIT / f"{stack}.txt").read_text().split())
    reached: dict[str, list[str]] = {}
    for resource in shipped_plan(stack).resources:
        for urn in {resource.urn, *resource.aliases} & old:
            reached.setdefault(urn, []).append(resource.urn)
    assert sorted(old - set(reached)) == []
    assert {urn: new for urn, new in reached.items() if len(new) > 1} == {}
