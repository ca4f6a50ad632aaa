"""The estate's shape: every serving region is reachable, protected and holds its group's state;
a strict residency group's visitors and state stay in its regions; and the loss of any one region
leaves its group enough capacity for its declared peak.

Stack policies see every resource's outputs and find the estate's parts by the contract tags
(components/naming.py, components/estate.py):
- a region serves when an ECS service is tagged `mcp-estate:region`; its residency group is the
  service's `mcp-estate:residency-group`; a group's regions are the `mcp-estate:region` tags of the
  resources tagged with the group;
- the residency policy learns each group's strictness, regions and countries from its pack config
  (`residencyGroups`, generated from the spec by `estate pack-config`: a pull request cannot relax
  it by rewriting a tag); the tags (`mcp-estate:residency: strict`, a state table's
  `mcp-estate:countries`) are only a cross-check, and are read alone, with a violation saying so,
  when no pack config is given;
- an ALB is in the region of its ARN (its `mcp-estate:region` tag only while the ARN is unknown);
- a Cloudflare pool leads to the regions whose ALB DNS name is one of its origins' addresses; an
  origin that is no ALB of the estate leads outside every group; only a pool without origins
  leads to the region its name ends with; a pool is a last resort when it has no monitor (so
  Cloudflare ignores its health and always uses it), is enabled and has an enabled origin;
- a table's copies are its own region, its `replicas` and the `aws.dynamodb.TableReplica`s whose
  global_table_arn is its arn;
- a scaling target's declared peak (tasks its group needs at its peak) is `mcp-estate:peak-tasks`.

ALB DNS names and pool ids are outputs: on the first preview of a new region they are unknown and
the routing and residency policies report that they cannot run; they run at `pulumi up` and on
`estate check` over an export.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Iterable

from pulumi_policy import PolicyResource, Severity, StackValidationArgs

from .control import Report, Risk, as_list, as_mapping, lookup, stack_policy, tag
from .edge_delegation import DELEGATION_CONFIG, LOAD_BALANCER, delegated

SERVICE = "aws:ecs/service:Service"
LOAD_BALANCERS = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
WEB_ACL_ASSOCIATION = "aws:wafv2/webAclAssociation:WebAclAssociation"
TABLE = "aws:dynamodb/table:Table"
TABLE_REPLICA = "aws:dynamodb/tableReplica:TableReplica"
GLOBAL_TABLE = "aws:dynamodb/globalTable:GlobalTable"
SECRET = "aws:secretsmanager/secret:Secret"
REPLICA_KEYS = ("aws:kms/replicaKey:ReplicaKey", "aws:kms/replicaExternalKey:ReplicaExternalKey")
SCALING_TARGET = "aws:appautoscaling/target:Target"
CF_POOL = "cloudflare:index/loadBalancerPool:LoadBalancerPool"
CF_LOAD_BALANCER = "cloudflare:index/loadBalancer:LoadBalancer"
LISTENERS = ("aws:lb/listener:Listener", "aws:alb/listener:Listener")
LISTENER_RULES = ("aws:lb/listenerRule:ListenerRule", "aws:alb/listenerRule:ListenerRule")
COUNTRY_HEADER = "cf-ipcountry"   # Cloudflare's visitor country; ALB compares header names case-insensitively
POOL_MAPS = ("regionPools", "countryPools", "popPools")
# What a rule's overrides may change about where visitors go.
ROUTING_OVERRIDES = ("defaultPools", "fallbackPool", *POOL_MAPS, "steeringPolicy")

# The fields Cloudflare documents for load-balancing rule conditions (load-balancing-rules/reference).
LB_RULE_FIELDS = frozenset({
    "cf.load_balancer.name", "cf.load_balancer.region", "ip.src",
    "http.cookie", "http.host", "http.referer", "http.request.headers", "http.request.method",
    "http.request.timestamp.sec", "http.request.uri", "http.request.uri.args", "http.request.uri.args.names",
    "http.request.uri.args.values", "http.request.uri.path", "http.request.uri.query", "http.request.version",
    "dns.qry.name", "dns.qry.name.len", "dns.qry.qu", "dns.qry.type", "dns.rr.opt.client",
    "dns.rr.opt.client.addr"})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|r#*"[^"]*"#*')
_FIELD = re.compile(r"(?<![\w$.])[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+")


# -- the estate as its outputs show it ------------------------------------------------------------

class Topology:
    """The estate's regions, groups, ALBs and pools, read from the resources' tags and outputs."""

    def __init__(self, resources: Iterable[PolicyResource], groups: Mapping | None = None):
        """`groups`: the pack config's `residencyGroups`; without it, the groups the tags show."""
        self.resources = list(resources)
        self.tagged_regions: dict[str, set[str]] = defaultdict(set)
        self.tagged_strict: set[str] = set()
        self.tagged_residency: dict[str, set[str]] = defaultdict(set)   # group -> "strict" / "open" seen
        self.albs: dict[str, list[PolicyResource]] = defaultdict(list)
        for resource in self.resources:
            group, region = tag(resource.props, "residency-group"), tag(resource.props, "region")
            if group and region:
                self.tagged_regions[group].add(region)
            if group and tag(resource.props, "residency"):
                self.tagged_residency[group].add(str(tag(resource.props, "residency")))
            if group and tag(resource.props, "residency") == "strict":
                self.tagged_strict.add(group)
            if resource.resource_type in LOAD_BALANCERS and (home := _own_region(resource.props) or region):
                self.albs[home].append(resource)
        self.configured = bool(groups)
        if groups:
            self.group_regions = defaultdict(set, {g: set(as_list(c.get("regions"))) for g, c in groups.items()})
            self.strict = {g for g, c in groups.items() if c.get("strict") is True}
            self.countries = {g: set(as_list(c.get("countries"))) for g, c in groups.items()}
            self.cloudflare_regions = {g: set(as_list(c.get("cloudflareRegions"))) for g, c in groups.items()}
        else:
            self.group_regions, self.strict = self.tagged_regions, self.tagged_strict
            self.countries, self.cloudflare_regions = {}, {}
        known = set().union(*self.group_regions.values(), self.albs)
        dns = {alb.props.get("dnsName"): region for region, albs in self.albs.items() for alb in albs
               if isinstance(alb.props.get("dnsName"), str)}
        pools = self.of_type(CF_POOL)
        self.pool_regions = {p.props.get("id"): _pool_regions(p.props, dns, known) for p in pools}
        self.pools = {p.props.get("id"): p.props for p in pools}
        self.pool_names = {p.props.get("id"): p.props.get("name") or p.name for p in pools}
        self.replica_regions: dict[str, set[str]] = defaultdict(set)
        for replica in self.of_type(TABLE_REPLICA):
            if region := arn_region(replica.props.get("arn")):
                self.replica_regions[replica.props.get("globalTableArn")].add(region)

    def of_type(self, *types: str) -> list[PolicyResource]:
        return [r for r in self.resources if r.resource_type in types]

    def tables(self, group: str) -> list[PolicyResource]:
        return [t for t in self.of_type(TABLE) if tag(t.props, "residency-group") == group]

    def table_regions(self, table: Mapping) -> set[str]:
        """Where a table has a copy: its own region (from its ARN), its replicas' regions and the
        regions of the TableReplica resources that copy it."""
        replicas = {r.get("regionName") for r in as_list(table.get("replicas")) if isinstance(r, Mapping)}
        copies = self.replica_regions.get(table.get("arn"), set()) if isinstance(table.get("arn"), str) else set()
        return {r for r in {arn_region(table.get("arn")), *replicas, *copies} if r}

    def pools_in(self, ids: Iterable[str], group: str) -> bool:
        """Every pool leads only to the group's regions (an unknown pool leads outside)."""
        return all(self.pool_regions.get(i) and self.pool_regions[i] <= self.group_regions[group] for i in ids)

    def reaching(self, ids: Iterable[str], group: str) -> list[str]:
        """The pools that lead into one of the group's regions."""
        return [i for i in ids if self.pool_regions.get(i, set()) & self.group_regions[group]]

    def last_resort(self, pool_id: str) -> bool:
        """A pool Cloudflare always counts usable: no monitor (its health is then ignored when
        steering), enabled, with an enabled origin. An unknown monitor counts as a monitor."""
        pool = self.pools.get(pool_id)
        if pool is None or pool.get("enabled") is False:
            return False
        if lookup(pool, "monitor") or lookup(pool, "monitorGroup"):
            return False
        origins = [o for o in as_list(pool.get("origins")) if isinstance(o, Mapping)]
        return any(o.get("enabled") is not False for o in origins)

    def describe(self, ids: Iterable[str]) -> str:
        """`mcp-prod-eu-west-1 (eu-west-1), partner (outside the estate)`."""
        def regions(i: str) -> str:
            return ", ".join(sorted(r or "outside the estate" for r in self.pool_regions.get(i) or {None}))
        return ", ".join(f"{self.pool_names.get(i, i)} ({regions(i)})" for i in dict.fromkeys(ids))


def _pool_regions(pool: Mapping, dns: dict[str, str], known: set[str]) -> set[str | None]:
    """The regions whose ALB is an origin of the pool (None for an origin that is no ALB of the
    estate: it leads outside every group). Disabled origins count: enabling one is a click away.
    Only a pool without origins is placed by its name."""
    origins = [o for o in as_list(pool.get("origins")) if isinstance(o, Mapping)]
    if origins:
        return {dns.get(o.get("address")) for o in origins}
    name = pool.get("name") or ""
    return {r for r in known if name.endswith(f"-{r}")} or {None}


def _own_region(props: Any) -> str | None:
    """The region in a resource's ARN; None while preview cannot know it."""
    arn = lookup(props, "arn")
    return arn_region(arn) if isinstance(arn, str) else None


def arn_region(arn: Any) -> str | None:
    return arn.split(":")[3] or None if isinstance(arn, str) and arn.count(":") >= 5 else None


def pools_of(routing: Any) -> list[str]:
    """Every pool id a load balancer (or a rule's overrides) routes to, in any of its maps."""
    if not isinstance(routing, Mapping):
        return []
    ids = [*as_list(routing.get("defaultPools")), *as_list(routing.get("fallbackPool"))]
    for key in POOL_MAPS:
        pools = routing.get(key)
        ids += [i for entry in (pools.values() if isinstance(pools, Mapping) else []) for i in as_list(entry)]
    return ids


def enabled_rules(lb: Mapping) -> list[Mapping]:
    """The enabled rules in the order Cloudflare evaluates them: by priority, lowest first."""
    rules = [r for r in as_list(lb.get("rules")) if isinstance(r, Mapping) and r.get("disabled") is not True]
    return sorted(rules, key=lambda r: r.get("priority") if isinstance(r.get("priority"), (int, float)) else 0)


def condition_fields(condition: Any) -> set[str]:
    """The Rules-language fields a condition reads (string literals and `$lists` left out)."""
    return set(_FIELD.findall(_STRING.sub('""', condition))) if isinstance(condition, str) else set()


# -- every serving region is routed, protected and replicated -------------------------------------

@stack_policy(
    "every-serving-region-is-routed-protected-and-replicated",
    "Every region running MCP servers has an internet-facing ALB with a WAF, a Cloudflare pool in use "
    "whose origin is that ALB, and a copy of its residency group's state table. Reads outputs (ALB DNS names, "
    "pool ids): on a new region's first preview it cannot run, so `estate check` in every pull request is "
    "the gate",
    risks=[Risk.AVAILABILITY, Risk.PROMPT_INJECTION, Risk.DATA_LOSS], severity=Severity.HIGH,
    remediation="Give the region a RegionCompute front (ALB + WAF), a pool in the Edge whose origin is the ALB's "
                "DNS name, and a replica of the group's table in the region (StateStore regions).",
    config=DELEGATION_CONFIG)
def every_serving_region_is_routed_protected_and_replicated(args: StackValidationArgs, report: Report) -> None:
    estate = Topology(args.resources)
    # A load balancer the spec delegates (pack config `delegatedEdge`) routes from the caller's stack: when
    # this stack holds none, its pools are judged but not their use (edge-controls-judged-in-this-stack says so).
    routed_elsewhere = LOAD_BALANCER in delegated(args.get_config()) and not estate.of_type(CF_LOAD_BALANCER)
    serving: dict[str, list[PolicyResource]] = defaultdict(list)
    for service in estate.of_type(SERVICE):
        if tag(service.props, "region"):
            serving[tag(service.props, "region")].append(service)
    for region, services in sorted(serving.items()):
        servers = ", ".join(sorted({tag(s.props, "server") or s.name for s in services}))
        where = f"Region {region} (running {servers})"
        _front_problems(estate, region, where, services[0].urn, report, routed_elsewhere)
        for group in sorted({tag(s.props, "residency-group") or "" for s in services}):
            _state_problem(estate, group, region, where, services[0].urn, report)


def _front_problems(estate: Topology, region: str, where: str, urn: str, report: Report,
                    routed_elsewhere: bool) -> None:
    albs = [a for a in estate.albs.get(region, []) if a.props.get("internal") is not True
            and a.props.get("loadBalancerType") in (None, "application")]
    if not albs:
        report(f"{where} has no internet-facing ALB tagged mcp-estate:region={region}: Cloudflare cannot "
               "reach its servers", urn)
        return
    protected = {a.props.get("resourceArn") for a in estate.of_type(WEB_ACL_ASSOCIATION)}
    for alb in albs:
        if alb.props.get("arn") not in protected:
            report(f"{where} is served by ALB {alb.name} without a WAF: associate a web ACL with it "
                   "(aws.wafv2.WebAclAssociation, resource_arn=the ALB's arn)", alb.urn)
    addresses = {a.props.get("dnsName") for a in albs if isinstance(a.props.get("dnsName"), str)}
    pools = [p for p in estate.of_type(CF_POOL) if p.props.get("enabled") is not False and any(
        isinstance(o, Mapping) and o.get("address") in addresses and o.get("enabled") is not False
        for o in as_list(p.props.get("origins")))]
    if not pools:
        report(f"{where} has no enabled Cloudflare pool whose origin is its ALB ({', '.join(sorted(addresses))}): "
               "add one to the Edge", urn)
        return
    if routed_elsewhere:
        return
    routed = {i for lb in estate.of_type(CF_LOAD_BALANCER) for i in
              pools_of(lb.props) + [i for rule in enabled_rules(lb.props) for i in pools_of(rule.get("overrides"))]}
    if not any(p.props.get("id") in routed for p in pools):
        report(f"{where}: no Cloudflare load balancer routes to its pool {', '.join(p.name for p in pools)}: "
               "add it to the load balancer's pools", pools[0].urn)


def _state_problem(estate: Topology, group: str, region: str, where: str, urn: str, report: Report) -> None:
    if not group:
        report(f"{where}: a service carries no mcp-estate:residency-group tag, so nothing shows its sessions "
               "have a state table in the region", urn)
        return
    tables = estate.tables(group)
    if not tables:
        report(f"{where}: residency group {group} has no state table (aws.dynamodb.Table tagged "
               f"mcp-estate:residency-group={group})", urn)
        return
    copies = set().union(*(estate.table_regions(t.props) for t in tables))
    if region not in copies:
        report(f"{where}: state table {', '.join(t.name for t in tables)} of group {group} has no copy there "
               f"(only in {', '.join(sorted(copies)) or 'no region'}): add a replica in {region}, or a failover "
               "loses its sessions", tables[0].urn)


# -- strict residency stays in its group ----------------------------------------------------------

RESIDENCY_CONFIG = {"residencyGroups": {
    "type": "object",
    "description": "Each residency group's strictness, regions and countries, generated from the spec by "
                   "`estate pack-config` (never hand-edited: tests hold it equal to the spec)",
    "additionalProperties": {
        "type": "object", "additionalProperties": False, "required": ["strict", "regions", "countries"],
        "properties": {"strict": {"type": "boolean"},
                       "regions": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                       "countries": {"type": "array", "items": {"type": "string", "pattern": "^[A-Z]{2}$"}},
                       "cloudflareRegions": {"type": "array", "items": {"type": "string", "pattern": "^[A-Z]+$"}}}}}}
# What holds a group's data or routes its visitors: without the groups' config, nothing to judge it by.
RESIDENT = (TABLE, GLOBAL_TABLE, SECRET, *REPLICA_KEYS, CF_LOAD_BALANCER)


@stack_policy(
    "strict-residency-stays-in-its-group",
    "A strict residency group (its regions, countries and strictness read from the pack config the spec "
    "generates, never from tags alone) keeps its state in its regions: no copy of a table that has one in the "
    "group (replicas, TableReplicas, global tables), of a secret homed there, nor of a KMS key homed there "
    "lies outside; geo steering routes its countries only to its own pools, each list ending with a pool of "
    "the group without a monitor (so the load balancer's fallback is never reached for them); so are the "
    "Cloudflare regions its AWS regions lie in (geo steering places a proxied request by its data center); no "
    "other route reaches its pools; every ALB outside the group refuses its countries (CF-IPCountry) before any "
    "route; no data-center mapping or load-balancing rule can move its visitors; resource tags "
    "that disagree with the config are reported. Reads outputs (ARNs, DNS names, pool ids): on a new "
    "region's first preview it cannot run, so `estate check` in every pull request is the gate",
    risks=[Risk.DATA_LOSS], severity=Severity.CRITICAL,
    remediation="Pass the pack config `estate pack-config --stack <stack> --write` generates; keep the group's "
                "table, secret and key replicas in its regions; use steering_policy='geo'; map each of its "
                "countries in countryPools, and its Cloudflare regions in regionPools, to the group's pools "
                "only, ending with an enabled group pool without a monitor; keep its pools out of every other "
                "route; give every ALB outside the group listener rules refusing its countries "
                "(RegionCompute's residency guard); remove popPools and load-balancing rules.",
    config=RESIDENCY_CONFIG)
def strict_residency_stays_in_its_group(args: StackValidationArgs, report: Report) -> None:
    estate = Topology(args.resources, as_mapping(args.get_config().get("residencyGroups")))
    if estate.configured:
        _tags_agree(estate, report)
    elif estate.of_type(*RESIDENT):
        report("The pack config gives no residencyGroups, so which groups are strict, and where, is read from "
               "mcp-estate:residency tags a change can rewrite: pass the config `estate pack-config --stack "
               "<stack> --write` generates (policies/config/<environment>.json)")
    kept = {group: _state_stays(estate, group, report) for group in sorted(estate.strict)}
    _copies_stay(estate, report)
    for lb in estate.of_type(CF_LOAD_BALANCER) if kept else []:
        _steering_stays(sorted(kept), lb, report)
        for group, countries in kept.items():
            _routes_stay(estate, group, countries, lb, report)
    for group, countries in kept.items():
        _origins_refuse(estate, group, countries, report)


def _tags_agree(estate: Topology, report: Report) -> None:
    """The cross-check: tags that contradict the config show a drift between the spec and the stack."""
    for group, regions in sorted(estate.tagged_regions.items()):
        if group not in estate.group_regions:
            report(f"Resources are tagged with residency group {group}, which the pack config does not know: "
                   "regenerate the config from the spec (`estate pack-config --stack <stack> --write`)")
            continue
        outside = sorted(regions - estate.group_regions[group])
        if outside:
            report(f"Resources of residency group {group} are tagged with region {', '.join(outside)}, outside "
                   f"the group's regions in the pack config ({', '.join(sorted(estate.group_regions[group]))})")
    for group, seen in sorted(estate.tagged_residency.items()):
        expected = "strict" if group in estate.strict else "open"
        if group in estate.group_regions and seen - {expected}:
            report(f"Resources of residency group {group} are tagged mcp-estate:residency="
                   f"{'/'.join(sorted(seen - {expected}))}, but the pack config makes it {expected}: "
                   "the config decides; correct the tags")


def _state_stays(estate: Topology, group: str, report: Report) -> set[str]:
    """Reports the group's tagged tables copied outside it; returns the countries the group keeps:
    the config's, else (no config) those its tables record."""
    regions, countries = ", ".join(sorted(estate.group_regions[group])) or "none known", set()
    for table in estate.tables(group):
        outside = sorted(estate.table_regions(table.props) - estate.group_regions[group])
        if outside and not estate.table_regions(table.props) & estate.group_regions[group]:
            report(f"State table {table.name} of strict group {group} has a copy in {', '.join(outside)}, "
                   f"outside the group's regions ({regions}): remove the replica", table.urn)
        recorded = (tag(table.props, "countries") or "").split()
        if estate.configured:
            if recorded and set(recorded) != estate.countries[group]:
                report(f"State table {table.name} records countries {' '.join(sorted(recorded))} for strict group "
                       f"{group}, but the pack config gives {' '.join(sorted(estate.countries[group]))}: the "
                       "config decides; correct the tag", table.urn)
        elif not recorded:
            report(f"State table {table.name} of strict group {group} does not record the countries the group "
                   "keeps (tag mcp-estate:countries), so their routing cannot be checked", table.urn)
        countries.update(recorded)
    return estate.countries[group] if estate.configured else countries


def _copies_stay(estate: Topology, report: Report) -> None:
    """Whatever its tags: a table with a copy in a strict group, and a secret or KMS key homed in one,
    has every copy in the group."""
    for table in estate.of_type(TABLE, GLOBAL_TABLE):
        _inside(estate, f"State table {table.name}", estate.table_regions(table.props), table.urn, report)
    for secret in estate.of_type(SECRET):
        home = _own_region(secret.props)
        copies = {as_mapping(r).get("region") for r in as_list(secret.props.get("replicas"))} - {None}
        _homed_inside(estate, f"Secret {secret.name}", home, copies, secret.urn, report)
    for key in estate.of_type(*REPLICA_KEYS):
        _homed_inside(estate, f"KMS replica key {key.name}", arn_region(lookup(key.props, "primaryKeyArn")),
                      {_own_region(key.props)} - {None}, key.urn, report)


def _inside(estate: Topology, what: str, copies: set[str], urn: str, report: Report) -> None:
    for group in sorted(g for g in estate.strict if copies & estate.group_regions[g]):
        outside = sorted(copies - estate.group_regions[group])
        if outside:
            report(f"{what} has copies in strict group {group} ({', '.join(sorted(copies - set(outside)))}) and "
                   f"outside it ({', '.join(outside)}): remove the copies outside the group's regions "
                   f"({', '.join(sorted(estate.group_regions[group]))})", urn)


def _homed_inside(estate: Topology, what: str, home: str | None, copies: set[str], urn: str,
                  report: Report) -> None:
    for group in sorted(g for g in estate.strict if home in estate.group_regions[g]):
        outside = sorted(copies - estate.group_regions[group])
        if outside:
            report(f"{what} is homed in {home}, in strict group {group}, and copied to {', '.join(outside)}, outside "
                   f"the group's regions ({', '.join(sorted(estate.group_regions[group]))}): remove those "
                   "replicas", urn)


def _steering_stays(groups: list[str], lb: PolicyResource, report: Report) -> None:
    """Only geo steering reads countryPools, and only the country pools can keep a strict country in
    its group: a data-center mapping or a rule can take its visitors elsewhere."""
    what, strict = f"Cloudflare load balancer {lb.name}", f"strict group {', '.join(groups)}"
    if lb.props.get("steeringPolicy") != "geo":
        report(f"{what} steers by {lb.props.get('steeringPolicy')!r}, which ignores countryPools: set "
               f"steering_policy='geo' so {strict}'s countries stay on its pools", lb.urn)
    pops = lb.props.get("popPools")
    if isinstance(pops, Mapping) and any(as_list(p) for p in pops.values()):
        report(f"{what} maps data centers in popPools ({', '.join(sorted(pops))}): a data center serves "
               f"visitors of any country and its mapping takes precedence over countryPools, so {strict}'s "
               "visitors may leave the group: remove popPools", lb.urn)
    for rule in enabled_rules(lb.props):
        _rule_stays(strict, rule, what, lb, report)


def _rule_stays(strict: str, rule: Mapping, what: str, lb: PolicyResource, report: Report) -> None:
    name, overrides = rule.get("name"), as_mapping(rule.get("overrides"))
    undocumented = sorted(condition_fields(rule.get("condition")) - LB_RULE_FIELDS)
    if undocumented:
        report(f"{what}'s rule {name!r} reads {', '.join(undocumented)}, which Cloudflare does not document "
               "for load-balancing rules: remove the rule", lb.urn)
    routes = [key for key in ROUTING_OVERRIDES if overrides.get(key) not in (None, [], {})]
    fixed = rule.get("fixedResponse") is not None and not routes   # answers itself: routes nowhere
    if routes or (rule.get("terminates") is True and not fixed):
        effect = f"overrides {', '.join(routes)}" if routes else "terminates"
        report(f"{what}'s rule {name!r} {effect}: Cloudflare documents custom rules as not working with geo "
               f"steering, so nothing shows {strict}'s visitors stay in the group: remove the rule", lb.urn)


def _routes_stay(estate: Topology, group: str, countries: set[str], lb: PolicyResource, report: Report) -> None:
    what = f"Cloudflare load balancer {lb.name}"
    for key in ("defaultPools", "fallbackPool", "popPools"):
        reaching = estate.reaching(pools_of({key: lb.props.get(key)}), group)
        if reaching:
            report(f"{what} sends visitors from elsewhere to strict group {group}'s pool "
                   f"{estate.describe(reaching)} through its {key}: keep the group's pools out of it", lb.urn)
    _cloudflare_regions_stay(estate, group, lb, report)
    if countries:   # unknown, the routes of countries cannot be judged (the table is reported)
        _countries_stay(estate, group, countries, lb, report)


def _cloudflare_regions_stay(estate: Topology, group: str, lb: PolicyResource, report: Report) -> None:
    """Geo steering places a proxied request by its serving data center: the Cloudflare regions the
    group's AWS regions lie in (pack config `cloudflareRegions`) are the group's, each list staying in
    the group and ending with its last resort; any other region's list keeps out of the group."""
    what, region_pools = f"Cloudflare load balancer {lb.name}", as_mapping(lb.props.get("regionPools"))
    own = estate.cloudflare_regions.get(group, set())
    for code in sorted(own):
        pools = as_list(region_pools.get(code))
        if not pools or not estate.pools_in(pools, group) or not estate.last_resort(pools[-1]):
            where = f"to {estate.describe(pools)}" if pools else "to the default pools (no regionPools entry)"
            report(f"{what} sends data centers of Cloudflare region {code}, where strict group {group} runs, "
                   f"{where}: the group's visitors served there leave it; map regionPools.{code} to the group's "
                   "pools only, ending with an enabled group pool without a monitor", lb.urn)
    for code, pools in sorted(region_pools.items()):
        reaching = estate.reaching(as_list(pools), group)
        if code in own or not reaching:
            continue
        if estate.pools_in(as_list(pools), group) and estate.last_resort(as_list(pools)[-1]):
            continue   # a whole region kept in the group: no visitor of the group leaves it through it
        report(f"{what} sends visitors from elsewhere to strict group {group}'s pool {estate.describe(reaching)} "
               f"through its regionPools.{code}: keep the group's pools out of it, or map the region to the "
               "group's pools only, ending with its last resort", lb.urn)


def _origins_refuse(estate: Topology, group: str, countries: set[str], report: Report) -> None:
    """Every ALB outside the strict group refuses the group's countries (CF-IPCountry) on every
    listener that can serve, before any rule that serves: what routing misses fails closed."""
    listeners = estate.of_type(*LISTENERS)
    rules: dict[Any, list[Mapping]] = defaultdict(list)
    for rule in estate.of_type(*LISTENER_RULES):
        rules[rule.props.get("listenerArn")].append(rule.props)
    for region, albs in sorted(estate.albs.items()):
        if region in estate.group_regions[group]:
            continue
        for alb in albs:
            arn = alb.props.get("arn")
            for listener in (x for x in listeners if isinstance(arn, str) and x.props.get("loadBalancerArn") == arn):
                on = rules.get(listener.props.get("arn"), [])
                if not on and _redirects_only(listener.props):
                    continue
                missing = sorted(c for c in countries if not _refused_first(c, on))
                if missing:
                    report(f"ALB {alb.name} ({region}, outside strict group {group}) serves visitors of "
                           f"{' '.join(missing)} on listener {listener.name}: Cloudflare steers by data center, so "
                           f"they can reach it; add listener rules, ahead of every route, answering a fixed 4XX "
                           f"when {COUNTRY_HEADER.replace('cf-ipc', 'CF-IPC')} is one of them", listener.urn)


def _redirects_only(listener: Mapping) -> bool:
    actions = [as_mapping(a) for a in as_list(listener.get("defaultActions"))]
    return bool(actions) and all(a.get("type") == "redirect" for a in actions)


def _refused_first(country: str, rules: list[Mapping]) -> bool:
    """A rule refusing the country comes before every rule that does not refuse."""
    refusing = [r.get("priority") for r in rules if _refuses(r, country)]
    serving = [r.get("priority") for r in rules if not _refuses_anything(r)]
    numbers = [p for p in refusing + serving if isinstance(p, (int, float))]
    if not refusing or len(numbers) != len(refusing) + len(serving):
        return False   # no refusal, or a priority unknown: nothing shows the order
    return min(refusing) < min(serving, default=float("inf"))


def _refuses_anything(rule: Mapping) -> bool:
    actions = [as_mapping(a) for a in as_list(rule.get("actions"))]
    return bool(actions) and all(a.get("type") == "fixed-response" and str(
        as_mapping(a.get("fixedResponse")).get("statusCode", ""))[:1] in ("4", "5") for a in actions)


def _refuses(rule: Mapping, country: str) -> bool:
    """The rule answers a fixed 4XX/5XX to every request whose CF-IPCountry is the country: its only
    conditions are on that header (another condition would narrow it) and one names the country."""
    conditions = [as_mapping(c) for c in as_list(rule.get("conditions"))]
    if len(conditions) != 1 or {k for k, v in conditions[0].items() if v is not None} != {"httpHeader"}:
        return False   # conditions are ANDed: a second one would narrow the refusal
    header = as_mapping(conditions[0].get("httpHeader"))
    return (str(header.get("httpHeaderName", "")).lower() == COUNTRY_HEADER and _refuses_anything(rule)
            and country.lower() in (str(v).lower() for v in as_list(header.get("values"))))


def _countries_stay(estate: Topology, group: str, countries: set[str], lb: PolicyResource, report: Report) -> None:
    what, country_pools = f"Cloudflare load balancer {lb.name}", as_mapping(lb.props.get("countryPools"))
    for country in sorted(countries):
        pools = as_list(country_pools.get(country))
        if not pools:
            report(f"{what} has no countryPools entry for {country} (strict group {group}): its visitors go to "
                   f"the region or default pools, outside the group", lb.urn)
        elif not estate.pools_in(pools, group):
            report(f"{what} sends {country} visitors (strict group {group}) to {estate.describe(pools)}: route "
                   "them only to the group's pools", lb.urn)
        elif not estate.last_resort(pools[-1]):
            report(f"{what}'s countryPools for {country} (strict group {group}) end with "
                   f"{estate.describe(pools[-1:])}, which can be unhealthy: when all its pools are, geo "
                   "steering sends the visitors to the fallback pool, outside the group; end the list with "
                   "an enabled pool of the group without a monitor", lb.urn)
    for country, pools in sorted(country_pools.items()):
        reaching = estate.reaching(as_list(pools), group)
        if country not in countries and reaching:
            report(f"{what} sends {country} visitors into strict group {group}'s pool {estate.describe(reaching)}: "
                   "only the group's countries reach it", lb.urn)


# -- regions survive the loss of any one ----------------------------------------------------------

@stack_policy(
    "regions-survive-the-loss-of-any-one",
    "For every server with a declared peak in a residency group, losing any one region of the group "
    "leaves enough scaling capacity (max tasks) in its other regions for the peak",
    risks=[Risk.AVAILABILITY], severity=Severity.HIGH,
    remediation="Raise servers[<name>].scaling.max, run the server in another region of the group, or lower "
                "the group's peak_tasks.")
def regions_survive_the_loss_of_any_one(args: StackValidationArgs, report: Report) -> None:
    capacity: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    peaks: dict[tuple[str, str], list[Any]] = defaultdict(list)
    urns: dict[tuple[str, str, str], str] = {}
    for target in args.resources:
        props = target.props
        group, server, region = (tag(props, k) for k in ("residency-group", "server", "region"))
        if target.resource_type != SCALING_TARGET or not (group and server and region):
            continue
        capacity[group, server][region] += props.get("maxCapacity") or 0   # missing: no capacity
        urns[group, server, region] = target.urn
        if tag(props, "peak-tasks") is not None:
            peaks[group, server].append(tag(props, "peak-tasks"))
    for (group, server), declared in sorted(peaks.items()):
        if not all(str(p).isdigit() for p in declared):
            report(f"Scaling targets of {server} in group {group} carry an unreadable peak "
                   f"({', '.join(sorted(set(declared)))}): mcp-estate:peak-tasks must be a number of tasks")
            continue
        peak, regions = max(int(p) for p in declared), capacity[group, server]
        for lost in sorted(regions):
            left = sum(tasks for region, tasks in regions.items() if region != lost)
            if left < peak:
                report(_shortfall(group, server, lost, regions, peak, left), urns[group, server, lost])


def _shortfall(group: str, server: str, lost: str, regions: dict[str, float], peak: int, left: float) -> str:
    if len(regions) == 1:
        return (f"{server} runs only in {lost} of group {group}: losing it leaves no capacity for the declared "
                f"peak of {peak} tasks; run {server} in a second region of the group")
    others = ", ".join(f"{r} max {int(t)}" for r, t in sorted(regions.items()) if r != lost)
    return (f"Losing {lost} leaves {server} in group {group} {int(left)} tasks of capacity ({others}), "
            f"{int(peak - left)} short of the declared peak of {peak}: raise servers[{server}].scaling.max "
            f"or run {server} in another region of the group")
