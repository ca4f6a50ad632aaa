"""Issue 12's proof, as a test: every control of the pack has, in the adversarial corpus (tests/corpus.py),
at least three cases expressing its risk differently that it catches and two legitimate changes it passes.
Each case is checked to do so while it runs (tests/conftest.py's corpus_witness)."""

from __future__ import annotations

import pytest
from conftest import ROOT
from corpus import ATTACK, LEGITIMATE, attack, index

from mcp_estate.policies.catalogue import CONTROLS

ATTACKS_NEEDED, LEGITIMATE_NEEDED = 3, 2


@pytest.fixture(scope="module")
def corpus_index() -> dict[str, dict[str, list[str]]]:
    return index(ROOT / "tests")


def test_every_control_has_three_attacks_and_two_legitimate_changes(corpus_index):
    short = {c.name: {kind: len(corpus_index.get(c.name, {}).get(kind, [])) for kind in (ATTACK, LEGITIMATE)}
             for c in CONTROLS}
    assert {name: n for name, n in short.items()
            if n[ATTACK] < ATTACKS_NEEDED or n[LEGITIMATE] < LEGITIMATE_NEEDED} == {}


def test_the_corpus_names_only_controls_of_the_pack(corpus_index):
    assert set(corpus_index) - {c.name for c in CONTROLS} == set()


def test_a_case_names_its_control_or_the_argument_naming_it_not_both():
    with pytest.raises(TypeError):
        attack("no-wildcard-actions", param="policy")
    with pytest.raises(TypeError):
        attack()
