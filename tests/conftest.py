"""Shared test helpers: run a program under the estate's mocks and query what it registered."""

from __future__ import annotations

import json
import os
import socket
from functools import cache
from pathlib import Path
from typing import Callable

import corpus
import pytest
import yaml
from hypothesis import settings

from mcp_estate.offline.fidelity import inspect_resource
from mcp_estate.offline.limits import estate_limit_problems
from mcp_estate.offline.runner import FidelityError, Registered, run_offline

# CI explores the same examples on every run (a failure there reproduces); developers explore new ones.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")


ACCOUNT = "111122223333"
ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def pytest_configure(config):
    """Tests talk to this machine only: any other name fails to resolve, as on a host with no DNS.
    Registers the adversarial corpus's marker."""
    config.addinivalue_line("markers", corpus.MARKER_HELP)
    real = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK:
            raise socket.gaierror(socket.EAI_NONAME, f"tests resolve only loopback names, not {name!r}")
        return real(host, *args, **kwargs)
    socket.getaddrinfo = loopback_only


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI a skipped test fails: a test that cannot run there proves nothing. Only the benchmark
    (skipped by `--benchmark-skip` in the normal run) may skip."""
    report = (yield).get_result()
    if report.skipped and not hasattr(report, "wasxfail") and os.environ.get("CI") == "true" \
            and "benchmark" not in item.fixturenames:
        report.outcome, report.longrepr = "failed", f"skipped in CI, which proves nothing: {report.longrepr}"


@pytest.fixture(autouse=True)
def corpus_witness(request, monkeypatch):
    """A case of the adversarial corpus (tests/corpus.py) must be caught, or passed, by its control."""
    cases = corpus.cases_of(request.node)
    if not cases:
        yield
        return
    witness = corpus.watch(monkeypatch)
    yield
    corpus.confirm(cases, witness)


class Plan:
    """The resources a program registered, with small queries for assertions."""

    def __init__(self, resources: list[Registered]):
        self.resources = resources

    def of_type(self, token: str) -> list[Registered]:
        return [r for r in self.resources if r.type == token]

    def named(self, name: str) -> Registered:
        matches = [r for r in self.resources if r.name == name]
        assert len(matches) == 1, f"expected one resource named {name!r}, found {len(matches)}: " \
                                  f"{sorted(r.name for r in self.resources)}"
        return matches[0]

    def one(self, token: str) -> Registered:
        found = self.of_type(token)
        assert len(found) == 1, f"expected one {token}, found {[r.name for r in found]}"
        return found[0]

    def children_of(self, parent: Registered) -> list[Registered]:
        return [r for r in self.resources if r.parent == parent.urn]


def run_program(program: Callable[[], None], stack: str = "test", config: dict | None = None) -> Plan:
    """`program` under the mocks and the same strict fidelity inspector as `estate plan`."""
    return Plan(run_offline(program, stack=stack, config=config or {}, account_id=ACCOUNT,
                            inspect=inspect_resource, inspect_all=estate_limit_problems))


def run_with_planted_fault(program: Callable[[], None], fault: str, stack: str = "test",
                           config: dict | None = None) -> Plan:
    """For a test that plants a fault on purpose (to show that a policy catches it as well):
    asserts that the inspector reports `fault`, then returns the plan built without it."""
    with pytest.raises(FidelityError) as error:
        run_program(program, stack, config)
    assert fault in str(error.value)
    return Plan(run_offline(program, stack=stack, config=config or {}, account_id=ACCOUNT))


def policy(resource: Registered, key: str) -> dict:
    """A JSON-string policy input (assumeRolePolicy, policy...) as a dict."""
    return json.loads(resource.inputs[key])


def stack_config(stack: str) -> dict:
    return yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]


@cache
def shipped_plan(stack: str) -> Plan:
    """A shipped stack built once per test session, exactly as `estate plan` builds it."""
    from mcp_estate.offline.plan import plan_stack
    return Plan(plan_stack(stack, ROOT / "stacks").resources)


@pytest.fixture
def run() -> Callable[..., Plan]:
    return run_program


def violations(plan: Plan, config: dict | None = None, policy: str | None = None):
    """The pack's violations over a plan's resources (as `estate check` evaluates an export)."""
    from mcp_estate.checking.check import evaluate
    found = evaluate([r.export() for r in plan.resources], config)
    return [v for v in found if policy is None or v.policy == policy]


def as_object(plan: Plan, name: str, key: str) -> Plan:
    """The plan with `key` of resource `name` given as an object, as the engine records `policy={...}`
    (the mocks echo inputs as outputs, and the SDK refuses an object where a string output is due)."""
    inputs = plan.named(name).inputs
    inputs[key] = json.loads(inputs[key])
    return plan
