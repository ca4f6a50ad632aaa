"""The shipped stacks are examples people copy: each must pass the whole pack at its environment's levels."""

from __future__ import annotations

import pytest
from conftest import ROOT, shipped_plan, violations

from mcp_estate.checking.check import read_pack_config


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_a_shipped_stack_has_no_violation_of_the_pack(stack):
    config = read_pack_config(ROOT / "policies" / "config" / f"{stack}.json")
    assert [v for v in violations(shipped_plan(stack), config)] == []

