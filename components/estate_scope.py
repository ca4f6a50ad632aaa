"""What every part of one estate derives its names, tags and ARNs from: the spec and the estate's name.

`EstateWide`, `Region` and `Estate` share one `EstateScope`, so a region built in a team's own
program names, tags and grants exactly as one built by `Estate`. Plain data only: no resources.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import pulumi

from mcp_estate.contract.names import COUNTRIES_TAG, RESIDENCY_TAG, ContractTags, PhysicalNames
from mcp_estate.contract.resource_server import ResourceServer, resource_server
from mcp_estate.contract.rollout import in_region_of
from mcp_estate.contract.spec import STATE, EstateSpec, ResidencyGroup, Server

from .server_identity import role_name


@dataclass(frozen=True)
class EstateScope:
    spec: EstateSpec
    name: str   # the estate's name: physical names are prefixed f"{name}-{stack}"
    # The estate's stack, when this program's is another (components/stack_layout.py: a region's own
    # stack names and tags its resources as the estate's); else the program's stack.
    stack: str | None = None

    @cached_property
    def prefix(self) -> str:
        return f"{self.name}-{self.estate_stack}"   # physical names: unique per stack

    @cached_property
    def estate_stack(self) -> str:
        return self.stack or pulumi.get_stack()

    @cached_property
    def names(self) -> PhysicalNames:
        return PhysicalNames(self.prefix)

    @cached_property
    def tags(self) -> ContractTags:
        return ContractTags(self.estate_stack, self.spec.environment, self.spec.owner)

    def arn(self, service: str, region: str, resource: str) -> str:
        return f"arn:aws:{service}:{region}:{self.spec.aws_account_id}:{resource}"

    def role_arn(self, name: str) -> str:
        return f"arn:aws:iam::{self.spec.aws_account_id}:role/{name}"

    def group_tags(self, group: ResidencyGroup, **scope: str) -> dict[str, str]:
        """A group's resources also say whether it is strict: stack policies read residency from them."""
        return {**self.tags(group=group.name, **scope), RESIDENCY_TAG: "strict" if group.strict else "open"}

    def region_tags(self, region: str, **scope: str) -> dict[str, str]:
        return self.group_tags(self.spec.group_of[region], region=region, **scope)

    def state_tags(self, group: ResidencyGroup) -> dict[str, str]:
        """A strict group's table also records the countries it keeps, which the edge must route
        only to the group's pools (the spec bounds their number to fit one tag value)."""
        countries = {COUNTRIES_TAG: " ".join(sorted(group.countries))} if group.strict else {}
        return {**self.group_tags(group), **countries}

    def table_arns(self, group: ResidencyGroup) -> list[str]:
        return [self.arn("dynamodb", r, f"table/{self.names.state_table(group.name)}")
                for r in sorted(r.name for r in group.regions)]

    def token_settings(self) -> list[ResourceServer]:
        """Every server's token settings (none with `auth` disabled): the WAF and edge challenges."""
        return [t for s in self.spec.servers if (t := resource_server(self.spec, s)) is not None]

    @staticmethod
    def uses_state(server: Server) -> bool:
        return any(STATE in p.resources for p in server.permissions)

    def per_user(self, server: Server) -> bool:
        """Whether the server reaches state as the caller: auth is on and it keeps state (declared
        grants, or the task records of its asynchronous work)."""
        auth = self.spec.auth
        return auth is not None and not auth.disabled and (self.uses_state(server) or bool(server.async_work))

    def data_role_arn(self, server: Server, group: ResidencyGroup) -> str:
        return self.role_arn(self.names.data_role(server.name, group.name))

    def cache_users(self) -> list[Server]:
        return [s for s in self.spec.servers if s.cache is not None]

    def async_servers(self) -> list[Server]:
        return [s for s in self.spec.servers if s.async_work is not None]

    def wide_role_names(self) -> list[str]:
        """The roles the estate-wide parts create, by physical name, from the spec alone (a region in
        another stack watches them too): per server and group its execution and task roles, its
        worker's and its per-user data role; ECR's replica-creation role when images replicate."""
        spec, names = self.spec, self.names
        roles = [role_name(self.prefix, s.name, g.name, kind)
                 for s in spec.servers for g in spec.residency_groups for kind in ("exec", "task")]
        roles += [names.worker_role(s.name, g.name) for s in self.async_servers() for g in spec.residency_groups]
        roles += [names.data_role(s.name, g.name)
                  for s in spec.servers if self.per_user(s) for g in spec.residency_groups]
        return roles + ([names.ecr_replica_role()] if len(spec.regions) > 1 else [])

    def staged_in(self, region: str) -> list[Server]:
        """The CANARY/LINEAR servers of a region (components/deployment_gate.py)."""
        return [s for s in self.spec.servers_in(region) if in_region_of(s.rollout, self.spec.rollout).staged]
