"""The estate spec: the validated shape of the `mcp-estate:estate` stack config.

Everything a user can get wrong is caught here, with the field named as a path people read
(`servers[booking].image`) and the fix in the message. Pydantic checks each field; the
cross-field rules (names that must exist, regions in two groups, overlapping networks...)
run after it in `cross_field_problems`. Nothing downstream re-validates the spec.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from functools import cached_property
from typing import Annotated, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator

from mcp_estate.policies.iam_actions import unknown_actions
from mcp_estate.policies.secret_names import secret_like_name

from .auth import Auth, Backend, ServerAuth
from .aws_limits import AwsQuotas
from .capabilities import CAPABILITY_ENV, AsyncWork, Cache
from .cloudflare_plan import CloudflarePlan
from .fields import DIGEST_IMAGE, Cidr, Country, DigestImage, EgressCidr, Name, Port, Region, RuleDescription, Strict
from .geography import FARGATE_ZONE_IDS
from .per_user_data import BACKEND_ENV_PREFIX, ESTATE_ENV, PORT_ENV, STATE_TABLE_ENV
from .rollout import Candidate, InRegion, Rollout
from .surface import Surface

# Fargate's CPU units and the memory (MiB) each one accepts.
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4097, 1024)),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
    8192: tuple(range(16384, 61441, 4096)),
    16384: tuple(range(32768, 122881, 8192)),
}

STATE = "state"              # symbolic resource: the residency group's session-state table
CACHE = "cache"              # symbolic resource: the region's cache and the server's own cache user
SECRET_PREFIX = "secret/"    # symbolic resource: `secret/<name>`, a secret of the estate
# A strict group's countries are recorded in one AWS tag value ("AT BE DE ..."): 256 characters.
MAX_STRICT_COUNTRIES = 85
# ALB rule priorities 1..50 are the residency guard's (components/region_compute.py): an ALB refuses
# the countries of the strict groups it is outside of, 5 per rule (the ALB quota of condition values
# per rule), so 50 rules hold all 249 ISO countries. Servers' routes take priorities above the band.
GUARD_PRIORITIES = 50
MAX_ROUTE_PRIORITY = 50000

_ECR_HOST = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com$")
_ALL_OF_A_TYPE = re.compile(r"^([\w.-]+[/:])?[*?]+$")   # `*`, `table/*`, `secret:*`
_ACTION = re.compile(r"^[a-z0-9-]+:[A-Za-z0-9]+$")
RESERVED_ENV = frozenset({PORT_ENV, STATE_TABLE_ENV}) | ESTATE_ENV | CAPABILITY_ENV   # set by the estate on tasks
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ROLE_ARN = re.compile(r"^arn:aws:iam::\d{12}:role/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class Domain(Strict):
    hostname: str = Field(description="The estate's public hostname, served by Cloudflare")
    zone_id: str = Field(pattern=r"^[0-9a-f]{32}$", description="Cloudflare zone id of the hostname")
    cloudflare_account_id: str = Field(pattern=r"^[0-9a-f]{32}$",
                                       description="Cloudflare account owning the load-balancer pools")
    cloudflare_plan: CloudflarePlan = Field(
        "pro", description="The zone's Cloudflare plan: the edge builds only what it includes "
                           "(README: Cloudflare prerequisites)")

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str) -> str:
        if not _HOSTNAME.match(value):
            raise ValueError(f"'{value}' is not a lowercase DNS hostname such as mcp.example.travel")
        return value


class RegionSpec(Strict):
    name: Region
    cidr: Cidr
    availability_zones: int = Field(2, ge=2, le=3, description="AZs for tasks and the ALB")

    @field_validator("availability_zones")
    @classmethod
    def _fargate_zones(cls, count: int, info: ValidationInfo) -> int:
        region = info.data.get("name", "")   # absent when the name itself was invalid
        zones = FARGATE_ZONE_IDS.get(region, ())
        if zones and count > len(zones):
            raise ValueError(f"{count} zones: Fargate runs in only {len(zones)} zones of {region} "
                             f"({', '.join(zones)}); use availability_zones: {len(zones)}")
        return count


class ResidencyGroup(Strict):
    name: Name
    primary_region: Region = Field(description="Home of the group's table and key (others replicate)")
    strict: bool = Field(False, description="State and routing never leave the group")
    countries: list[Country] = Field(default_factory=list, description="Visitors routed to this group")
    regions: list[RegionSpec] = Field(min_length=1)
    peak_tasks: dict[Name, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict, description="Tasks the group needs at its peak, per server: losing any one "
                                          "region must leave that many (scaling max) in the others")


class Permission(Strict):
    actions: list[str] = Field(min_length=1)
    resources: list[str] = Field(min_length=1)

    @field_validator("actions")
    @classmethod
    def _no_wildcard_actions(cls, actions: list[str]) -> list[str]:
        for action in actions:
            if "*" in action:
                raise ValueError(f"'{action}' is a wildcard: name each action (e.g. dynamodb:GetItem)")
            if not _ACTION.match(action):
                raise ValueError(f"'{action}' is not an IAM action of the form service:Action")
        unknown = unknown_actions(actions)
        if unknown:
            raise ValueError(f"{', '.join(unknown)}: not an action AWS IAM defines")
        return actions

    @field_validator("resources")
    @classmethod
    def _no_wildcard_resources(cls, resources: list[str]) -> list[str]:
        for resource in resources:
            if resource in (STATE, CACHE) or resource.startswith(SECRET_PREFIX):
                continue
            fields = resource.split(":", 5)
            if resource == "*":
                raise ValueError(f"'*' grants every resource: name `state`, `{SECRET_PREFIX}<name>` or a full ARN")
            if len(fields) < 6 or fields[:2] != ["arn", "aws"]:
                raise ValueError(f"'{resource}' is neither an estate resource (`state`, "
                                 f"`{SECRET_PREFIX}<name>`) nor an ARN (arn:aws:...)")
            if any(c in "".join(fields[2:5]) for c in "*?") or _ALL_OF_A_TYPE.match(fields[5]):
                raise ValueError(f"'{resource}' grants every resource of its kind: name `state`, "
                                 f"`{SECRET_PREFIX}<name>` or one resource's full ARN")
        return resources


class Scaling(Strict):
    min: int = Field(2, ge=1, le=1000, description="Tasks per region, at least")
    max: int = Field(10, ge=1, le=1000, description="Tasks per region, at most")
    target_cpu_percent: int = Field(60, ge=10, le=90)
    target_requests_per_task: int = Field(500, ge=1, description="ALB requests per task per minute")


class Egress(Strict):
    """A destination outside AWS's endpoints that a server must reach (needs a NAT route)."""
    cidr: EgressCidr
    port: int = Field(443, ge=1, le=65535)
    description: RuleDescription   # becomes the security group rule's description


class Alarms(Strict):
    max_5xx_per_minute: int = Field(10, ge=1)
    max_p99_latency_seconds: float = Field(2.0, gt=0)


class Server(Strict):
    name: Name
    image: DigestImage = Field(description="The released image: <account>.dkr.ecr.<primary_region>."
                                           "amazonaws.com/<namespace>/<repo>@sha256:<64 hex>")
    port: Port = 8080
    cpu: int = 512
    memory: int = 1024
    architecture: Literal["X86_64", "ARM64"] = Field("X86_64", description="CPU architecture of the image")
    health_check_path: str = Field("/healthz", pattern=r"^/[A-Za-z0-9._~/-]*$")
    permissions: list[Permission] = Field(default_factory=list)
    secrets: list[Name] = Field(default_factory=list, description="Secrets injected as env vars")
    environment: dict[str, str] = Field(default_factory=dict, description="Plain, non-secret env vars")
    egress: list[Egress] = Field(default_factory=list)
    scaling: Scaling = Field(default_factory=Scaling)
    alarms: Alarms = Field(default_factory=Alarms)
    route_priority: int | None = Field(None, le=MAX_ROUTE_PRIORITY,
                                       description=f"ALB rule priority, {GUARD_PRIORITIES + 1}-{MAX_ROUTE_PRIORITY} "
                                                   "(default: derived from the name)")
    tools_sha256: str | None = Field(None, description="Approved SHA-256 of the server's tool manifest: the "
                                                       "canary alarms when the served tools differ from it")
    auth: ServerAuth = Field(default_factory=ServerAuth, description="Scopes and token validation of this server")
    backends: list[Backend] = Field(default_factory=list, description="Upstream APIs reached by token exchange")
    surface: Surface = Field(default_factory=Surface, description="Protocols, approved tools, per-tool limits")
    rollout: InRegion | None = Field(None, description="This server's in-region strategy (default: the estate's)")
    candidate: Candidate | None = Field(None, description="The next image, on its way through rollout.waves")
    cache: Cache | None = Field(None, description="Use the region's cache (ElastiCache Serverless, Valkey)")
    async_work: AsyncWork | None = Field(None, alias="async", description="A queue and a worker per region")

    @field_validator("route_priority")
    @classmethod
    def _outside_guard(cls, value: int | None) -> int | None:
        if value is not None and value <= GUARD_PRIORITIES:
            raise ValueError(f"{value} is not above {GUARD_PRIORITIES}: ALB priorities 1-{GUARD_PRIORITIES} are "
                             "reserved for the residency guard (rules refusing strict groups' countries, "
                             f"evaluated before every route): use {GUARD_PRIORITIES + 1}-{MAX_ROUTE_PRIORITY}, "
                             "or leave it out to derive it from the name")
        return value

    @field_validator("tools_sha256")
    @classmethod
    def _tools_hash(cls, value: str | None) -> str | None:
        if value is not None and not _SHA256.match(value):
            raise ValueError(f"'{value}' is not a SHA-256 hex digest: use the 64 lowercase hex characters "
                             "the canary reports as the server's tools manifest hash")
        return value

    @field_validator("egress")
    @classmethod
    def _egress_together(cls, egress: list[Egress]) -> list[Egress]:
        # The pack refuses a security group whose ranges together hold more than a /8's worth of public
        # addresses (two /8s are a large part of the internet as surely as one /7): refuse it here first.
        networks = ipaddress.collapse_addresses(ipaddress.ip_network(e.cidr) for e in egress)
        if sum(n.num_addresses for n in networks) > 2 ** 24:
            raise ValueError(f"{', '.join(e.cidr for e in egress)} together hold more addresses than a /8, a large "
                             "part of the internet: declare each destination's own, narrower range")
        return egress

    @field_validator("environment")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
                raise ValueError(f"'{key}' is not a valid environment variable name")
            if key in RESERVED_ENV:
                raise ValueError(f"'{key}' is set by the estate ({', '.join(sorted(RESERVED_ENV))}); remove it")
            if key.startswith(BACKEND_ENV_PREFIX):
                raise ValueError(f"'{key}': {BACKEND_ENV_PREFIX}* names are set by the estate from `backends` "
                                 "(BACKEND_<NAME>_URL); rename it")
            if secret_like_name(key):   # the pack's rule: OAUTH_TOKEN_URL is where a token is fetched
                raise ValueError(f"'{key}' looks like a secret: declare it in `secrets` (injected from "
                                 "Secrets Manager), never as a plain value")
        return env

    @cached_property
    def repository(self) -> str:
        """The ECR repository name of the image, e.g. `mcp/booking`."""
        return DIGEST_IMAGE.match(self.image)["repository"].split("/", 1)[1]

    @cached_property
    def registry_host(self) -> str:
        return DIGEST_IMAGE.match(self.image)["repository"].split("/", 1)[0]

    @cached_property
    def digest(self) -> str:
        return self.image.rsplit("@", 1)[1]

    @property
    def priority(self) -> int:
        """Stable ALB rule priority: explicit, or derived from the name (never from list order)."""
        if self.route_priority is not None:
            return self.route_priority
        digest = int(hashlib.sha256(self.name.encode()).hexdigest()[:8], 16)
        derived = 1 + digest % 49999   # kept as it was where it misses the guard band: no route moves
        if derived <= GUARD_PRIORITIES:
            derived = GUARD_PRIORITIES + 1 + digest % (MAX_ROUTE_PRIORITY - GUARD_PRIORITIES)
        return derived

    @property
    def mcp_path(self) -> str:
        return f"/{self.name}/mcp"

    def permission_count(self) -> int:
        return sum(len(p.actions) for p in self.permissions)


class SecretSpec(Strict):
    name: Name
    home_region: Region = Field(description="Region of the primary copy; replicas go where it is used")


class Registry(Strict):
    namespace: Name = Field("mcp", description="ECR repositories live under <namespace>/")


class Edge(Strict):
    health_server: Name = Field(description="Server whose health path tells Cloudflare a region is up")
    session_affinity_ttl: int = Field(1800, ge=30, le=3600)
    rate_limit_per_minute: int = Field(600, ge=10, description="Per client IP, on the MCP paths")
    origin_rate_limit_per_5_minutes: int = Field(3000, ge=100, description="AWS WAF, per client IP")
    advanced_rate_limiting: bool = Field(False, description="The zone has Cloudflare's Advanced Rate Limiting "
                                                            "(Enterprise add-on): per-token and per-tool counters")
    zone: Literal["estate", "caller"] = Field(
        "estate", description="Who configures the zone itself: its phase entry-point rulesets (custom and managed "
                              "WAF, rate limits, cache and header rules) and its TLS and geolocation settings, "
                              "which are zone-wide, one owner each. `caller`: the estate builds none of them and "
                              "exports them (stack output `delegated_edge`) for the zone owner's program to add "
                              "(README: Bring your own zone or load balancer)")
    load_balancer: Literal["estate", "caller"] = Field(
        "estate", description="Who owns the Cloudflare load balancer on the hostname. `caller`: the estate builds "
                              "the monitor and pools (its origins) but no load balancer, and exports the pool ids "
                              "and the steering and session affinity it would have used (`delegated_edge`)")


class Alerts(Strict):
    emails: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = Field(default_factory=list)


class Monitoring(Strict):
    """The canary and change detection (components/canary.py, components/change_detection.py)."""
    probe_every_minutes: int = Field(5, ge=1, le=60, description="How often the canary probes every server")
    failed_probes_to_alarm: int = Field(2, ge=1, le=10,
                                        description="Consecutive failed probes before the failure alarm fires "
                                                    "(and an ECS deployment in progress rolls back)")
    max_probe_latency_ms: int = Field(5000, ge=100, le=30000,
                                      description="A whole probe (initialize, tools/list) slower than this alarms")
    deployment_role_arn: str | None = Field(None, description="The role `pulumi up` runs as: its changes are "
                                                              "expected, change detection reports everyone else's")
    probe_credentials_secret: Name | None = Field(
        None, description="Estate secret with the canary's OAuth client credentials ({token_url, client_id, "
                          "client_secret, scope}): with `auth` on, the canary probes with a token per server")
    probe_token_cidrs: list[str] = Field(
        default_factory=list, description="Where the canary reaches the IdP's token endpoint (HTTPS egress)")

    @field_validator("probe_token_cidrs")
    @classmethod
    def _token_cidrs(cls, cidrs: list[str]) -> list[str]:
        for cidr in cidrs:   # the same rules as a server's egress
            try:
                Egress(cidr=cidr, description="token endpoint")
            except ValidationError as error:
                raise ValueError(error.errors()[0]["msg"].removeprefix("Value error, ")) from None
        return cidrs

    @field_validator("deployment_role_arn")
    @classmethod
    def _role_arn(cls, value: str | None) -> str | None:
        if value is not None and not _ROLE_ARN.match(value):
            raise ValueError(f"'{value}' is not an IAM role ARN such as arn:aws:iam::111122223333:role/deploy "
                             "(the role itself, not an assumed-role session ARN)")
        return value


class EstateSpec(Strict):
    environment: Literal["dev", "staging", "prod"]
    owner: Name
    aws_account_id: str = Field(pattern=r"^\d{12}$", description="The only account stacks may touch")
    primary_region: Region = Field(description="Home of the image registry and global resources")
    domain: Domain
    residency_groups: list[ResidencyGroup] = Field(min_length=1)
    servers: list[Server] = Field(min_length=1)
    secrets: list[SecretSpec] = Field(default_factory=list, description="Home region per secret")
    registry: Registry = Field(default_factory=Registry)
    edge: Edge
    alerts: Alerts = Field(default_factory=Alerts)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    auth: Auth | None = Field(None, description="Who may call the servers (README: Who may call what); "
                                                "required: dev may opt out with `disabled: true`")
    rollout: Rollout = Field(default_factory=Rollout, description="In-region strategy and cross-region waves")
    aws_quotas: AwsQuotas = Field(default_factory=AwsQuotas,
                                  description="Adjustable AWS quotas this account has raised "
                                              "(README: Quick start, the plan's checks)")
    log_retention_days: Literal[7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                                2192, 2557, 2922, 3288, 3653] = 90
    deletion_protection: bool | None = Field(None, description="Default: on in prod only")
    deploy_stage: Literal["foundation", "full"] = Field(
        "full", description="`foundation` builds only what must exist before images and secret values can "
                            "be pushed (keys, registry, secrets, their providers); `full` builds the estate")
    layout: Literal["one-stack", "stack-per-region"] = Field(
        "one-stack", description="`stack-per-region`: this stack builds the estate-wide parts; each region is "
                                 "the stack `<stack>.<region>` and the edge and dashboards the stack "
                                 "`<stack>.edge`, wired through StackReference (README: One stack per region)")

    # -- derived views, keyed by stable names ------------------------------------------------

    @property
    def protect_data(self) -> bool:
        return self.environment == "prod" if self.deletion_protection is None else self.deletion_protection

    @cached_property
    def regions(self) -> dict[str, RegionSpec]:
        return {r.name: r for g in self.residency_groups for r in g.regions}

    @cached_property
    def group_of(self) -> dict[str, ResidencyGroup]:
        return {r.name: g for g in self.residency_groups for r in g.regions}

    def server_regions(self, server: Server) -> list[str]:
        """Every region: one hostname routes every server's path to whichever region is nearest
        and healthy, so a server missing from a region would answer 404 there."""
        return sorted(self.regions)

    def servers_in(self, region: str) -> list[Server]:
        return sorted((s for s in self.servers if region in self.server_regions(s)), key=lambda s: s.name)

    @cached_property
    def waves(self) -> list[list[str]]:
        """`rollout.waves`, or one wave of every region when none are declared."""
        return [sorted(w) for w in self.rollout.waves] if self.rollout.waves else [sorted(self.regions)]

    def candidate_regions(self, server: Server) -> list[str]:
        """The regions of the waves the server's candidate has reached (none without a candidate)."""
        reached = self.waves[:server.candidate.waves_reached] if server.candidate else []
        return sorted(region for wave in reached for region in wave)

    def image_for(self, server: Server, region: str) -> str:
        """The image `region` runs: the candidate where its waves reached, else the released image,
        as the regional replica of the estate's registry (tasks pull from their own region)."""
        source = server.candidate.image if region in self.candidate_regions(server) else server.image
        repository = DIGEST_IMAGE.match(source)["repository"].split("/", 1)[1]
        digest = source.rsplit("@", 1)[1]
        return f"{self.aws_account_id}.dkr.ecr.{region}.amazonaws.com/{repository}@{digest}"

    def secret_names(self) -> list[str]:
        probe = {self.monitoring.probe_credentials_secret} - {None}
        return sorted({name for s in self.servers for name in s.secrets} | probe)

    def secret_home(self, name: str) -> str:
        homes = {s.name: s.home_region for s in self.secrets}
        return homes.get(name, self.primary_region)

    def secret_regions(self, name: str) -> list[str]:
        """Every region running a server that uses the secret (the canary's credentials: every region)."""
        if name == self.monitoring.probe_credentials_secret:
            return sorted(self.regions)
        return sorted({r for s in self.servers if name in s.secrets for r in self.server_regions(s)})
