"""`estate plan`'s summary says how each shipped stack authenticates and ships a change.

The summary is what a reviewer reads before `pulumi up`; these lines are built from the spec alone,
so the tests plan nothing (an empty Plan) and read the shipped stack files.
"""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT

from mcp_estate.cli import main
from mcp_estate.contract.names import REGION_TAG
from mcp_estate.contract.stackfile import load_spec
from mcp_estate.offline.plan import Plan, Progress, plan_stack, summary


def summary_of(stack: str, **changes) -> list[str]:
    _, spec = load_spec(stack, ROOT / "stacks")
    return summary(Plan(stack, spec.model_copy(update=changes), [], 0.0)).splitlines()


def server_lines(lines: list[str], server: str) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {server} "))
    return lines[start:start + 3]


def test_prod_says_who_issues_tokens_and_the_order_of_its_waves():
    lines = summary_of("prod")
    assert lines[1] == "auth: tokens from https://login.example.travel/, traveller claim `sub`"
    assert lines[2] == ("rollout waves: [us-west-2] -> [eu-central-1, us-east-1] -> [eu-west-1], "
                        "60 healthy minutes between waves")
    assert server_lines(lines, "booking")[2].strip() == "deploys ROLLING in each region, token checked by the alb"


def test_dev_says_auth_is_off_and_it_ships_in_one_wave():
    lines = summary_of("dev")
    assert lines[1:3] == ["auth: disabled (MCP served without tokens; dev only)", "rollout: one wave, [eu-west-1]"]
    assert server_lines(lines, "booking")[2].strip() == "deploys ROLLING in each region"


def test_staging_shows_each_servers_strategy_validator_and_capabilities():
    lines = summary_of("staging")
    assert server_lines(lines, "booking")[2].strip() == (
        "deploys ROLLING in each region, token checked by the alb, cache, async work")
    assert server_lines(lines, "inventory")[2].strip() == (
        "deploys CANARY in each region, token checked by the server")


# -- progress on long plans ---------------------------------------------------------------------------

def test_progress_counts_every_resource_the_plan_registers_per_region():
    lines: list[str] = []
    progress = Progress(lines.append, every=50)
    planned = plan_stack("prod", ROOT / "stacks", progress)
    custom = planned.custom_resources()
    assert progress.counts.total() == len(custom) and len(lines) == len(custom) // 50
    assert lines[0].startswith("registered 50 resources (")
    assert progress.counts["us-west-2"] == sum(
        (r.inputs.get("tags") or {}).get(REGION_TAG) == "us-west-2" for r in custom) > 100
    assert set(progress.counts) == {"estate-wide", "eu-central-1", "eu-west-1", "us-east-1", "us-west-2"}


PROGRESS_INIT = Progress.__init__   # the real one; the CLI test runs it with a smaller step


@pytest.mark.parametrize("argv, terminal, shown", [
    (["--progress"], False, True), (["--no-progress"], True, False), ([], True, True), ([], False, False)])
def test_progress_is_shown_when_asked_or_when_a_person_watches(argv, terminal, shown, monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    monkeypatch.setattr(Progress, "__init__", lambda self, write, every=500: PROGRESS_INIT(self, write, 20))
    assert main(["plan", "--stack", "dev", "--stacks-dir", str(ROOT / "stacks"), *argv]) == 0
    err = capsys.readouterr().err
    assert ("registered 20 resources (" in err) is shown

