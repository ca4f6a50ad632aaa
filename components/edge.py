"""The Cloudflare edge: one hostname, geo-routed to every region's ALB, behind WAF and rate limits.

Creates (Cloudflare, the default provider; nothing in AWS):
- one `LoadBalancerMonitor` that probes the health path of each region's ALB over HTTPS;
- one `LoadBalancerPool` per region whose single origin is the region's ALB, reached with the
  public hostname as Host header (and so SNI), which matches the ALB's certificate under SSL strict;
- per strict residency group, one last-resort `LoadBalancerPool` without a monitor whose origins
  are the group's ALBs;
- one proxied `LoadBalancer` on the hostname: geo steering, session affinity on the
  `Mcp-Session-Id` header, and residency routing (README, first section): a strict group's countries
  are routed only to its own pools; so are the Cloudflare regions its AWS regions lie in (geo
  steering places a proxied request by its serving data center, whose country may be no group's:
  `strict_cloudflare_regions`), each list ending with the group's last-resort pool; no other
  route reaches a strict pool; non-strict groups are the default route for every other visitor.
  What routing cannot catch (a strict visitor served from a data center in an open group's
  country) the ALBs refuse: their residency guard (components/region_compute.py) answers 403 to
  `CF-IPCountry` of a strict group they are not in;
- the zone's entrypoint `Ruleset`s: custom WAF (only the MCP, health and `/.well-known/` paths,
  only the MCP methods), per-client-IP rate limit on the MCP paths, and the managed rulesets
  the zone's plan includes (Cloudflare Managed and OWASP Core from Pro, else the Free Managed);
  with `auth` on, a response-header transform per server setting `WWW-Authenticate` on the 401s
  of its MCP path (components/token_validation.py; on every plan); and a cache rule that bypasses
  Cloudflare's cache on every MCP path (answers are per caller);
- the zone's `ZoneSetting`s: TLS (SSL strict, TLS 1.2 minimum, TLS 1.3, always HTTPS) and IP
  geolocation (the `CF-IPCountry` header the residency guard reads).

A zone hosts ONE estate: rulesets are zone phase entrypoints (Cloudflare allows one per zone and
phase; a second estate on the zone would replace this one's rules) and zone settings are
zone-wide. If the zone already has an entrypoint for one of these phases (made in the
dashboard, say), import it before the first `pulumi up`. A zone another program owns is left to it
(`builds_zone=False`, spec `edge.zone: caller`): no ruleset and no setting is built, and `delegated`
holds the rules by phase and the settings for the owner to add; likewise `builds_load_balancer=False`
(`edge.load_balancer: caller`) builds the monitor and pools but hands over the load balancer's arguments.

Strict residency without load-balancing rules: geo steering uses a country's pools in failover
order and sends the country to the load balancer's single fallback pool (outside every strict
group) only when all of them are unhealthy. Each strict country's list ends with its group's
last-resort pool, which has no monitor: Cloudflare ignores the health of such a pool when
steering, so the list never runs out and the fallback is never reached for the group's visitors.
Custom load-balancing rules are documented as not working with geo steering, so none are made.
What is built follows the zone's plan (`cloudflare_plan`, mcp_estate/contract/cloudflare_plan.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import pulumi
import pulumi_cloudflare as cloudflare

from mcp_estate.contract.cloudflare_plan import ALLOWANCES, MANAGED_RULESETS, PlanAllowance
from mcp_estate.contract.geography import AWS_REGIONS
from mcp_estate.contract.resource_server import ResourceServer
from mcp_estate.contract.spec import ResidencyGroup

from .naming import child_opts
from .token_validation import edge_challenge_rules

SESSION_HEADER = "Mcp-Session-Id"   # MCP Streamable HTTP's session header
ALLOWED_METHODS = ("GET", "POST", "DELETE", "OPTIONS")   # Streamable HTTP + CORS preflight
# ip_geolocation: Cloudflare adds CF-IPCountry (the visitor's country), which the ALBs' residency guard reads.
ZONE_SETTINGS = {"ssl": "strict", "min_tls_version": "1.2", "always_use_https": "on", "tls_1_3": "on",
                 "ip_geolocation": "on"}
EARTH_RADIUS_KM = 6371.0


@dataclass
class EdgeRegion:
    name: str                          # AWS region
    group: str                         # its residency group
    alb_dns_name: pulumi.Input[str]    # the region's public ALB


@dataclass
class EdgeArgs:
    hostname: str
    zone_id: str
    account_id: str                    # Cloudflare account owning the monitor and pools
    cloudflare_plan: str               # the zone's plan: what the rulesets may use
    name_prefix: str                   # physical names of pools, unique per stack
    health_path: str                   # e.g. /booking/healthz
    fallback_region: str               # in a non-strict group (the caller guarantees it)
    session_affinity_ttl: int          # seconds, 30-3600 for header affinity
    rate_limit_per_minute: int         # per client IP, on the MCP paths
    mcp_paths: list[str]               # e.g. ["/booking/mcp"]
    regions: list[EdgeRegion]
    groups: list[ResidencyGroup]
    # Servers whose 401s name their token metadata (the ALB's own rejections carry no challenge).
    token_challenges: list[ResourceServer] = field(default_factory=list)
    # Each server's MCP surface (mcp_estate/contract/surface_rules.py), after the estate-wide rules.
    surface_rules: list[dict] = field(default_factory=list)
    surface_ratelimits: list[dict] = field(default_factory=list)
    # Spec `edge.zone` and `edge.load_balancer`: what the caller owns is not built here but handed over
    # as data (`Edge.delegated`), for the caller's program to add to its own rulesets, settings and balancer.
    builds_zone: bool = True
    builds_load_balancer: bool = True


@dataclass(frozen=True)
class Routing:
    """Where each kind of visitor goes, as AWS region names in failover order (plain data)."""

    default: list[str]
    fallback: str
    regions: dict[str, list[str]]      # Cloudflare geo region -> AWS regions
    countries: dict[str, list[str]]    # ISO country -> AWS regions
    strict: dict[str, list[str]]       # strict group -> its own regions, primary first
    last_resort: dict[str, str]        # strict country -> its group (whose last-resort pool ends its list)
    region_last_resort: dict[str, str] = field(default_factory=dict)   # Cloudflare region -> strict group


def plan_routing(members: dict[str, list[str]], groups: Iterable[ResidencyGroup], fallback: str) -> Routing:
    """Route every visitor; no route but a strict group's own countries reaches a strict region.

    Orders are derived from names and geography only, never from a list's order in the stack file.
    """
    groups = sorted(groups, key=lambda g: g.name)
    open_regions = sorted(r for g in groups if not g.strict for r in members[g.name])
    own = {g.name: _primary_first(g.primary_region, members[g.name]) for g in groups}
    countries: dict[str, list[str]] = {}
    for group in groups:
        others = [] if group.strict else _nearest_first(own[group.name], set(open_regions) - set(own[group.name]))
        countries.update({country: own[group.name] + others for country in sorted(group.countries)})
    regions = {code: _local_then_nearest(code, open_regions)
               for code in sorted({AWS_REGIONS[r].cloudflare_region for r in open_regions})}
    claimed = strict_cloudflare_regions(groups, members)
    regions.update({code: own[group] for code, group in claimed.items()})
    return Routing(
        default=_primary_first(fallback, open_regions),
        fallback=fallback,
        regions=dict(sorted(regions.items())),
        countries=dict(sorted(countries.items())),
        strict={g.name: own[g.name] for g in groups if g.strict},
        last_resort={country: g.name for g in groups if g.strict for country in sorted(g.countries)},
        region_last_resort=claimed)


def strict_cloudflare_regions(groups: Iterable[ResidencyGroup], members: dict[str, list[str]]) -> dict[str, str]:
    """Cloudflare geo region -> the strict group whose regions lie in it, which takes its visitors.

    A proxied request is steered by the Cloudflare data center serving it, not by the visitor's
    country, and a data center in a country no group lists (LHR for an Irish visitor) falls to the
    region pools. The strict group takes its Cloudflare regions even where an open group also runs
    (eu-west-2 beside a strict eu-west-1): a strict visitor steered to the open group would be
    refused by its ALB's residency guard, while an open visitor served by the strict group loses
    nothing (residency limits where the strict group's visitors go, not whom it serves); an open
    group keeps its own countries through countryPools, which geo steering reads first. Two strict
    groups in one Cloudflare region are refused by the spec; were they built anyway, the first by
    name would take it and its ALBs would refuse the other's visitors (the guard): closed, not leaked.
    """
    claimed: dict[str, str] = {}
    for group in sorted((g for g in groups if g.strict), key=lambda g: g.name):
        for region in members[group.name]:
            claimed.setdefault(AWS_REGIONS[region].cloudflare_region, group.name)
    return dict(sorted(claimed.items()))


def _primary_first(primary: str, regions: Iterable[str]) -> list[str]:
    return sorted(regions, key=lambda r: (r != primary, r))


def _local_then_nearest(code: str, regions: list[str]) -> list[str]:
    local = [r for r in regions if AWS_REGIONS[r].cloudflare_region == code]
    return local + _nearest_first(local, set(regions) - set(local))


def _nearest_first(origins: list[str], candidates: Iterable[str]) -> list[str]:
    """Candidates by great-circle distance to the closest origin, then by name."""
    return sorted(candidates, key=lambda c: (min(_distance_km(o, c) for o in origins), c))


def _distance_km(a: str, b: str) -> float:
    lat1, lon1 = math.radians(AWS_REGIONS[a].latitude), math.radians(AWS_REGIONS[a].longitude)
    lat2, lon2 = math.radians(AWS_REGIONS[b].latitude), math.radians(AWS_REGIONS[b].longitude)
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


# -- expressions (Cloudflare Rules language) ---------------------------------------------------

def _set(values: Iterable[str]) -> str:
    return "{" + " ".join(f'"{v}"' for v in values) + "}"


def _path_in(exact: list[str], prefixes: list[str]) -> str:
    below = [f'starts_with(http.request.uri.path, "{p}")' for p in prefixes]
    return "(" + " or ".join([f"http.request.uri.path in {_set(exact)}", *below]) + ")"


def _mcp_paths(paths: list[str]) -> str:
    """A path that is an MCP endpoint, or below one."""
    return _path_in(sorted(paths), [f"{p}/" for p in sorted(paths)])


def _host(args: EdgeArgs) -> str:
    return f'http.host eq "{args.hostname}"'


def _origin(args: EdgeArgs, region: EdgeRegion) -> dict:
    # The public hostname as Host (and SNI) so the ALB's certificate matches under SSL strict.
    return {"name": region.name, "address": region.alb_dns_name, "enabled": True, "weight": 1,
            "header": {"hosts": [args.hostname]}}


def _firewall_rules(args: EdgeArgs) -> list[dict]:
    allowed = _path_in(sorted([*args.mcp_paths, args.health_path]),
                       [*(f"{p}/" for p in sorted(args.mcp_paths)), "/.well-known/"])
    return [
        {"ref": "mcp_paths_only", "action": "block", "enabled": True,
         "description": "Only the MCP endpoints, the health path and /.well-known/ on the MCP host",
         "expression": f"({_host(args)} and not {allowed})"},
        {"ref": "mcp_methods_only", "action": "block", "enabled": True,
         "description": "MCP Streamable HTTP uses GET, POST and DELETE (OPTIONS for CORS preflight)",
         "expression": f"({_host(args)} and not http.request.method in {_set(ALLOWED_METHODS)})"}]


def _ratelimit_rules(args: EdgeArgs, plan: PlanAllowance) -> list[dict]:
    # Free counts over 10 s only and allows only the path in the expression: the rule then covers
    # the MCP paths on every hostname of the zone, which only this estate serves.
    where = f"({_host(args)} and {_mcp_paths(args.mcp_paths)})" if plan.ratelimit_host_field \
        else _mcp_paths(args.mcp_paths)
    period = plan.ratelimit_period
    requests = args.rate_limit_per_minute * period // 60   # whole: the spec checks it
    return [{"ref": "mcp_per_client_ip", "action": "block", "enabled": True,
             "description": f"At most {requests} MCP requests per {period} s per client IP",
             "expression": where,
             # cf.colo.id is required by the API: counters are kept per Cloudflare data center.
             "ratelimit": {"characteristics": ["cf.colo.id", "ip.src"], "period": period,
                           "requests_per_period": requests, "mitigation_timeout": plan.mitigation_timeout}}]


def _cache_rules(args: EdgeArgs) -> list[dict]:
    # Every plan has cache rules. An MCP answer is one traveller's: never stored at the edge, whatever
    # headers a server sends (the server's own cache keys by traveller: README, Fast answers, later answers).
    return [{"ref": "mcp_never_cached", "action": "set_cache_settings", "enabled": True,
             "description": "MCP responses are per caller: bypass Cloudflare's cache",
             "expression": f"({_host(args)} and {_mcp_paths(args.mcp_paths)})",
             "action_parameters": {"cache": False}}]


def _managed_rules(plan: PlanAllowance) -> list[dict]:
    # Zone-wide ("true"): this entrypoint replaces the zone's whole managed phase, so scoping
    # it to the MCP host would strip the managed WAF from the zone's other hostnames.
    return [{"ref": ref, "action": "execute", "enabled": True, "expression": "true",
             "description": f"Execute Cloudflare's {ref.replace('_', ' ')} ruleset",
             "action_parameters": {"id": MANAGED_RULESETS[ref]}} for ref in plan.managed_rulesets]


def zone_rules(args: EdgeArgs, plan: PlanAllowance) -> dict[str, tuple[str, list[dict]]]:
    """Role -> (phase, rules) of the zone's entry points, as plain data (the `Ruleset`s' `rules`)."""
    rules = {"firewall": ("http_request_firewall_custom", _firewall_rules(args) + args.surface_rules),
             "ratelimit": ("http_ratelimit", _ratelimit_rules(args, plan) + args.surface_ratelimits),
             "managed": ("http_request_firewall_managed", _managed_rules(plan)),
             "cache": ("http_request_cache_settings", _cache_rules(args))}
    if args.token_challenges:
        rules["challenge"] = ("http_response_headers_transform",
                              edge_challenge_rules(args.hostname, args.token_challenges))
    return rules


class Edge(pulumi.ComponentResource):
    def __init__(self, name: str, args: EdgeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:edge:Edge", name, None, opts)
        members = {g.name: sorted(r.name for r in args.regions if r.group == g.name) for g in args.groups}
        routing = plan_routing(members, args.groups, args.fallback_region)
        plan = ALLOWANCES[args.cloudflare_plan]

        self.monitor = self._monitor(name, args)
        self.pools = {r.name: self._pool(name, args, r) for r in sorted(args.regions, key=lambda r: r.name)}
        self.pool_ids: dict[str, pulumi.Output[str]] = {region: p.id for region, p in self.pools.items()}
        self.last_resort_pools = {group: self._last_resort_pool(name, args, group, regions)
                                  for group, regions in routing.strict.items()}
        balancer = self._load_balancer_settings(args, routing)
        if args.builds_load_balancer:
            self.load_balancer = cloudflare.LoadBalancer(f"{name}-lb", **balancer, opts=child_opts(self))
            self.load_balancer_id: pulumi.Output[str] = self.load_balancer.id

        rules = zone_rules(args, plan)
        if args.builds_zone:
            self.rulesets = {role: self._ruleset(name, role, args, phase, role_rules)
                             for role, (phase, role_rules) in rules.items()}
            self.zone_settings = {
                setting: cloudflare.ZoneSetting(f"{name}-{setting}", zone_id=args.zone_id, setting_id=setting,
                                                value=value, opts=child_opts(self))
                for setting, value in ZONE_SETTINGS.items()}

        self.delegated = self._delegated(args, rules, balancer)
        outputs = {"load_balancer_id": self.load_balancer_id} if args.builds_load_balancer else {}
        outputs |= {"pool_ids": self.pool_ids, "monitor_id": self.monitor.id}
        if self.delegated:
            outputs["delegated"] = self.delegated
        self.register_outputs(outputs)

    def _delegated(self, args: EdgeArgs, rules: dict[str, tuple[str, list[dict]]],
                   balancer: dict) -> dict[str, object]:
        """What the caller builds instead of the estate, as the estate would have built it: the zone's
        rules by phase and its settings; the pool ids and the load balancer's arguments (ids as outputs)."""
        delegated: dict[str, object] = {}
        if not args.builds_zone:
            delegated["zone_rules"] = {phase: role_rules for phase, role_rules in rules.values()}
            delegated["zone_settings"] = dict(ZONE_SETTINGS)
        if not args.builds_load_balancer:
            delegated["pool_ids"] = self.pool_ids
            delegated["last_resort_pool_ids"] = {group: pool.id for group, pool in self.last_resort_pools.items()}
            delegated["load_balancer"] = balancer
        return delegated

    def _monitor(self, name: str, args: EdgeArgs) -> cloudflare.LoadBalancerMonitor:
        return cloudflare.LoadBalancerMonitor(
            f"{name}-monitor", account_id=args.account_id, type="https", method="GET",
            path=args.health_path, expected_codes="200", header={"Host": [args.hostname]},
            interval=60, timeout=5, retries=2, consecutive_up=2, consecutive_down=2,
            follow_redirects=False, allow_insecure=False,   # the ALB's certificate must verify
            description=f"{args.name_prefix}: {args.health_path} on each region's ALB",
            opts=child_opts(self))

    def _pool(self, name: str, args: EdgeArgs, region: EdgeRegion) -> cloudflare.LoadBalancerPool:
        geo = AWS_REGIONS[region.name]
        return cloudflare.LoadBalancerPool(
            f"{name}-pool-{region.name}", account_id=args.account_id, name=f"{args.name_prefix}-{region.name}",
            description=f"{region.name} ALB ({region.group} residency group)",
            origins=[_origin(args, region)], monitor=self.monitor.id, check_regions=[geo.cloudflare_region],
            minimum_origins=1, latitude=geo.latitude, longitude=geo.longitude, opts=child_opts(self))

    def _last_resort_pool(self, name: str, args: EdgeArgs, group: str,
                          regions: list[str]) -> cloudflare.LoadBalancerPool:
        """No monitor, on purpose: Cloudflare ignores the health of such a pool when steering, so a
        strict country whose list ends with it never falls through to the (foreign) fallback pool."""
        by_name = {r.name: r for r in args.regions}
        return cloudflare.LoadBalancerPool(
            f"{name}-last-resort-{group}", account_id=args.account_id,
            name=f"{args.name_prefix}-{group}-last-resort",
            description=f"Last resort of strict group {group}: unmonitored, so its visitors never leave it",
            origins=[_origin(args, by_name[region]) for region in regions], minimum_origins=1,
            opts=child_opts(self))

    def _load_balancer_settings(self, args: EdgeArgs, routing: Routing) -> dict[str, object]:
        """The load balancer's arguments (pool ids as outputs): built here, or handed to the caller."""
        def ids(regions: list[str]) -> list[pulumi.Output[str]]:
            return [self.pool_ids[r] for r in regions]

        return dict(
            zone_id=args.zone_id, name=args.hostname, proxied=True,
            description=f"{args.name_prefix}: MCP servers by residency group and geography",
            steering_policy="geo",
            default_pools=ids(routing.default), fallback_pool=self.pool_ids[routing.fallback],
            region_pools={code: [*ids(regions), *self._region_last_resort(code, routing)]
                          for code, regions in routing.regions.items()},
            country_pools={country: [*ids(regions), *self._last_resort_of(country, routing)]
                           for country, regions in routing.countries.items()},
            session_affinity="header", session_affinity_ttl=args.session_affinity_ttl,
            session_affinity_attributes={
                "headers": [SESSION_HEADER], "require_all_headers": True, "drain_duration": 60,
                # "sticky" is documented as unsupported with header affinity; "temporary" retries
                # another healthy pool and returns to the pinned one when it recovers.
                "zero_downtime_failover": "temporary"},
            # Zero-downtime failover across pools follows "the failover order of traffic steering";
            # whether that order can end at the fallback pool is undocumented: with a strict group,
            # retry within a pool only, so a strict country's request never leaves its list.
            adaptive_routing={"failover_across_pools": not routing.last_resort})

    def _region_last_resort(self, code: str, routing: Routing) -> list[pulumi.Output[str]]:
        group = routing.region_last_resort.get(code)
        return [self.last_resort_pools[group].id] if group else []

    def _last_resort_of(self, country: str, routing: Routing) -> list[pulumi.Output[str]]:
        group = routing.last_resort.get(country)
        return [self.last_resort_pools[group].id] if group else []

    def _ruleset(self, name: str, role: str, args: EdgeArgs, phase: str, rules: list[dict]) -> cloudflare.Ruleset:
        return cloudflare.Ruleset(
            f"{name}-{role}", zone_id=args.zone_id, kind="zone", phase=phase,
            name=f"{args.name_prefix} {role}", description=f"MCP estate {args.name_prefix}: {phase}",
            rules=rules, opts=child_opts(self))
