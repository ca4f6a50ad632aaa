"""`estate plan`: the estate of a stack, built offline, summarised and exported.

The program runs in-process under the realistic mocks with the stack's own config and the
strict fidelity inspector; the result is exported in the shape of `pulumi stack export`,
so the same policies run over it as over a real stack's export.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from mcp_estate.contract.names import REGION_TAG
from mcp_estate.contract.rollout import in_region_of
from mcp_estate.contract.spec import EstateSpec, Server
from mcp_estate.contract.stackfile import load_spec

from .fidelity import inspect_resource
from .limits import estate_limit_problems
from .parallel import plan_in_parallel, plan_stack_per_region
from .runner import Registered, run_offline

# Services (a server in a region) from which planning in parallel pays (tests/bench_plan.py --jobs).
PARALLEL_FROM_SERVICES = 200


@dataclass
class Plan:
    stack: str
    spec: EstateSpec
    resources: list[Registered]
    seconds: float

    def custom_resources(self) -> list[Registered]:
        return [r for r in self.resources if r.custom and not r.type.startswith("pulumi:providers:")]

    def export(self) -> dict[str, Any]:
        """`pulumi stack export`'s shape (version 3), with the mocks' ids and outputs."""
        return {"version": 3, "deployment": {
            "manifest": {"version": "mcp-estate offline plan (Pulumi mocks)"},
            "resources": [r.export() for r in self.resources]}}


class Progress:
    """Counts the resources a plan registers, per region (its region tag; `estate-wide` without one),
    and writes a line every `every` of them: a 15,000-resource plan takes minutes."""

    def __init__(self, write: Callable[[str], None], every: int = 500):
        self.write, self.every = write, every
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()   # registrations arrive on the SDK's threads

    def __call__(self, resource: Registered) -> None:
        if not resource.custom or resource.type.startswith("pulumi:providers:"):
            return
        tags = resource.inputs.get("tags")
        region = tags.get(REGION_TAG, "estate-wide") if isinstance(tags, dict) else "estate-wide"
        with self.lock:
            self.counts[region] += 1
            if self.counts.total() % self.every == 0:
                self.write(self.line())

    def line(self) -> str:
        regions = ", ".join(f"{region} {count}" for region, count in sorted(self.counts.items()))
        return f"registered {self.counts.total()} resources ({regions})"


def plan_stack(stack: str, stacks_dir: Path, progress: Progress | None = None, jobs: int | None = 1) -> Plan:
    """Validate the stack's spec and build its estate offline, its regions in `jobs` processes when
    it has several (offline/parallel.py: the same plan; None: `default_jobs`). Raises SpecError, FidelityError."""
    config, spec = load_spec(stack, stacks_dir)
    started = time.perf_counter()
    jobs = default_jobs(spec) if jobs is None else jobs
    return Plan(stack, spec, plan_spec(spec, stack, config, progress, jobs), time.perf_counter() - started)


def default_jobs(spec: EstateSpec) -> int:
    """One process per CPU for an estate large enough to repay starting them (each imports the SDKs
    again, a few seconds: README, "Speed"); else one."""
    services = sum(len(spec.servers_in(region)) for region in spec.regions)
    return os.cpu_count() or 1 if services >= PARALLEL_FROM_SERVICES else 1


def plan_spec(spec: EstateSpec, stack: str, config: dict[str, Any], progress: Progress | None = None,
              jobs: int = 1) -> list[Registered]:
    """The registrations of the estate of `spec` as stack `stack`, with the strict inspectors."""
    from mcp_estate.components.estate import estate_stack  # imports the SDKs: only once the spec is known good

    checks = {"inspect": inspect_resource, "progress": progress,
              "inspect_all": lambda registered: estate_limit_problems(registered, spec.aws_quotas)}
    jobs = min(jobs, len(spec.regions))
    if spec.layout == "stack-per-region" and spec.deploy_stage != "foundation":
        return plan_stack_per_region(spec, stack=stack, config=config, jobs=jobs, **checks)
    if jobs > 1 and spec.deploy_stage != "foundation":
        return plan_in_parallel(spec, stack=stack, config=config, jobs=jobs, **checks)
    return run_offline(lambda: estate_stack(spec), stack=stack, config=config, account_id=spec.aws_account_id,
                       **checks)


def _auth_line(spec: EstateSpec) -> str:
    if spec.auth is None or spec.auth.disabled:
        return "auth: disabled (MCP served without tokens; dev only)"
    return f"auth: tokens from {spec.auth.issuer}, traveller claim `{spec.auth.traveller_claim}`"


def _waves_line(spec: EstateSpec) -> str:
    waves = " -> ".join(f"[{', '.join(wave)}]" for wave in spec.waves)
    if len(spec.waves) == 1:
        return f"rollout: one wave, {waves}"
    return f"rollout waves: {waves}, {spec.rollout.wave_bake_minutes} healthy minutes between waves"


def _delivery(spec: EstateSpec, server: Server) -> str:
    """How a change reaches the server and where its tokens are checked, plus its opt-in capabilities."""
    strategy = in_region_of(server.rollout, spec.rollout).strategy
    parts = [f"deploys {strategy} in each region"]
    if spec.auth is not None and not spec.auth.disabled:
        parts.append(f"token checked by the {server.auth.token_validation if server.auth else 'alb'}")
    parts += [name for name, on in (("cache", server.cache), ("async work", server.async_work)) if on]
    return ", ".join(parts)


def _layout_lines(plan: Plan, custom: list[Registered]) -> list[str]:
    """With `layout: stack-per-region`, the stacks in deployment order, with their resources."""
    if plan.spec.layout == "one-stack" or plan.spec.deploy_stage == "foundation":
        return []
    count = Counter(r.urn.split("::", 1)[0].removeprefix("urn:pulumi:") for r in custom)
    stacks = [plan.stack, *(f"{plan.stack}.{region}" for region in sorted(plan.spec.regions)), f"{plan.stack}.edge"]
    return ["layout: a stack per region, deployed in this order (the regions in any order among themselves):",
            *(f"  {stack:<24} {count[stack]} resources" for stack in stacks)]


def _delegated_edge_lines(spec: EstateSpec) -> list[str]:
    """What the spec leaves to the zone owner's program: a reader must not look for it in this plan."""
    parts = [what for owner, what in ((spec.edge.zone, "the zone's rulesets and settings"),
                                      (spec.edge.load_balancer, "the load balancer")) if owner == "caller"]
    return [f"  built by the caller, not here: {' and '.join(parts)} (stack output delegated_edge)"] if parts else []


def summary(plan: Plan) -> str:
    spec, custom = plan.spec, plan.custom_resources()
    lines = [f"stack {plan.stack} ({spec.environment}), owner {spec.owner}, AWS account "
             f"{spec.aws_account_id}, https://{spec.domain.hostname}", _auth_line(spec), _waves_line(spec),
             *_layout_lines(plan, custom), "", "residency groups:"]
    for group in sorted(spec.residency_groups, key=lambda g: g.name):
        regions = ", ".join(f"{r.name} {r.cidr}" + ("*" if r.name == group.primary_region else "")
                            for r in sorted(group.regions, key=lambda r: r.name))
        policy = f"strict: {' '.join(group.countries)}" if group.strict else \
            f"default route{'; ' + ' '.join(group.countries) if group.countries else ''}"
        lines.append(f"  {group.name:<12} {regions}  ({policy})")
    lines += ["  (* primary region: the group's table and key live there)", "", "servers:"]
    for server in sorted(spec.servers, key=lambda s: s.name):
        lines.append(f"  {server.name:<12} https://{spec.domain.hostname}{server.mcp_path}  "
                     f"{server.cpu} CPU / {server.memory} MiB, {server.scaling.min}-{server.scaling.max} "
                     "tasks in every region")
        lines.append(f"  {'':<12} {server.registry_host}/{server.repository}@{server.digest[:19]}...")
        lines.append(f"  {'':<12} {_delivery(spec, server)}")
        if server.candidate:
            lines.append(f"  {'':<12} candidate ...@{server.candidate.image.rsplit('@', 1)[1][:19]}... in "
                         f"{', '.join(spec.candidate_regions(server))} (wave {server.candidate.waves_reached} "
                         f"of {len(spec.waves)})")
    origins = {r.inputs["tags"]["mcp-estate:region"]: r.outputs.get("dnsName") for r in custom
               if r.type == "aws:lb/loadBalancer:LoadBalancer"}
    lines += ["", "origins (mock DNS names):"] + [f"  {n}: {d}" for n, d in sorted(origins.items())]
    lines += _delegated_edge_lines(spec)
    if spec.deploy_stage == "foundation":
        lines += ["  none yet: deploy_stage is foundation (keys, registry, secrets only); "
                  "remove it for the rest"]
    by_type = Counter(r.type for r in custom)
    by_cloud = Counter(r.type.split(":", 1)[0] for r in custom)
    lines += ["", f"resources: {len(custom)} ({', '.join(f'{n} {c}' for c, n in sorted(by_cloud.items()))}), "
                  f"{sum(not r.custom for r in plan.resources)} components, planned in {plan.seconds:.1f}s"]
    lines += [f"  {count:>5}  {token}" for token, count in sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0]))]
    return "\n".join(lines)
