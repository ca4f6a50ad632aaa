"""The README's two commands are what CI and pull requests run: a newcomer's first steps stay true."""

from __future__ import annotations

import re

import yaml
from conftest import ROOT

README = (ROOT / "README.md").read_text()
QUICK_START = re.findall(r"```sh\n(.+?)\n```", README.split("## Quick start", 1)[1], re.S)[:2]


def test_the_quick_start_plans_dev_and_runs_the_tests_from_the_hashed_lock():
    plan, tests = QUICK_START
    install = "pip install --require-hashes -r requirements.lock && pip install --no-deps -e ."
    assert plan.endswith(f"{install} && estate plan --stack dev")
    assert tests.endswith(f"{install} && python -m pytest")


def test_ci_runs_the_readmes_test_command_after_the_readmes_plan():
    script = (ROOT / ".ci" / "run").read_text()
    assert "--require-hashes -r requirements.lock" in script and "estate plan --stack dev" in script
    assert script.rstrip().splitlines()[-1] == "python -m pytest"


def test_every_pull_request_runs_the_readmes_test_command():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "policy.yml").read_text())
    assert "pull_request" in workflow[True]   # YAML 1.1 reads the key `on` as True
    [step] = [s for s in workflow["jobs"]["tests"]["steps"] if "run" in s]
    assert " ".join(step["run"].replace("\\\n", " ").split()) == QUICK_START[1]
