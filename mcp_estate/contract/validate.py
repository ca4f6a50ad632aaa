"""Turn raw stack config into an `EstateSpec`, or into problems a person can act on.

Pydantic reports list positions (`servers.2.port`); people think in names, so every path is
rewritten with the item's name (`servers[booking].port`). Cross-field rules, which need the
whole spec, run after the field checks pass.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from typing import Any

from pydantic import ValidationError

from .auth_rules import WAF_CHALLENGE_WCU, resource_server_problems
from .cloudflare_plan import (
    ADVANCED_RATELIMIT_RULES,
    ALLOWANCES,
    EXPRESSION_MAX_CHARS,
    WAF_RATE_BASED_RULES,
    WAF_WCU_MAX,
    load_balancer_origins,
)
from .fields import DIGEST_IMAGE
from .geography import AWS_REGIONS
from .limit_rules import limit_problems
from .per_user_data import SCOPED_ITEM_ACTIONS
from .problems import Problem, SpecError
from .rollout import in_region_of, test_priority
from .spec import CACHE, FARGATE_SIZES, GUARD_PRIORITIES, MAX_STRICT_COUNTRIES, SECRET_PREFIX, STATE, EstateSpec, Server
from .surface_rules import (
    BASE_ORIGIN_WCU,
    ORIGIN_MIN_LIMIT,
    edge_surface,
    origin_rules,
    surface_servers,
    wcu,
)

EDGE_CUSTOM_RULES = 2   # components/edge.py: MCP paths only, MCP methods only
_STACK_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")


def stack_name_problems(stack: str) -> list[Problem]:
    """The stack name goes into physical names (WAF, SNS, KMS aliases, Lambda: no dots, 64 chars)."""
    if _STACK_NAME.match(stack):
        return []
    return [Problem("stack", f"'{stack}' cannot name AWS resources: use 1-20 lowercase letters, digits and "
                             "hyphens, starting with a letter (e.g. prod, staging-eu)")]


def parse_spec(raw: Any) -> EstateSpec:
    if not isinstance(raw, dict):
        raise SpecError([Problem("mcp-estate:estate", "must be a mapping of the estate's settings")])
    try:
        spec = EstateSpec.model_validate(raw)
    except ValidationError as error:
        raise SpecError([_problem(raw, e) for e in error.errors()]) from None
    problems = cross_field_problems(spec)
    if problems:
        raise SpecError(problems)
    return spec


def _problem(raw: Any, error: dict) -> Problem:
    path, node = "", raw
    for part in error["loc"]:
        if part == "[key]":   # pydantic's marker for a bad mapping key: the key itself is already the path
            continue
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            name = item.get("name") if isinstance(item, dict) else None
            path += f"[{name}]" if isinstance(name, str) and name else f"[{part}]"
            node = item
        else:
            path += f".{part}" if path else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key (a typo?); remove it or check the config reference in README.md"
    elif error["type"] == "missing":
        message = "is required"
    elif error["type"] == "literal_error":
        message = f"{message}; got {error.get('input')!r}"
    return Problem(path or "mcp-estate:estate", message)


def cross_field_problems(spec: EstateSpec) -> list[Problem]:
    return [*_unique_names(spec), *_residency(spec), *_peaks(spec), *_networks(spec), *_servers(spec),
            *_images(spec), *_secrets(spec), *_edge(spec), *_monitoring(spec), *auth_problems(spec),
            *surface_problems(spec), *rollout_problems(spec), *capability_problems(spec),
            *_per_user_state(spec), *_backends(spec), *limit_problems(spec)]


def _duplicates(names) -> list[str]:
    return sorted(name for name, count in Counter(names).items() if count > 1)


def _unique_names(spec: EstateSpec) -> list[Problem]:
    problems = [Problem("residency_groups", f"group '{n}' is declared twice")
                for n in _duplicates(g.name for g in spec.residency_groups)]
    problems += [Problem("servers", f"server '{n}' is declared twice")
                 for n in _duplicates(s.name for s in spec.servers)]
    problems += [Problem("secrets", f"secret '{n}' is declared twice")
                 for n in _duplicates(s.name for s in spec.secrets)]
    for name in _duplicates(r.name for g in spec.residency_groups for r in g.regions):
        groups = sorted(g.name for g in spec.residency_groups if any(r.name == name for r in g.regions))
        where = " and ".join(groups) if len(groups) > 1 else f"{groups[0]} (twice)"
        problems.append(Problem("residency_groups", f"region '{name}' is in {where}: a region "
                                                    "belongs to exactly one residency group"))
    return problems


def _residency(spec: EstateSpec) -> list[Problem]:
    problems = []
    for group in spec.residency_groups:
        path = f"residency_groups[{group.name}]"
        if group.primary_region not in {r.name for r in group.regions}:
            problems.append(Problem(f"{path}.primary_region", f"'{group.primary_region}' is not one of "
                                    f"the group's regions ({', '.join(r.name for r in group.regions)})"))
        if group.strict and not group.countries:
            problems.append(Problem(f"{path}.countries", "a strict group must list the countries whose "
                                                         "visitors it keeps (e.g. [DE, FR])"))
        if group.strict and len(set(group.countries)) > MAX_STRICT_COUNTRIES:
            problems.append(Problem(f"{path}.countries", f"{len(set(group.countries))} countries: a strict "
                                    f"group keeps at most {MAX_STRICT_COUNTRIES} (its state table records them "
                                    "in one tag, of 256 characters at most)"))
        problems += [Problem(f"{path}.countries", f"'{c}' is listed twice")
                     for c in _duplicates(group.countries)]
    owners: dict[str, list[str]] = {}
    for group in spec.residency_groups:
        for country in set(group.countries):
            owners.setdefault(country, []).append(group.name)
    problems += [Problem("residency_groups", f"country '{c}' is in {' and '.join(sorted(g))}: a country "
                                             "is routed by exactly one group")
                 for c, g in sorted(owners.items()) if len(g) > 1]
    if all(g.strict for g in spec.residency_groups):
        problems.append(Problem("residency_groups", "every group is strict: at least one group must be "
                                                    "non-strict to serve visitors from other countries"))
    problems += _strict_groups_sharing_a_cloudflare_region(spec)
    if spec.primary_region not in spec.regions:
        problems.append(Problem("primary_region", f"'{spec.primary_region}' is not a region of the estate"))
    return problems


def _strict_groups_sharing_a_cloudflare_region(spec: EstateSpec) -> list[Problem]:
    """Cloudflare steers a proxied request by the data center serving it, so the edge maps each
    Cloudflare geo region holding a strict group's regions to that group: two strict groups in one
    Cloudflare region cannot both keep the visitors its data centers serve."""
    strict_in: dict[str, set[str]] = {}
    for group in spec.residency_groups:
        for region in group.regions if group.strict else ():
            strict_in.setdefault(AWS_REGIONS[region.name].cloudflare_region, set()).add(group.name)
    return [Problem("residency_groups", f"strict groups {' and '.join(sorted(groups))} both run in Cloudflare's "
                                        f"{code} region, which steers by data center, not by country: one "
                                        "group's visitors there would be sent to the other's regions; merge "
                                        "them into one strict group or move one to regions of another "
                                        "Cloudflare region")
            for code, groups in sorted(strict_in.items()) if len(groups) > 1]


def _peaks(spec: EstateSpec) -> list[Problem]:
    """A declared peak names a server that runs in the group (the scaling targets carry it)."""
    servers = {s.name: s for s in spec.servers}
    problems = []
    for group in spec.residency_groups:
        for name in sorted(group.peak_tasks):
            path = f"residency_groups[{group.name}].peak_tasks.{name}"
            if name not in servers:
                problems.append(Problem(path, f"'{name}' is not a server of the estate "
                                              f"(servers: {', '.join(sorted(servers))})"))
    return problems


def _networks(spec: EstateSpec) -> list[Problem]:
    problems = []
    seen: list[tuple[str, ipaddress.IPv4Network]] = []
    for group in spec.residency_groups:
        for region in group.regions:
            network = ipaddress.IPv4Network(region.cidr)
            for other, other_network in seen:
                if network.overlaps(other_network):
                    problems.append(Problem(f"residency_groups[{group.name}].regions[{region.name}].cidr",
                                            f"{region.cidr} overlaps {other_network} of {other}: give "
                                            "each region its own range"))
            seen.append((region.name, network))
    return problems


def _fargate_size_problems(path: str, cpu: int, memory: int) -> list[Problem]:
    """A task size Fargate offers: a server's and an async worker's alike."""
    allowed = FARGATE_SIZES.get(cpu)
    if allowed is None:
        return [Problem(f"{path}.cpu", f"{cpu} is not a Fargate CPU size; use one of "
                                       f"{', '.join(map(str, FARGATE_SIZES))}")]
    if memory not in allowed:
        return [Problem(f"{path}.memory", f"Fargate does not offer {memory} MiB with {cpu} CPU units; use one of "
                                          f"{', '.join(map(str, allowed))}")]
    return []


def _servers(spec: EstateSpec) -> list[Problem]:
    problems = []
    secret_names = set(spec.secret_names())
    priorities: dict[int, str] = {}
    for server in spec.servers:
        path = f"servers[{server.name}]"
        problems += _fargate_size_problems(path, server.cpu, server.memory)
        problems += [Problem(f"{path}.secrets", f"'{s}' is listed twice") for s in _duplicates(server.secrets)]
        if server.scaling.min > server.scaling.max:
            problems.append(Problem(f"{path}.scaling", f"min {server.scaling.min} is above max "
                                                       f"{server.scaling.max}"))
        if spec.environment == "prod" and server.scaling.min < 2:
            # The pack's production-services-keep-two-tasks refuses it too: one task is one AZ's outage away.
            problems.append(Problem(f"{path}.scaling.min", f"{server.scaling.min} task in prod: a region needs at "
                                                           "least 2 (one per availability zone) to survive a zone"))
        problems += [Problem(f"{path}.egress", f"{cidr} port {port} is declared twice")
                     for cidr, port in _duplicates((e.cidr, e.port) for e in server.egress)]
        for i, permission in enumerate(server.permissions):
            problems += [Problem(f"{path}.permissions[{i}].resources", f"'{arn}' belongs to account "
                                 f"{arn.split(':')[4]}: a server's grants stay in the estate's account")
                         for arn in permission.resources
                         if arn.startswith("arn:") and arn.split(":")[4] not in ("", spec.aws_account_id)]
            for resource in permission.resources:
                if resource.startswith(SECRET_PREFIX) and resource[len(SECRET_PREFIX):] not in secret_names:
                    known = ", ".join(sorted(secret_names)) or "none"
                    problems.append(Problem(f"{path}.permissions[{i}].resources", f"'{resource}' names no "
                                            f"secret of the estate (known: {known})"))
        if server.priority in priorities:
            problems.append(Problem(f"{path}.route_priority", f"priority {server.priority} is also used by "
                                    f"'{priorities[server.priority]}': set a distinct route_priority"))
        priorities[server.priority] = server.name
    return problems


def _images(spec: EstateSpec) -> list[Problem]:
    problems = []
    host = f"{spec.aws_account_id}.dkr.ecr.{spec.primary_region}.amazonaws.com"
    repositories: dict[str, str] = {}
    for server in spec.servers:
        path = f"servers[{server.name}].image"
        if server.registry_host != host:
            problems.append(Problem(path, f"'{server.registry_host}' is not the estate's registry: images "
                                          f"come from {host} (replicated to every region)"))
        elif not server.repository.startswith(f"{spec.registry.namespace}/"):
            problems.append(Problem(path, f"repository '{server.repository}' is outside the "
                                          f"'{spec.registry.namespace}/' namespace of the estate's registry"))
        elif server.repository in repositories:
            problems.append(Problem(path, f"repository '{server.repository}' is also used by "
                                          f"'{repositories[server.repository]}': each server has its own"))
        repositories.setdefault(server.repository, server.name)
    return problems


def _secrets(spec: EstateSpec) -> list[Problem]:
    used = set(spec.secret_names())
    problems = []
    for secret in spec.secrets:
        if secret.name not in used:
            problems.append(Problem(f"secrets[{secret.name}]", "no server uses this secret; remove it"))
        if secret.home_region not in spec.regions:
            problems.append(Problem(f"secrets[{secret.name}].home_region",
                                    f"'{secret.home_region}' is not a region of the estate"))
    return problems


def _edge(spec: EstateSpec) -> list[Problem]:
    servers = {s.name: s for s in spec.servers}
    if spec.edge.health_server not in servers:
        return [Problem("edge.health_server", f"'{spec.edge.health_server}' is not a server of the estate "
                                              f"(servers: {', '.join(sorted(servers))})")]
    return _cloudflare_plan(spec)


def _cloudflare_plan(spec: EstateSpec) -> list[Problem]:
    """What the spec asks of Cloudflare beyond the zone's plan (README: Cloudflare prerequisites)."""
    plan = spec.domain.cloudflare_plan
    allowance, problems = ALLOWANCES[plan], []
    period, rate = allowance.ratelimit_period, spec.edge.rate_limit_per_minute
    if rate * period % 60:
        step = 60 // period
        problems.append(Problem("edge.rate_limit_per_minute", (
            f"{rate} a minute is no whole number of requests per {period} s, the only counting period "
            f"of the {plan} plan (domain.cloudflare_plan): use a multiple of {step} "
            f"(e.g. {rate + -rate % step}) or a paid plan")))
    origins, most = load_balancer_origins(spec.residency_groups), allowance.load_balancer_origins
    if most is not None and origins > most:
        problems.append(Problem("residency_groups", (
            f"the edge needs {origins} load-balancer origins (one per region, and each strict group's "
            f"regions again in its last-resort pool): the Load Balancing add-on offers at most {most} "
            "below Enterprise (domain.cloudflare_plan); use fewer regions or Enterprise")))
    return problems


def _monitoring(spec: EstateSpec) -> list[Problem]:
    role = spec.monitoring.deployment_role_arn
    account = role.split(":")[4] if role else spec.aws_account_id
    if account != spec.aws_account_id:
        return [Problem("monitoring.deployment_role_arn", f"the role is in account {account}, not the estate's "
                                                          f"{spec.aws_account_id}: name the role `pulumi up` "
                                                          "runs as in the estate's account")]
    return []


def auth_problems(spec: EstateSpec) -> list[Problem]:
    """`auth` is declared everywhere; only dev may opt out. The rest: mcp_estate/contract/auth_rules.py."""
    if spec.auth is None:
        return [Problem("auth", "missing: declare the issuer and JWKS URL of the travellers' authorization "
                                "server (README: Who may call what), or, in dev only, `auth: {disabled: true}`")]
    if spec.auth.disabled and spec.environment == "prod":
        return [Problem("auth.disabled", "prod serves travellers: every MCP call needs a validated token; "
                                         "remove `disabled: true` and declare `issuer` and `jwks_url`")]
    return resource_server_problems(spec)


def _auth_on(spec: EstateSpec) -> bool:
    return spec.auth is not None and not spec.auth.disabled


def _per_user_state(spec: EstateSpec) -> list[Problem]:
    """With auth on, a server reaches `state` only as the caller, through its data role, whose
    `dynamodb:LeadingKeys` condition limits only the actions that name their partition keys."""
    if not _auth_on(spec):
        return []
    problems = []
    for server in spec.servers:
        for i, permission in enumerate(server.permissions):
            unscoped = sorted(set(permission.actions) - set(SCOPED_ITEM_ACTIONS)) if STATE in permission.resources \
                else []
            if unscoped:
                problems.append(Problem(f"servers[{server.name}].permissions[{i}].actions", (
                    f"{', '.join(unscoped)} on `state`: with `auth` on, a server reads state only as the caller "
                    f"(items keyed <server>#<traveller>, README: Who may call what) and IAM can limit only "
                    f"actions that name their keys; use {', '.join(SCOPED_ITEM_ACTIONS)} (Query, not Scan), "
                    "or grant the other actions in a permission of their own")))
    return problems


def _backends(spec: EstateSpec) -> list[Problem]:
    """A backend is called with a token exchanged for the caller's at the IdP, with the server's
    client credential from an estate secret the server declares."""
    problems, with_backends = [], [s for s in spec.servers if s.backends]
    for server in with_backends:
        path = f"servers[{server.name}].backends"
        problems += [Problem(path, f"backend '{n}' is declared twice")
                     for n in _duplicates(b.name for b in server.backends)]
        problems += [Problem(f"{path}[{b.name}].client_secret", (
            f"'{b.client_secret}' is not one of the server's secrets ({', '.join(server.secrets) or 'none'}): "
            f"add it to servers[{server.name}].secrets (injected from Secrets Manager like the others)"))
            for b in server.backends if b.client_secret not in server.secrets]
    if not with_backends:
        return problems
    names = ", ".join(s.name for s in with_backends)
    if not _auth_on(spec):
        return problems + [Problem("auth", f"servers {names} declare backends, which they call with a token exchanged "
                                           "for the caller's: enable `auth` (issuer, jwks_url, token_exchange_url), "
                                           "or remove the backends")]
    if spec.auth.token_exchange_url is None:
        problems.append(Problem("auth.token_exchange_url", f"servers {names} declare backends: name the IdP's "
                                                           "token endpoint (RFC 8693 token exchange)"))
    if not spec.auth.token_exchange_cidrs:
        problems.append(Problem("auth.token_exchange_cidrs", f"servers {names} must reach the token endpoint: list "
                                                             "its address ranges (egress on 443), e.g. the IdP's "
                                                             "published ranges"))
    return problems


def origin_travellers(spec: EstateSpec) -> bool:
    """The origin counts per bearer token only where travellers present one."""
    return spec.auth is not None and not spec.auth.disabled


def surface_problems(spec: EstateSpec) -> list[Problem]:
    """Each server's `surface` against itself, the zone's Cloudflare plan and AWS WAF's quotas."""
    problems = []
    for server in spec.servers:
        path, surface = f"servers[{server.name}].surface", server.surface
        problems += [Problem(f"{path}.tools", f"'{t}' is listed twice") for t in _duplicates(surface.tools or [])]
        problems += [Problem(f"{path}.protocols", f"'{p}' is listed twice") for p in _duplicates(surface.protocols)]
        if surface.tools is not None:
            problems += [Problem(f"{path}.tool_limits.{tool}", f"'{tool}' is not an approved tool of the server "
                                 f"(tools: {', '.join(surface.tools) or 'none'}): its calls are refused; add it "
                                 "to `tools` or remove its limits")
                         for tool in sorted(set(surface.tool_limits) - set(surface.tools))]
        for tool, limits in [("", surface.limits), *sorted(surface.tool_limits.items())]:
            where = f"{path}.tool_limits.{tool}" if tool else f"{path}.limits"
            problems += [Problem(f"{where}.{key}", f"{value} a minute: AWS WAF limits at least "
                                 f"{ORIGIN_MIN_LIMIT} requests per window at the origin; use {ORIGIN_MIN_LIMIT} "
                                 "or more")
                         for key, value in limits.model_dump().items() if value < ORIGIN_MIN_LIMIT]
    return problems + _surface_edge(spec) + _surface_origin(spec)


def _surface_edge(spec: EstateSpec) -> list[Problem]:
    plan, advanced = spec.domain.cloudflare_plan, spec.edge.advanced_rate_limiting
    allowance, problems = ALLOWANCES[plan], []
    if advanced and plan != "enterprise":
        problems.append(Problem("edge.advanced_rate_limiting", f"Advanced Rate Limiting is an Enterprise "
                                f"add-on; the zone is on {plan} (domain.cloudflare_plan): remove it"))
    rules, ratelimits = edge_surface(spec)
    for rule in rules + ratelimits:
        if len(rule["expression"]) > EXPRESSION_MAX_CHARS:
            problems.append(Problem("servers", f"the edge rule {rule['ref']} is {len(rule['expression'])} "
                                    f"characters, Cloudflare takes {EXPRESSION_MAX_CHARS}: shorten the "
                                    "server's tools list (names) or tool_limits"))
    custom = EDGE_CUSTOM_RULES + len(rules)
    if custom > allowance.custom_rules:
        problems.append(Problem("servers", f"the edge needs {custom} WAF custom rules ({EDGE_CUSTOM_RULES} "
                                f"estate-wide, the servers' packed {EXPRESSION_MAX_CHARS} characters a rule), "
                                f"the {plan} plan allows {allowance.custom_rules} (domain.cloudflare_plan): give "
                                "servers the same surface (protocols, tools) or use a larger plan"))
    most = ADVANCED_RATELIMIT_RULES if advanced and plan == "enterprise" else allowance.ratelimit_rules
    if 1 + len(ratelimits) > most:
        problems.append(Problem("servers", f"the edge needs {1 + len(ratelimits)} rate limiting rules (one "
                                f"estate-wide, and the per-tool ones), the {plan} plan allows {most}: "
                                "fewer tool_limits, or edge.advanced_rate_limiting (Enterprise add-on)"))
    return problems


def _surface_origin(spec: EstateSpec) -> list[Problem]:
    rules = origin_rules(surface_servers(spec), origin_travellers(spec))
    rate_based = 1 + sum("rate_based_statement" in r["statement"] for r in rules)
    problems = []
    if rate_based > WAF_RATE_BASED_RULES:
        problems.append(Problem("servers", f"the origin's web ACL needs {rate_based} rate-based rules (one "
                                "estate-wide, and per caller one per distinct value of servers[].surface.limits "
                                "and one per distinct value of servers[].surface.tool_limits), AWS WAF allows "
                                f"{WAF_RATE_BASED_RULES}: give servers and tools the same limits "
                                f"(values in use: {_limit_values(spec)})"))
    challenges = 0 if spec.auth is None or spec.auth.disabled else WAF_CHALLENGE_WCU * len(spec.servers)
    capacity = BASE_ORIGIN_WCU + challenges + sum(wcu(r["statement"]) for r in rules)
    if capacity > WAF_WCU_MAX:
        problems.append(Problem("servers", f"the origin's web ACL needs about {capacity} WCUs, AWS WAF allows "
                                f"{WAF_WCU_MAX}: use fewer tool_limits or shorter tools lists"))
    return problems


def _limit_values(spec: EstateSpec) -> str:
    """Distinct per-minute limits per caller, as the origin groups them (surface_rules.origin_rate_rules)."""
    found = []
    for caller, key in (("ip", "per_ip_per_minute"), ("traveller", "per_traveller_per_minute")):
        if caller == "traveller" and not origin_travellers(spec):
            continue
        wide = sorted({getattr(s.surface.limits, key) for s in spec.servers})
        tools = sorted({getattr(limit, key) for s in spec.servers for limit in s.surface.tool_limits.values()})
        found.append(f"{key}: limits {wide}, tool_limits {tools}")
    return "; ".join(found)


def rollout_problems(spec: EstateSpec) -> list[Problem]:
    """The waves partition the estate's regions; each candidate is a new image of the server's repository;
    CANARY/LINEAR servers have a free test-rule priority and what their deployment hook needs."""
    return [*_waves(spec), *[p for s in spec.servers if s.candidate for p in _candidate(spec, s)],
            *_in_region(spec)]


def _waves(spec: EstateSpec) -> list[Problem]:
    """Every region in exactly one wave: a region in none would never get a candidate before its release
    (a release would reach it untested by any wave), a region in two would get it twice."""
    problems, seen = [], {}
    for number, wave in enumerate(spec.rollout.waves, start=1):
        path = f"rollout.waves[{number - 1}]"
        if not wave:
            problems.append(Problem(path, f"wave {number} is empty: list its regions or remove it"))
        for region in wave:
            if region not in spec.regions:
                problems.append(Problem(path, f"'{region}' is not a region of the estate "
                                              f"({', '.join(sorted(spec.regions))})"))
            elif region in seen:
                problems.append(Problem(path, f"'{region}' is also in wave {seen[region]}: a region is in "
                                              "exactly one wave"))
            seen.setdefault(region, number)
    missing = sorted(set(spec.regions) - set(seen))
    if spec.rollout.waves and missing:
        problems.append(Problem("rollout.waves", f"{', '.join(missing)} in no wave: a candidate would skip "
                                                 "them until its release; add them to a wave"))
    return problems


def _candidate(spec: EstateSpec, server: Server) -> list[Problem]:
    path, candidate = f"servers[{server.name}].candidate", server.candidate
    released = f"{server.registry_host}/{server.repository}"
    problems = []
    if DIGEST_IMAGE.match(candidate.image)["repository"] != released:
        problems.append(Problem(f"{path}.image", f"'{candidate.image.rsplit('@', 1)[0]}' is not the repository of "
                                                 f"the released image ({released}): a candidate is a new digest "
                                                 "of the same repository"))
    elif candidate.image.rsplit("@", 1)[1] == server.digest:
        problems.append(Problem(f"{path}.image", f"{server.digest} is already the released image: remove the "
                                                 "candidate (`estate promote --abort`)"))
    if candidate.waves_reached > len(spec.waves):
        problems.append(Problem(f"{path}.waves_reached", f"{candidate.waves_reached} is more than the "
                                                         f"{len(spec.waves)} wave(s) of rollout.waves"))
    return problems


def _in_region(spec: EstateSpec) -> list[Problem]:
    """The in-region part: CANARY/LINEAR services' test rules and deployment hooks."""
    problems: list[Problem] = []
    routes = {server.priority: server.name for server in spec.servers}
    tests: dict[int, str] = {}
    for server in spec.servers:
        path = f"servers[{server.name}]"
        problems += _probe_problems(server, path)
        if not in_region_of(server.rollout, spec.rollout).staged:
            continue
        priority = test_priority(server.priority)
        taken = routes.get(priority) or tests.get(priority)
        if priority <= GUARD_PRIORITIES or taken:
            why = f"used by '{taken}'" if taken else f"in the residency guard's band 1-{GUARD_PRIORITIES}"
            problems.append(Problem(f"{path}.route_priority", f"a CANARY/LINEAR server's test rule takes its "
                                    f"route priority minus one, {priority}, which is {why}: set a route_priority "
                                    "whose predecessor is free"))
        tests[priority] = server.name
    return problems


def _probe_problems(server, path: str) -> list[Problem]:
    surface, problems = server.surface, []
    if surface.probe_tool is not None and surface.tools is not None and surface.probe_tool.name not in surface.tools:
        problems.append(Problem(f"{path}.surface.probe_tool.name", f"'{surface.probe_tool.name}' is not one of "
                                "surface.tools: the hook may only call an approved tool"))
    return problems


# ElastiCache Serverless usage limits (CacheUsageLimits): per cache, so per region.
CACHE_MAX_DATA_GB, CACHE_MAX_ECPU_PER_SECOND = 5000, 15_000_000
DLQ_RETENTION_DAYS = 14     # the SQS maximum: a dead letter outlives its source queue's retention
WORKER_STOP_TIMEOUT = 30    # seconds ECS gives a stopping worker (components/async_worker.py)
CONNECT = "elasticache:Connect"


def capability_problems(spec: EstateSpec) -> list[Problem]:
    """Cross-field rules of `cache` and `async`: what AWS would refuse at apply time, and what
    would lose messages or leave a server unable to reach what it declares."""
    problems = []
    for server in spec.servers:
        problems += _cache_grant_problems(server)
        if server.async_work is not None:
            problems += _async_problems(server)
    problems += _cache_limit_problems(spec)
    return problems


def _cache_grant_problems(server: Server) -> list[Problem]:
    path = f"servers[{server.name}]"
    granted = [(i, p) for i, p in enumerate(server.permissions) if CACHE in p.resources]
    if server.cache is None:
        return [Problem(f"{path}.permissions[{i}].resources", "'cache' names the region's cache, but the server "
                                                              "declares no `cache`: add `cache: {}` or remove it")
                for i, _ in granted]
    problems = [Problem(f"{path}.permissions[{i}].actions", f"{', '.join(sorted(set(p.actions) - {CONNECT}))} on "
                                                            f"'cache': the cache's only IAM action is {CONNECT} "
                                                            "(the cache user's access string decides the rest)")
                for i, p in granted if set(p.actions) - {CONNECT}]
    if not any(CONNECT in p.actions for _, p in granted):
        problems.append(Problem(f"{path}.permissions", f"the server declares `cache` but no grant of {CONNECT} "
                                                       f"on it: add {{actions: [{CONNECT}], resources: [cache]}} "
                                                       "(without it every connection is refused)"))
    return problems


def _async_problems(server: Server) -> list[Problem]:
    path, work = f"servers[{server.name}].async", server.async_work
    problems = []
    problems += _fargate_size_problems(path, work.cpu, work.memory)
    if work.scaling.min > work.scaling.max:
        problems.append(Problem(f"{path}.scaling", f"min {work.scaling.min} is above max {work.scaling.max}"))
    if work.retention_days >= DLQ_RETENTION_DAYS:
        # SQS keeps a dead letter's original enqueue time: it would expire in the DLQ at once.
        problems.append(Problem(f"{path}.retention_days", f"{work.retention_days} days leaves a dead letter no "
                                                          f"time in the dead-letter queue (which keeps "
                                                          f"{DLQ_RETENTION_DAYS} days from the first enqueue): "
                                                          f"use at most {DLQ_RETENTION_DAYS - 1}"))
    if work.max_age_alarm_minutes >= work.retention_days * 24 * 60:
        problems.append(Problem(f"{path}.max_age_alarm_minutes", f"{work.max_age_alarm_minutes} minutes is not "
                                                                 f"below the queue's retention of "
                                                                 f"{work.retention_days} days: messages would "
                                                                 "expire before the alarm fires"))
    if work.visibility_timeout_seconds < WORKER_STOP_TIMEOUT:
        problems.append(Problem(f"{path}.visibility_timeout_seconds", (
            f"{work.visibility_timeout_seconds} s is shorter than the {WORKER_STOP_TIMEOUT} s a stopping worker "
            "has to finish its message: another worker would receive it while the first still works on it; "
            f"use at least {WORKER_STOP_TIMEOUT} (and more than the longest task)")))
    return problems


def _cache_limit_problems(spec: EstateSpec) -> list[Problem]:
    """Every server runs in every region, so each region's cache holds the sum of the shares."""
    users = [s for s in spec.servers if s.cache is not None]
    data = sum(s.cache.max_data_gb for s in users)
    ecpu = sum(s.cache.max_ecpu_per_second for s in users)
    problems = []
    if data > CACHE_MAX_DATA_GB:
        problems.append(Problem("servers", f"the caches' max_data_gb add up to {data} GB in each region, over "
                                           f"ElastiCache Serverless's {CACHE_MAX_DATA_GB}: lower them"))
    if ecpu > CACHE_MAX_ECPU_PER_SECOND:
        problems.append(Problem("servers", f"the caches' max_ecpu_per_second add up to {ecpu} in each region, "
                                           f"over ElastiCache Serverless's {CACHE_MAX_ECPU_PER_SECOND}: lower them"))
    return problems
