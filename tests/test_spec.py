"""Every rule a user can break in the estate spec gets an error naming the field and the fix."""

from __future__ import annotations

import copy

import pytest

from mcp_estate.contract.geography import ISO_COUNTRIES
from mcp_estate.contract.validate import SpecError, parse_spec

DIGEST = "sha256:" + "ab" * 32
REGISTRY = "111122223333.dkr.ecr.us-east-1.amazonaws.com"

VALID = {
    "environment": "prod",
    "auth": {"issuer": "https://login.example.travel/", "jwks_url": "https://login.example.travel/jwks.json"},
    "owner": "travel-platform",
    "aws_account_id": "111122223333",
    "primary_region": "us-east-1",
    "domain": {"hostname": "mcp.example.travel", "zone_id": "0" * 32, "cloudflare_account_id": "f" * 32},
    "residency_groups": [
        {"name": "americas", "primary_region": "us-east-1", "countries": ["US"],
         "regions": [{"name": "us-east-1", "cidr": "10.20.0.0/16"}, {"name": "us-west-2", "cidr": "10.21.0.0/16"}]},
        {"name": "eu", "primary_region": "eu-west-1", "strict": True, "countries": ["DE", "FR"],
         "regions": [{"name": "eu-west-1", "cidr": "10.30.0.0/16"}]},
    ],
    "servers": [
        {"name": "booking", "image": f"{REGISTRY}/mcp/booking@{DIGEST}", "secrets": ["booking-api-key"],
         "permissions": [{"actions": ["dynamodb:GetItem"], "resources": ["state"]}]},
        {"name": "inventory", "image": f"{REGISTRY}/mcp/inventory:1.4.2@{DIGEST}"},
    ],
    "edge": {"health_server": "booking"},
    "monitoring": {"probe_credentials_secret": "canary-oauth-client", "probe_token_cidrs": ["203.0.113.0/24"]},
}


def problems_of(mutate) -> list[str]:
    raw = copy.deepcopy(VALID)
    mutate(raw)
    with pytest.raises(SpecError) as caught:
        parse_spec(raw)
    return [str(p) for p in caught.value.problems]


def assert_problem(mutate, path: str, fragment: str) -> None:
    problems = problems_of(mutate)
    assert any(p.startswith(f"{path}:") and fragment in p for p in problems), problems


def server(raw, name="booking"):
    return next(s for s in raw["servers"] if s["name"] == name)


def group(raw, name):
    return next(g for g in raw["residency_groups"] if g["name"] == name)


def test_the_reference_spec_is_valid_and_derives_views_by_name():
    spec = parse_spec(VALID)
    assert sorted(spec.regions) == ["eu-west-1", "us-east-1", "us-west-2"]
    assert spec.server_regions(spec.servers[1]) == ["eu-west-1", "us-east-1", "us-west-2"]
    assert spec.servers[0].repository == "mcp/booking"
    assert spec.servers[1].repository == "mcp/inventory"   # a tag next to the digest is fine
    assert spec.secret_regions("booking-api-key") == ["eu-west-1", "us-east-1", "us-west-2"]
    assert spec.protect_data is True


@pytest.mark.parametrize("image, fragment", [
    (f"{REGISTRY}/mcp/booking:latest", "not pinned by digest"),
    (f"{REGISTRY}/mcp/booking", "not pinned by digest"),
    (f"{REGISTRY}/mcp/booking@sha256:abc123", "not pinned by digest"),
    (f"{REGISTRY}/mcp/booking@sha256:{'AB' * 32}", "not pinned by digest"),
])
def test_an_image_not_pinned_by_a_full_digest_is_rejected(image, fragment):
    assert_problem(lambda raw: server(raw).update(image=image), "servers[booking].image", fragment)


def test_an_image_from_another_registry_is_rejected():
    assert_problem(lambda raw: server(raw).update(image=f"docker.io/acme/booking@{DIGEST}"),
                   "servers[booking].image", "not the estate's registry")


def test_an_image_outside_the_registry_namespace_is_rejected():
    assert_problem(lambda raw: server(raw).update(image=f"{REGISTRY}/other/booking@{DIGEST}"),
                   "servers[booking].image", "outside the 'mcp/' namespace")


def test_two_servers_cannot_share_a_repository():
    assert_problem(lambda raw: server(raw, "inventory").update(image=f"{REGISTRY}/mcp/booking@{DIGEST}"),
                   "servers[inventory].image", "also used by 'booking'")


@pytest.mark.parametrize("name", ["Booking", "booking_v2", "-booking", "booking-", "", "a" * 25])
def test_malformed_names_are_rejected(name):
    assert_problem(lambda raw: server(raw).update(name=name), f"servers[{name}].name" if name else "servers[0].name",
                   "not a valid name")


def test_duplicate_server_names_are_rejected():
    assert_problem(lambda raw: server(raw, "inventory").update(name="booking"), "servers", "declared twice")


def test_duplicate_group_names_are_rejected():
    assert_problem(lambda raw: group(raw, "eu").update(name="americas"), "residency_groups", "declared twice")


def test_an_unknown_region_is_rejected_with_the_allowed_ones():
    def mutate(raw):
        group(raw, "eu")["regions"][0]["name"] = "eu-moon-1"
        group(raw, "eu")["primary_region"] = "eu-moon-1"
    problems = problems_of(mutate)
    assert any(p.startswith("residency_groups[eu].regions[eu-moon-1].name:") and "eu-west-1" in p
               for p in problems), problems


@pytest.mark.parametrize("cidr, fragment", [
    ("10.20.0.0/33", "not a valid IPv4 CIDR"),
    ("10.20.0.1/16", "not a valid IPv4 CIDR"),      # host bits set
    ("10.20.0.0/24", "must be /16 to /20"),          # too small
    ("8.8.0.0/16", "not a private range"),
])
def test_invalid_or_too_small_cidrs_are_rejected(cidr, fragment):
    assert_problem(lambda raw: group(raw, "eu")["regions"][0].update(cidr=cidr),
                   "residency_groups[eu].regions[eu-west-1].cidr", fragment)


def test_overlapping_cidrs_are_rejected():
    assert_problem(lambda raw: group(raw, "eu")["regions"][0].update(cidr="10.20.0.0/18"),
                   "residency_groups[eu].regions[eu-west-1].cidr", "overlaps 10.20.0.0/16 of us-east-1")


@pytest.mark.parametrize("port", [0, 80, 70000])
def test_ports_out_of_range_are_rejected(port):
    assert_problem(lambda raw: server(raw).update(port=port), "servers[booking].port", "")


def test_a_cpu_memory_pair_fargate_does_not_offer_is_rejected():
    assert_problem(lambda raw: server(raw).update(cpu=512, memory=8192), "servers[booking].memory",
                   "use one of 1024, 2048, 3072, 4096")
    assert_problem(lambda raw: server(raw).update(cpu=300), "servers[booking].cpu", "not a Fargate CPU size")


@pytest.mark.parametrize("action", ["*", "dynamodb:*", "dynamodb:Get*"])
def test_wildcard_actions_are_rejected(action):
    assert_problem(lambda raw: server(raw)["permissions"][0].update(actions=[action]),
                   "servers[booking].permissions[0].actions", "wildcard")


def test_actions_aws_does_not_define_are_rejected():
    assert_problem(lambda raw: server(raw)["permissions"][0].update(actions=["dynamodb:GetItems"]),
                   "servers[booking].permissions[0].actions", "dynamodb:GetItems: not an action AWS IAM defines")


@pytest.mark.parametrize("resource, fragment", [("*", "grants every resource"),
                                                ("arn:aws:s3:::*", "grants every resource")])
def test_wildcard_resources_are_rejected(resource, fragment):
    assert_problem(lambda raw: server(raw)["permissions"][0].update(resources=[resource]),
                   "servers[booking].permissions[0].resources", fragment)


def test_permissions_naming_a_resource_the_estate_does_not_have_are_rejected():
    assert_problem(lambda raw: server(raw)["permissions"][0].update(resources=["sessions"]),
                   "servers[booking].permissions[0].resources", "neither an estate resource")
    assert_problem(lambda raw: server(raw)["permissions"][0].update(resources=["secret/loyalty-key"]),
                   "servers[booking].permissions[0].resources", "names no secret of the estate")


def test_a_region_in_two_groups_is_rejected():
    assert_problem(lambda raw: group(raw, "eu")["regions"].append({"name": "us-west-2", "cidr": "10.40.0.0/16"}),
                   "residency_groups", "region 'us-west-2' is in americas and eu")


def test_a_country_in_two_groups_is_rejected():
    assert_problem(lambda raw: group(raw, "americas")["countries"].append("DE"),
                   "residency_groups", "country 'DE' is in americas and eu")


def test_a_strict_group_without_countries_is_rejected():
    assert_problem(lambda raw: group(raw, "eu").update(countries=[]),
                   "residency_groups[eu].countries", "strict group must list the countries")


def test_an_unknown_country_code_is_rejected():
    assert_problem(lambda raw: group(raw, "eu").update(countries=["DE", "EU"]),
                   "residency_groups[eu].countries[1]", "not an ISO 3166-1 alpha-2")


def test_every_group_strict_leaves_no_default_route():
    assert_problem(lambda raw: group(raw, "americas").update(strict=True), "residency_groups",
                   "at least one group must be non-strict")


def test_two_strict_groups_in_one_cloudflare_region_are_rejected():
    # Cloudflare steers proxied requests by data center: WEU's data centers cannot keep both groups' visitors.
    def swiss(raw):
        raw["residency_groups"].append({"name": "ch", "primary_region": "eu-central-1", "strict": True,
                                        "countries": ["CH"],
                                        "regions": [{"name": "eu-central-1", "cidr": "10.40.0.0/16"}]})
    assert_problem(swiss, "residency_groups", "strict groups ch and eu both run in Cloudflare's WEU region")


def test_a_strict_and_an_open_group_may_share_a_cloudflare_region():
    raw = copy.deepcopy(VALID)
    raw["residency_groups"].append({"name": "uk", "primary_region": "eu-west-2",
                                    "regions": [{"name": "eu-west-2", "cidr": "10.40.0.0/16"}]})
    assert sorted(g.name for g in parse_spec(raw).residency_groups) == ["americas", "eu", "uk"]


def test_a_group_primary_region_must_be_one_of_its_regions():
    assert_problem(lambda raw: group(raw, "eu").update(primary_region="us-east-1"),
                   "residency_groups[eu].primary_region", "not one of the group's regions")


@pytest.mark.parametrize("path, mutate", [
    ("servers[booking].imag", lambda raw: server(raw).update(imag="x")),
    ("residency_groups[eu].stict", lambda raw: group(raw, "eu").update(stict=True)),
    ("domain.zone", lambda raw: raw["domain"].update(zone="x")),
    ("sever", lambda raw: raw.update(sever=[])),
])
def test_unknown_keys_are_reported_as_typos(path, mutate):
    assert_problem(mutate, path, "unknown key")


def test_missing_required_keys_are_named():
    assert_problem(lambda raw: raw.pop("domain"), "domain", "is required")
    assert_problem(lambda raw: server(raw).pop("image"), "servers[booking].image", "is required")


def test_the_health_server_must_exist():
    assert_problem(lambda raw: raw["edge"].update(health_server="search"), "edge.health_server",
                   "not a server of the estate")


# -- the zone's Cloudflare plan --------------------------------------------------------------------

def test_the_zone_is_on_pro_unless_the_spec_says_otherwise():
    assert parse_spec(VALID).domain.cloudflare_plan == "pro"


def test_an_unknown_cloudflare_plan_is_named_with_the_choices():
    assert_problem(lambda raw: raw["domain"].update(cloudflare_plan="premium"), "domain.cloudflare_plan",
                   "'free', 'pro', 'business' or 'enterprise'")


def free(raw, rate=None):
    raw["domain"]["cloudflare_plan"] = "free"
    if rate is not None:
        raw["edge"]["rate_limit_per_minute"] = rate


@pytest.mark.parametrize("rate", [600, 60, 12])
def test_on_free_a_rate_per_minute_that_ten_seconds_can_count_passes(rate):
    raw = copy.deepcopy(VALID)
    free(raw, rate)
    assert parse_spec(raw).edge.rate_limit_per_minute == rate


def test_on_free_a_rate_per_minute_that_ten_seconds_cannot_count_is_rejected():
    assert problems_of(lambda raw: free(raw, 100)) == [
        "edge.rate_limit_per_minute: 100 a minute is no whole number of requests per 10 s, the only counting "
        "period of the free plan (domain.cloudflare_plan): use a multiple of 6 (e.g. 102) or a paid plan"]


def test_any_rate_per_minute_passes_where_the_plan_counts_a_minute():
    for plan in ("pro", "business", "enterprise"):
        raw = copy.deepcopy(VALID)
        raw["domain"]["cloudflare_plan"], raw["edge"]["rate_limit_per_minute"] = plan, 101
        assert parse_spec(raw).domain.cloudflare_plan == plan


def eleven_strict_regions(raw):
    """11 regions in the strict group: 11 pools + 11 last-resort origins + 2 open = 24 origins."""
    regions = ["eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1", "ap-northeast-1",
               "ap-northeast-2", "ap-northeast-3", "ap-southeast-1", "ap-southeast-2", "ap-south-1"]
    group(raw, "eu")["regions"] = [{"name": r, "cidr": f"10.{30 + i}.0.0/16"} for i, r in enumerate(regions)]


def test_more_load_balancer_origins_than_the_add_on_offers_are_rejected_below_enterprise():
    assert problems_of(eleven_strict_regions) == [
        "residency_groups: the edge needs 24 load-balancer origins (one per region, and each strict group's "
        "regions again in its last-resort pool): the Load Balancing add-on offers at most 20 below Enterprise "
        "(domain.cloudflare_plan); use fewer regions or Enterprise"]


def test_on_enterprise_the_origins_are_the_contracts_business():
    raw = copy.deepcopy(VALID)
    eleven_strict_regions(raw)
    raw["domain"]["cloudflare_plan"] = "enterprise"
    assert len(parse_spec(raw).regions) == 13


def test_scaling_min_above_max_is_rejected():
    assert_problem(lambda raw: server(raw).update(scaling={"min": 5, "max": 2}), "servers[booking].scaling",
                   "min 5 is above max 2")


def test_a_single_task_per_region_is_rejected_in_prod_only():
    assert_problem(lambda raw: server(raw).update(scaling={"min": 1, "max": 4}), "servers[booking].scaling.min",
                   "1 task in prod: a region needs at least 2")
    staging = copy.deepcopy(VALID) | {"environment": "staging"}
    server(staging).update(scaling={"min": 1, "max": 4})
    assert parse_spec(staging).servers[0].scaling.min == 1


def test_egress_to_the_whole_internet_is_rejected():
    assert_problem(lambda raw: server(raw).update(egress=[{"cidr": "0.0.0.0/0", "description": "all"}]),
                   "servers[booking].egress[0].cidr", "a large part of the internet")


def test_egress_ranges_together_larger_than_a_slash_8_are_rejected():
    assert_problem(lambda raw: server(raw).update(egress=[{"cidr": "11.0.0.0/8", "description": "a"},
                                                          {"cidr": "12.0.0.0/9", "description": "b"}]),
                   "servers[booking].egress", "together hold more addresses than a /8")
    raw = copy.deepcopy(VALID)
    server(raw).update(egress=[{"cidr": "11.0.0.0/8", "description": "one partner /8"}])
    assert parse_spec(raw).servers[0].egress[0].cidr == "11.0.0.0/8"


def test_a_secret_home_outside_the_estate_is_rejected():
    assert_problem(lambda raw: raw.update(secrets=[{"name": "booking-api-key", "home_region": "ap-south-1"}]),
                   "secrets[booking-api-key].home_region", "not a region of the estate")


def test_a_non_mapping_estate_is_rejected():
    with pytest.raises(SpecError) as caught:
        parse_spec(["not", "a", "mapping"])
    assert "must be a mapping" in str(caught.value)


def test_several_problems_are_reported_together():
    problems = problems_of(lambda raw: (server(raw).update(port=80), raw.update(owner="Travel Platform")))
    assert any(p.startswith("servers[booking].port:") for p in problems), problems
    assert any(p.startswith("owner:") for p in problems), problems


@pytest.mark.parametrize("name, fragment", [
    ("PORT", "set by the estate"),
    ("PARTNER_API_KEY", "looks like a secret"),
    ("db_password", "looks like a secret"),
    ("1BAD", "not a valid environment variable name"),
])
def test_plain_environment_cannot_hold_secrets_or_override_the_estate(name, fragment):
    assert_problem(lambda raw: server(raw).update(environment={name: "x"}), "servers[booking].environment",
                   fragment)


def test_a_group_may_declare_its_peak_per_server():
    raw = copy.deepcopy(VALID)
    group(raw, "americas")["peak_tasks"] = {"booking": 12, "inventory": 0}
    assert parse_spec(raw).residency_groups[0].peak_tasks == {"booking": 12, "inventory": 0}
    assert parse_spec(VALID).residency_groups[0].peak_tasks == {}   # nothing declared by default


def test_a_peak_for_a_server_the_estate_does_not_have_is_rejected():
    assert_problem(lambda raw: group(raw, "eu").update(peak_tasks={"search": 4}),
                   "residency_groups[eu].peak_tasks.search", "'search' is not a server of the estate "
                                                            "(servers: booking, inventory)")


def test_a_strict_group_lists_no_more_countries_than_its_table_tag_holds():
    countries = sorted(c for c in ISO_COUNTRIES if c != "US")[:86]
    assert_problem(lambda raw: group(raw, "eu").update(countries=countries), "residency_groups[eu].countries",
                   "86 countries: a strict group keeps at most 85")


def test_a_server_may_declare_the_approved_hash_of_its_tool_manifest():
    raw = copy.deepcopy(VALID)
    server(raw)["tools_sha256"] = "0f" * 32
    assert parse_spec(raw).servers[0].tools_sha256 == "0f" * 32
    assert parse_spec(VALID).servers[0].tools_sha256 is None   # not declared: no manifest alarm


@pytest.mark.parametrize("digest", ["0F" * 32, "0f" * 31, "sha256:" + "0f" * 32])
def test_a_tools_hash_that_is_not_64_lowercase_hex_is_rejected(digest):
    assert_problem(lambda raw: server(raw).update(tools_sha256=digest), "servers[booking].tools_sha256",
                   "not a SHA-256 hex digest")


def test_monitoring_defaults_to_a_probe_every_five_minutes_alarming_after_two_failures():
    monitoring = parse_spec(VALID).monitoring
    assert (monitoring.probe_every_minutes, monitoring.failed_probes_to_alarm, monitoring.max_probe_latency_ms,
            monitoring.deployment_role_arn) == (5, 2, 5000, None)


@pytest.mark.parametrize("minutes, fragment", [(0, "greater than or equal to 1"), (61, "less than or equal to 60")])
def test_the_probe_schedule_is_one_to_sixty_minutes(minutes, fragment):
    assert_problem(lambda raw: raw.update(monitoring={"probe_every_minutes": minutes}),
                   "monitoring.probe_every_minutes", fragment)


@pytest.mark.parametrize("arn", ["arn:aws:sts::111122223333:assumed-role/deploy/ci", "deploy",
                                 "arn:aws:iam::111122223333:user/deploy"])
def test_the_deployment_role_must_be_an_iam_role_arn(arn):
    assert_problem(lambda raw: raw.update(monitoring={"deployment_role_arn": arn}),
                   "monitoring.deployment_role_arn", "is not an IAM role ARN")


def test_the_deployment_role_must_be_in_the_estates_account():
    assert_problem(lambda raw: raw.update(monitoring={"deployment_role_arn": "arn:aws:iam::999988887777:role/deploy"}),
                   "monitoring.deployment_role_arn", "the role is in account 999988887777, not the estate's "
                                                     "111122223333")
    raw = copy.deepcopy(VALID)
    raw["monitoring"]["deployment_role_arn"] = "arn:aws:iam::111122223333:role/ci/mcp-estate-deploy"
    assert parse_spec(raw).monitoring.deployment_role_arn.endswith("role/ci/mcp-estate-deploy")


def test_a_server_runs_in_every_region_so_regions_is_not_a_server_key():
    assert_problem(lambda raw: server(raw, "inventory").update(regions=["us-east-1"]), "servers[inventory].regions",
                   "unknown key")


@pytest.mark.parametrize("resource", ["arn:aws:dynamodb:*:111122223333:table/x",
                                      "arn:aws:secretsmanager:us-east-1:*:secret:x",
                                      "arn:aws:dynamodb:us-east-1:111122223333:table/*",
                                      "arn:aws:secretsmanager:us-east-1:111122223333:secret:*"])
def test_arns_with_wildcards_for_region_account_or_the_whole_type_are_rejected(resource):
    assert_problem(lambda raw: server(raw)["permissions"][0].update(resources=[resource]),
                   "servers[booking].permissions[0].resources", "grants every resource of its kind")


def test_an_arn_of_another_account_is_rejected():
    assert_problem(lambda raw: server(raw)["permissions"][0].update(
        resources=["arn:aws:dynamodb:us-east-1:999999999999:table/partner"]),
        "servers[booking].permissions[0].resources", "belongs to account 999999999999")


def test_one_tables_index_arn_is_a_precise_grant():
    raw = copy.deepcopy(VALID)
    server(raw)["permissions"][0]["resources"] = ["arn:aws:dynamodb:us-east-1:111122223333:table/partner/index/*"]
    parse_spec(raw)


@pytest.mark.parametrize("cidr, fragment", [("0.0.0.0/1", "a large part of the internet"),
                                            ("2001:db8::/32", "IPv6")])
def test_egress_must_name_a_narrow_ipv4_destination(cidr, fragment):
    assert_problem(lambda raw: server(raw).update(egress=[{"cidr": cidr, "description": "x"}]),
                   "servers[booking].egress[0].cidr", fragment)


def test_the_same_egress_declared_twice_is_rejected():
    twice = [{"cidr": "198.51.100.0/24", "description": "partner"}] * 2
    assert_problem(lambda raw: server(raw).update(egress=twice), "servers[booking].egress",
                   "198.51.100.0/24 port 443 is declared twice")


@pytest.mark.parametrize("stack", ["Prod", "prod.eu", "a-stack-name-that-is-way-too-long"])
def test_stack_names_that_cannot_name_aws_resources_are_rejected(stack):
    from mcp_estate.contract.validate import stack_name_problems
    assert "cannot name AWS resources" in str(stack_name_problems(stack)[0])


@pytest.mark.parametrize("count", [2, 3])
def test_three_zones_where_fargate_runs_in_three(count):
    raw = copy.deepcopy(VALID)
    group(raw, "americas")["regions"].append({"name": "ap-northeast-1", "cidr": "10.22.0.0/16",
                                              "availability_zones": count})
    assert parse_spec(raw).regions["ap-northeast-1"].availability_zones == count


def test_more_zones_than_fargate_runs_in_is_rejected_naming_the_zones():
    problems = problems_of(lambda raw: group(raw, "eu")["regions"].append(
        {"name": "us-west-1", "cidr": "10.40.0.0/16", "availability_zones": 3}))
    assert "residency_groups[eu].regions[us-west-1].availability_zones: 3 zones: Fargate runs in only " \
           "2 zones of us-west-1 (usw1-az1, usw1-az3); use availability_zones: 2" in problems


def test_an_unknown_region_with_zones_reports_the_region_only():
    problems = problems_of(lambda raw: group(raw, "eu")["regions"].append(
        {"name": "eu-south-9", "cidr": "10.40.0.0/16", "availability_zones": 3}))
    assert [p.split(":")[0] for p in problems] == ["residency_groups[eu].regions[eu-south-9].name"]


def test_the_deploy_stage_is_full_unless_the_stack_asks_for_the_foundation():
    assert parse_spec(VALID).deploy_stage == "full"
    assert parse_spec({**VALID, "deploy_stage": "foundation"}).deploy_stage == "foundation"
    assert_problem(lambda raw: raw.update(deploy_stage="images"), "deploy_stage", "'foundation' or 'full'")


# -- ALB priorities 1-50 belong to the residency guard (components/region_compute.py) ---------------

@pytest.mark.parametrize("priority", [1, 50, 0, -3])
def test_an_explicit_route_priority_in_the_guards_band_is_refused(priority):
    assert_problem(lambda raw: server(raw).update(route_priority=priority), "servers[booking].route_priority",
                   "ALB priorities 1-50 are reserved for the residency guard")


def test_route_priorities_just_above_the_guard_and_at_the_alb_maximum_are_accepted():
    raw = copy.deepcopy(VALID)
    server(raw).update(route_priority=51)
    server(raw, "inventory").update(route_priority=50000)
    assert [s.priority for s in parse_spec(raw).servers] == [51, 50000]


def test_a_derived_priority_that_would_land_in_the_guards_band_moves_above_it():
    from mcp_estate.contract.spec import Server
    image = f"{REGISTRY}/mcp/atq@{DIGEST}"
    # "atq" derived 35 before the guard existed; names outside the band keep their priority (booking: 1987).
    assert 50 < Server(name="atq", image=image).priority <= 50000
    assert Server(name="booking", image=image).priority == 1987


def test_the_layout_is_one_stack_unless_the_stack_asks_for_a_stack_per_region():
    assert parse_spec(VALID).layout == "one-stack"
    assert parse_spec({**VALID, "layout": "stack-per-region"}).layout == "stack-per-region"
    with pytest.raises(SpecError) as refused:
        parse_spec({**VALID, "layout": "stack-per-server"})
    assert str(refused.value) == "layout: Input should be 'one-stack' or 'stack-per-region'; got 'stack-per-server'"


@pytest.mark.parametrize("description", ["Partner's API", "payments ~ eu", "50% of traffic", "x" * 256, ""])
def test_an_egress_description_ec2_would_refuse_is_refused_at_plan_time(description):
    server = {**VALID["servers"][0], "egress": [{"cidr": "203.0.113.0/24", "description": description}]}
    with pytest.raises(SpecError) as refused:
        parse_spec({**VALID, "servers": [server, *VALID["servers"][1:]]})
    assert "cannot describe a security group rule" in str(refused.value)
    assert "servers[" in str(refused.value) and "].egress[0].description" in str(refused.value)


def test_an_egress_description_in_ec2s_alphabet_is_kept():
    text = "Payments API (eu) #1: https://pay.example.com/v2 [primary] +=&;{}!$*@,"
    server = {**VALID["servers"][0], "egress": [{"cidr": "203.0.113.0/24", "description": text}]}
    assert parse_spec({**VALID, "servers": [server, *VALID["servers"][1:]]}).servers[0].egress[0].description == text
