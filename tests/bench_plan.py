"""Planning cost against the Pulumi SDK's own floor, measured in one run on one machine.

    python tests/bench_plan.py [--servers 50] [--jobs CPUS]

Plans the benchmark estate (tests/test_benchmark.py: 10 regions, 50 servers) as `estate plan` does,
timing each phase, then registers the very same resources (types, names, parents, inputs) with the
SDK alone under the SDK's plain mocks: no components, no estate mocks, no checks. The ratio of the
two is the estate's overhead over what any Pulumi program of that size costs. Then plans it again with
its regions in parallel processes, as `estate plan --jobs` does. Prints a Markdown
table (the README's "Speed" section).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import sys
import time
from pathlib import Path

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import ACCOUNT  # noqa: E402
from test_benchmark import large_spec  # noqa: E402

from mcp_estate.components.estate import Estate  # noqa: E402
from mcp_estate.contract.validate import parse_spec  # noqa: E402
from mcp_estate.offline.fidelity import inspect_resource  # noqa: E402
from mcp_estate.offline.limits import estate_limit_problems  # noqa: E402
from mcp_estate.offline.parallel import plan_in_parallel  # noqa: E402
from mcp_estate.offline.runner import Registered, _collecting_less, run_offline  # noqa: E402


class _Timed:
    """A callable's total time across calls (the inspector runs once per resource)."""

    def __init__(self, fn):
        self.fn, self.seconds = fn, 0.0

    def __call__(self, *args):
        started = time.perf_counter()
        try:
            return self.fn(*args)
        finally:
            self.seconds += time.perf_counter() - started


def ours(raw: dict) -> tuple[list[Registered], dict[str, float]]:
    started = time.perf_counter()
    spec = parse_spec(raw)
    parsed = time.perf_counter()
    inspect, limits = _Timed(inspect_resource), _Timed(lambda r: estate_limit_problems(r, spec.aws_quotas))
    resources = run_offline(lambda: Estate("mcp-estate", spec), stack="bench", account_id=ACCOUNT,
                            config={"mcp-estate:estate": raw}, inspect=inspect, inspect_all=limits)
    total = time.perf_counter() - started
    return resources, {"spec": parsed - started, "fidelity": inspect.seconds, "limits": limits.seconds,
                       "components, mocks and SDK": total - (parsed - started) - inspect.seconds - limits.seconds,
                       "total": total}


class _Plain(pulumi_mocks.Mocks):
    def new_resource(self, args: pulumi_mocks.MockResourceArgs):
        return f"{args.name}-id", args.inputs

    def call(self, args: pulumi_mocks.MockCallArgs):
        return {}


def floor(resources: list[Registered], collector=contextlib.nullcontext()) -> float:
    """The same registrations through the SDK alone (providers left out: the SDK builds its defaults),
    with CPython's default garbage collector, or with `collector` (the settings `run_offline` plans with)."""
    def program() -> None:
        made: dict[str, pulumi.Resource] = {}
        for r in resources:
            if r.type.startswith("pulumi:"):
                continue
            opts = pulumi.ResourceOptions(parent=made.get(r.parent))
            made[r.urn] = (pulumi.CustomResource(r.type, r.name, dict(r.inputs), opts) if r.custom
                           else pulumi.ComponentResource(r.type, r.name, None, opts))

    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(_Plain(), project="floor", stack="bench", preview=False)
    started = time.perf_counter()
    with collector:
        _sync_await(run_pulumi_func(program))
    return time.perf_counter() - started


def in_parallel(raw: dict, jobs: int) -> float:
    """The same plan, its regions in `jobs` processes (mcp_estate/offline/parallel.py), with the same checks."""
    started = time.perf_counter()
    spec = parse_spec(raw)
    plan_in_parallel(spec, stack="bench", config={"mcp-estate:estate": raw}, jobs=jobs, inspect=inspect_resource,
                     inspect_all=lambda r: estate_limit_problems(r, spec.aws_quotas))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes of the parallel plan")
    options = parser.parse_args()
    raw = large_spec(options.servers)
    resources, phases = ours(raw)
    sdk = floor(resources)
    sdk_tuned = floor(resources, _collecting_less())
    parallel = in_parallel(raw, options.jobs)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # region processes: the forkserver's children
    custom = sum(r.custom for r in resources)
    print(f"{custom} resources, {len(resources) - custom} components\n")
    print("| phase | seconds |\n|---|---|")
    for phase, seconds in phases.items():
        print(f"| {phase} | {seconds:.1f} |")
    print(f"| SDK floor (same registrations, plain mocks) | {sdk:.1f} |")
    print(f"| SDK floor with the collector settings the estate plans with | {sdk_tuned:.1f} |")
    print(f"| ours, regions in {options.jobs} processes (same plan) | {parallel:.1f} |")
    print(f"\nours / floor: {phases['total'] / sdk:.2f}; in parallel: {parallel / sdk:.2f}")
    print(f"peak memory of this process: {own:.0f} MiB")


if __name__ == "__main__":
    main()
