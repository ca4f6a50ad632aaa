"""`estate plan --jobs N`: the regions planned in parallel processes give the serial plan, exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest
from conftest import ACCOUNT, ROOT
from test_benchmark import large_spec

from mcp_estate import cli
from mcp_estate.contract.validate import parse_spec
from mcp_estate.offline import parallel
from mcp_estate.offline.fidelity import inspect_resource
from mcp_estate.offline.parallel import Replayed, merged, plan_in_parallel
from mcp_estate.offline.plan import PARALLEL_FROM_SERVICES, default_jobs, plan_spec, plan_stack
from mcp_estate.offline.runner import DuplicateUrnError, FidelityError, Registered, run_offline


@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_a_parallel_plan_is_the_serial_plan(stack):
    """Every URN, input, output, dependency, provider and parent; the stack's outputs; the order."""
    serial, parallel_plan = plan_stack(stack, ROOT / "stacks", jobs=1), plan_stack(stack, ROOT / "stacks", jobs=2)
    assert len(serial.spec.regions) > 1   # else there is nothing to plan in parallel
    assert json.dumps(parallel_plan.export(), sort_keys=True) == json.dumps(serial.export(), sort_keys=True)


def test_values_handed_between_parts_keep_their_value_dependencies_and_secrecy():
    """What a region stands on reaches it as the same value, depending on the same resources."""
    def first() -> dict:
        key = pulumi.CustomResource("aws:kms/key:Key", "key", {"description": "k"})
        topic = pulumi.CustomResource("aws:sns/topic:Topic", "topic", {"name": "t"})
        handed["values"] = {"plain": pulumi.Output.all(key.id, topic.id).apply(lambda ids: "+".join(ids)),
                            "secret": pulumi.Output.secret("s3cr3t").apply(lambda v: v),
                            "nested": [pulumi.Output.from_input("x")]}

    def second() -> None:
        values = parallel._replayed(captured)
        pulumi.CustomResource("aws:sns/topic:Topic", "user", {
            "name": values["plain"], "kmsMasterKeyId": values["secret"], "displayName": values["nested"][0]})

    handed: dict = {}
    before = {r.name: r for r in run_offline(first, stack="dev", config={}, account_id=ACCOUNT)}
    captured = parallel._sync_await(parallel._captured(handed["values"]))
    assert captured["plain"] == Replayed(f"{before['key'].id}+{before['topic'].id}",
                                         tuple(sorted([before["key"].urn, before["topic"].urn])), False)
    assert captured["secret"] == Replayed("s3cr3t", (), True)
    user = {r.name: r for r in run_offline(second, stack="dev", config={}, account_id=ACCOUNT)}["user"]
    assert user.dependencies == sorted([before["key"].urn, before["topic"].urn])
    assert user.inputs["name"] == f"{before['key'].id}+{before['topic'].id}" and user.inputs["displayName"] == "x"
    assert user.inputs["kmsMasterKeyId"]["4dabf18193072939515e22adb298388d"] == "1b47061264138c4ac30d75fd1eb44270"


def _registered(urn: str, type_: str = "aws:s3/bucket:Bucket", outputs: dict | None = None) -> Registered:
    return Registered(urn=urn, type=type_, name=urn.rsplit("::", 1)[-1], custom=not type_.startswith(("pulumi:pulumi",
                      "mcp-estate:")), parent="", provider="", protect=False, retain_on_delete=False,
                      dependencies=[], inputs={}, outputs=outputs or {})


def test_parts_registering_one_urn_are_refused_as_the_engine_would():
    bucket = "urn:pulumi:prod::mcp-estate::aws:s3/bucket:Bucket::logs"
    other = "urn:pulumi:prod::mcp-estate::aws:s3/bucket:Bucket::other"
    with pytest.raises(DuplicateUrnError) as refused:
        merged([[_registered(bucket)], [_registered(other)], [_registered(bucket)], [_registered(bucket)]])
    assert str(refused.value) == (f"Duplicate resource URN '{bucket}'; try giving it a unique name "
                                  "(registered by 3 parts of the estate)")


def test_the_stack_and_the_estate_every_part_registers_are_kept_once_with_the_last_parts_outputs():
    stack = "urn:pulumi:prod::mcp-estate::pulumi:pulumi:Stack::mcp-estate-prod"
    estate = "urn:pulumi:prod::mcp-estate::mcp-estate:index:Estate::mcp-estate"
    parts = [[_registered(stack, "pulumi:pulumi:Stack", {"part": "wide"}),
              _registered(estate, "mcp-estate:index:Estate", {"part": "wide"})],
             [_registered(stack, "pulumi:pulumi:Stack", {"part": "edge", "hostname": "h"}),
              _registered(estate, "mcp-estate:index:Estate", {"part": "edge"})]]
    assert {r.urn: r.outputs for r in merged(parts)} == {stack: {"part": "edge", "hostname": "h"},
                                                         estate: {"part": "edge"}}


def planted(_type: str, name: str, _inputs: dict) -> list[str]:
    """A fidelity problem on one region's ALB (module level: the region's process imports it)."""
    return ["planted"] if name.endswith("eu-west-1-front-alb") else []


def test_a_problem_found_in_a_region_process_fails_the_plan_with_its_message():
    raw = large_spec(2)
    spec = parse_spec(raw)

    with pytest.raises(FidelityError) as refused:
        plan_in_parallel(spec, stack="bench", config={"mcp-estate:estate": raw}, jobs=2, inspect=planted)
    assert "'mcp-estate-eu-west-1-front-alb': planted" in str(refused.value)


def test_limits_across_resources_are_checked_over_the_merged_plan():
    raw = large_spec(2)
    spec = parse_spec(raw)
    seen = []
    plan_in_parallel(spec, stack="bench", config={"mcp-estate:estate": raw}, jobs=2, inspect=inspect_resource,
                     inspect_all=lambda registered: seen.append(len(registered)) or [])
    assert seen == [len(plan_spec(spec, "bench", {"mcp-estate:estate": raw}, jobs=1))]


def test_large_estates_plan_in_parallel_by_default_and_small_ones_in_one_process(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    large = parse_spec(large_spec(PARALLEL_FROM_SERVICES // 10))    # 10 regions
    small = parse_spec(large_spec(PARALLEL_FROM_SERVICES // 10 - 1))
    assert (default_jobs(large), default_jobs(small)) == (4, 1)


def test_the_command_line_takes_a_number_of_jobs(capsys):
    with pytest.raises(SystemExit) as refused:
        cli.main(["plan", "--stack", "dev", "--jobs", "0"])
    assert refused.value.code == 2
    assert "'0' is not a number of processes (1 or more)" in capsys.readouterr().err


def test_the_stack_plans_with_jobs_as_without(tmp_path: Path, capsys):
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    assert cli.main(["plan", "--stack", "staging", "--jobs", "1", "--out", str(one)]) == 0
    assert cli.main(["plan", "--stack", "staging", "--jobs", "2", "--out", str(two)]) == 0
    assert one.read_text() == two.read_text()
