"""Every AWS resource of a shipped stack is created through one of the estate's own providers, one per
region and pinned to the estate's account (`allowed_account_ids`), so a shell with the wrong profile
fails before it changes anything. A resource created without the component's options would take the
default provider instead: the ambient credentials' account, and a parent of its own."""

from __future__ import annotations

import json

import pytest
from conftest import shipped_plan, stack_config

from mcp_estate.contract.validate import parse_spec

PROVIDER = "pulumi:providers:aws"


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_aws_resource_goes_through_the_estates_provider_pinned_to_its_account(stack):
    plan, spec = shipped_plan(stack), parse_spec(stack_config(stack)["mcp-estate:estate"])
    providers = {r.urn: r for r in plan.of_type(PROVIDER)}
    assert {(p.name, p.inputs["region"], p.inputs["allowedAccountIds"]) for p in providers.values()} == {
        (f"mcp-estate-aws-{region}", region, json.dumps([spec.aws_account_id]))
        for region in {*spec.regions, "us-east-1"}}   # IAM's events arrive in us-east-1 (change detection)
    elsewhere = [r.name for r in plan.resources if r.custom and r.type.startswith("aws:")
                 and r.provider.rsplit("::", 1)[0] not in providers]
    assert elsewhere == []
