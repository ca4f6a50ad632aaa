"""One region of an estate: its network (or the caller's), front, services and what watches them.

Creates, in the region of its AWS provider (from `opts` or its parent): the network
(`RegionNetwork`, unless `network` brings the caller's VPC), the front (`RegionCompute`: cluster,
ALB, WAF, alerts), the deployment gate of its CANARY/LINEAR servers, the cache and the task-queue
endpoint when servers declare them, per server its service (and worker), then the canary, each
service's tool telemetry and the region's change detection.

It stands on the estate-wide parts (`EstateWide`: keys, secrets, identities, certificates), so a
platform team adds a region in its own program with `Region(name, RegionArgs(estate=..., region=...))`
(examples/region_in_own_program). The region must be one of the spec's: its residency group, CIDR
and servers come from there. Every child is named from the region's name.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_cloudflare as cloudflare

from mcp_estate.contract.capabilities import CACHE_ENDPOINT_ENV, CACHE_NAME_ENV, CACHE_USER_ENV, TASK_QUEUE_ENV
from mcp_estate.contract.limit_rules import refused_countries
from mcp_estate.contract.per_user_data import (
    DATA_ROLE_ENV,
    TOKEN_EXCHANGE_ENV,
    TRAVELLER_TAG,
    TRAVELLER_TAG_ENV,
    backend_url_env,
)
from mcp_estate.contract.resource_server import resource_server
from mcp_estate.contract.rollout import in_region_of
from mcp_estate.contract.spec import ResidencyGroup, Server
from mcp_estate.contract.surface_rules import origin_rules
from mcp_estate.contract.validate import origin_travellers, surface_servers

from .async_worker import AsyncWorker, AsyncWorkerArgs, queue_url
from .canary import Canary, CanaryArgs, ProbeCredentials, canary_role_name, probe_alarm_name
from .change_detection import ChangeDetection, ChangeDetectionArgs, IamWatch
from .deployment_gate import DeploymentGate, DeploymentGateArgs, GatedServer, gate_role_names
from .estate_refs import EstateWideRef, RegionRef
from .estate_scope import EstateScope
from .estate_wide import EstateWide
from .mcp_service import McpService, McpServiceArgs, container_definition, task_family
from .naming import child_opts, moved
from .per_user_data import backend_egress
from .queue_endpoint import QueueEndpoint, QueueEndpointArgs
from .region_compute import RegionCompute, RegionComputeArgs
from .region_network import RegionNetwork, RegionNetworkArgs
from .regional_cache import CacheUser, RegionalCache, RegionalCacheArgs
from .server_identity import role_name
from .staged_deployment import Staged
from .telemetry import ToolTelemetry, ToolTelemetryArgs


@dataclass(frozen=True)
class NetworkRef:
    """A network the caller already has in the region (bring your own VPC). The region's tasks,
    canary and hooks run in its private subnets with no public IP, the ALB in its public subnets.
    The caller's network must give the private subnets what `RegionNetwork` gives them (README:
    "Bring your own network"): routes to the interface endpoints (ECR API and registry, logs,
    Secrets Manager, STS) and the S3 and DynamoDB gateway endpoints, and NAT where a server
    declares egress or a canary probes the hostname."""
    vpc_id: pulumi.Input[str]
    vpc_cidr: str                                       # the VPC's CIDR (security groups admit it)
    private_subnet_ids: list[pulumi.Input[str]]         # tasks, canary, hooks: one per AZ
    public_subnet_ids: list[pulumi.Input[str]]          # the ALB: one per AZ
    endpoint_security_group_id: pulumi.Input[str]       # the interface endpoints' group (admits HTTPS)
    gateway_prefix_list_ids: dict[str, pulumi.Input[str]]   # "s3", "dynamodb": the gateway endpoints' prefix lists


@dataclass
class RegionArgs:
    # What the region stands on: keys, secrets, identities, certificates (the part, or a reference to it).
    estate: EstateWide | EstateWideRef
    region: str                         # one of the spec's regions
    network: NetworkRef | None = None   # the caller's network; None builds one from the spec's `cidr`
    iam: IamWatch | None = None         # the estate's IAM watch: given to the primary region only


def region_role_names(scope: EstateScope, region: str, *, builds_network: bool) -> list[str]:
    """The roles a region creates, by physical name, known before it is built (change detection)."""
    roles = [canary_role_name(scope.prefix, region)]
    if scope.staged_in(region):
        roles += gate_role_names(scope.prefix, region)
    if builds_network:
        roles.append(scope.names.flow_logs_role(region))
    return roles


class Region(pulumi.ComponentResource):
    """`network`, `front`, `services[server]`, `service_args[server]`, `workers[server]`, `canary`, ...

    `moved_from` is for `Estate` only: the component whose direct children these parts were
    before the estate was split (their old names become aliases, README: "Upgrading")."""

    def __init__(self, name: str, args: RegionArgs, opts: pulumi.ResourceOptions | None = None, *,
                 moved_from: pulumi.Resource | None = None):
        super().__init__("mcp-estate:index:Region", name, None, opts)
        self.estate = args.estate.ref() if isinstance(args.estate, EstateWide) else args.estate
        self.scope, self.region = self.estate.scope, args.region
        spec, region = self.scope.spec, args.region
        if region not in spec.regions:
            raise pulumi.RunError(f"Region {name}: region {region!r} is not in the spec "
                                  f"({', '.join(sorted(spec.regions))}): declare it in a residency group's `regions`")
        if self.get_provider("aws::") is None:
            raise pulumi.RunError(f"Region {name}: no aws.Provider for {region}: pass one in opts "
                                  f"(provider=aws.Provider(..., region={region!r})) or on a parent")
        self._name, self._was = name, moved_from
        self.group = spec.group_of[region]
        cloudflare_ips = cloudflare.get_ip_ranges(opts=pulumi.InvokeOptions(parent=self))
        self.network = args.network or self._network()
        self.front = self._front(cloudflare_ips)
        # CANARY/LINEAR servers' hook and ECS roles (components/deployment_gate.py).
        self.gate = self._gate() if self.scope.staged_in(region) else None
        # Opt-in capabilities (README: Fast answers, later answers): per region, never replicated.
        self.cache = self._cache() if self.scope.cache_users() else None
        self.queue_endpoint = self._queue_endpoint() if self.scope.async_servers() else None

        self.service_args = {s.name: self._service_args(s) for s in spec.servers_in(region)}
        self.services = {server: McpService(f"{name}-{server}", service_args,
                                            opts=self._opts(f"{server}-{region}"))
                         for server, service_args in self.service_args.items()}
        if self.cache is not None:
            self.cache.admit([CacheUser(server=s.name, user_id=self.scope.names.cache_user(s.name),
                                        task_security_group_id=self.services[s.name].security_group_id)
                              for s in self.scope.cache_users()])
        self.workers = {s.name: self._worker(s) for s in self.scope.async_servers() if s.name in self.services}

        # Created after the services they watch; the services name the canary's alarms, not the alarms.
        self.canary = self._canary(cloudflare_ips.ipv4_cidrs)
        self.telemetry = {server: self._telemetry(server) for server in sorted(self.services)}
        self.change_detection = self._change_detection(args.iam)
        self.register_outputs({})

    def ref(self) -> RegionRef:
        """What the edge, the dashboards and the stack outputs read of this region (components/estate_refs.py)."""
        front = self.front
        return RegionRef(alb_dns_name=front.alb_dns_name, alb_arn=front.alb_arn, alb_arn_suffix=front.alb_arn_suffix,
                         cluster_name=front.cluster_name,
                         service_names={s: service.service_name for s, service in sorted(self.services.items())},
                         target_group_arn_suffixes={s: service.target_group.arn_suffix
                                                    for s, service in sorted(self.services.items())})

    def _opts(self, old_name: str, **options) -> pulumi.ResourceOptions:
        return child_opts(self, **options, **moved(old_name, self._was))

    def _tags(self, **scope: str) -> dict[str, str]:
        return self.scope.region_tags(self.region, **scope)

    def _network(self) -> RegionNetwork:
        spec, region = self.scope.spec, self.region
        region_spec = spec.regions[region]
        return RegionNetwork(f"{self._name}-net", RegionNetworkArgs(
            region=region, account_id=spec.aws_account_id, cidr=region_spec.cidr,
            availability_zones=region_spec.availability_zones,
            # The canary reaches the hostname through Cloudflare, outside AWS: only NAT gets there.
            # Tasks gain nothing from it: their security groups admit only their declared egress.
            nat=True, log_key_arn=self.estate.key_arns[region],
            log_retention_days=spec.log_retention_days,
            flow_logs_role_name=self.scope.names.flow_logs_role(region), tags=self._tags()),
            opts=self._opts(f"net-{region}"))

    def _front(self, cloudflare_ips) -> RegionCompute:
        scope, spec, region = self.scope, self.scope.spec, self.region
        return RegionCompute(f"{self._name}-front", RegionComputeArgs(
            region=region, account_id=spec.aws_account_id, name_prefix=f"{scope.prefix}-{region}",
            vpc_id=self.network.vpc_id, public_subnet_ids=self.network.public_subnet_ids,
            certificate_arn=self.estate.certificate_arns[region],
            cloudflare_ipv4_cidrs=sorted(cloudflare_ips.ipv4_cidrs),
            cloudflare_ipv6_cidrs=sorted(cloudflare_ips.ipv6_cidrs),
            deletion_protection=spec.protect_data, origin_rate_limit=spec.edge.origin_rate_limit_per_5_minutes,
            alert_key_arn=self.estate.key_arns[region], alert_emails=list(spec.alerts.emails),
            log_retention_days=spec.log_retention_days, tags=self._tags(),
            refused_countries=refused_countries(spec, self.group),
            token_challenges=scope.token_settings(),
            surface_rules=origin_rules(surface_servers(spec), origin_travellers(spec))),
            opts=self._opts(f"front-{region}"))

    def _service_args(self, server: Server) -> McpServiceArgs:
        scope, spec, region, group = self.scope, self.scope.spec, self.region, self.group
        front, network, identity = self.front, self.network, self.estate.identities[server.name, group.name]
        return McpServiceArgs(
            server=server, region=region, image=spec.image_for(server, region),
            cluster_arn=front.cluster_arn, cluster_name=front.cluster_name,
            vpc_id=network.vpc_id, vpc_cidr=network.vpc_cidr, private_subnet_ids=network.private_subnet_ids,
            endpoint_prefix_list_ids=network.gateway_prefix_list_ids,
            alb_security_group_id=front.alb_security_group_id, listener_arn=front.https_listener_arn,
            alb_arn_suffix=front.alb_arn_suffix, alerts_topic_arn=front.alerts_topic_arn,
            task_role_arn=identity.task_role_arn, execution_role_arn=identity.execution_role_arn,
            log_group_name=scope.names.log_group(server.name), log_key_arn=self.estate.key_arns[region],
            log_retention_days=spec.log_retention_days,
            secrets={s: self.estate.secret_arn_in(s, region) for s in server.secrets},
            state_table=scope.names.state_table(group.name),
            tags=self._tags(server=server.name),
            alarm_prefix=scope.names.server_alarm_prefix(server.name, region),
            peak_tasks=group.peak_tasks.get(server.name),
            deployment_alarm_names=[probe_alarm_name(scope.prefix, server.name, region)],
            estate_environment=self._task_environment(server, group),
            backend_egress=backend_egress(server, spec.auth.token_exchange_cidrs if spec.auth else []),
            staged=self._staged(server), tokens=resource_server(spec, server),
            capability_environment=self._capability_environment(server))

    def _task_environment(self, server: Server, group: ResidencyGroup) -> dict[str, str]:
        """What the estate tells the task about per-user data and its backends."""
        environment = {}
        if self.scope.per_user(server):
            environment |= {DATA_ROLE_ENV: self.scope.data_role_arn(server, group), TRAVELLER_TAG_ENV: TRAVELLER_TAG}
        if server.backends:
            environment[TOKEN_EXCHANGE_ENV] = str(self.scope.spec.auth.token_exchange_url)
            environment |= {backend_url_env(b.name): b.url for b in server.backends}
        return environment

    # -- capabilities: the region's cache, task queues and workers ------------------------------

    def _cache(self) -> RegionalCache:
        scope, region, users = self.scope, self.region, self.scope.cache_users()
        return RegionalCache(f"{self._name}-cache", RegionalCacheArgs(
            region=region, cache_name=scope.names.cache(region), user_group_id=scope.names.cache_user_group(),
            vpc_id=self.network.vpc_id, private_subnet_ids=self.network.private_subnet_ids,
            key_arn=self.estate.key_arns[region], user_ids={s.name: scope.names.cache_user(s.name) for s in users},
            max_data_gb=sum(s.cache.max_data_gb for s in users),
            max_ecpu_per_second=sum(s.cache.max_ecpu_per_second for s in users),
            tags=self._tags()), opts=self._opts(f"cache-{region}"))

    def _queue_endpoint(self) -> QueueEndpoint:
        return QueueEndpoint(f"{self._name}-queues", QueueEndpointArgs(
            region=self.region, account_id=self.scope.spec.aws_account_id, vpc_id=self.network.vpc_id,
            private_subnet_ids=self.network.private_subnet_ids,
            endpoint_security_group_id=self.network.endpoint_security_group_id,
            tags=self._tags()), opts=self._opts(f"queues-{self.region}"))

    def _capability_environment(self, server: Server) -> dict[str, pulumi.Input[str]]:
        names, region = self.scope.names, self.region
        environment: dict[str, pulumi.Input[str]] = {}
        if server.cache is not None:
            environment |= {CACHE_ENDPOINT_ENV: self.cache.endpoint, CACHE_NAME_ENV: names.cache(region),
                            CACHE_USER_ENV: names.cache_user(server.name)}
        if server.async_work is not None:
            environment[TASK_QUEUE_ENV] = queue_url(self.scope.spec.aws_account_id, region,
                                                    names.task_queue(server.name))
        return environment

    def _worker(self, server: Server) -> AsyncWorker:
        scope, region, group = self.scope, self.region, self.group
        front, network = self.front, self.network
        identity = self.estate.identities[server.name, group.name]
        return AsyncWorker(f"{self._name}-{server.name}-async", AsyncWorkerArgs(
            server=server.name, region=region, account_id=scope.spec.aws_account_id, work=server.async_work,
            queue_name=scope.names.task_queue(server.name),
            dead_letter_queue_name=scope.names.dead_letter_queue(server.name), key_arn=self.estate.key_arns[region],
            sender_role_arn=scope.role_arn(role_name(scope.prefix, server.name, group.name, "task")),
            worker_role_name=scope.names.worker_role(server.name, group.name),
            worker_role_arn=self.estate.worker_role_arns[server.name, group.name],
            execution_role_arn=identity.execution_role_arn,
            task_family=task_family(scope.names.log_group(server.name)),
            architecture=server.architecture, server_container=container_definition(self.service_args[server.name]),
            egress=list(server.egress), cluster_arn=front.cluster_arn, cluster_name=front.cluster_name,
            vpc_id=network.vpc_id, vpc_cidr=network.vpc_cidr, private_subnet_ids=network.private_subnet_ids,
            endpoint_prefix_list_ids=network.gateway_prefix_list_ids, alerts_topic_arn=front.alerts_topic_arn,
            tags=self._tags(server=server.name)), opts=self._opts(f"{server.name}-{region}-async"))

    # -- deployments and what watches the region -------------------------------------------------

    def _gate(self) -> DeploymentGate:
        scope, region, network, front = self.scope, self.region, self.network, self.front
        servers = {s.name: GatedServer(
            protocols=list(s.surface.protocols), tools_sha256=s.tools_sha256,
            probe_tool=s.surface.probe_tool.name if s.surface.probe_tool else None,
            probe_arguments=dict(s.surface.probe_tool.arguments) if s.surface.probe_tool else {})
            for s in scope.staged_in(region)}
        return DeploymentGate(f"{self._name}-gate", DeploymentGateArgs(
            region=region, account_id=scope.spec.aws_account_id, name_prefix=scope.prefix,
            hostname=scope.spec.domain.hostname, servers=servers, vpc_id=network.vpc_id, vpc_cidr=network.vpc_cidr,
            private_subnet_ids=network.private_subnet_ids, alb_security_group_id=front.alb_security_group_id,
            alb_arn_suffix=front.alb_arn_suffix, log_key_arn=self.estate.key_arns[region],
            log_retention_days=scope.spec.log_retention_days, tags=self._tags(),
            credentials=self._probe_credentials()), opts=self._opts(f"gate-{region}"))

    def _staged(self, server: Server) -> Staged | None:
        settings = in_region_of(server.rollout, self.scope.spec.rollout)
        if not settings.staged:
            return None
        gate = self.gate
        return Staged(server=server.name, in_region=settings, hook_function_arn=gate.function_arn,
                      hook_role_arn=gate.hook_role_arn, infrastructure_role_arn=gate.infrastructure_role_arn,
                      ready=gate.ready)

    def _canary(self, cloudflare_ipv4_cidrs: list[str]) -> Canary:
        scope, spec, region, network, front = self.scope, self.scope.spec, self.region, self.network, self.front
        return Canary(f"{self._name}-canary", CanaryArgs(
            region=region, account_id=spec.aws_account_id, name_prefix=scope.prefix,
            hostname=spec.domain.hostname,
            servers={s.name: s.tools_sha256 for s in spec.servers_in(region)}, monitoring=spec.monitoring,
            vpc_id=network.vpc_id, vpc_cidr=network.vpc_cidr, private_subnet_ids=network.private_subnet_ids,
            endpoint_security_group_id=network.endpoint_security_group_id,
            alb_security_group_id=front.alb_security_group_id, alb_arn_suffix=front.alb_arn_suffix,
            cloudflare_ipv4_cidrs=sorted(cloudflare_ipv4_cidrs), alerts_topic_arn=front.alerts_topic_arn,
            log_key_arn=self.estate.key_arns[region], log_retention_days=spec.log_retention_days,
            tags=self._tags(), credentials=self._probe_credentials()), opts=self._opts(f"canary-{region}"))

    def _probe_credentials(self) -> ProbeCredentials | None:
        """The canary's and deployment hooks' client credentials, where servers want tokens (dev without
        auth needs none)."""
        monitoring = self.scope.spec.monitoring
        if monitoring.probe_credentials_secret is None or not self.scope.token_settings():
            return None
        return ProbeCredentials(secret_arn=self.estate.secret_arn_in(monitoring.probe_credentials_secret, self.region),
                                key_arn=self.estate.key_arns[self.region],
                                token_cidrs=list(monitoring.probe_token_cidrs))

    def _telemetry(self, server: str) -> ToolTelemetry:
        return ToolTelemetry(f"{self._name}-{server}-tools", ToolTelemetryArgs(
            server=server, region=self.region, name_prefix=self.scope.prefix,
            log_group_name=self.services[server].log_group.name, alerts_topic_arn=self.front.alerts_topic_arn,
            tags=self._tags(server=server), **declared(self.scope, server)),
            opts=self._opts(f"{server}-{self.region}-tools"))

    def _change_detection(self, iam: IamWatch | None) -> ChangeDetection:
        scope, spec, region, front = self.scope, self.scope.spec, self.region, self.front
        return ChangeDetection(f"{self._name}-changes", ChangeDetectionArgs(
            region=region, account_id=spec.aws_account_id, name_prefix=scope.prefix,
            cluster_name=front.cluster_name, cluster_arn=front.cluster_arn,
            task_families=[task_family(scope.names.log_group(s.name)) for s in spec.servers_in(region)],
            repositories=sorted(s.repository for s in spec.servers),
            deployment_role_arn=spec.monitoring.deployment_role_arn, alerts_topic_arn=front.alerts_topic_arn,
            tags=self._tags(), iam=iam), opts=self._opts(f"changes-{region}"))


def declared(scope: EstateScope, server: str) -> dict[str, bool]:
    """Which capabilities a server declares (telemetry's and the dashboards' extra series)."""
    found = next(s for s in scope.spec.servers if s.name == server)
    return {"cache": found.cache is not None, "tasks": found.async_work is not None}
