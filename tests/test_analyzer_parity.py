"""`estate check` and `pulumi preview --policy-pack` reach the same verdicts (issue 12): the pack's policy
objects, run here by pulumi_policy's own analyzer servicer (what the CrossGuard plugin serves to the engine
over gRPC, fed the requests the engine sends), report exactly what `estate check` reports over the same
resources: over the shipped prod stack with its pack config, and over every attack of the corpus.

test_policy_pack.py shows the published pack builds the very policies `estate check` runs (one
implementation); this shows the two runners hand those policies the same view.
"""

from __future__ import annotations

import re

import pytest
from conftest import ACCOUNT, Plan, shipped_plan, stack_config
from google.protobuf import json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2
from pulumi_policy import EnforcementLevel, StackValidationPolicy
from pulumi_policy.policy import _PolicyAnalyzerServicer
from test_adversarial_corpus import ATTACKS

from mcp_estate.checking import check, pack_config
from mcp_estate.contract.validate import parse_spec
from mcp_estate.offline.runner import run_offline
from mcp_estate.policies.catalogue import CONTROLS

LEVELS = {check.MANDATORY: analyzer_pb2.MANDATORY, check.ADVISORY: analyzer_pb2.ADVISORY,
          check.DISABLED: analyzer_pb2.DISABLED}
NAMES = {value: key for key, value in LEVELS.items()}


def struct(value: dict) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    json_format.ParseDict(value, message)
    return message


def properties(resource: dict, key: str) -> struct_pb2.Struct:
    """What the engine sends: the resource's state, references as ids, secrets as their signature object."""
    return struct(check._analyzed(resource.get(key) or {}, resource["urn"]))


def provider_of(resource: dict, providers: dict) -> analyzer_pb2.AnalyzerProviderResource | None:
    provider = providers.get(resource.get("provider", ""))
    if provider is None:
        return None
    return analyzer_pb2.AnalyzerProviderResource(type=provider["type"], properties=properties(provider, "inputs"),
                                                 urn=provider["urn"], name=check._name(provider["urn"]))


def analyzer_run(resources: list[dict], config: dict) -> set[tuple[str, str, str, str]]:
    """(policy, level, urn, message) of every diagnostic the analyzer returns, its message stripped of the
    policy description it prefixes and of the pack's name in "can't run" notes."""
    servicer = _PolicyAnalyzerServicer("mcp-estate", "0.0.1", [c.policy for c in CONTROLS], EnforcementLevel.MANDATORY)
    servicer.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig={
        c.name: analyzer_pb2.PolicyConfig(enforcementLevel=LEVELS[check.enforcement_level(c, config)],
                                          properties=struct(check.policy_config(c, config)))
        for c in CONTROLS}), None)
    providers = {f"{r['urn']}::{r.get('id', '')}": r for r in resources if r["type"].startswith("pulumi:providers:")}
    custom = check.evaluated_resources(resources)
    found = set()
    for r in (r for r in custom if not r.get("external")):
        request = analyzer_pb2.AnalyzeRequest(
            type=r["type"], properties=properties(r, "inputs"), urn=r["urn"], name=check._name(r["urn"]),
            options=analyzer_pb2.AnalyzerResourceOptions(protect=bool(r.get("protect"))),
            provider=provider_of(r, providers))
        # The engine files a resource policy's diagnostic without a urn under the resource analyzed.
        found |= {_entry(d, d.urn or r["urn"]) for d in servicer.Analyze(request, None).diagnostics}
    stack = analyzer_pb2.AnalyzeStackRequest(resources=[analyzer_pb2.AnalyzerResource(
        type=r["type"], properties=properties(r, "outputs"), urn=r["urn"], name=check._name(r["urn"]),
        options=analyzer_pb2.AnalyzerResourceOptions(protect=bool(r.get("protect"))),
        provider=provider_of(r, providers), parent=r.get("parent") or "", dependencies=r.get("dependencies") or [],
        propertyDependencies={k: analyzer_pb2.AnalyzerPropertyDependencies(urns=v)
                              for k, v in (r.get("propertyDependencies") or {}).items()}) for r in custom])
    return found | {_entry(d, d.urn) for d in servicer.AnalyzeStack(stack, None).diagnostics}


def _entry(diagnostic, urn: str) -> tuple[str, str, str, str]:
    message = diagnostic.message.removeprefix(diagnostic.description + "\n")
    return (diagnostic.policyName, NAMES[diagnostic.enforcementLevel], urn,
            re.sub(r" from policy pack '[^']*'", "", message))


def estate_check(resources: list[dict], config: dict) -> set[tuple[str, str, str, str]]:
    return {(v.policy, v.enforcement_level, v.urn or "", v.message) for v in check.evaluate(resources, config)}


def test_the_shipped_prod_stack_gets_the_same_verdicts_from_both_runners():
    spec = parse_spec(stack_config("prod")["mcp-estate:estate"])
    config = pack_config.with_spec(check.pack_config_for(None, "prod", CONTROLS), spec)
    resources = [r.export() for r in shipped_plan("prod").resources]
    assert analyzer_run(resources, config) == estate_check(resources, config)


@pytest.mark.parametrize("control, program, config", ATTACKS)
def test_every_attack_of_the_corpus_gets_the_same_verdicts_from_both_runners(control, program, config):
    resources = [r.export() for r in Plan(run_offline(program, stack="test", config={},
                                                      account_id=ACCOUNT)).resources]
    found = estate_check(resources, config or {})
    assert any(policy == control for policy, *_ in found)
    assert analyzer_run(resources, config or {}) == found


# Stack policies reading only what a first preview knows: zone ids written in the spec, and tags.
READ_AT_PREVIEW = {"cloudflare-load-balancer-zones-set-tls", "regions-survive-the-loss-of-any-one",
                   "edge-controls-judged-in-this-stack"}
GATE = "so `estate check` in every pull request is the gate"


def test_every_stack_policy_over_outputs_names_the_offline_check_as_its_gate():
    """A stack policy runs at `pulumi up` only once the change is applied; at a first preview, outputs
    (ids, ARNs, DNS names) are unknown and the analyzer cannot run it. Its description (which
    `estate controls` prints) says so, and names the pull-request gate."""
    stack_policies = {c.name: c.policy.description for c in CONTROLS if isinstance(c.policy, StackValidationPolicy)}
    assert {name for name, description in stack_policies.items() if GATE not in description} == READ_AT_PREVIEW
