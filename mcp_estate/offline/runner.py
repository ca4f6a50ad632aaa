"""Run a Pulumi program in-process under the estate's mocks and record what it registers.

This is what `estate plan` and the tests stand on: the program runs exactly as under
`pulumi up` (preview=False, so every `apply` runs), the mock monitor answers like the
providers would, and every registration is kept with its inputs (engine names), options
and mock outputs, in the shape `pulumi stack export` uses.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.stack import massage, run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from .mocks import EstateMocks

PROJECT = "mcp-estate"

# (type token, resource name, inputs) -> problems; raised as a `FidelityError`.
Inspector = Callable[[str, str, dict], list[str]]


@dataclass
class Registered:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    provider: str
    protect: bool
    retain_on_delete: bool
    dependencies: list[str]
    inputs: dict[str, Any]
    id: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)   # URNs the engine would take as its old ones

    def export(self) -> dict[str, Any]:
        """This resource as an entry of `pulumi stack export`'s `deployment.resources`."""
        entry = {"urn": self.urn, "custom": self.custom, "type": self.type, "inputs": self.inputs,
                 "outputs": self.outputs, "parent": self.parent, "protect": self.protect,
                 "retainOnDelete": self.retain_on_delete, "dependencies": self.dependencies}
        if self.custom:
            entry["id"] = self.id
        if self.provider:
            entry["provider"] = self.provider
        return entry


class FidelityError(Exception):
    """A resource's inputs would not survive the real provider (misspelled key, bad shape...)."""


class DuplicateUrnError(FidelityError):
    """Two registrations share a URN (same name, type and chain of ancestor types): the engine refuses
    the program.

    The engine stops at the first one (`Duplicate resource URN '<urn>'; try giving it a unique name`,
    diag 2001 of pulumi/pulumi pkg/diag/errors.go); this names every one, with the parents that collide.
    """


ROOT_STACK = "pulumi:pulumi:Stack"

# Allocations between two collections of the cyclic garbage collector's youngest generation during a
# plan (CPython's default is 700): see `_collecting_less`.
YOUNG_COLLECTION_EVERY = 50_000


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: EstateMocks, inspect: Inspector | None,
                 progress: Callable[[Registered], None] | None = None):
        super().__init__(mocks)
        self.inspect = inspect
        self.progress = progress
        self.recorded: dict[str, Registered] = {}
        self.problems: list[str] = []
        self.parents_of: dict[str, list[str]] = {}     # URN -> the parent of each registration
        self.registered_outputs: dict[str, dict[str, Any]] = {}
        self.aliases_of: dict[str, list[str]] = {}     # URN -> its aliases, the parents' multiplied in

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        """The URN the engine gives (resource.NewURN in pulumi/pulumi sdk/go/common/resource/urn.go):
        the type qualified by every ancestor's type but the root stack's. The SDK's mocks qualify it
        by the parent's type alone, which would see collisions the engine does not."""
        return engine_urn(parent, type_, name)

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        self.parents_of.setdefault(response.urn, []).append(request.parent)
        self.aliases_of[response.urn] = engine_aliases(request, self.aliases_of.get(request.parent, []))
        inputs = _plain(rpc.deserialize_properties(request.object))
        if self.inspect is not None and request.custom:
            self.problems += [f"{request.type} '{request.name}': {p}"
                              for p in self.inspect(request.type, request.name, inputs)]
        registration = self.resources.get(response.urn)
        self.recorded[response.urn] = Registered(
            urn=response.urn, type=request.type, name=request.name, custom=bool(request.custom),
            parent=request.parent, provider=request.provider, protect=bool(request.protect),
            retain_on_delete=bool(request.retainOnDelete), dependencies=sorted(request.dependencies),
            inputs=inputs, id=response.id, aliases=self.aliases_of[response.urn],
            outputs=_plain(registration.state) if registration and request.custom else {})
        if self.progress is not None:
            self.progress(self.recorded[response.urn])
        return response

    def RegisterResourceOutputs(self, request):
        """A component's (or the stack's) `register_outputs`: the engine keeps them as its outputs."""
        self.registered_outputs[request.urn] = _plain(rpc.deserialize_properties(request.outputs))
        return super().RegisterResourceOutputs(request)

    def duplicate_urns(self) -> list[str]:
        return [f"Duplicate resource URN '{urn}'; try giving it a unique name "
                f"(registered {len(parents)} times, under {', '.join(repr(p) for p in sorted(parents))})"
                for urn, parents in sorted(self.parents_of.items()) if len(parents) > 1]

    def registrations(self) -> list[Registered]:
        for urn, outputs in self.registered_outputs.items():
            self.recorded[urn].outputs = outputs
        return list(self.recorded.values())


def engine_urn(parent: str, type_: str, name: str) -> str:
    """The engine's URN of a resource `name` of `type_` under `parent` (a URN, or "" for none)."""
    parent_type = parent.split("::")[2] if parent else ""
    qualified = type_ if parent_type in ("", ROOT_STACK) else f"{parent_type}${type_}"
    return "urn:pulumi:" + "::".join([pulumi.get_stack(), pulumi.get_project(), qualified, name])


def engine_aliases(request, parent_aliases: list[str]) -> list[str]:
    """A registration's aliases as URNs, as the engine computes them (generateAliases in
    pulumi/pulumi pkg/resource/deploy/step_generator.go): its own, then each of its parent's
    (themselves multiplied out), with the parent's old name in place where the child's name starts
    with the parent's."""
    own = []
    for alias in request.aliases:
        if alias.urn:
            own.append(alias.urn)
            continue
        spec = alias.spec
        old_parent = "" if spec.noParent else spec.parentUrn or request.parent
        own.append(engine_urn(old_parent, spec.type or request.type, spec.name or request.name))
    found = list(own)
    current = engine_urn(request.parent, request.type, request.name)
    parent_name = request.parent.rsplit("::", 1)[-1] if request.parent else ""
    for parent_alias in parent_aliases:
        for child_urn in [current, *own]:
            child_name, child_type = child_urn.rsplit("::", 1)[-1], child_urn.split("::")[2].split("$")[-1]
            if parent_name and child_name.startswith(parent_name):
                child_name = parent_alias.rsplit("::", 1)[-1] + child_name[len(parent_name):]
            found.append(engine_urn(parent_alias, child_type, child_name))
    return list(dict.fromkeys(found))


def _plain(value: Any) -> Any:
    """Drop the SDK's wire sentinels so inputs/outputs are plain JSON data."""
    return json.loads(json.dumps(value, default=_asset))


def _asset(value: Any) -> Any:
    """An asset or archive (a Lambda's code) as the export records it: signature, source, and the
    SHA-256 of the content, which changes with the code."""
    if isinstance(value, pulumi.AssetArchive):
        return {rpc._special_sig_key: rpc._special_archive_sig, "assets": dict(sorted(value.assets.items()))}
    if isinstance(value, pulumi.FileAsset):
        return {rpc._special_sig_key: rpc._special_asset_sig, "path": value.path,
                "hash": hashlib.sha256(Path(value.path).read_bytes()).hexdigest()}
    if isinstance(value, pulumi.StringAsset):
        return {rpc._special_sig_key: rpc._special_asset_sig, "text": value.text,
                "hash": hashlib.sha256(value.text.encode()).hexdigest()}
    return str(value)


def run_offline(program: Callable[[], None], *, stack: str, config: dict[str, Any], account_id: str,
                inspect: Inspector | None = None,
                inspect_all: Callable[[list[Registered]], list[str]] | None = None,
                progress: Callable[[Registered], None] | None = None,
                provider_regions: dict[str, str] | None = None,
                stack_outputs: dict[str, dict] | None = None) -> list[Registered]:
    """Run `program` as stack `stack` of this project with `config` (key -> value) under mocks;
    `inspect` sees each resource as it registers, `inspect_all` every one once the program ends
    (counts across resources), their problems raised together as a `FidelityError`; `progress`
    is told of each registration as it happens (long plans show how far they are); `provider_regions`
    (provider id -> region) names the regions of providers registered by an earlier run of the same stack;
    `stack_outputs` (stack name -> outputs) answers the program's `StackReference`s."""
    mocks = EstateMocks(account_id, stack)
    mocks.provider_regions.update(provider_regions or {})
    mocks.stack_outputs.update(stack_outputs or {})
    monitor = _RecordingMonitor(mocks, inspect, progress)
    settings.ROOT.set(None)   # a fresh root stack resource per run
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()})
    with _collecting_less():
        try:
            _sync_await(run_pulumi_func(lambda: _with_stack_outputs(program)))
        except BaseException:
            _abandon_pending_work()
            raise
    if duplicates := monitor.duplicate_urns():   # the engine refuses these before any provider sees them
        raise DuplicateUrnError("\n".join(duplicates))
    registered = monitor.registrations()
    problems = monitor.problems + (inspect_all(registered) if inspect_all else [])
    if problems:
        raise fidelity_error(problems)
    return in_dependency_order(registered)


def fidelity_error(problems: list[str]) -> FidelityError:
    """The problems found, together; registrations race through the SDK's threads (and a parallel plan's
    processes), so they are ordered by resource, each resource's as found."""
    return FidelityError("\n".join(sorted(problems, key=lambda p: p.split(": ", 1)[0])))


def _abandon_pending_work() -> None:
    """A program that failed leaves registrations and applies in flight on the event loop: cancel them,
    or they would run in the next program's run and register there (seen as duplicate URNs), and the
    SDK's record of them, or the next program would end with this one's error."""
    loop = asyncio.get_event_loop()
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    with settings.SETTINGS.lock:   # the SDK keeps a failed Output's task to re-raise at the next program's end
        for task in settings.SETTINGS.outputs:   # their errors are this program's, already raised
            if task.done() and not task.cancelled():
                task.exception()
        settings.SETTINGS.outputs.clear()
    settings._get_rpc_manager().clear()


@contextmanager
def _collecting_less() -> Iterator[None]:
    """Far fewer passes of the cyclic garbage collector while the program runs, the same collector after.

    A plan allocates millions of short-lived objects (Outputs, futures, the event loop's callbacks) over a
    heap of about a million long-lived ones (the SDKs' modules, the providers' schemas). With CPython's
    default thresholds the collector ran about 1,100 times in a plan of 929 resources and its few full
    passes walked that whole heap: about half the plan's CPU time, growing with the estate (profiled with
    cProfile and `gc.callbacks`). What was alive before the program is frozen out of the passes
    (`gc.freeze`) and the youngest generation is collected every `YOUNG_COLLECTION_EVERY` allocations:
    cycles are still collected, later and in fewer passes. A process that froze objects itself keeps them
    frozen (nothing is unfrozen that this did not freeze)."""
    thresholds, froze = gc.get_threshold(), gc.get_freeze_count() == 0
    if froze:
        gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        if froze:
            gc.unfreeze()


def _with_stack_outputs(program: Callable[[], None]) -> None:
    """Run `program`, then register the root stack's outputs (its `pulumi.export`s) as the engine
    does when a program ends: under mocks the root stack registered its (empty) outputs up front."""
    program()
    root = settings.get_root_resource()
    root.register_outputs(massage(root.outputs, []))


def in_dependency_order(resources: list[Registered]) -> list[Registered]:
    """Parents, providers and dependencies before their dependents, like `pulumi stack export`,
    and otherwise by URN: registrations race through the SDK's threads, the result must not."""
    by_urn = {r.urn: r for r in resources}
    needs = {r.urn: {u for u in (r.parent, r.provider.rsplit("::", 1)[0], *r.dependencies) if u in by_urn}
             for r in resources}
    ordered: list[Registered] = []
    ready = sorted(urn for urn, deps in needs.items() if not deps)
    dependents: dict[str, list[str]] = {}
    for urn, deps in needs.items():
        for dep in deps:
            dependents.setdefault(dep, []).append(urn)
    while ready:
        urn = ready.pop(0)
        ordered.append(by_urn[urn])
        for dependent in dependents.get(urn, []):
            needs[dependent].discard(urn)
            if not needs[dependent]:
                bisect.insort(ready, dependent)
    return ordered
