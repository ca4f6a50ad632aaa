"""Openings to a large part of the internet without being all of it (issue 12): 0.0.0.0/1, ::/1, a few
public /8s, split over rules or listed in a WAF IP set, must fail; known ranges (Cloudflare's) and private
ranges must pass. The threshold is control.BROAD: a /8's worth of public IPv4 addresses (the widest egress
destination the spec accepts), 1/256 of the public IPv6 space."""

from __future__ import annotations

import ipaddress

import pulumi_aws as aws
import pytest
from conftest import run_program, violations
from corpus import attack

from mcp_estate.policies.control import BROAD, public_addresses

SG = "sg-0123456789abcdef0"
INGRESS = "no-ingress-from-the-internet"
IP_SETS = "waf-ip-sets-name-known-ranges"
# Cloudflare's published ranges (https://www.cloudflare.com/ips-v4 and ips-v6), the estate's real sources.
CLOUDFLARE = ["173.245.48.0/20", "103.21.244.0/22", "103.22.200.0/22", "103.31.4.0/22", "141.101.64.0/18",
              "108.162.192.0/18", "190.93.240.0/20", "188.114.96.0/20", "197.234.240.0/22", "198.41.128.0/17",
              "162.158.0.0/15", "104.16.0.0/13", "104.24.0.0/14", "172.64.0.0/13", "131.0.72.0/22",
              "2400:cb00::/32", "2606:4700::/32", "2803:f800::/32", "2405:b500::/32", "2405:8100::/32",
              "2a06:98c0::/29", "2c0f:f248::/32"]


def networks(*cidrs: str) -> list:
    return [ipaddress.ip_network(c, strict=False) for c in cidrs]


def test_only_public_addresses_count():
    assert public_addresses(networks("0.0.0.0/0"))[4][0] == public_addresses([])[4][1]
    assert public_addresses(networks("10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12"))[4][0] == 0
    assert public_addresses(networks("2000::/3"))[6] == (2 ** 125 - 2 ** 96,) * 2   # but 2001:db8::/32
    assert public_addresses(networks("0.0.0.0/7"))[4][0] == 2 ** 25 - 2 ** 24   # 0.0.0.0/8 is nobody's


def test_cloudflares_ranges_are_far_below_the_threshold():
    counts = public_addresses(networks(*CLOUDFLARE))
    assert counts[4][0] < BROAD[4] / 5 and counts[6][0] < BROAD[6] / 5


def ingress(*cidrs: str):
    def program():
        for i, value in enumerate(cidrs):
            key = "cidr_ipv6" if ":" in value else "cidr_ipv4"
            aws.vpc.SecurityGroupIngressRule(f"rule-{i}", security_group_id=SG, ip_protocol="tcp", from_port=443,
                                             to_port=443, **{key: value})
    return [v.message for v in violations(run_program(program), policy=INGRESS)]


@pytest.mark.parametrize("cidrs, opens", [
    (["0.0.0.0/1"], "0.0.0.0/1 (rule-0), 56.5% of the internet's addresses"),
    (["128.0.0.0/1"], "128.0.0.0/1 (rule-0), 43.5% of the internet's addresses"),
    (["12.0.0.0/7"], "12.0.0.0/7 (rule-0), 0.9% of the internet's addresses"),
    (["11.0.0.0/8", "12.0.0.0/9"], "11.0.0.0/8 (rule-0), 12.0.0.0/9 (rule-1), together 0.7% of the internet's "
                                   "addresses"),
    (["2000::/4"], "2000::/4 (rule-0), 50.0% of the internet's addresses"),
    (["2001::/10"], "2001::/10 (rule-0), 0.8% of the internet's addresses")])
def test_a_large_part_of_the_internet_is_refused_alone_or_split(cidrs, opens):
    assert ingress(*cidrs) == [f"security group {SG} admits {opens} (more than a /8's worth), bypassing Cloudflare: "
                               "admit only a security group (the ALB's) or known ranges (Cloudflare's prefix lists)"]


@pytest.mark.parametrize("cidrs", [["11.0.0.0/8"], ["11.0.0.0/9", "11.128.0.0/9"], ["0.0.0.0/7"],
                                   ["203.0.113.0/24", "198.51.100.0/24"], CLOUDFLARE[:6], ["10.0.0.0/8"],
                                   ["2001::/12"]])
def test_known_private_or_small_ranges_up_to_a_slash_8_pass(cidrs):
    assert ingress(*cidrs) == []


def ip_set(*addresses: str, version: str = "IPV4") -> list[str]:
    plan = run_program(lambda: aws.wafv2.IpSet("partners", name="partners", scope="REGIONAL",
                                               ip_address_version=version, addresses=list(addresses)))
    return [v.message for v in violations(plan, policy=IP_SETS)]


@pytest.mark.parametrize("addresses, lists", [
    (["0.0.0.0/1", "128.0.0.0/1"], "0.0.0.0/1 (addresses), 128.0.0.0/1 (addresses), together the whole internet"),
    (["0.0.0.0/0"], "0.0.0.0/0 (addresses), the whole internet"),
    (["1.0.0.0/8", "2.0.0.0/8"], "1.0.0.0/8 (addresses), 2.0.0.0/8 (addresses), together 0.9% of the internet's "
                                 "addresses (more than a /8's worth)")])
@attack("waf-ip-sets-name-known-ranges")
def test_a_waf_ip_set_listing_a_large_part_of_the_internet_is_refused(addresses, lists):
    assert ip_set(*addresses) == [f"WAF IP set partners lists {lists}: list only the known ranges its rule is for"]


@attack("waf-ip-sets-name-known-ranges")
def test_an_ipv6_half_in_a_waf_ip_set_is_refused():
    assert ip_set("::/1", version="IPV6") == [
        "WAF IP set partners lists ::/1 (addresses), the whole internet: list only the known ranges its rule is for"]


@attack("waf-ip-sets-name-known-ranges")
def test_a_waf_ip_set_of_known_ranges_passes_and_an_odd_value_is_reported():
    assert ip_set(*CLOUDFLARE[:15]) == []
    assert ip_set("203.0.113.0/24", "partner-office") == [
        "WAF IP set partners: addresses names 'partner-office', which is not a CIDR, so what it opens cannot be "
        "checked: write it as a CIDR (203.0.113.0/24)"]
