"""Each resource policy declares the resource types it judges (`applies_to`), and runs on those only.

A declared type that is no real type token (a typo, a token the provider renamed) would switch a
policy off without a sound; a policy run on other types would be judging what it never meant to.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import pulumi_policy
import pytest
from pulumi.runtime import rpc

from mcp_estate.checking.check import evaluate
from mcp_estate.checking.reports import controls_matrix
from mcp_estate.policies import control
from mcp_estate.policies.catalogue import CONTROLS
from mcp_estate.policies.control import EVERY_TYPE, TASK_DEFINITION, resource_policy

RESOURCE_POLICIES = [c for c in CONTROLS if isinstance(c.policy, pulumi_policy.ResourceValidationPolicy)]
# The policies that judge every type on purpose: only the one about the types themselves.
EVERY_TYPE_POLICIES = {"production-resource-types-reviewed"}
QUEUE = "aws:sqs/queue:Queue"


def sdk_class(token: str) -> type | None:
    """The provider SDK's resource class of a type token, through the token -> class registry the SDK
    fills on import (as offline/fidelity.py reads it); None when no class has that token."""
    package, module, _ = token.split(":")
    importlib.import_module(f"pulumi_{package}")
    registered = rpc.get_resource_module(package, module, "")
    name = registered.mod_info["classes"].get(token) if registered else None
    return getattr(importlib.import_module(registered.mod_info["fqn"]), name) if name else None


def test_every_resource_policy_declares_its_types_and_no_stack_policy_does():
    assert len(RESOURCE_POLICIES) >= 42
    for c in CONTROLS:
        resource = c in RESOURCE_POLICIES
        assert bool(c.applies_to) == resource, c.name
    assert {c.name for c in RESOURCE_POLICIES if c.every_type} == EVERY_TYPE_POLICIES


@pytest.mark.parametrize("policy", [c for c in RESOURCE_POLICIES if not c.every_type], ids=lambda c: c.name)
def test_each_declared_type_is_a_type_token_of_the_provider_sdks(policy):
    for token in sorted(policy.applies_to):
        cls = sdk_class(token)
        assert cls is not None, f"{policy.name}: {token} is no resource type of pulumi_aws or pulumi_cloudflare"
        assert cls.pulumi_type == token   # the token the class registers its resources with


def test_sdk_class_finds_no_class_for_a_misspelt_token():
    assert sdk_class(TASK_DEFINITION).__name__ == "TaskDefinition"
    for token in ("aws:ecs/taskDefinition:Taskdefinition", "aws:ecs/taskdefinition:TaskDefinition",
                  "aws:lb/loadBalancer:LoadBalancerX", "cloudflare:index/dnsRecords:DnsRecords"):
        assert sdk_class(token) is None, token


def export(urn_name: str, token: str, inputs: dict | None = None) -> dict:
    return {"urn": f"urn:pulumi:test::estate::{token}::{urn_name}", "type": token, "custom": True,
            "inputs": inputs or {}, "outputs": {}}


RESOURCES = [export("definition", TASK_DEFINITION), export("queue", QUEUE),
             export("object", "aws:s3/bucketObjectv2:BucketObjectv2"),
             export("worker", "cloudflare:index/workersScript:WorkersScript")]


def test_a_policy_runs_only_on_the_types_it_declares(monkeypatch):
    monkeypatch.setattr(control, "CONTROLS", [])
    seen = []

    @resource_policy("spy", "records what it is given", risks=[control.Risk.DATA_LOSS],
                     applies_to=[TASK_DEFINITION])
    def spy(args, report):
        seen.append(args.resource_type)
        report(f"judged {args.name}")

    assert [v.message for v in evaluate(RESOURCES, controls=control.CONTROLS)] == ["judged definition"]
    assert seen == [TASK_DEFINITION]


def test_a_policy_declaring_every_type_runs_on_each(monkeypatch):
    monkeypatch.setattr(control, "CONTROLS", [])
    seen = []

    @resource_policy("spy", "records what it is given", risks=[control.Risk.DATA_LOSS], applies_to=EVERY_TYPE)
    def spy(args, report):
        seen.append(args.resource_type)

    evaluate(RESOURCES, controls=control.CONTROLS)
    assert seen == [r["type"] for r in RESOURCES]


@pytest.mark.parametrize("types", [[], (), ["*", TASK_DEFINITION]])
def test_a_resource_policy_without_types_or_mixing_every_type_in_is_refused(types, monkeypatch):
    monkeypatch.setattr(control, "CONTROLS", [])
    with pytest.raises(ValueError, match="declares the resource types it applies to"):
        resource_policy("vague", "judges who knows what", risks=[control.Risk.DATA_LOSS], applies_to=types)
    assert control.CONTROLS == []


class Untouchable(Mapping):
    """Props and config that fail the test when a policy reads them: its body ran."""

    def __getitem__(self, key):
        raise AssertionError(f"read {key!r}")

    def __iter__(self):
        raise AssertionError("iterated")

    def __len__(self):
        raise AssertionError("measured")

    def get(self, key, default=None):
        raise AssertionError(f"read {key!r}")


def untouchable(resource_type: str) -> pulumi_policy.ResourceValidationArgs:
    urn = f"urn:pulumi:test::estate::{resource_type}::thing"
    return pulumi_policy.ResourceValidationArgs(resource_type, Untouchable(), urn, "thing", None, None, Untouchable())


def ran(policy: control.Control, resource_type: str) -> bool:
    """Whether the policy's body ran on a resource of the type: it read the props or config, or reported."""
    reports = []
    try:
        policy.policy.validate(untouchable(resource_type), lambda *a: reports.append(a))
    except AssertionError:
        return True
    return bool(reports)


@pytest.mark.parametrize("policy", [c for c in RESOURCE_POLICIES if not c.every_type], ids=lambda c: c.name)
def test_the_pack_policies_run_on_their_types_and_no_other(policy):
    assert all(ran(policy, declared) for declared in policy.applies_to)
    assert not any(ran(policy, other) for other in (TASK_DEFINITION, QUEUE, "aws:s3/bucketObjectv2:BucketObjectv2")
                   if other not in policy.applies_to)


def test_estate_controls_shows_the_types_each_control_judges():
    rows = {line.split(" | ")[0].strip("|` "): line for line in controls_matrix(CONTROLS).splitlines()
            if line.startswith("| `")}
    assert len(rows) == len(CONTROLS)
    assert "| data loss | `aws:kms/key:Key` | Customer-managed" in rows["kms-keys-rotate"]
    assert "| `aws:alb/loadBalancer:LoadBalancer`, `aws:lb/loadBalancer:LoadBalancer` |" \
        in rows["albs-drop-invalid-headers"]
    assert "| every type |" in rows["production-resource-types-reviewed"]
    assert "| the stack |" in rows["queues-have-dead-letter-queues"]
    for policy in RESOURCE_POLICIES:
        assert all(f"`{token}`" in rows[policy.name] for token in policy.applies_to if not policy.every_type)
