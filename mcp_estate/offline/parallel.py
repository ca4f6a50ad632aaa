"""Plan one stack's estate in parallel processes (`estate plan --jobs N`): the plan a serial run gives.

The estate-wide parts are planned first (here), then the regions side by side in worker processes,
then the edge and the dashboards (here again). Each part stands on the parts before it through
references (components/estate_refs.py) replayed from their plan: the same values and secrecy, and
the same dependencies, since each value carries the URNs of the resources it came from. So the merged
registrations are a serial plan's: same URNs, inputs, outputs and dependencies (tests/test_parallel_plan.py
compares the two). Only the root stack and the `Estate` component are registered by every part; the
last part's (the edge's, which holds the stack's outputs) is kept. Any other URN registered by two
parts is a collision, refused as the engine would refuse it.

Workers are forked from a `forkserver` that has only imported the estate's modules: a process that has
run a Pulumi program has gRPC and event-loop threads, and forking such a process is unsafe.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import pulumi
from pulumi.resource import DependencyProviderResource, DependencyResource
from pulumi.runtime.rpc import _expand_dependencies
from pulumi.runtime.sync_await import _sync_await

from mcp_estate.contract.spec import EstateSpec

from .runner import (
    ROOT_STACK,
    DuplicateUrnError,
    Inspector,
    Registered,
    fidelity_error,
    in_dependency_order,
    run_offline,
)

ESTATE = "mcp-estate:index:Estate"
AWS_PROVIDER = "pulumi:providers:aws"
WORKER_PRELOAD = "mcp_estate.offline.worker_preload"


@dataclass(frozen=True)
class Replayed:
    """An `Output` of one part, as the parts after it receive it."""
    value: Any
    urns: tuple[str, ...]   # the resources it depends on, as the SDK expands them for a registration
    secret: bool


@dataclass(frozen=True)
class _Run:
    """What every part's run shares: the stack, its spec and config, and the checks."""
    spec: EstateSpec
    stack: str
    config: dict[str, Any]
    inspect: Inspector | None


def plan_in_parallel(spec: EstateSpec, *, stack: str, config: dict[str, Any], jobs: int,
                     inspect: Inspector | None = None,
                     inspect_all: Callable[[list[Registered]], list[str]] | None = None,
                     progress: Callable[[Registered], None] | None = None) -> list[Registered]:
    """The estate of `spec` planned with `jobs` worker processes for its regions; raises as `run_offline`."""
    from mcp_estate.components.estate import Part

    run, report = _Run(spec, stack, config, inspect), progress or (lambda _resource: None)
    with _workers(jobs) as pool:
        wide_plan, wide = _plan_part(run, Part("estate-wide"), None, {}, {})
        providers, provider_regions = _aws_providers(wide_plan)
        parts, fronts = [_reported(wide_plan, report)], {}
        arguments = lambda region: (run, Part("region", region), wide, providers, provider_regions)  # noqa: E731
        for region, (region_plan, fronts[region]) in _by_region(pool(), spec, _plan_part, arguments):
            parts.append(_reported(region_plan, report))
    edge_plan, _ = _plan_part(run, Part("edge"), wide, providers, provider_regions, fronts)
    return _checked(merged([*parts, _reported(edge_plan, report)]), inspect_all)


def plan_stack_per_region(spec: EstateSpec, *, stack: str, config: dict[str, Any], jobs: int,
                          inspect: Inspector | None = None,
                          inspect_all: Callable[[list[Registered]], list[str]] | None = None,
                          progress: Callable[[Registered], None] | None = None) -> list[Registered]:
    """An estate of `layout: stack-per-region` (components/stack_layout.py): the estate's stack, each
    region's stack (in `jobs` processes), then the edge's, each one's `StackReference`s answered with the
    outputs of the stacks planned before it. The stacks' registrations together, URNs naming each stack."""
    from mcp_estate.components.stack_layout import EDGE

    run, report = _Run(spec, stack, config, inspect), progress or (lambda _resource: None)
    with _workers(jobs) as pool:
        estate_plan = _reported(_plan_layout_stack(run, stack, {}), report)
        outputs = {stack: _stack_outputs(estate_plan)}
        plans = [estate_plan]
        for region, region_plan in _by_region(pool(), spec, _plan_layout_stack,
                                              lambda region: (run, f"{stack}.{region}", outputs)):
            plans.append(_reported(region_plan, report))
            outputs[f"{stack}.{region}"] = _stack_outputs(region_plan)
    plans.append(_reported(_plan_layout_stack(run, f"{stack}.{EDGE}", outputs), report))
    return _checked(in_dependency_order([r for plan in plans for r in plan]), inspect_all)


def _plan_layout_stack(run: _Run, stack: str, outputs: dict[str, dict]) -> list[Registered]:
    """One stack of the layout: the estate's (its own config) or a part's (none: its spec is the estate's)."""
    from mcp_estate.components.stack_layout import layout_stack

    return run_offline(lambda: layout_stack(run.spec, stack), stack=stack,
                       config=run.config if stack == run.stack else {}, account_id=run.spec.aws_account_id,
                       inspect=run.inspect, stack_outputs=outputs)


def _stack_outputs(registered: list[Registered]) -> dict:
    return next(r.outputs for r in registered if r.type == ROOT_STACK)


@contextmanager
def _workers(jobs: int) -> Iterator[Callable[[], ProcessPoolExecutor | None]]:
    """The pool of `jobs` worker processes (none for one job), as a call that waits until it is ready.
    It starts in a thread while this process plans the estate-wide part. Workers are forked from a
    server process that has imported the estate's modules and run nothing (offline/worker_preload.py:
    no gRPC or event-loop threads to fork), instead of each importing them again."""
    if jobs <= 1:
        yield lambda: None
        return
    with ThreadPoolExecutor(max_workers=1) as starter:
        starting = starter.submit(_started_pool, jobs)
        try:
            yield starting.result
        finally:
            starting.result().shutdown()


def _started_pool(jobs: int) -> ProcessPoolExecutor:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([WORKER_PRELOAD])
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context)
    for started in [pool.submit(int) for _ in range(jobs)]:
        started.result()
    return pool


def _by_region(pool: ProcessPoolExecutor | None, spec: EstateSpec, plan: Callable, arguments: Callable[[str], tuple]):
    """(region, `plan(*arguments(region))`) for every region of `spec`, in region order, computed by
    `pool`'s workers (in this process without one)."""
    regions = sorted(spec.regions)
    if pool is None:
        yield from ((region, plan(*arguments(region))) for region in regions)
        return
    pending = [(region, pool.submit(plan, *arguments(region))) for region in regions]
    yield from ((region, future.result()) for region, future in pending)


def _checked(registered: list[Registered], inspect_all: Callable[[list[Registered]], list[str]] | None
             ) -> list[Registered]:
    if problems := inspect_all(registered) if inspect_all else []:
        raise fidelity_error(problems)
    return registered


def merged(parts: list[list[Registered]]) -> list[Registered]:
    """The parts' registrations as one plan; a URN registered by two parts is refused, but for the
    root stack and the `Estate` component, which every part registers (the last part's is kept)."""
    kept: dict[str, Registered] = {}
    repeated: dict[str, int] = {}
    for part in parts:
        for resource in part:
            if resource.urn in kept and resource.type not in (ROOT_STACK, ESTATE):
                repeated[resource.urn] = repeated.get(resource.urn, 1) + 1
            kept[resource.urn] = resource
    if repeated:
        raise DuplicateUrnError("\n".join(f"Duplicate resource URN '{urn}'; try giving it a unique name "
                                          f"(registered by {count} parts of the estate)"
                                          for urn, count in sorted(repeated.items())))
    return in_dependency_order(list(kept.values()))


def _plan_part(run: _Run, part, wide, providers: dict[str, str], provider_regions: dict[str, str],
               fronts: dict | None = None) -> tuple[list[Registered], Any]:
    """Plan one part standing on the captured `wide` and `fronts`; returns its registrations and what
    it hands on (the estate-wide reference, or its region's)."""
    from mcp_estate.components.estate import estate_stack

    built = {}

    def program() -> None:
        stands_on = dataclasses.replace(part, wide=_replayed(wide), regions=_replayed(fronts or {}))
        given = {region: DependencyProviderResource(ref) for region, ref in providers.items()} or None
        built["estate"] = estate_stack(run.spec, stands_on, given)

    registered = run_offline(program, stack=run.stack, config=run.config, account_id=run.spec.aws_account_id,
                             inspect=run.inspect, provider_regions=provider_regions)
    estate = built["estate"]
    hands_on = {"estate-wide": lambda: dataclasses.replace(estate.wide_ref, scope=None),
                "region": lambda: estate.region_refs[part.region], "edge": lambda: None}[part.kind]()
    return registered, _sync_await(_captured(hands_on))


def _aws_providers(registered: list[Registered]) -> tuple[dict[str, str], dict[str, str]]:
    """The estate's AWS providers by region (as `urn::id` references) and their regions by id."""
    providers = [r for r in registered if r.type == AWS_PROVIDER]
    return ({r.inputs["region"]: f"{r.urn}::{r.id}" for r in providers},
            {r.id: r.inputs["region"] for r in providers})


def _reported(registered: list[Registered], report: Callable[[Registered], None]) -> list[Registered]:
    for resource in registered:
        report(resource)
    return registered


async def _captured(value: Any) -> Any:
    """`value` with every `Output` in it resolved to a `Replayed` (dataclasses, dicts, lists, tuples)."""
    if isinstance(value, pulumi.Output):
        dependencies = await _expand_dependencies(await value.resources(), None)
        return Replayed(await value.future(), tuple(sorted(dependencies)), await value.is_secret())
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value, **{f.name: await _captured(getattr(value, f.name))
                                             for f in dataclasses.fields(value)})
    if isinstance(value, dict):
        return {key: await _captured(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)([await _captured(item) for item in value])
    return value


def _replayed(value: Any) -> Any:
    """`value` with every `Replayed` in it as an `Output` again, depending on the same resources."""
    if isinstance(value, Replayed):
        return pulumi.Output({DependencyResource(urn) for urn in value.urns}, _ready(value.value), _ready(True),
                             _ready(value.secret))
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value, **{f.name: _replayed(getattr(value, f.name))
                                             for f in dataclasses.fields(value)})
    if isinstance(value, dict):
        return {key: _replayed(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_replayed(item) for item in value)
    return value


async def _ready(value: Any) -> Any:
    return value
