"""Golden plans: the full `estate plan --out` export of every shipped stack, reviewed like code.

Any change to any input, option or computed output of any resource fails here until the
snapshot is updated on purpose (`python -m pytest tests/test_golden_plans.py --snapshot-update`)
and the diff of `tests/__snapshots__/test_golden_plans/*.txt` is reviewed in the pull request.
"""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, shipped_plan
from golden import plan_text
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode


class PlanTextSnapshot(SingleFileSnapshotExtension):
    """One reviewable text file per stack."""
    _write_mode = WriteMode.TEXT
    file_extension = "txt"


@pytest.fixture
def golden(snapshot):
    return snapshot.use_extension(PlanTextSnapshot)


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_plan(stack, golden):
    resources = [r.export() for r in shipped_plan(stack).resources]
    assert plan_text(resources, ROOT) == golden


def test_the_text_names_resource_and_path_on_every_changed_line():
    role = {"urn": "urn:pulumi:dev::mcp-estate::aws:iam/role:Role::booking-task", "type": "aws:iam/role:Role",
            "custom": True, "protect": False, "retainOnDelete": False, "dependencies": [],
            "parent": "", "inputs": {"assumeRolePolicy": json.dumps({"Statement": [{"Action": "sts:AssumeRole"}]})},
            "outputs": {"assumeRolePolicy": "echoed", "arn": "arn:aws:iam::111122223333:role/booking-task"}}
    text = plan_text([role], ROOT)
    assert 'booking-task inputs.assumeRolePolicy<json>.Statement[0].Action = "sts:AssumeRole"' in text
    assert 'booking-task outputs.arn = "arn:aws:iam::111122223333:role/booking-task"' in text
    assert 'booking-task outputs.assumeRolePolicy = "echoed"' in text   # differs from the input: kept
    changed = plan_text([{**role, "inputs": {"assumeRolePolicy": json.dumps(
        {"Statement": [{"Action": "sts:TagSession"}]})}}], ROOT)
    assert [line for line in changed.splitlines() if line not in text.splitlines()] == [
        'booking-task inputs.assumeRolePolicy<json>.Statement[0].Action = "sts:TagSession"']


def test_paths_under_the_checkout_are_relative_so_any_clone_matches():
    asset = {"urn": "urn:pulumi:dev::mcp-estate::aws:lambda/function:Function::canary", "custom": True,
             "type": "aws:lambda/function:Function", "protect": False, "retainOnDelete": False,
             "dependencies": [], "inputs": {"code": {"path": f"{ROOT}/mcp_estate/probe.py"}}, "outputs": {}}
    assert 'canary inputs.code.path = "mcp_estate/probe.py"' in plan_text([asset], ROOT)
