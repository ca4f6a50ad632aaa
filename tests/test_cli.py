"""`estate plan`: the first command a newcomer runs, and its contract (README: Quick start)."""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import shutil

import pulumi
import pytest
from conftest import ACCOUNT, ROOT, run_program, stack_config

from mcp_estate.cli import main


@pytest.fixture(scope="module")
def dev_export(tmp_path_factory) -> tuple[str, dict]:
    """What `estate plan --stack dev --out FILE` prints, and the file it writes."""
    out, printed = tmp_path_factory.mktemp("plan") / "dev.json", io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["plan", "--stack", "dev", "--stacks-dir", str(ROOT / "stacks"), "--out", str(out)]) == 0
    return printed.getvalue(), json.loads(out.read_text())


def test_plan_prints_regions_servers_endpoints_and_counts(dev_export):
    printed, _ = dev_export
    assert "stack dev (dev)" in printed
    assert "eu-west-1 10.50.0.0/20*" in printed
    assert "https://mcp.dev.example.travel/booking/mcp" in printed
    assert "resources:" in printed and "aws:ecs/service:Service" in printed


def test_plan_exports_resources_in_pulumi_stack_export_shape(dev_export):
    _, export = dev_export
    assert export["version"] == 3
    resources = export["deployment"]["resources"]
    assert resources[0]["type"] == "pulumi:pulumi:Stack"
    keys = {"urn", "type", "custom", "parent", "protect", "retainOnDelete", "dependencies", "inputs", "outputs"}
    assert all(keys <= set(r) for r in resources)
    service = next(r for r in resources if r["type"] == "aws:ecs/service:Service")
    assert service["id"].startswith(f"arn:aws:ecs:eu-west-1:{ACCOUNT}:service/")
    assert service["provider"].split("::")[-2] == "mcp-estate-aws-eu-west-1"
    assert service["inputs"]["networkConfiguration"]["assignPublicIp"] is False   # engine (camelCase) names
    alb = next(r for r in resources if r["type"] == "aws:lb/loadBalancer:LoadBalancer")
    assert alb["outputs"]["dnsName"].endswith(".eu-west-1.elb.amazonaws.com")


def write_stack(tmp_path, name: str, text: str):
    stacks = tmp_path / "stacks"
    stacks.mkdir(exist_ok=True)
    (stacks / f"Pulumi.{name}.yaml").write_text(text)
    return stacks


def test_a_bad_spec_exits_2_naming_the_field(tmp_path, capsys):
    text = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text().replace("cpu: 256", "cpu: 300")
    stacks = write_stack(tmp_path, "broken", text)
    assert main(["plan", "--stack", "broken", "--stacks-dir", str(stacks)]) == 2
    error = capsys.readouterr().err
    assert "servers[booking].cpu: 300 is not a Fargate CPU size" in error
    assert "Traceback" not in error


@pytest.mark.parametrize("text, fragment", [
    ("config: [unclosed", "not valid YAML"),
    ("config:\n  aws:region: eu-west-1\n", "needs a `config:` mapping with the `mcp-estate:estate` object"),
    ("config:\n  mcp-estate:estate: 42\n", "must be a mapping"),
])
def test_a_malformed_stack_file_exits_2(tmp_path, capsys, text, fragment):
    stacks = write_stack(tmp_path, "bad", text)
    assert main(["plan", "--stack", "bad", "--stacks-dir", str(stacks)]) == 2
    assert fragment in capsys.readouterr().err


def test_an_unknown_stack_exits_2_listing_the_known_ones(tmp_path, capsys):
    stacks = tmp_path / "stacks"
    shutil.copytree(ROOT / "stacks", stacks)
    assert main(["plan", "--stack", "qa", "--stacks-dir", str(stacks)]) == 2
    assert "no such stack file (stacks in" in (error := capsys.readouterr().err) and "dev, prod, staging" in error


def test_the_pulumi_entry_point_builds_the_estate_from_stack_config():
    """`pulumi up` runs __main__.py: it must read the same config and build the same estate."""
    config = stack_config("dev")
    plan = run_program(lambda: runpy.run_path(str(ROOT / "__main__.py")), stack="dev", config=config)
    assert len(plan.of_type("aws:ecs/service:Service")) == 1
    assert plan.one("mcp-estate:index:Estate").name == "mcp-estate"


def test_the_pulumi_entry_point_fails_without_a_traceback_on_a_bad_spec():
    config = stack_config("dev")
    config["mcp-estate:estate"] = {**config["mcp-estate:estate"], "environment": "qa"}
    with pytest.raises(pulumi.RunError, match="environment: Input should be 'dev', 'staging' or 'prod'"):
        run_program(lambda: runpy.run_path(str(ROOT / "__main__.py")), stack="dev", config=config)


def test_the_export_is_reproducible_byte_for_byte(dev_export, tmp_path):
    """Registrations race through the SDK's threads; the export must not (reviewable diffs)."""
    out = tmp_path / "again.json"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["plan", "--stack", "dev", "--stacks-dir", str(ROOT / "stacks"), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == dev_export[1]
    resources = dev_export[1]["deployment"]["resources"]
    position = {r["urn"]: i for i, r in enumerate(resources)}
    assert all(position[r["parent"]] < position[r["urn"]] for r in resources if r["parent"])
