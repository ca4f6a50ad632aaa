"""The whole estate, composed from a validated `EstateSpec`: the only thing `__main__` builds.

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
from mcp_estate.contract.limit_rules import refused_countries
from mcp_estate.contract.names import COUNTRIES_TAG, RESIDENCY_TAG, ContractTags, PhysicalNames
from mcp_estate.contract.per_user_data import (
    DATA_ROLE_ENV,
    TOKEN_EXCHANGE_ENV,
    TRAVELLER_TAG,
    TRAVELLER_TAG_ENV,
    backend_url_env,
)
from mcp_estate.contract.resource_server import ResourceServer, resource_server
from mcp_estate.contract.rollout import in_region_of
from mcp_estate.contract.spec import CACHE, SECRET_PREFIX, STATE, EstateSpec, ResidencyGroup, Server
from mcp_estate.contract.surface_rules import edge_ratelimits, edge_rules, origin_rules
from mcp_estate.contract.validate import origin_travellers, surface_servers

from .async_worker import AsyncWorker, AsyncWorkerArgs, queue_arn, queue_url, worker_service_name
from .canary import Canary, CanaryArgs, ProbeCredentials, probe_alarm_name
from .change_detection import IAM_EVENTS_REGION, ChangeDetection, ChangeDetectionArgs, IamWatch, forwarder_role_name
from .dashboards import DashboardRegion, Dashboards, DashboardsArgs, DashboardService, DashboardWork
from .deployment_gate import DeploymentGate, DeploymentGateArgs, GatedServer
from .edge import Edge, EdgeArgs, EdgeRegion
from .keys import EstateKeys, EstateKeysArgs
from .mcp_service import McpService, McpServiceArgs, container_definition, task_family
from .origin_certificates import OriginCertificates, OriginCertificatesArgs
from .per_user_data import ASSUME_WITH_TAG, DataRole, DataRoleArgs, backend_egress
from .queue_endpoint import QueueEndpoint, QueueEndpointArgs
from .region_compute import RegionCompute, RegionComputeArgs
from .region_network import RegionNetwork, RegionNetworkArgs
from .regional_cache import CacheUser, RegionalCache, RegionalCacheArgs, connect_arns
from .registry import Registry, RegistryArgs
from .secrets import EstateSecret, EstateSecretArgs
from .server_identity import Grant, ServerIdentity, ServerIdentityArgs, role_name
from .staged_deployment import Staged
from .state_store import StateStore, StateStoreArgs
from .telemetry import ToolTelemetry, ToolTelemetryArgs
from .worker_identity import SERVER_RECORD_ACTIONS, TaskResources, WorkerIdentity, WorkerIdentityArgs, sender_statements


class Estate(pulumi.ComponentResource):
    def __init__(self, name: str, spec: EstateSpec, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:index:Estate", name, None, opts)
        self.spec = spec
        self.prefix = f"{name}-{pulumi.get_stack()}"   # physical names: unique per stack
        self.names = PhysicalNames(self.prefix)
        self.tags = ContractTags(pulumi.get_stack(), spec.environment, spec.owner)
        self.providers = {region: self._regional_provider(region) for region in sorted(spec.regions)}
        home = self.providers[spec.primary_region]

        self.keys = {g.name: EstateKeys(g.name, EstateKeysArgs(
            primary_region=g.primary_region, regions=sorted(r.name for r in g.regions),
            account_id=spec.aws_account_id, alias=f"alias/{self.prefix}-{g.name}",
            providers=self.providers, protect=spec.protect_data, tags=self._group_tags(g)),
            opts=self._opts()) for g in spec.residency_groups}
        self.key_arns = {region: self.keys[spec.group_of[region].name].arns[region]
                         for region in spec.regions}

        self.registry = Registry("registry", RegistryArgs(
            account_id=spec.aws_account_id, namespace=spec.registry.namespace,
            source_region=spec.primary_region, repositories={s.name: s.repository for s in spec.servers},
            regions=sorted(spec.regions), key_arns=self.key_arns, providers=self.providers,
            protect=spec.protect_data, tags=self.tags,
            replica_role_name=self.names.ecr_replica_role()), opts=self._opts(provider=home))

        self.secrets = {secret: EstateSecret(f"secret-{secret}", EstateSecretArgs(
            secret_name=self._secret_name(secret), home_region=spec.secret_home(secret),
            replica_regions=[r for r in spec.secret_regions(secret) if r != spec.secret_home(secret)],
            key_arns=self.key_arns, protect=spec.protect_data, tags=self.tags(secret=secret)),
            opts=self._opts(provider=self.providers[spec.secret_home(secret)]))
            for secret in spec.secret_names()}
        if spec.deploy_stage == "foundation":
            # What must exist before images and secret values can be pushed: a later `full` stage
            # builds the rest around these, with the same names and inputs (nothing is replaced).
            self.stack_outputs = self._outputs()
            self.register_outputs(self.stack_outputs)
            return

        self.state = {g.name: StateStore(f"{g.name}-state", StateStoreArgs(
            table_name=self._table_name(g.name), primary_region=g.primary_region,
            regions=sorted(r.name for r in g.regions), key_arns=self.key_arns,
            protect=spec.protect_data, tags=self._state_tags(g)),
            opts=self._opts(provider=self.providers[g.primary_region])) for g in spec.residency_groups}

        self.certificates = OriginCertificates("origin-tls", OriginCertificatesArgs(
            hostname=spec.domain.hostname, zone_id=spec.domain.zone_id, regions=sorted(spec.regions),
            providers=self.providers, tags=self.tags), opts=self._opts())

        cloudflare_ips = cloudflare.get_ip_ranges()
        self.networks: dict[str, RegionNetwork] = {}
        self.fronts: dict[str, RegionCompute] = {}
        for region, region_spec in sorted(spec.regions.items()):
            tags = self._group_tags(spec.group_of[region], region=region)
            self.networks[region] = RegionNetwork(f"net-{region}", RegionNetworkArgs(
                region=region, account_id=spec.aws_account_id, cidr=region_spec.cidr,
                availability_zones=region_spec.availability_zones,
                # The canary reaches the hostname through Cloudflare, outside AWS: only NAT gets there.
                # Tasks gain nothing from it: their security groups admit only their declared egress.
                nat=True, log_key_arn=self.key_arns[region],
                log_retention_days=spec.log_retention_days,
                flow_logs_role_name=self.names.flow_logs_role(region), tags=tags),
                opts=self._opts(provider=self.providers[region]))
            self.fronts[region] = RegionCompute(f"front-{region}", RegionComputeArgs(
                region=region, account_id=spec.aws_account_id, name_prefix=f"{self.prefix}-{region}",
                vpc_id=self.networks[region].vpc_id,
                public_subnet_ids=self.networks[region].public_subnet_ids,
                certificate_arn=self.certificates.arns[region],
                cloudflare_ipv4_cidrs=sorted(cloudflare_ips.ipv4_cidrs),
                cloudflare_ipv6_cidrs=sorted(cloudflare_ips.ipv6_cidrs),
                deletion_protection=spec.protect_data, origin_rate_limit=spec.edge.origin_rate_limit_per_5_minutes,
                alert_key_arn=self.key_arns[region], alert_emails=list(spec.alerts.emails),
                log_retention_days=spec.log_retention_days, tags=tags,
                refused_countries=refused_countries(spec, spec.group_of[region]),
                token_challenges=self._token_settings(),
                surface_rules=origin_rules(surface_servers(spec), origin_travellers(spec))),
                opts=self._opts(provider=self.providers[region]))

        # One pair of roles per server and residency group: a group's data is reachable only from its regions.
        self.identities = {(server.name, group.name): self._identity(server, group)
                           for server in spec.servers for group in spec.residency_groups}
        # Before the data roles: with auth on, a worker's role is trusted by its server's data role.
        self.worker_identities = {(server.name, group.name): self._worker_identity(server, group)
                                  for server in self._async_servers() for group in spec.residency_groups}
        # With auth on, state is reached only as the caller, through a per-user data role.
        self.data_roles = {(server.name, group.name): self._data_role(server, group)
                           for server in spec.servers if self._per_user(server) for group in spec.residency_groups}

        # CANARY/LINEAR servers' hook and ECS roles, per region running one (components/deployment_gate.py).
        self.gates = {region: self._gate(region) for region in sorted(spec.regions) if self._staged_in(region)}
        # Opt-in capabilities (README: Fast answers, later answers): per region, never replicated.
        self.caches = {region: self._cache(region) for region in sorted(spec.regions) if self._cache_users()}
        self.queue_endpoints = {region: self._queue_endpoint(region) for region in sorted(spec.regions)
                                if self._async_servers()}

        self.services: dict[tuple[str, str], McpService] = {}
        self.service_args: dict[tuple[str, str], McpServiceArgs] = {}
        for server in spec.servers:
            for region in spec.server_regions(server):
                self.service_args[server.name, region] = self._service_args(server, region)
                self.services[server.name, region] = McpService(
                    f"{server.name}-{region}", self.service_args[server.name, region],
                    opts=self._opts(provider=self.providers[region]))
        for region, cache in self.caches.items():
            cache.admit([CacheUser(server=s.name, user_id=self.names.cache_user(s.name),
                                   task_security_group_id=self.services[s.name, region].security_group_id)
                         for s in self._cache_users()])
        self.workers = {(server.name, region): self._worker(server, region)
                        for server in self._async_servers() for region in spec.server_regions(server)}

        # Created after the services they watch; the services name the canary's alarms, not the alarms.
        self.canaries = {region: self._canary(region, cloudflare_ips.ipv4_cidrs) for region in sorted(spec.regions)}
        self.telemetry = {key: self._telemetry(*key) for key in sorted(self.services)}
        self.change_detection = {region: self._change_detection(region) for region in sorted(spec.regions)}
        self.dashboards = Dashboards("dashboards", DashboardsArgs(
            name_prefix=self.prefix, home_region=spec.primary_region, providers=self.providers,
            regions=[DashboardRegion(
                name=region, cluster_name=self.fronts[region].cluster_name,
                alb_arn_suffix=self.fronts[region].alb_arn_suffix,
                services=[self._dashboard_service(s.name, region) for s in spec.servers_in(region)],
                cache_name=self.names.cache(region) if region in self.caches else None)
                for region in sorted(spec.regions)]),
            opts=self._opts())

        self.edge = Edge("edge", EdgeArgs(
            hostname=spec.domain.hostname, zone_id=spec.domain.zone_id,
            account_id=spec.domain.cloudflare_account_id, cloudflare_plan=spec.domain.cloudflare_plan,
            name_prefix=self.prefix,
            health_path=self._health_path(), fallback_region=self._fallback_region(),
            session_affinity_ttl=spec.edge.session_affinity_ttl,
            rate_limit_per_minute=spec.edge.rate_limit_per_minute,
            mcp_paths=sorted(s.mcp_path for s in spec.servers),
            regions=[EdgeRegion(name=region, group=spec.group_of[region].name,
                                alb_dns_name=self.fronts[region].alb_dns_name) for region in sorted(spec.regions)],
            groups=list(spec.residency_groups), token_challenges=self._token_settings(),
            **self._surface_edge()), opts=self._opts())

        self.stack_outputs = self._outputs()
        self.register_outputs(self.stack_outputs)

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

    # -- helpers ----------------------------------------------------------------------------

    def _opts(self, **options) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **options)

    def _regional_provider(self, region: str) -> aws.Provider:
        # One provider per region, pinned to the estate's account so a wrong profile fails fast.
        return aws.Provider(f"aws-{region}", region=region, allowed_account_ids=[self.spec.aws_account_id],
                            opts=self._opts())

    def _arn(self, service: str, region: str, resource: str) -> str:
        return f"arn:aws:{service}:{region}:{self.spec.aws_account_id}:{resource}"

    def _group_tags(self, group: ResidencyGroup, **scope: str) -> dict[str, str]:
        """A group's resources also say whether it is strict: stack policies read residency from them."""
        return {**self.tags(group=group.name, **scope), RESIDENCY_TAG: "strict" if group.strict else "open"}

    def _state_tags(self, group: ResidencyGroup) -> dict[str, str]:
        """A strict group's table also records the countries it keeps, which the edge must route
        only to the group's pools (the spec bounds their number to fit one tag value)."""
        countries = {COUNTRIES_TAG: " ".join(sorted(group.countries))} if group.strict else {}
        return {**self._group_tags(group), **countries}

    def _table_name(self, group: str) -> str:
        return self.names.state_table(group)

    def _secret_name(self, secret: str) -> str:
        return self.names.secret(secret)

    def _log_group(self, server: Server) -> str:
        return self.names.log_group(server.name)

    def _token_settings(self) -> list[ResourceServer]:
        """Every server's token settings (none with `auth` disabled): the WAF and edge challenges."""
        return [t for s in self.spec.servers if (t := resource_server(self.spec, s)) is not None]

    def _health_path(self) -> str:
        server = next(s for s in self.spec.servers if s.name == self.spec.edge.health_server)
        return f"/{server.name}{server.health_check_path}"

    def _secret_arn_in(self, secret: str, region: str) -> pulumi.Output[str]:
        """A replica keeps its primary's name and random suffix: only the region differs."""
        home = self.spec.secret_home(secret)
        return self.secrets[secret].arn.apply(lambda arn: arn.replace(f":{home}:", f":{region}:", 1))

    def _fallback_region(self) -> str:
        """Where Cloudflare sends traffic when every pool is down: never a strict group's region."""
        if not self.spec.group_of[self.spec.primary_region].strict:
            return self.spec.primary_region
        return min((g for g in self.spec.residency_groups if not g.strict), key=lambda g: g.name).primary_region

    def _identity(self, server: Server, group: ResidencyGroup) -> ServerIdentity:
        """The server's roles in `group`: every resource they name is in the group's regions."""
        regions = sorted(r.name for r in group.regions)
        return ServerIdentity(f"{server.name}-{group.name}-identity", ServerIdentityArgs(
            server=server.name, group=group.name, name_prefix=self.prefix,
            account_id=self.spec.aws_account_id,
            regions=regions, grants=self._task_grants(server, group, regions),
            repository_arns=[self._arn("ecr", r, f"repository/{server.repository}") for r in regions],
            log_group_arns=[self._arn("logs", r, f"log-group:{self._log_group(server)}:*") for r in regions],
            secret_arns=[self._arn("secretsmanager", r, f"secret:{self._secret_name(s)}-??????")
                         for s in sorted(server.secrets) for r in regions],
            key_arns=[self.key_arns[r] for r in regions],
            state_key_arns={r: self.key_arns[r] for r in regions}
            if self._uses_state(server) and not self._per_user(server) else {},
            capability_statements=sender_statements(self._task_resources(server, group),
                                                    records=not self._per_user(server))
            if server.async_work else [],
            tags=self._group_tags(group, server=server.name)),
            opts=self._opts(provider=self.providers[self.spec.primary_region]))

    @staticmethod
    def _uses_state(server: Server) -> bool:
        return any(STATE in p.resources for p in server.permissions)

    def _grants(self, server: Server, regions: list[str], *, state: bool = True) -> list[Grant]:
        """The server's declared permissions with symbolic resources resolved to ARNs in `regions`
        (without `state` when it is reached through the data role)."""
        grants = [Grant(actions=sorted(p.actions),
                        resources=sorted({arn for r in p.resources if state or r != STATE
                                          for arn in self._resolve_for(server, r, regions)}))
                  for p in server.permissions]
        return [g for g in grants if g.resources]

    # -- per-user data and backends (components/per_user_data.py) ---------------------------------

    def _per_user(self, server: Server) -> bool:
        """Whether the server reaches state as the caller: auth is on and it keeps state (declared
        grants, or the task records of its asynchronous work)."""
        auth = self.spec.auth
        return auth is not None and not auth.disabled and (self._uses_state(server) or bool(server.async_work))

    def _task_grants(self, server: Server, group: ResidencyGroup, regions: list[str]) -> list[Grant]:
        """With per-user data, the task role holds no grant on the table: only the right to become
        the caller through its data role, with the traveller tag."""
        if not self._per_user(server):
            return self._grants(server, regions)
        return [*self._grants(server, regions, state=False),
                Grant(actions=list(ASSUME_WITH_TAG), resources=[self._data_role_arn(server, group)])]

    def _role_arn(self, name: str) -> str:
        return f"arn:aws:iam::{self.spec.aws_account_id}:role/{name}"

    def _data_role_arn(self, server: Server, group: ResidencyGroup) -> str:
        return self._role_arn(self.names.data_role(server.name, group.name))

    def _data_role(self, server: Server, group: ResidencyGroup) -> DataRole:
        regions = sorted(r.name for r in group.regions)
        return DataRole(f"{server.name}-{group.name}-data", DataRoleArgs(
            server=server.name, group=group.name, role_name=self.names.data_role(server.name, group.name),
            task_role=self.identities[server.name, group.name].task_role,
            task_role_arn=self._role_arn(role_name(self.prefix, server.name, group.name, "task")),
            actions=sorted({a for p in server.permissions if STATE in p.resources for a in p.actions}
                           | (set(SERVER_RECORD_ACTIONS) if server.async_work else set())),
            table_arns=[self._arn("dynamodb", r, f"table/{self._table_name(group.name)}") for r in regions],
            state_key_arns={r: self.key_arns[r] for r in regions}, tags=self._group_tags(group, server=server.name),
            **self._data_role_worker(server, group)),
            opts=self._opts(provider=self.providers[self.spec.primary_region]))

    def _data_role_worker(self, server: Server, group: ResidencyGroup) -> dict:
        """The server's worker in the group, which the data role trusts too (components/worker_identity.py)."""
        worker = self.worker_identities.get((server.name, group.name))
        return {"worker_role": worker.role, "worker_role_arn": self._role_arn(worker.role_name)} if worker else {}

    def _task_environment(self, server: Server, group: ResidencyGroup) -> dict[str, str]:
        """What the estate tells the task about per-user data and its backends."""
        environment = {}
        if self._per_user(server):
            environment |= {DATA_ROLE_ENV: self._data_role_arn(server, group), TRAVELLER_TAG_ENV: TRAVELLER_TAG}
        if server.backends:
            environment[TOKEN_EXCHANGE_ENV] = str(self.spec.auth.token_exchange_url)
            environment |= {backend_url_env(b.name): b.url for b in server.backends}
        return environment

    def _resolve_for(self, server: Server, resource: str, regions: list[str]) -> list[str]:
        if resource == CACHE:   # each region's cache, and the server's own user there
            return [arn for r in regions for arn in connect_arns(
                self.spec.aws_account_id, r, self.names.cache(r), self.names.cache_user(server.name))]
        return self._resolve(resource, regions)

    def _resolve(self, resource: str, regions: list[str]) -> list[str]:
        if resource == STATE:   # the table of the group of each region
            tables = [self._arn("dynamodb", r, f"table/{self._table_name(self.spec.group_of[r].name)}")
                      for r in regions]
            return tables + [f"{t}/index/*" for t in tables]
        if resource.startswith(SECRET_PREFIX):
            name = self._secret_name(resource[len(SECRET_PREFIX):])
            return [self._arn("secretsmanager", r, f"secret:{name}-??????") for r in regions]
        return [resource]

    def _service_args(self, server: Server, region: str) -> McpServiceArgs:
        front, network, group = self.fronts[region], self.networks[region], self.spec.group_of[region]
        return McpServiceArgs(
            server=server, region=region, image=self.spec.image_for(server, region),
            cluster_arn=front.cluster_arn, cluster_name=front.cluster_name,
            vpc_id=network.vpc_id, vpc_cidr=network.vpc_cidr, private_subnet_ids=network.private_subnet_ids,
            endpoint_prefix_list_ids=network.gateway_prefix_list_ids,
            alb_security_group_id=front.alb_security_group_id, listener_arn=front.https_listener_arn,
            alb_arn_suffix=front.alb_arn_suffix, alerts_topic_arn=front.alerts_topic_arn,
            task_role_arn=self.identities[server.name, group.name].task_role_arn,
            execution_role_arn=self.identities[server.name, group.name].execution_role_arn,
            log_group_name=self._log_group(server), log_key_arn=self.key_arns[region],
            log_retention_days=self.spec.log_retention_days,
            secrets={s: self._secret_arn_in(s, region) for s in server.secrets},
            state_table=self._table_name(group.name),
            tags=self._group_tags(group, region=region, server=server.name),
            alarm_prefix=self.names.server_alarm_prefix(server.name, region),
            peak_tasks=group.peak_tasks.get(server.name),
            deployment_alarm_names=[probe_alarm_name(self.prefix, server.name, region)],
            estate_environment=self._task_environment(server, group),
            backend_egress=backend_egress(server, self.spec.auth.token_exchange_cidrs if self.spec.auth else []),
            staged=self._staged(server, region), tokens=resource_server(self.spec, server),
            capability_environment=self._capability_environment(server, region))

    # -- capabilities: the region's cache, task queues and workers ------------------------------

    def _cache_users(self) -> list[Server]:
        return [s for s in self.spec.servers if s.cache is not None]

    def _async_servers(self) -> list[Server]:
        return [s for s in self.spec.servers if s.async_work is not None]

    def _cache(self, region: str) -> RegionalCache:
        users = self._cache_users()
        return RegionalCache(f"cache-{region}", RegionalCacheArgs(
            region=region, cache_name=self.names.cache(region), user_group_id=self.names.cache_user_group(),
            vpc_id=self.networks[region].vpc_id, private_subnet_ids=self.networks[region].private_subnet_ids,
            key_arn=self.key_arns[region], user_ids={s.name: self.names.cache_user(s.name) for s in users},
            max_data_gb=sum(s.cache.max_data_gb for s in users),
            max_ecpu_per_second=sum(s.cache.max_ecpu_per_second for s in users),
            tags=self._group_tags(self.spec.group_of[region], region=region)),
            opts=self._opts(provider=self.providers[region]))

    def _queue_endpoint(self, region: str) -> QueueEndpoint:
        network = self.networks[region]
        return QueueEndpoint(f"queues-{region}", QueueEndpointArgs(
            region=region, account_id=self.spec.aws_account_id, vpc_id=network.vpc_id,
            private_subnet_ids=network.private_subnet_ids,
            endpoint_security_group_id=network.endpoint_security_group_id,
            tags=self._group_tags(self.spec.group_of[region], region=region)),
            opts=self._opts(provider=self.providers[region]))

    def _capability_environment(self, server: Server, region: str) -> dict[str, pulumi.Input[str]]:
        environment: dict[str, pulumi.Input[str]] = {}
        if server.cache is not None:
            environment |= {"MCP_CACHE_ENDPOINT": self.caches[region].endpoint,
                            "MCP_CACHE_NAME": self.names.cache(region),
                            "MCP_CACHE_USER": self.names.cache_user(server.name)}
        if server.async_work is not None:
            environment["MCP_TASK_QUEUE_URL"] = queue_url(self.spec.aws_account_id, region,
                                                          self.names.task_queue(server.name))
        return environment

    def _task_resources(self, server: Server, group: ResidencyGroup) -> TaskResources:
        regions = sorted(r.name for r in group.regions)
        return TaskResources(
            server=server.name, regions=regions,
            queue_arns=[queue_arn(self.spec.aws_account_id, r, self.names.task_queue(server.name)) for r in regions],
            table_arns=[self._arn("dynamodb", r, f"table/{self._table_name(group.name)}") for r in regions],
            key_arns={r: self.key_arns[r] for r in regions},
            data_role_arn=self._data_role_arn(server, group) if self._per_user(server) else None)

    def _worker_identity(self, server: Server, group: ResidencyGroup) -> WorkerIdentity:
        return WorkerIdentity(f"{server.name}-{group.name}-worker-identity", WorkerIdentityArgs(
            role_name=self.names.worker_role(server.name, group.name), group=group.name,
            account_id=self.spec.aws_account_id, resources=self._task_resources(server, group),
            tags=self._group_tags(group, server=server.name)),
            opts=self._opts(provider=self.providers[self.spec.primary_region]))

    def _worker(self, server: Server, region: str) -> AsyncWorker:
        front, network, group = self.fronts[region], self.networks[region], self.spec.group_of[region]
        service_args = self.service_args[server.name, region]
        identity = self.identities[server.name, group.name]
        return AsyncWorker(f"{server.name}-{region}-async", AsyncWorkerArgs(
            server=server.name, region=region, account_id=self.spec.aws_account_id, work=server.async_work,
            queue_name=self.names.task_queue(server.name),
            dead_letter_queue_name=self.names.dead_letter_queue(server.name), key_arn=self.key_arns[region],
            sender_role_arn=f"arn:aws:iam::{self.spec.aws_account_id}:role/{identity.role_names[1]}",
            worker_role_name=self.names.worker_role(server.name, group.name),
            worker_role_arn=self.worker_identities[server.name, group.name].role_arn,
            execution_role_arn=identity.execution_role_arn, task_family=task_family(self._log_group(server)),
            architecture=server.architecture, server_container=container_definition(service_args),
            egress=list(server.egress), cluster_arn=front.cluster_arn, cluster_name=front.cluster_name,
            vpc_id=network.vpc_id, vpc_cidr=network.vpc_cidr, private_subnet_ids=network.private_subnet_ids,
            endpoint_prefix_list_ids=network.gateway_prefix_list_ids, alerts_topic_arn=front.alerts_topic_arn,
            tags=self._group_tags(group, region=region, server=server.name)),
            opts=self._opts(provider=self.providers[region]))

    def _staged_in(self, region: str) -> list[Server]:
        return [s for s in self.spec.servers_in(region) if in_region_of(s.rollout, self.spec.rollout).staged]

    def _gate(self, region: str) -> DeploymentGate:
        network, front = self.networks[region], self.fronts[region]
        servers = {s.name: GatedServer(
            protocols=list(s.surface.protocols), tools_sha256=s.tools_sha256,
            probe_tool=s.surface.probe_tool.name if s.surface.probe_tool else None,
            probe_arguments=dict(s.surface.probe_tool.arguments) if s.surface.probe_tool else {})
            for s in self._staged_in(region)}
        return DeploymentGate(f"gate-{region}", DeploymentGateArgs(
            region=region, account_id=self.spec.aws_account_id, name_prefix=self.prefix,
            hostname=self.spec.domain.hostname, servers=servers, vpc_id=network.vpc_id, vpc_cidr=network.vpc_cidr,
            private_subnet_ids=network.private_subnet_ids, alb_security_group_id=front.alb_security_group_id,
            alb_arn_suffix=front.alb_arn_suffix, log_key_arn=self.key_arns[region],
            log_retention_days=self.spec.log_retention_days,
            tags=self._group_tags(self.spec.group_of[region], region=region),
            credentials=self._probe_credentials(region)),
            opts=self._opts(provider=self.providers[region]))

    def _staged(self, server: Server, region: str) -> Staged | None:
        settings = in_region_of(server.rollout, self.spec.rollout)
        if not settings.staged:
            return None
        gate = self.gates[region]
        return Staged(server=server.name, in_region=settings, hook_function_arn=gate.function_arn,
                      hook_role_arn=gate.hook_role_arn, infrastructure_role_arn=gate.infrastructure_role_arn,
                      ready=gate.ready)

    def _canary(self, region: str, cloudflare_ipv4_cidrs: list[str]) -> Canary:
        network, front = self.networks[region], self.fronts[region]
        return Canary(f"canary-{region}", CanaryArgs(
            region=region, account_id=self.spec.aws_account_id, name_prefix=self.prefix,
            hostname=self.spec.domain.hostname,
            servers={s.name: s.tools_sha256 for s in self.spec.servers_in(region)}, monitoring=self.spec.monitoring,
            vpc_id=network.vpc_id, vpc_cidr=network.vpc_cidr, private_subnet_ids=network.private_subnet_ids,
            endpoint_security_group_id=network.endpoint_security_group_id,
            alb_security_group_id=front.alb_security_group_id, alb_arn_suffix=front.alb_arn_suffix,
            cloudflare_ipv4_cidrs=sorted(cloudflare_ipv4_cidrs), alerts_topic_arn=front.alerts_topic_arn,
            log_key_arn=self.key_arns[region], log_retention_days=self.spec.log_retention_days,
            tags=self._group_tags(self.spec.group_of[region], region=region),
            credentials=self._probe_credentials(region)),
            opts=self._opts(provider=self.providers[region]))

    def _probe_credentials(self, region: str) -> ProbeCredentials | None:
        """The canary's and deployment hooks' client credentials, where servers want tokens (dev without
        auth needs none)."""
        secret = self.spec.monitoring.probe_credentials_secret
        if secret is None or not self._token_settings():
            return None
        return ProbeCredentials(secret_arn=self._secret_arn_in(secret, region), key_arn=self.key_arns[region],
                                token_cidrs=list(self.spec.monitoring.probe_token_cidrs))

    def _telemetry(self, server: str, region: str) -> ToolTelemetry:
        return ToolTelemetry(f"{server}-{region}-tools", ToolTelemetryArgs(
            server=server, region=region, name_prefix=self.prefix,
            log_group_name=self.services[server, region].log_group.name,
            alerts_topic_arn=self.fronts[region].alerts_topic_arn,
            tags=self._group_tags(self.spec.group_of[region], region=region, server=server),
            **self._declared(server)),
            opts=self._opts(provider=self.providers[region]))

    def _declared(self, server: str) -> dict[str, bool]:
        """Which capabilities a server declares (telemetry's and the dashboards' extra series)."""
        declared = next(s for s in self.spec.servers if s.name == server)
        return {"cache": declared.cache is not None, "tasks": declared.async_work is not None}

    def _dashboard_service(self, server: str, region: str) -> DashboardService:
        service = self.services[server, region]
        declared = self._declared(server)
        work = DashboardWork(queue_name=self.names.task_queue(server),
                             dead_letter_queue_name=self.names.dead_letter_queue(server),
                             worker_service_name=worker_service_name(server)) if declared["tasks"] else None
        return DashboardService(server=server, service_name=service.service_name,
                                target_group_arn_suffix=service.target_group.arn_suffix, work=work,
                                cache=declared["cache"])

    def _change_detection(self, region: str) -> ChangeDetection:
        front = self.fronts[region]
        return ChangeDetection(f"changes-{region}", ChangeDetectionArgs(
            region=region, account_id=self.spec.aws_account_id, name_prefix=self.prefix,
            cluster_name=front.cluster_name, cluster_arn=front.cluster_arn,
            task_families=[task_family(self._log_group(s)) for s in self.spec.servers_in(region)],
            repositories=sorted(s.repository for s in self.spec.servers),
            deployment_role_arn=self.spec.monitoring.deployment_role_arn, alerts_topic_arn=front.alerts_topic_arn,
            tags=self._group_tags(self.spec.group_of[region], region=region),
            iam=self._iam_watch() if region == self.spec.primary_region else None),
            opts=self._opts(provider=self.providers[region]))

    def _iam_watch(self) -> IamWatch:
        """Every role of the estate, watched from the home region; IAM's events arrive in us-east-1,
        through the estate's provider there or, for an estate without us-east-1, one of its own."""
        roles = [name for identity in self.identities.values() for name in identity.role_names]
        roles += [data.role_name for data in self.data_roles.values()]
        roles += [canary.role_name for canary in self.canaries.values()]
        roles += [name for gate in self.gates.values() for name in gate.role_names]
        roles += [network.flow_logs_role_name for network in self.networks.values()]
        roles += self.registry.role_names
        if self.spec.primary_region != IAM_EVENTS_REGION:   # only then are IAM's events forwarded
            roles.append(forwarder_role_name(self.prefix))
        provider = self.providers.get(IAM_EVENTS_REGION) or self._regional_provider(IAM_EVENTS_REGION)
        return IamWatch(role_names=sorted(roles), provider=provider, tags=self.tags())


def estate_stack(spec: EstateSpec) -> Estate:
    """The stack's program (`__main__`, `estate plan`): the estate, with its outputs as the stack's."""
    estate = Estate("mcp-estate", spec)
    for name, value in estate.stack_outputs.items():
        pulumi.export(name, value)
    return estate
