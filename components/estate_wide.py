"""The parts of an estate that span its regions: what every `Region` stands on.

Creates, from the spec: per residency group the keys (a primary and a replica per region);
the registry and the secrets; and, past `deploy_stage: foundation`, per group the state
table, the origin certificates of every region, and per server and group its identity (task
and execution roles), its worker's identity and its per-user data role.

Requires: `providers`, the estate's `aws.Provider` per region (keys, replicas and certificates
live in every region; roles and tables are created through the primary region's). Cloudflare
(the certificates' validation records) comes from the parent or `opts`.
"""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from mcp_estate.contract.spec import CACHE, SECRET_PREFIX, STATE, ResidencyGroup, Server

from .async_worker import queue_arn
from .estate_refs import EstateWideRef, IdentityRef
from .estate_scope import EstateScope
from .keys import EstateKeys, EstateKeysArgs
from .naming import child_opts, moved
from .origin_certificates import OriginCertificates, OriginCertificatesArgs
from .per_user_data import ASSUME_WITH_TAG, DataRole, DataRoleArgs
from .regional_cache import connect_arns
from .registry import Registry, RegistryArgs
from .secrets import EstateSecret, EstateSecretArgs
from .server_identity import Grant, ServerIdentity, ServerIdentityArgs, role_name
from .state_store import StateStore, StateStoreArgs
from .worker_identity import SERVER_RECORD_ACTIONS, TaskResources, WorkerIdentity, WorkerIdentityArgs, sender_statements


class EstateWide(pulumi.ComponentResource):
    """`key_arns[region]`, `secrets`, `identities[server, group]`, ...: what regions reference.

    `moved_from` is for `Estate` only: the component whose direct children these parts were
    before the estate was split (their old names become aliases, README: "Upgrading")."""

    def __init__(self, name: str, scope: EstateScope, providers: dict[str, aws.Provider],
                 opts: pulumi.ResourceOptions | None = None, *, moved_from: pulumi.Resource | None = None):
        super().__init__("mcp-estate:index:EstateWide", name, None, opts)
        spec, names = scope.spec, scope.names
        self.scope, self.providers, self._name, self._was = scope, providers, name, moved_from
        home = providers[spec.primary_region]

        self.keys = {g.name: EstateKeys(f"{name}-{g.name}-keys", EstateKeysArgs(
            primary_region=g.primary_region, regions=sorted(r.name for r in g.regions),
            account_id=spec.aws_account_id, alias=f"alias/{scope.prefix}-{g.name}",
            providers=providers, protect=spec.protect_data, tags=scope.group_tags(g)),
            opts=self._opts(g.name)) for g in spec.residency_groups}
        self.key_arns = {region: self.keys[spec.group_of[region].name].arns[region] for region in spec.regions}

        self.registry = Registry(f"{name}-registry", RegistryArgs(
            account_id=spec.aws_account_id, namespace=spec.registry.namespace,
            source_region=spec.primary_region, repositories={s.name: s.repository for s in spec.servers},
            regions=sorted(spec.regions), key_arns=self.key_arns, providers=providers,
            protect=spec.protect_data, tags=scope.tags,
            replica_role_name=names.ecr_replica_role()), opts=self._opts("registry", provider=home))

        self.secrets = {secret: EstateSecret(f"{name}-secret-{secret}", EstateSecretArgs(
            secret_name=names.secret(secret), home_region=spec.secret_home(secret),
            replica_regions=[r for r in spec.secret_regions(secret) if r != spec.secret_home(secret)],
            key_arns=self.key_arns, protect=spec.protect_data, tags=scope.tags(secret=secret)),
            opts=self._opts(f"secret-{secret}", provider=providers[spec.secret_home(secret)]))
            for secret in spec.secret_names()}
        # Past the foundation stage only (below).
        self.state, self.certificates, self.identities, self.worker_identities, self.data_roles = {}, None, {}, {}, {}
        if spec.deploy_stage == "foundation":
            # What must exist before images and secret values can be pushed: a later `full` stage
            # builds the rest around these, with the same names and inputs (nothing is replaced).
            self.register_outputs({})
            return

        self.state = {g.name: StateStore(f"{name}-{g.name}-state", StateStoreArgs(
            table_name=names.state_table(g.name), primary_region=g.primary_region,
            regions=sorted(r.name for r in g.regions), key_arns=self.key_arns,
            protect=spec.protect_data, tags=scope.state_tags(g)),
            opts=self._opts(f"{g.name}-state", provider=providers[g.primary_region]))
            for g in spec.residency_groups}

        self.certificates = OriginCertificates(f"{name}-origin-tls", OriginCertificatesArgs(
            hostname=spec.domain.hostname, zone_id=spec.domain.zone_id, regions=sorted(spec.regions),
            providers=providers, tags=scope.tags), opts=self._opts("origin-tls"))

        # One pair of roles per server and residency group: a group's data is reachable only from its regions.
        self.identities = {(server.name, group.name): self._identity(server, group)
                           for server in spec.servers for group in spec.residency_groups}
        # Before the data roles: with auth on, a worker's role is trusted by its server's data role.
        self.worker_identities = {(server.name, group.name): self._worker_identity(server, group)
                                  for server in scope.async_servers() for group in spec.residency_groups}
        # With auth on, state is reached only as the caller, through a per-user data role.
        self.data_roles = {(server.name, group.name): self._data_role(server, group)
                           for server in spec.servers if scope.per_user(server) for group in spec.residency_groups}
        self.register_outputs({})

    def ref(self) -> EstateWideRef:
        """What a region stands on (components/estate_refs.py): these parts, by reference."""
        return EstateWideRef(
            scope=self.scope, key_arns=self.key_arns,
            certificate_arns=self.certificates.arns if self.certificates else {},
            secret_arns={name: secret.arn for name, secret in self.secrets.items()},
            identities={key: IdentityRef(task_role_arn=i.task_role_arn, execution_role_arn=i.execution_role_arn)
                        for key, i in self.identities.items()},
            worker_role_arns={key: w.role_arn for key, w in self.worker_identities.items()},
            repository_urls=self.registry.repository_urls, role_names=tuple(self.scope.wide_role_names()))

    def task_resources(self, server: Server, group: ResidencyGroup) -> TaskResources:
        scope, regions = self.scope, sorted(r.name for r in group.regions)
        return TaskResources(
            server=server.name, regions=regions,
            queue_arns=[queue_arn(scope.spec.aws_account_id, r, scope.names.task_queue(server.name)) for r in regions],
            table_arns=scope.table_arns(group), key_arns={r: self.key_arns[r] for r in regions},
            data_role_arn=scope.data_role_arn(server, group) if scope.per_user(server) else None)

    def _opts(self, old_name: str, **options) -> pulumi.ResourceOptions:
        home = self.providers[self.scope.spec.primary_region]
        return child_opts(self, **({"provider": home} | options), **moved(old_name, self._was))

    def _identity(self, server: Server, group: ResidencyGroup) -> ServerIdentity:
        """The server's roles in `group`: every resource they name is in the group's regions."""
        scope, regions = self.scope, sorted(r.name for r in group.regions)
        log_group = scope.names.log_group(server.name)
        return ServerIdentity(f"{self._name}-{server.name}-{group.name}-identity", ServerIdentityArgs(
            server=server.name, group=group.name, name_prefix=scope.prefix,
            account_id=scope.spec.aws_account_id,
            regions=regions, grants=self._task_grants(server, group, regions),
            repository_arns=[scope.arn("ecr", r, f"repository/{server.repository}") for r in regions],
            log_group_arns=[scope.arn("logs", r, f"log-group:{log_group}:*") for r in regions],
            secret_arns=[scope.arn("secretsmanager", r, f"secret:{scope.names.secret(s)}-??????")
                         for s in sorted(server.secrets) for r in regions],
            key_arns=[self.key_arns[r] for r in regions],
            state_key_arns={r: self.key_arns[r] for r in regions}
            if scope.uses_state(server) and not scope.per_user(server) else {},
            capability_statements=sender_statements(self.task_resources(server, group),
                                                    records=not scope.per_user(server))
            if server.async_work else [],
            tags=scope.group_tags(group, server=server.name)),
            opts=self._opts(f"{server.name}-{group.name}-identity"))

    def _grants(self, server: Server, regions: list[str], *, state: bool = True) -> list[Grant]:
        """The server's declared permissions with symbolic resources resolved to ARNs in `regions`
        (without `state` when it is reached through the data role)."""
        grants = [Grant(actions=sorted(p.actions),
                        resources=sorted({arn for r in p.resources if state or r != STATE
                                          for arn in self._resolve_for(server, r, regions)}))
                  for p in server.permissions]
        return [g for g in grants if g.resources]

    def _task_grants(self, server: Server, group: ResidencyGroup, regions: list[str]) -> list[Grant]:
        """With per-user data, the task role holds no grant on the table: only the right to become
        the caller through its data role, with the traveller tag."""
        if not self.scope.per_user(server):
            return self._grants(server, regions)
        return [*self._grants(server, regions, state=False),
                Grant(actions=list(ASSUME_WITH_TAG), resources=[self.scope.data_role_arn(server, group)])]

    def _resolve_for(self, server: Server, resource: str, regions: list[str]) -> list[str]:
        scope = self.scope
        if resource == CACHE:   # each region's cache, and the server's own user there
            return [arn for r in regions for arn in connect_arns(
                scope.spec.aws_account_id, r, scope.names.cache(r), scope.names.cache_user(server.name))]
        if resource == STATE:   # the table of the group of each region
            tables = [scope.arn("dynamodb", r, f"table/{scope.names.state_table(scope.spec.group_of[r].name)}")
                      for r in regions]
            return tables + [f"{t}/index/*" for t in tables]
        if resource.startswith(SECRET_PREFIX):
            name = scope.names.secret(resource[len(SECRET_PREFIX):])
            return [scope.arn("secretsmanager", r, f"secret:{name}-??????") for r in regions]
        return [resource]

    def _worker_identity(self, server: Server, group: ResidencyGroup) -> WorkerIdentity:
        scope = self.scope
        return WorkerIdentity(f"{self._name}-{server.name}-{group.name}-worker-identity", WorkerIdentityArgs(
            role_name=scope.names.worker_role(server.name, group.name), group=group.name,
            account_id=scope.spec.aws_account_id, resources=self.task_resources(server, group),
            tags=scope.group_tags(group, server=server.name)),
            opts=self._opts(f"{server.name}-{group.name}-worker-identity"))

    def _data_role(self, server: Server, group: ResidencyGroup) -> DataRole:
        scope = self.scope
        worker = self.worker_identities.get((server.name, group.name))
        trusted = {"worker_role": worker.role, "worker_role_arn": scope.role_arn(worker.role_name)} if worker else {}
        return DataRole(f"{self._name}-{server.name}-{group.name}-data", DataRoleArgs(
            server=server.name, group=group.name, role_name=scope.names.data_role(server.name, group.name),
            task_role=self.identities[server.name, group.name].task_role,
            task_role_arn=scope.role_arn(role_name(scope.prefix, server.name, group.name, "task")),
            actions=sorted({a for p in server.permissions if STATE in p.resources for a in p.actions}
                           | (set(SERVER_RECORD_ACTIONS) if server.async_work else set())),
            table_arns=scope.table_arns(group),
            state_key_arns={r: self.key_arns[r] for r in sorted(r.name for r in group.regions)},
            tags=scope.group_tags(group, server=server.name), **trusted),
            opts=self._opts(f"{server.name}-{group.name}-data"))
