"""pytest plugin for `.ci/mutation` (packages in WHOLE_MODULES): while mutmut collects which tests reach
which function, credit a function to every test of the test modules that reached it, and clear the test
modules' cached plans whenever a new module starts.

Why: mutmut 3 credits a function to the test during which it ran. A component runs once per plan, and
the tests build a plan once per module (a module-scoped fixture) or once per session (`shipped_plan`,
functools.cache): the component is credited to the first test that built the plan, never to the tests
that assert on it, so a mutant would run only that first test and look like a survivor. Crediting the
module, and building each cached plan again in each module that uses it, gives every mutant the tests
that read its plan (and some that do not: they only cost time).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

_state = {"module": None}


def _stats_run() -> bool:
    return os.environ.get("MUTANT_UNDER_TEST") == "stats"


def pytest_runtest_setup(item):
    if not _stats_run() or item.module is _state["module"]:
        return
    _state["module"] = item.module
    tests = Path(str(item.config.rootpath)) / "tests"
    for module in list(__import__("sys").modules.values()):
        if Path(getattr(module, "__file__", None) or "/").parent != tests:
            continue
        for value in list(vars(module).values()):
            if isinstance(value, functools._lru_cache_wrapper):
                value.cache_clear()


def pytest_sessionfinish(session):
    if not _stats_run():
        return
    from mutmut.state import state

    credited = state().tests_by_mangled_function_name
    by_module: dict[str, set[str]] = {}
    for tests in credited.values():
        for test in tests:
            by_module.setdefault(test.split("::", 1)[0], set()).add(test)
    collected = {item.nodeid.removeprefix("mutants/") for item in session.items}
    for test in collected:
        by_module.setdefault(test.split("::", 1)[0], set()).add(test)
    for function, tests in credited.items():
        tests |= {t for test in list(tests) for t in by_module[test.split("::", 1)[0]]}
