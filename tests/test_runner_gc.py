"""The offline runner collects garbage in fewer passes while a program runs, and leaves the process's
collector as it found it (mcp_estate/offline/runner.py `_collecting_less`)."""

from __future__ import annotations

import gc
import weakref

import pulumi
import pytest
from conftest import ACCOUNT

from mcp_estate.offline.runner import YOUNG_COLLECTION_EVERY, run_offline


def plan(program) -> None:
    run_offline(program, stack="test", config={}, account_id=ACCOUNT)


def component(name: str) -> None:
    pulumi.ComponentResource("test:index:Box", name).register_outputs({})


@pytest.fixture
def default_collector():
    """The process's own settings around each test (pytest's may differ from CPython's defaults)."""
    thresholds = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    yield
    gc.set_threshold(*thresholds)


def test_while_the_program_runs_the_old_heap_is_frozen_and_young_passes_are_rare(default_collector):
    seen = {}

    def program():
        component("box")
        seen.update(threshold=gc.get_threshold(), frozen=gc.get_freeze_count())

    plan(program)
    assert seen["threshold"] == (YOUNG_COLLECTION_EVERY, 10, 10)
    assert seen["frozen"] > 10_000   # the SDK's modules, at least
    assert (gc.get_threshold(), gc.get_freeze_count()) == ((700, 10, 10), 0)


def test_a_program_that_fails_leaves_the_collector_as_it_was(default_collector):
    def program():
        raise ValueError("broken program")

    with pytest.raises(Exception, match="broken program"):
        plan(program)
    assert (gc.get_threshold(), gc.get_freeze_count()) == ((700, 10, 10), 0)


def test_objects_the_process_froze_itself_stay_frozen(default_collector):
    gc.freeze()
    frozen = gc.get_freeze_count()
    try:
        plan(lambda: component("box"))
        assert gc.get_freeze_count() == frozen
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.unfreeze()


def test_cycles_made_by_the_program_are_still_collected_while_it_runs(default_collector):
    collected = {}

    class Node:
        pass

    def program():
        node = Node()
        node.self = node   # a cycle: only the cyclic collector frees it
        dead = weakref.ref(node)
        del node
        kept = [[] for _ in range(2 * YOUNG_COLLECTION_EVERY)]   # allocations enough for a young pass
        collected["cycle"] = dead() is None
        del kept
        component("box")

    plan(program)
    assert collected == {"cycle": True}


def test_a_failed_program_leaves_nothing_to_the_next_one_in_the_process():
    """Its registrations in flight and its failed Outputs are dropped, not carried into the next run
    (where they registered as duplicate URNs and re-raised its error)."""
    import pulumi

    from mcp_estate.offline.runner import run_offline

    def failing() -> None:
        broken = pulumi.Output.from_input("x").apply(lambda _: (_ for _ in ()).throw(ValueError("planted")))
        for n in range(20):
            pulumi.CustomResource("aws:sns/topic:Topic", f"topic-{n}", {"name": broken})

    def fine() -> None:
        pulumi.CustomResource("aws:sns/topic:Topic", "topic-0", {"name": "t"})

    with pytest.raises(Exception, match="planted"):
        run_offline(failing, stack="dev", config={}, account_id="111122223333")
    names = [r.name for r in run_offline(fine, stack="dev", config={}, account_id="111122223333")]
    assert names == ["mcp-estate-dev", "topic-0"]
