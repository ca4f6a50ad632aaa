"""The parts of an estate by reference: what a part built elsewhere hands to the parts built on it.

A `Region` stands on the estate-wide parts (`EstateWideRef`); the edge, the dashboards and the
stack outputs read each region's front (`RegionRef`). Built from the parts themselves when the
whole estate is one program (`EstateWide.ref()`, `Region.ref()`), from another stack's outputs
when the estate runs as one stack per scope (components/stack_layout.py), or replayed from an
offline plan when `estate plan` plans the regions in parallel (mcp_estate/offline/parallel.py).
Values are `pulumi.Input`s: an `Output` carries the resources it depends on across the hand-off.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from .estate_scope import EstateScope


@dataclass(frozen=True)
class IdentityRef:
    """A server's roles in one residency group (components/server_identity.py)."""
    task_role_arn: pulumi.Input[str]        # resolves once the role's grants exist
    execution_role_arn: pulumi.Input[str]   # likewise


@dataclass(frozen=True)
class EstateWideRef:
    """What every region stands on. Keyed like `EstateWide`: `key_arns[region]`,
    `identities[server, group]`, `worker_role_arns[server, group]`, `secret_arns[secret]` (the ARN
    in the secret's home region), `certificate_arns[region]`, `repository_urls[server]`."""
    scope: EstateScope
    key_arns: dict[str, pulumi.Input[str]]
    certificate_arns: dict[str, pulumi.Input[str]]
    secret_arns: dict[str, pulumi.Input[str]]
    identities: dict[tuple[str, str], IdentityRef]
    worker_role_arns: dict[tuple[str, str], pulumi.Input[str]]
    repository_urls: dict[str, pulumi.Input[str]]
    role_names: tuple[str, ...]             # the roles it created, by physical name (change detection)

    def secret_arn_in(self, secret: str, region: str) -> pulumi.Output[str]:
        """A replica keeps its primary's name and random suffix: only the region differs."""
        home = self.scope.spec.secret_home(secret)
        return pulumi.Output.from_input(self.secret_arns[secret]).apply(
            lambda arn: arn.replace(f":{home}:", f":{region}:", 1))


@dataclass(frozen=True)
class RegionRef:
    """A region's front, as the edge, the dashboards and the stack outputs read it; per server of
    the region its ECS service's name and its target group's ARN suffix."""
    alb_dns_name: pulumi.Input[str]
    alb_arn: pulumi.Input[str]
    alb_arn_suffix: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    service_names: dict[str, pulumi.Input[str]]
    target_group_arn_suffixes: dict[str, pulumi.Input[str]]
