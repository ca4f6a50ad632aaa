"""`layout: stack-per-region`: the estate's stack, a stack per region and the edge's, through StackReference."""

from __future__ import annotations

import json
import re
import runpy
import shutil
from collections import Counter
from pathlib import Path

import pulumi
import pytest
import yaml
from conftest import ACCOUNT, ROOT, shipped_plan

from mcp_estate import cli
from mcp_estate.components.stack_layout import FRONT_OUTPUT, WIDE_OUTPUT, layout_stack, part_of, part_problems
from mcp_estate.contract.stackfile import load_spec
from mcp_estate.offline.fidelity import inspect_resource
from mcp_estate.offline.plan import plan_stack
from mcp_estate.offline.runner import run_offline

# The mocks' autonames end in 7 hex digits derived from the stack's name, like Pulumi's random suffixes.
AUTONAME_SUFFIX = re.compile(r"-[0-9a-f]{7}(?![0-9a-f])")


def split_stacks(tmp_path: Path, stack: str = "prod", **changes) -> Path:
    """A copy of the shipped stack files, `stack`'s spec with `layout: stack-per-region` (and `changes`)."""
    stacks = tmp_path / "stacks"
    shutil.copytree(ROOT / "stacks", stacks)
    path = stacks / f"Pulumi.{stack}.yaml"
    config = yaml.safe_load(path.read_text())
    config["config"]["mcp-estate:estate"] |= {"layout": "stack-per-region", **changes}
    path.write_text(yaml.safe_dump(config))
    return stacks


@pytest.fixture(scope="module")
def split_prod(tmp_path_factory):
    return plan_stack("prod", split_stacks(tmp_path_factory.mktemp("split")))


def _by_logical_name(resources) -> dict[tuple[str, str], str]:
    return {(r.type, r.name): AUTONAME_SUFFIX.sub("-<auto>", json.dumps(r.inputs, sort_keys=True))
            for r in resources if r.custom and not r.type.startswith("pulumi:")}


def test_each_part_is_a_stack_named_after_the_estates(split_prod):
    regions = sorted(split_prod.spec.regions)
    stacks = Counter(r.urn.split("::")[0].removeprefix("urn:pulumi:") for r in split_prod.resources)
    assert sorted(stacks) == sorted(["prod", "prod.edge", *(f"prod.{region}" for region in regions)])
    by_stack = {stack: {r.type for r in split_prod.resources if r.urn.startswith(f"urn:pulumi:{stack}::")}
                for stack in stacks}
    assert "aws:kms/key:Key" in by_stack["prod"] and "aws:ecs/service:Service" not in by_stack["prod"]
    assert "cloudflare:index/loadBalancer:LoadBalancer" in by_stack["prod.edge"]
    for region in regions:
        assert "aws:ecs/service:Service" in by_stack[f"prod.{region}"]
        assert "aws:kms/key:Key" not in by_stack[f"prod.{region}"]


def test_the_stacks_together_are_the_one_stack_estate_up_to_autonamed_suffixes(split_prod):
    """Same resources, same inputs (physical names and tags are the estate stack's in every part);
    only the random suffixes of autonamed resources differ, as between any two stacks."""
    assert _by_logical_name(split_prod.resources) == _by_logical_name(shipped_plan("prod").resources)


def test_every_part_tags_its_resources_as_the_estates_stack(split_prod):
    stacks = {r.inputs["tags"]["mcp-estate:stack"] for r in split_prod.resources
              if r.custom and isinstance(r.inputs.get("tags"), dict) and "mcp-estate:stack" in r.inputs["tags"]}
    assert stacks == {"prod"}


def test_the_estates_stack_hands_its_regions_what_they_stand_on(split_prod):
    root = next(r for r in split_prod.resources if r.urn == "urn:pulumi:prod::mcp-estate::pulumi:pulumi:Stack::"
                                                            "mcp-estate-prod")
    keys = {r.outputs["arn"] for r in split_prod.resources if r.type in ("aws:kms/key:Key",
                                                                          "aws:kms/replicaKey:ReplicaKey")}
    handed = root.outputs[WIDE_OUTPUT]["key_arns"]
    assert sorted(handed) == sorted(split_prod.spec.regions) and set(handed.values()) <= keys
    assert all(arn.split(":")[3] == region for region, arn in handed.items())
    assert "regions" not in root.outputs   # the regions are other stacks
    task_roles = root.outputs[WIDE_OUTPUT]["identities"]
    assert sorted(task_roles) == sorted(f"{s.name}/{g.name}" for s in split_prod.spec.servers
                                        for g in split_prod.spec.residency_groups)
    region = sorted(split_prod.spec.regions)[0]
    uses = [r for r in split_prod.resources if r.urn.startswith(f"urn:pulumi:prod.{region}::")
            and r.type == "aws:ecs/taskDefinition:TaskDefinition"]
    assert uses and all(u.inputs["executionRoleArn"] in
                        {i["execution_role_arn"] for i in task_roles.values()} for u in uses)


def test_a_region_stack_hands_the_edge_its_front(split_prod):
    region = sorted(split_prod.spec.regions)[0]
    root = next(r for r in split_prod.resources if r.type == "pulumi:pulumi:Stack"
                and r.urn.startswith(f"urn:pulumi:prod.{region}::"))
    alb = next(r for r in split_prod.resources if r.type == "aws:lb/loadBalancer:LoadBalancer"
               and r.urn.startswith(f"urn:pulumi:prod.{region}::"))
    assert root.outputs[FRONT_OUTPUT]["alb_dns_name"] == alb.outputs["dnsName"]
    pools = [r for r in split_prod.resources if r.type == "cloudflare:index/loadBalancerPool:LoadBalancerPool"]
    assert alb.outputs["dnsName"] in json.dumps([p.inputs for p in pools])


def test_the_pack_checks_the_stacks_together(tmp_path, capsys):
    """Stack policies (residency, topology) see every stack's resources, as one estate."""
    assert cli.main(["check", "--stack", "prod", "--stacks-dir", str(split_stacks(tmp_path))]) == 0
    assert "0 mandatory" in capsys.readouterr().out


def test_regions_plan_in_processes_as_in_one(tmp_path):
    stacks = split_stacks(tmp_path)
    one, two = plan_stack("prod", stacks, jobs=1), plan_stack("prod", stacks, jobs=2)
    assert json.dumps(one.export(), sort_keys=True) == json.dumps(two.export(), sort_keys=True)


@pytest.mark.parametrize(("stack", "changes", "problem"), [
    ("prod.eu-west-1", {"layout": "one-stack"},
     "layout: stack prod.eu-west-1 is a part of the estate of stack prod, whose layout is 'one-stack'"),
    ("prod.mars-north-1", {}, "stack: stack prod.mars-north-1: 'mars-north-1' is neither a region of the estate"),
    ("prod.edge", {"deploy_stage": "foundation"},
     "deploy_stage: stack prod.edge: the foundation stage is the estate's stack prod alone"),
])
def test_a_stack_that_is_no_part_of_its_estate_is_refused_naming_the_field(tmp_path, stack, changes, problem):
    spec = load_spec("prod", split_stacks(tmp_path, **changes))[1]
    assert [str(p) for p in part_problems(spec, stack)][0].startswith(problem)


def test_the_estates_own_stack_and_valid_parts_have_no_problem(tmp_path):
    spec = load_spec("prod", split_stacks(tmp_path))[1]
    assert part_problems(spec, "prod") == part_problems(spec, "prod.edge") == []
    assert part_problems(spec, f"prod.{sorted(spec.regions)[0]}") == []
    assert part_of("prod.eu-west-1") == ("prod", "eu-west-1") and part_of("prod") == ("prod", None)


def _pulumi_program(tmp_path: Path, stacks: Path) -> Path:
    """__main__.py as `pulumi up` runs it, beside the given stack files (its stackConfigDir)."""
    program = tmp_path / "program"
    program.mkdir()
    shutil.copy(ROOT / "__main__.py", program / "__main__.py")
    shutil.copytree(stacks, program / "stacks")
    return program / "__main__.py"


def test_the_pulumi_program_builds_a_region_from_the_estates_stack_file(tmp_path, split_prod):
    program = _pulumi_program(tmp_path, split_stacks(tmp_path))
    region = sorted(split_prod.spec.regions)[0]
    estate_outputs = next(r.outputs for r in split_prod.resources if r.type == "pulumi:pulumi:Stack"
                          and r.urn.startswith("urn:pulumi:prod::"))
    built = run_offline(lambda: runpy.run_path(str(program)), stack=f"prod.{region}", config={},
                        account_id=split_prod.spec.aws_account_id, inspect=inspect_resource,
                        stack_outputs={"prod": estate_outputs})
    expected = [r for r in split_prod.resources if r.urn.startswith(f"urn:pulumi:prod.{region}::")]
    assert _by_logical_name(built) == _by_logical_name(expected)


def test_the_pulumi_program_refuses_a_spec_in_a_parts_own_file(tmp_path):
    program = _pulumi_program(tmp_path, split_stacks(tmp_path))
    with pytest.raises(pulumi.RunError, match=r"mcp-estate:estate: stack prod.edge is a part of the estate of "
                                              r"stack prod, whose file holds the spec"):
        run_offline(lambda: runpy.run_path(str(program)), stack="prod.edge", account_id=ACCOUNT,
                    config={"mcp-estate:estate": {"environment": "prod"}})


def test_a_region_whose_estate_stack_lacks_a_hand_off_fails_naming_what_to_deploy_first(tmp_path, split_prod):
    spec = split_prod.spec
    estate_outputs = next(r.outputs for r in split_prod.resources if r.type == "pulumi:pulumi:Stack"
                          and r.urn.startswith("urn:pulumi:prod::"))
    stale = {**estate_outputs, WIDE_OUTPUT: {**estate_outputs[WIDE_OUTPUT], "certificate_arns": {}}}
    region = sorted(spec.regions)[0]
    with pytest.raises(Exception, match=rf"stack prod exports no estate_wide.certificate_arns.{region}: `pulumi up` "
                                        r"that stack first"):
        run_offline(lambda: layout_stack(spec, f"prod.{region}"), stack=f"prod.{region}", config={},
                    account_id=ACCOUNT, stack_outputs={"prod": stale})


def test_the_plan_summary_lists_the_stacks_in_deployment_order(split_prod):
    from mcp_estate.offline.plan import summary

    lines = summary(split_prod).splitlines()
    start = lines.index("layout: a stack per region, deployed in this order (the regions in any order among "
                        "themselves):")
    listed = [line.split()[0] for line in lines[start + 1:start + 3 + len(split_prod.spec.regions)]]
    assert listed == ["prod", *(f"prod.{r}" for r in sorted(split_prod.spec.regions)), "prod.edge"]
    counts = [int(line.split()[1]) for line in lines[start + 1:start + 3 + len(split_prod.spec.regions)]]
    assert sum(counts) == len(split_prod.custom_resources()) and all(counts)
