"""The estate as one stack (the default) or as one stack per part (spec `layout: stack-per-region`).

With `stack-per-region`, the stack whose file holds the spec (say `prod`) builds the estate-wide parts
(keys, registry, secrets, state tables, certificates, identities) and exports what a region stands on;
each region is the stack `prod.<region>`, standing on `prod`'s outputs through a `StackReference`; the
Cloudflare edge and the dashboards are the stack `prod.edge`, standing on `prod`'s and every region
stack's outputs. A region is then added, changed or rolled back by `pulumi up` of its own stack,
without touching the others: deploy `prod`, then the regions (in any order), then `prod.edge`.

Every part names and tags its resources as the estate's stack (`prod`), so physical names, `estate
verify` and the stack policies see one estate whichever layout deploys it. A stack is a part when its
name has a dot: the estate's stack before it, the part after it (a region of the spec, or `edge`).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Callable

import pulumi

from mcp_estate.contract.problems import Problem
from mcp_estate.contract.spec import EstateSpec

from .estate import Estate, Part, estate_stack, exported
from .estate_refs import EstateWideRef, IdentityRef, RegionRef
from .estate_scope import EstateScope

WIDE_OUTPUT = "estate_wide"    # the estate-wide stack's hand-off to its regions and its edge
FRONT_OUTPUT = "region_front"  # a region stack's hand-off to the edge
EDGE = "edge"


def part_of(stack: str) -> tuple[str, str | None]:
    """The estate's stack and the part a stack builds: `prod.eu-west-1` -> (`prod`, `eu-west-1`)."""
    estate, dot, part = stack.partition(".")
    return estate, part if dot else None


def part_problems(spec: EstateSpec, stack: str) -> list[Problem]:
    """Why `stack` cannot build its part of the estate of `spec` (none for a valid part)."""
    estate, part = part_of(stack)
    if part is None:
        return []
    if spec.layout != "stack-per-region":
        return [Problem("layout", f"stack {stack} is a part of the estate of stack {estate}, whose layout is "
                                  f"{spec.layout!r}: set `layout: stack-per-region` there, or deploy {estate} alone")]
    if spec.deploy_stage == "foundation":
        return [Problem("deploy_stage", f"stack {stack}: the foundation stage is the estate's stack {estate} "
                                        "alone; deploy the regions and the edge once it is `full`")]
    if part != EDGE and part not in spec.regions:
        return [Problem("stack", f"stack {stack}: {part!r} is neither a region of the estate "
                                 f"({', '.join(sorted(spec.regions))}) nor {EDGE!r}")]
    return []


def layout_stack(spec: EstateSpec, stack: str) -> Estate:
    """The program of stack `stack`: the whole estate, or its part of it; its outputs as the stack's."""
    estate_stack_name, part = part_of(stack)
    if spec.layout == "one-stack" or spec.deploy_stage == "foundation":
        return estate_stack(spec)
    if part is None:
        estate = Estate("mcp-estate", spec, part=Part("estate-wide"))
        return exported(estate, {WIDE_OUTPUT: wide_outputs(estate.wide_ref)})
    wide = wide_from(estate_stack_name, EstateScope(spec, "mcp-estate", estate_stack_name))
    if part == EDGE:
        fronts = {region: front_from(f"{estate_stack_name}.{region}", spec, region) for region in sorted(spec.regions)}
        edge = Part("edge", wide=wide, regions=fronts, stack=estate_stack_name)
        return exported(Estate("mcp-estate", spec, part=edge))
    estate = Estate("mcp-estate", spec, part=Part("region", part, wide=wide, stack=estate_stack_name))
    return exported(estate, {FRONT_OUTPUT: front_outputs(estate.region_refs[part])})


def qualified(stack: str) -> str:
    """A stack of this project in this organization, as `StackReference` names it (`organization` on a
    self-managed backend)."""
    return f"{pulumi.get_organization()}/{pulumi.get_project()}/{stack}"


# -- the hand-offs, as stack outputs (plain keys: `server/group` for a server in a group) -------------

def wide_outputs(wide: EstateWideRef) -> dict[str, object]:
    return {"key_arns": wide.key_arns, "certificate_arns": wide.certificate_arns, "secret_arns": wide.secret_arns,
            "identities": {f"{server}/{group}": {"task_role_arn": i.task_role_arn,
                                                 "execution_role_arn": i.execution_role_arn}
                           for (server, group), i in wide.identities.items()},
            "worker_role_arns": {f"{server}/{group}": arn for (server, group), arn in wide.worker_role_arns.items()},
            "repository_urls": wide.repository_urls}


def wide_from(stack: str, scope: EstateScope) -> EstateWideRef:
    """The estate-wide parts as the estate's stack exported them; keys from the spec, so a missing one
    fails the read with its name instead of building a region without it."""
    spec, read = scope.spec, _reader(stack, WIDE_OUTPUT)
    regions, groups = sorted(spec.regions), [g.name for g in spec.residency_groups]
    pairs = [(s.name, g) for s in spec.servers for g in groups]
    return EstateWideRef(
        scope=scope, key_arns={r: read("key_arns", r) for r in regions},
        certificate_arns={r: read("certificate_arns", r) for r in regions},
        secret_arns={name: read("secret_arns", name) for name in spec.secret_names()},
        identities={(s, g): IdentityRef(task_role_arn=read("identities", f"{s}/{g}", "task_role_arn"),
                                        execution_role_arn=read("identities", f"{s}/{g}", "execution_role_arn"))
                    for s, g in pairs},
        worker_role_arns={(s.name, g): read("worker_role_arns", f"{s.name}/{g}")
                          for s in scope.async_servers() for g in groups},
        repository_urls={s.name: read("repository_urls", s.name) for s in spec.servers},
        role_names=tuple(scope.wide_role_names()))


def front_outputs(front: RegionRef) -> dict[str, object]:
    return {f.name: getattr(front, f.name) for f in fields(front)}


def front_from(stack: str, spec: EstateSpec, region: str) -> RegionRef:
    """A region's front as its stack exported it."""
    read = _reader(stack, FRONT_OUTPUT)
    servers = [s.name for s in spec.servers_in(region)]
    return RegionRef(alb_dns_name=read("alb_dns_name"), alb_arn=read("alb_arn"), alb_arn_suffix=read("alb_arn_suffix"),
                     cluster_name=read("cluster_name"),
                     service_names={s: read("service_names", s) for s in servers},
                     target_group_arn_suffixes={s: read("target_group_arn_suffixes", s) for s in servers})


def _reader(stack: str, output: str) -> Callable[..., pulumi.Output]:
    """Reads of one value at a path of `stack`'s `output`, through one `StackReference`."""
    hand_off = pulumi.StackReference(qualified(stack)).require_output(output)

    def read(*path: str) -> pulumi.Output:
        return hand_off.apply(lambda value: _at(value, path, stack, output))
    return read


def _at(value: object, path: tuple[str, ...], stack: str, output: str) -> object:
    for key in path:
        if not isinstance(value, dict) or key not in value:
            raise pulumi.RunError(f"stack {stack} exports no {output}.{'.'.join(path)}: `pulumi up` that stack "
                                  f"first (the estate's stack before its regions, the regions before the edge)")
        value = value[key]
    return value
