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

import pulumi
import pulumi_aws as aws
import pulumi_cloudflare as cloudflare

from mcp_estate.contract.cloudflare_plan import ALLOWANCES
from mcp_estate.contract.spec import EstateSpec, ResidencyGroup
from mcp_estate.contract.surface_rules import edge_ratelimits, edge_rules
from mcp_estate.contract.validate import surface_servers

from .async_worker import worker_service_name
from .change_detection import IAM_EVENTS_REGION, IamWatch, forwarder_role_name
from .dashboards import DashboardRegion, Dashboards, DashboardsArgs, DashboardService, DashboardWork
from .edge import Edge, EdgeArgs, EdgeRegion
from .estate_scope import EstateScope
from .estate_wide import EstateWide
from .naming import child_opts, moved
from .region import NetworkRef, Region, RegionArgs, region_role_names
from .region import declared as capabilities_of


class Estate(pulumi.ComponentResource):
    """The estate of `spec`. From the caller, all optional (else built as before):
    - `providers`: an `aws.Provider` per region (keyed by region name): none is built then, and every
      region of the spec must have one; IAM's events are read in us-east-1 through `providers["us-east-1"]`
      when given, else through a provider the estate builds.
    - `cloudflare_provider`: the provider the certificates' DNS records and the edge are created with.
    - `networks`: per region, the caller's network (`NetworkRef`): no `RegionNetwork` is built there.
    """

    def __init__(self, name: str, spec: EstateSpec, opts: pulumi.ResourceOptions | None = None, *,
                 providers: dict[str, aws.Provider] | None = None,
                 cloudflare_provider: cloudflare.Provider | None = None,
                 networks: dict[str, NetworkRef] | None = None):
        super().__init__("mcp-estate:index:Estate", name, None, opts)
        self.scope = EstateScope(spec, name)
        self.spec, self.prefix, self.names, self.tags = spec, self.scope.prefix, self.scope.names, self.scope.tags
        self._name, self._cloudflare = name, {"cloudflare": cloudflare_provider} if cloudflare_provider else {}
        self._given = dict(providers or {})
        if missing := sorted(set(spec.regions) - set(self._given)) if providers is not None else []:
            raise pulumi.RunError(f"Estate {name}: providers has no aws.Provider for {', '.join(missing)}: "
                                  f"give one per region of the spec, or none to let the estate build them")
        if unknown := sorted(set(networks or {}) - set(spec.regions)):
            raise pulumi.RunError(f"Estate {name}: networks names {', '.join(unknown)}, not a region of the spec "
                                  f"({', '.join(sorted(spec.regions))})")
        self.providers = {region: self._given.get(region) or self._regional_provider(region)
                          for region in sorted(spec.regions)}

        self.wide = EstateWide(f"{name}-estate-wide", self.scope, self.providers,
                               child_opts(self, providers=self._cloudflare), moved_from=self)
        # The parts by key, as before the split: what tests, the offline plan and operations read.
        self.keys, self.key_arns, self.registry, self.secrets = (
            self.wide.keys, self.wide.key_arns, self.wide.registry, self.wide.secrets)
        if spec.deploy_stage == "foundation":
            # What must exist before images and secret values can be pushed: a later `full` stage
            # builds the rest around these, with the same names and inputs (nothing is replaced).
            self.stack_outputs = self._outputs()
            self.register_outputs(self.stack_outputs)
            return

        networks = networks or {}
        iam = self._iam_watch(networks)
        self.regions = {region: Region(f"{name}-{region}", RegionArgs(
            estate=self.wide, region=region, network=networks.get(region),
            iam=iam if region == spec.primary_region else None),
            opts=child_opts(self, providers={"aws": self.providers[region], **self._cloudflare}), moved_from=self)
            for region in sorted(spec.regions)}
        self._name_parts()

        self.dashboards = Dashboards(f"{name}-dashboards", DashboardsArgs(
            name_prefix=self.prefix, home_region=spec.primary_region, providers=self.providers,
            regions=[DashboardRegion(
                name=region, cluster_name=self.fronts[region].cluster_name,
                alb_arn_suffix=self.fronts[region].alb_arn_suffix,
                services=[self._dashboard_service(s.name, region) for s in spec.servers_in(region)],
                cache_name=self.names.cache(region) if region in self.caches else None)
                for region in sorted(spec.regions)]),
            opts=child_opts(self, **moved("dashboards", self)))

        self.edge = Edge(f"{name}-edge", EdgeArgs(
            hostname=spec.domain.hostname, zone_id=spec.domain.zone_id,
            account_id=spec.domain.cloudflare_account_id, cloudflare_plan=spec.domain.cloudflare_plan,
            name_prefix=self.prefix,
            health_path=self._health_path(), fallback_region=self._fallback_region(),
            session_affinity_ttl=spec.edge.session_affinity_ttl,
            rate_limit_per_minute=spec.edge.rate_limit_per_minute,
            mcp_paths=sorted(s.mcp_path for s in spec.servers),
            regions=[EdgeRegion(name=region, group=spec.group_of[region].name,
                                alb_dns_name=self.fronts[region].alb_dns_name) for region in sorted(spec.regions)],
            groups=list(spec.residency_groups), token_challenges=self.scope.token_settings(),
            builds_zone=spec.edge.zone == "estate", builds_load_balancer=spec.edge.load_balancer == "estate",
            **self._surface_edge()), opts=child_opts(self, providers=self._cloudflare, **moved("edge", self)))

        self.stack_outputs = self._outputs()
        self.register_outputs(self.stack_outputs)

    def _name_parts(self) -> None:
        """The parts by key (region, or server and region), as before the split."""
        wide, regions = self.wide, self.regions.items()
        self.state, self.certificates, self.identities = wide.state, wide.certificates, wide.identities
        self.worker_identities, self.data_roles = wide.worker_identities, wide.data_roles
        self.networks = {region: part.network for region, part in regions}
        self.fronts = {region: part.front for region, part in regions}
        self.gates = {region: part.gate for region, part in regions if part.gate}
        self.caches = {region: part.cache for region, part in regions if part.cache}
        self.queue_endpoints = {region: part.queue_endpoint for region, part in regions if part.queue_endpoint}
        self.canaries = {region: part.canary for region, part in regions}
        self.change_detection = {region: part.change_detection for region, part in regions}
        self.services, self.service_args, self.workers, self.telemetry = (
            self._by_server_and_region(part) for part in ("services", "service_args", "workers", "telemetry"))

    def _by_server_and_region(self, part: str) -> dict[tuple[str, str], object]:
        return {(server, region): value for region, built in self.regions.items()
                for server, value in getattr(built, part).items()}

    def _surface_edge(self) -> dict[str, list[dict]]:
        """The edge's share of each server's MCP surface, as the zone's plan can express it."""
        spec, plan = self.spec, ALLOWANCES[self.spec.domain.cloudflare_plan]
        name, servers = spec.domain.cloudflare_plan, surface_servers(spec)
        advanced = spec.edge.advanced_rate_limiting and name == "enterprise"
        return {"surface_rules": edge_rules(spec.domain.hostname, servers, name),
                "surface_ratelimits": edge_ratelimits(spec.domain.hostname, servers, name, advanced,
                                                      plan.ratelimit_period, plan.mitigation_timeout)}

    def _outputs(self) -> dict[str, object]:
        """What other stacks read through `StackReference` (README, "Stack outputs"): plain keys,
        one level per region and per residency group. A foundation stage has no regions or tables yet."""
        outputs: dict[str, object] = {
            "hostname": self.spec.domain.hostname,
            "residency_groups": {g.name: self._group_outputs(g) for g in self.spec.residency_groups},
            "repository_urls": self.registry.repository_urls,
            "secret_arns": {name: secret.arn for name, secret in self.secrets.items()}}
        if self.spec.deploy_stage != "foundation":
            outputs["regions"] = {region: self._region_outputs(region) for region in sorted(self.spec.regions)}
            if self.edge.delegated:   # what the zone owner's program adds (README: Bring your own zone...)
                outputs["delegated_edge"] = self.edge.delegated
        return outputs

    def _group_outputs(self, group: ResidencyGroup) -> dict[str, object]:
        regions = sorted(r.name for r in group.regions)
        outputs: dict[str, object] = {"primary_region": group.primary_region, "regions": regions,
                                      "key_arns": {region: self.key_arns[region] for region in regions}}
        if self.spec.deploy_stage != "foundation":
            outputs["state_table_name"] = self.state[group.name].table_name
        return outputs

    def _region_outputs(self, region: str) -> dict[str, object]:
        front = self.fronts[region]
        return {"residency_group": self.spec.group_of[region].name,
                "alb_dns_name": front.alb_dns_name, "alb_arn": front.alb_arn, "cluster_name": front.cluster_name,
                "service_names": {s.name: self.services[s.name, region].service_name
                                  for s in self.spec.servers_in(region)}}

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
        service = self.services[server, region]
        declared = capabilities_of(self.scope, server)
        work = DashboardWork(queue_name=self.names.task_queue(server),
                             dead_letter_queue_name=self.names.dead_letter_queue(server),
                             worker_service_name=worker_service_name(server)) if declared["tasks"] else None
        return DashboardService(server=server, service_name=service.service_name,
                                target_group_arn_suffix=service.target_group.arn_suffix, work=work,
                                cache=declared["cache"])

    def _iam_watch(self, networks: dict[str, NetworkRef]) -> IamWatch:
        """Every role of the estate, watched from the home region (their names are known before the
        regions are built); IAM's events arrive in us-east-1, through the estate's (or the caller's)
        provider there or, for an estate without us-east-1, one of its own."""
        roles = self.wide.role_names() + [
            name for region in sorted(self.spec.regions)
            for name in region_role_names(self.scope, region, builds_network=region not in networks)]
        if self.spec.primary_region != IAM_EVENTS_REGION:   # only then are IAM's events forwarded
            roles.append(forwarder_role_name(self.prefix))
        provider = (self.providers.get(IAM_EVENTS_REGION) or self._given.get(IAM_EVENTS_REGION)
                    or self._regional_provider(IAM_EVENTS_REGION))
        return IamWatch(role_names=sorted(roles), provider=provider, tags=self.tags())


def estate_stack(spec: EstateSpec) -> Estate:
    """The stack's program (`__main__`, `estate plan`): the estate, with its outputs as the stack's."""
    estate = Estate("mcp-estate", spec)
    for name, value in estate.stack_outputs.items():
        pulumi.export(name, value)
    return estate
