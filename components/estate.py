"""The whole estate, composed from a validated `EstateSpec`: the only thing `__main__` builds.

Composed of parts a platform team can also use on their own (README: "Composing"): the
estate-wide parts (`EstateWide`, components/estate_wide.py), one `Region` per region
(components/region.py), then the dashboards and the Cloudflare edge, which need every region.
Every child is named from the estate's name, so two estates (or an estate inside a larger
program) never collide; children of a part are named from the part's name.

Reads like the architecture (README): per residency group the keys; the registry
and the secrets; per group the state table; per region the network, the TLS certificate,
the compute front (cluster, ALB, WAF, alerts); per server its identity, then per region
its service; then what watches them: per region the canary (which probes every server through the
ALB and through the hostname) and change detection, per service its per-tool telemetry, and the
dashboards; finally the Cloudflare edge over every region's ALB.

With `deploy_stage: foundation` it stops after the secrets: keys, registry and secrets (with
their providers) are all a first deploy needs before images and secret values can be pushed.

Every value a policy must read (images, CIDRs, policy documents, names) is computed here
from the spec as plain data; outputs only carry true cross-resource references.

Residency and capacity are visible in the resources, for the stack policies that see only
outputs: every resource of a group carries `mcp-estate:residency` (`strict` or `open`) next to
`mcp-estate:residency-group`; a strict group's state table carries `mcp-estate:countries`
(the ISO codes it keeps, space-separated), which the edge must route only to the group's
pools; and each scaling target of a server with a declared peak in its region's group carries
`mcp-estate:peak-tasks` (see `McpService`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import pulumi
import pulumi_aws as aws
import pulumi_cloudflare as cloudflare

from mcp_estate.contract.spec import EstateSpec, ResidencyGroup
from mcp_estate.contract.surface_rules import edge_surface

from .async_worker import worker_service_name
from .change_detection import IAM_EVENTS_REGION, IamWatch, forwarder_role_name
from .dashboards import DashboardRegion, Dashboards, DashboardsArgs, DashboardService, DashboardWork
from .edge import Edge, EdgeArgs, EdgeRegion
from .estate_refs import EstateWideRef, RegionRef
from .estate_scope import EstateScope
from .estate_wide import EstateWide
from .naming import child_opts, moved
from .region import NetworkRef, Region, RegionArgs, region_role_names
from .region import declared as capabilities_of


@dataclass(frozen=True)
class Part:
    """One part of the estate, for a program that builds only that part (README: "One stack per
    region"): `estate-wide`; one `region` (standing on `wide`, the estate-wide parts by reference);
    or the `edge` (the Cloudflare edge and the dashboards, standing on `wide` and on every region's
    front by reference, `regions`). `Estate` without a part builds all of them."""
    kind: Literal["estate-wide", "region", "edge"]
    region: str | None = None
    wide: EstateWideRef | None = None
    regions: dict[str, RegionRef] = field(default_factory=dict)
    stack: str | None = None   # the estate's stack, when the part has a stack of its own


class Estate(pulumi.ComponentResource):
    """The estate of `spec`. From the caller, all optional (else built as before):
    - `providers`: an `aws.Provider` per region (keyed by region name): none is built then, and every
      region of the spec must have one; IAM's events are read in us-east-1 through `providers["us-east-1"]`
      when given, else through a provider the estate builds.
    - `cloudflare_provider`: the provider the certificates' DNS records and the edge are created with.
    - `networks`: per region, the caller's network (`NetworkRef`): no `RegionNetwork` is built there.
    - `part`: build only that part (`Part`); the whole estate without it.
    """

    def __init__(self, name: str, spec: EstateSpec, opts: pulumi.ResourceOptions | None = None, *,
                 providers: dict[str, aws.Provider] | None = None,
                 cloudflare_provider: cloudflare.Provider | None = None,
                 networks: dict[str, NetworkRef] | None = None, part: Part | None = None):
        super().__init__("mcp-estate:index:Estate", name, None, opts)
        self.scope = EstateScope(spec, name, part.stack if part else None)
        self.spec, self.prefix, self.names, self.tags = spec, self.scope.prefix, self.scope.names, self.scope.tags
        self._name, self._cloudflare = name, {"cloudflare": cloudflare_provider} if cloudflare_provider else {}
        self._given, self._built = dict(providers or {}), {}
        self.region_refs: dict[str, RegionRef] = {}
        self.edge: Edge | None = None   # built by the whole estate and by the edge part
        _check_arguments(name, spec, providers, networks, part)

        kind = part.kind if part else None
        if kind in (None, "estate-wide"):
            self.wide = EstateWide(f"{name}-estate-wide", self.scope, self.aws_providers(),
                                   child_opts(self, providers=self._cloudflare), moved_from=self)
            self.wide_ref = self.wide.ref()
        else:   # a part standing on the estate-wide parts names and tags as this estate does
            self.wide_ref = replace(part.wide, scope=self.scope)
        if spec.deploy_stage == "foundation":
            # What must exist before images and secret values can be pushed: a later `full` stage
            # builds the rest around these, with the same names and inputs (nothing is replaced).
            self._finish()
            return

        if kind in (None, "region"):
            self.regions = self._regions(networks or {}, [part.region] if part else sorted(spec.regions))
            self.region_refs = {region: built.ref() for region, built in self.regions.items()}
        else:
            self.region_refs = dict(part.regions)
        if kind in (None, "edge"):
            self.dashboards = self._dashboards()
            self.edge = self._edge()
        self._finish()

    def aws_providers(self) -> dict[str, aws.Provider]:
        """The estate's `aws.Provider` of every region: the caller's, else built (once) here."""
        return {region: self._aws_provider(region) for region in sorted(self.spec.regions)}

    def _aws_provider(self, region: str) -> aws.Provider:
        if region not in self._given and region not in self._built:
            self._built[region] = self._regional_provider(region)
        return self._given.get(region) or self._built[region]

    def _finish(self) -> None:
        self.stack_outputs = self._outputs()
        self.register_outputs(self.stack_outputs)

    def _regions(self, networks: dict[str, NetworkRef], regions: list[str]) -> dict[str, Region]:
        iam = self._iam_watch(networks) if self.spec.primary_region in regions else None
        return {region: Region(f"{self._name}-{region}", RegionArgs(
            estate=self.wide_ref, region=region, network=networks.get(region),
            iam=iam if region == self.spec.primary_region else None),
            opts=child_opts(self, providers={"aws": self._aws_provider(region), **self._cloudflare}), moved_from=self)
            for region in regions}

    def _dashboards(self) -> Dashboards:
        spec = self.spec
        return Dashboards(f"{self._name}-dashboards", DashboardsArgs(
            name_prefix=self.prefix, home_region=spec.primary_region, providers=self.aws_providers(),
            regions=[DashboardRegion(
                name=region, cluster_name=self.region_refs[region].cluster_name,
                alb_arn_suffix=self.region_refs[region].alb_arn_suffix,
                services=[self._dashboard_service(s.name, region) for s in spec.servers_in(region)],
                cache_name=self.names.cache(region) if self.scope.cache_users() else None)
                for region in sorted(spec.regions)]),
            opts=child_opts(self, **moved("dashboards", self)))

    def _edge(self) -> Edge:
        spec = self.spec
        return Edge(f"{self._name}-edge", EdgeArgs(
            hostname=spec.domain.hostname, zone_id=spec.domain.zone_id,
            account_id=spec.domain.cloudflare_account_id, cloudflare_plan=spec.domain.cloudflare_plan,
            name_prefix=self.prefix,
            health_path=self._health_path(), fallback_region=self._fallback_region(),
            session_affinity_ttl=spec.edge.session_affinity_ttl,
            rate_limit_per_minute=spec.edge.rate_limit_per_minute,
            mcp_paths=sorted(s.mcp_path for s in spec.servers),
            regions=[EdgeRegion(name=region, group=spec.group_of[region].name,
                                alb_dns_name=self.region_refs[region].alb_dns_name)
                     for region in sorted(spec.regions)],
            groups=list(spec.residency_groups), token_challenges=self.scope.token_settings(),
            builds_zone=spec.edge.zone == "estate", builds_load_balancer=spec.edge.load_balancer == "estate",
            **self._surface_edge()), opts=child_opts(self, providers=self._cloudflare, **moved("edge", self)))

    def _surface_edge(self) -> dict[str, list[dict]]:
        """The edge's share of each server's MCP surface, as the zone's plan can express it."""
        rules, ratelimits = edge_surface(self.spec)
        return {"surface_rules": rules, "surface_ratelimits": ratelimits}

    def _outputs(self) -> dict[str, object]:
        """What other stacks read through `StackReference` (README, "Stack outputs"): plain keys,
        one level per region and per residency group. A foundation stage has no regions or tables yet;
        a part has only its own regions (the estate-wide part none)."""
        outputs: dict[str, object] = {
            "hostname": self.spec.domain.hostname,
            "residency_groups": {g.name: self._group_outputs(g) for g in self.spec.residency_groups},
            "repository_urls": self.wide_ref.repository_urls, "secret_arns": self.wide_ref.secret_arns}
        if self.region_refs:   # none before the foundation stage is done, none in the estate-wide part
            outputs["regions"] = {region: self._region_outputs(region) for region in sorted(self.region_refs)}
        if self.edge is not None and self.edge.delegated:   # for the zone owner (README: Bring your own zone)
            outputs["delegated_edge"] = self.edge.delegated
        return outputs

    def _group_outputs(self, group: ResidencyGroup) -> dict[str, object]:
        regions = sorted(r.name for r in group.regions)
        outputs: dict[str, object] = {"primary_region": group.primary_region, "regions": regions,
                                      "key_arns": {region: self.wide_ref.key_arns[region] for region in regions}}
        if self.spec.deploy_stage != "foundation":
            outputs["state_table_name"] = self.names.state_table(group.name)
        return outputs

    def _region_outputs(self, region: str) -> dict[str, object]:
        front = self.region_refs[region]
        return {"residency_group": self.spec.group_of[region].name,
                "alb_dns_name": front.alb_dns_name, "alb_arn": front.alb_arn, "cluster_name": front.cluster_name,
                "service_names": dict(front.service_names)}

    def _regional_provider(self, region: str) -> aws.Provider:
        # One provider per region, pinned to the estate's account so a wrong profile fails fast.
        return aws.Provider(f"{self._name}-aws-{region}", region=region,
                            allowed_account_ids=[self.spec.aws_account_id],
                            opts=child_opts(self, **moved(f"aws-{region}", self)))

    def _health_path(self) -> str:
        server = next(s for s in self.spec.servers if s.name == self.spec.edge.health_server)
        return f"/{server.name}{server.health_check_path}"

    def _fallback_region(self) -> str:
        """Where Cloudflare sends traffic when every pool is down: never a strict group's region."""
        if not self.spec.group_of[self.spec.primary_region].strict:
            return self.spec.primary_region
        return min((g for g in self.spec.residency_groups if not g.strict), key=lambda g: g.name).primary_region

    def _dashboard_service(self, server: str, region: str) -> DashboardService:
        front = self.region_refs[region]
        declared = capabilities_of(self.scope, server)
        work = DashboardWork(queue_name=self.names.task_queue(server),
                             dead_letter_queue_name=self.names.dead_letter_queue(server),
                             worker_service_name=worker_service_name(server)) if declared["tasks"] else None
        return DashboardService(server=server, service_name=front.service_names[server],
                                target_group_arn_suffix=front.target_group_arn_suffixes[server], work=work,
                                cache=declared["cache"])

    def _iam_watch(self, networks: dict[str, NetworkRef]) -> IamWatch:
        """Every role of the estate, watched from the home region (their names are known before the
        regions are built); IAM's events arrive in us-east-1, through the estate's (or the caller's)
        provider there or, for an estate without us-east-1, one of its own."""
        roles = list(self.wide_ref.role_names) + [
            name for region in sorted(self.spec.regions)
            for name in region_role_names(self.scope, region, builds_network=region not in networks)]
        if self.spec.primary_region != IAM_EVENTS_REGION:   # only then are IAM's events forwarded
            roles.append(forwarder_role_name(self.prefix))
        return IamWatch(role_names=sorted(roles), provider=self._aws_provider(IAM_EVENTS_REGION), tags=self.tags())


def _check_arguments(name: str, spec: EstateSpec, providers: dict | None, networks: dict | None,
                     part: Part | None) -> None:
    if missing := sorted(set(spec.regions) - set(providers)) if providers is not None else []:
        raise pulumi.RunError(f"Estate {name}: providers has no aws.Provider for {', '.join(missing)}: "
                              f"give one per region of the spec, or none to let the estate build them")
    if unknown := sorted(set(networks or {}) - set(spec.regions)):
        raise pulumi.RunError(f"Estate {name}: networks names {', '.join(unknown)}, not a region of the spec "
                              f"({', '.join(sorted(spec.regions))})")
    if part is None:
        return
    if part.kind == "region" and part.region not in spec.regions:
        raise pulumi.RunError(f"Estate {name}: part region {part.region!r} is not in the spec "
                              f"({', '.join(sorted(spec.regions))})")
    if part.kind != "estate-wide" and part.wide is None:
        raise pulumi.RunError(f"Estate {name}: a {part.kind} part stands on the estate-wide parts: give `wide`")
    if part.kind == "edge" and (missing := sorted(set(spec.regions) - set(part.regions))):
        raise pulumi.RunError(f"Estate {name}: the edge part needs every region's front: "
                              f"`regions` lacks {', '.join(missing)}")


def estate_stack(spec: EstateSpec, part: Part | None = None, providers: dict | None = None) -> Estate:
    """The stack's program (`__main__`, `estate plan`): the estate (or one `part` of it, with the
    caller's `providers`), with its outputs as the stack's."""
    return exported(Estate("mcp-estate", spec, part=part, providers=providers))


def exported(estate: Estate, hand_off: dict | None = None) -> Estate:
    """`estate` with its outputs (and a part's `hand_off` to the parts built on it) as the stack's."""
    for name, value in {**estate.stack_outputs, **(hand_off or {})}.items():
        pulumi.export(name, value)
    return estate
