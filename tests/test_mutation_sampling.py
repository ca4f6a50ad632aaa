"""`.ci/mutation --sample N --seed S`: the sampled mutation score is reproducible and its interval right.

The README's per-package scores are estimates from these two functions, so they are pinned here."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "mutation"


def load_script():
    loader = importlib.machinery.SourceFileLoader("ci_mutation", str(SCRIPT))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("ci_mutation", loader))
    loader.exec_module(module)
    return module


mutation = load_script()


@pytest.mark.parametrize(("killed", "n", "low", "high"), [
    # Newcombe, "Two-sided confidence intervals for the single proportion", Stat. Med. 17 (1998), table I
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_the_wilson_interval_matches_the_published_values(killed, n, low, high):
    assert mutation.wilson_interval(killed, n) == pytest.approx((low, high), abs=1e-4)


def test_a_sample_with_every_mutant_killed_still_has_an_interval_below_one_hundred_percent():
    low, high = mutation.wilson_interval(60, 60)
    assert high == pytest.approx(1.0)
    assert low == pytest.approx(0.9398, abs=1e-4)


def test_the_same_seed_draws_the_same_mutants_and_another_seed_others():
    names = [f"mcp_estate.operations.lock.x_f__mutmut_{i}" for i in range(1, 500)]
    first = mutation.sample(names, 60, seed=1)
    assert first == mutation.sample(names, 60, seed=1)
    assert len(set(first)) == 60 and set(first) <= set(names)
    assert first != mutation.sample(names, 60, seed=2)


def test_a_sample_larger_than_the_package_runs_every_mutant_once():
    names = ["a.x_f__mutmut_1", "a.x_f__mutmut_2"]
    assert mutation.sample(names, 60, seed=0) == names
