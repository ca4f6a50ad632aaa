"""The adversarial corpus of issue 12, indexed by control.

A test case joins the corpus with a `corpus` marker: `attack(control)` on a case that writes the
control's risk in some form (another spelling, several resources, a disguised wildcard, another
resource type) and must be caught; `legitimate(control)` on a change that must pass. On a test
parametrized over controls, `attack(param="policy")` takes each case's control from that argument.
Put it on the test function, or on one `pytest.param(..., marks=...)` of its parametrization.

The marker is a claim the suite checks twice:
- while the case runs, `witness` records what `estate check`'s evaluation (the pack's own policy
  objects, as the CrossGuard analyzer runs them) reported, and `confirm` fails the case unless the
  control reported a finding (an attack) or ran and reported nothing (a legitimate change);
- tests/test_corpus.py counts the cases per control and fails when a control has fewer than
  three attacks or two legitimate changes.
"""

from __future__ import annotations

import importlib
import inspect
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _pytest.mark.structures import ParameterSet  # what pytest.param returns

ATTACK, LEGITIMATE = "attack", "legitimate"
MARKER = "corpus"
MARKER_HELP = (f"{MARKER}(kind, control=None, param=None): a case of the adversarial corpus (tests/corpus.py): "
               "an attack the control catches or a legitimate change it passes")


def attack(control: str | None = None, *, param: str | None = None) -> pytest.MarkDecorator:
    """A case expressing `control`'s risk (or that of the control named by argument `param`): it must be caught."""
    return _mark(ATTACK, control, param)


def legitimate(control: str | None = None, *, param: str | None = None) -> pytest.MarkDecorator:
    """A change `control` (or the control named by argument `param`) must let through."""
    return _mark(LEGITIMATE, control, param)


def _mark(kind: str, control: str | None, param: str | None) -> pytest.MarkDecorator:
    if (control is None) == (param is None):
        raise TypeError("name the control, or the test argument that names it, not both")
    return getattr(pytest.mark, MARKER)(kind, control=control, param=param)


# -- while a case runs: what the pack reported ------------------------------------------------------

@dataclass
class Witness:
    """Per control: how often the pack ran it and what it found (advisory "can't run" notes and a
    policy's own failure are no catch: the first is no verdict, the second a broken control; nor
    is either a pass)."""
    ran: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    found: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    said: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))   # findings and notes


def cases_of(item: pytest.Item) -> list[tuple[str, str]]:
    """(kind, control) of every corpus marker on a collected test case."""
    cases = []
    for mark in item.iter_markers(MARKER):
        control = mark.kwargs["control"] or item.callspec.params[mark.kwargs["param"]]
        cases.append((mark.args[0], control))
    return cases


def watch(monkeypatch: pytest.MonkeyPatch) -> Witness:
    """Record every policy run of `estate check`'s evaluation during the case."""
    from mcp_estate.checking import check
    witness, run = Witness(), check._run

    def recorded(control, level, args, subject):
        found = run(control, level, args, subject)
        witness.ran[control.name] += 1
        witness.found[control.name] += [v.message for v in found if _is_a_finding(control.name, v.message)]
        witness.said[control.name] += [v.message for v in found]
        return found
    monkeypatch.setattr(check, "_run", recorded)
    return witness


def _is_a_finding(control: str, message: str) -> bool:
    return not message.startswith((f"can't run policy '{control}'", f"policy '{control}' failed:"))


def confirm(cases: list[tuple[str, str]], witness: Witness) -> None:
    for kind, control in cases:
        assert witness.ran[control], f"corpus case for {control} never ran the pack's {control}"
        if kind == ATTACK:
            assert witness.found[control], f"corpus attack on {control}: the control found nothing"
        else:
            assert not witness.said[control], f"corpus legitimate change for {control} did not pass " \
                                              f"cleanly: {witness.said[control]}"


# -- the index: cases per control, read from the test modules -----------------------------------------

def index(test_dir: Path) -> dict[str, dict[str, list[str]]]:
    """control -> kind -> the ids of its cases (test function, and parameter set when marked on one)."""
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: {ATTACK: [], LEGITIMATE: []})
    for path in sorted(test_dir.glob("test_*.py")):
        if "from corpus import" not in path.read_text():
            continue
        module = importlib.import_module(path.stem)
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("test_") and fn.__module__ == module.__name__:
                for kind, control, case in _cases_of_function(fn):
                    case_id = f"{path.name}::{name}{case}"
                    if case_id not in found[control][kind]:   # one case counts once, however often marked
                        found[control][kind].append(case_id)
    return found


def _marks(thing: Any) -> list[pytest.Mark]:
    marks = thing.marks if isinstance(thing, ParameterSet) else getattr(thing, "pytestmark", [])
    return [m.mark if isinstance(m, pytest.MarkDecorator) else m for m in marks]


def _cases_of_function(fn) -> list[tuple[str, str, str]]:
    marks = _marks(fn)
    parametrize = [m for m in marks if m.name == "parametrize"]
    cases = []
    for mark in (m for m in marks if m.name == MARKER):   # on the function: every parameter set
        for params, case in _parameter_sets(parametrize) or [({}, "")]:
            control = mark.kwargs["control"] or params[mark.kwargs["param"]]
            cases.append((mark.args[0], control, case))
    for params, case, set_marks in _parameter_sets(parametrize, with_marks=True):
        for mark in (m for m in set_marks if m.name == MARKER):
            cases.append((mark.args[0], mark.kwargs["control"] or params[mark.kwargs["param"]], case))
    return cases


def _parameter_sets(parametrize: list[pytest.Mark], with_marks: bool = False) -> list:
    """Each parameter set of the (single) parametrize marker: its arguments by name and its index."""
    if not parametrize:
        return []
    names, values = parametrize[0].args[0], parametrize[0].args[1]
    names = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
    sets = []
    for i, value in enumerate(values):
        marks = _marks(value) if isinstance(value, ParameterSet) else []
        raw = value.values if isinstance(value, ParameterSet) else (value if len(names) > 1 else (value,))
        params = dict(zip(names, raw))
        sets.append((params, f"[{i}]", marks) if with_marks else (params, f"[{i}]"))
    return sets
