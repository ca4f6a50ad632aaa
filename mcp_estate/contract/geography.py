"""Static geography the spec validates against and the edge routes by.

AWS regions the estate may run in, each with the Cloudflare load-balancing geo region
whose visitors it serves best and its coordinates (for Cloudflare's proximity fallback).
Only commercial regions enabled by default and older than August 2022 are listed: every
one of them has an ELB log-delivery account and every service the estate uses. A region
that is not here is rejected by the spec with the list of the allowed ones.

Each region also has the zones the estate may place subnets in, by AZ ID (the same physical
zone in every account; zone *names* like `us-east-1a` are mapped per account in older regions).
"""

from typing import NamedTuple


class AwsRegion(NamedTuple):
    cloudflare_region: str
    latitude: float
    longitude: float


AWS_REGIONS: dict[str, AwsRegion] = {
    "us-east-1": AwsRegion("ENAM", 38.9, -77.4),
    "us-east-2": AwsRegion("ENAM", 40.0, -83.0),
    "us-west-1": AwsRegion("WNAM", 37.4, -121.9),
    "us-west-2": AwsRegion("WNAM", 45.8, -119.7),
    "ca-central-1": AwsRegion("ENAM", 45.5, -73.6),
    "sa-east-1": AwsRegion("SSAM", -23.5, -46.6),
    "eu-west-1": AwsRegion("WEU", 53.3, -6.3),
    "eu-west-2": AwsRegion("WEU", 51.5, -0.1),
    "eu-west-3": AwsRegion("WEU", 48.9, 2.4),
    "eu-central-1": AwsRegion("WEU", 50.1, 8.7),
    "eu-north-1": AwsRegion("EEU", 59.3, 18.1),
    "ap-northeast-1": AwsRegion("NEAS", 35.7, 139.7),
    "ap-northeast-2": AwsRegion("NEAS", 37.6, 127.0),
    "ap-northeast-3": AwsRegion("NEAS", 34.7, 135.5),
    "ap-southeast-1": AwsRegion("SEAS", 1.3, 103.8),
    "ap-southeast-2": AwsRegion("OC", -33.9, 151.2),
    "ap-south-1": AwsRegion("SAS", 19.1, 72.9),
}

# Availability Zones the estate's subnets may use, by AZ ID, in the order they are chosen: a
# region with `availability_zones: N` takes the first N its account offers. Append new zones at
# the end, never insert: inserting would move a running stack's subnets to another zone.
# Sources (checked 2026-12): AWS "Supported Regions for Amazon ECS on AWS Fargate" (Linux
# containers) limits us-west-1 to usw1-az1 & usw1-az3 and ap-northeast-1 to apne1-az1, apne1-az2
# & apne1-az4, and lists the other regions here without a zone limit; their AZ IDs are those of
# AWS "AWS Availability Zones" (global-infrastructure guide). use1-az3, which Windows tasks on
# Fargate may not use, comes last. (The archived Fargate table also limited ca-central-1 to
# cac1-az1 & cac1-az2: they come first, so a two-zone stack there is safe under either table.)
FARGATE_ZONE_IDS: dict[str, tuple[str, ...]] = {
    "us-east-1": ("use1-az1", "use1-az2", "use1-az4", "use1-az5", "use1-az6", "use1-az3"),
    "us-east-2": ("use2-az1", "use2-az2", "use2-az3"),
    "us-west-1": ("usw1-az1", "usw1-az3"),
    "us-west-2": ("usw2-az1", "usw2-az2", "usw2-az3", "usw2-az4"),
    "ca-central-1": ("cac1-az1", "cac1-az2", "cac1-az4"),
    "sa-east-1": ("sae1-az1", "sae1-az2", "sae1-az3"),
    "eu-west-1": ("euw1-az1", "euw1-az2", "euw1-az3"),
    "eu-west-2": ("euw2-az1", "euw2-az2", "euw2-az3"),
    "eu-west-3": ("euw3-az1", "euw3-az2", "euw3-az3"),
    "eu-central-1": ("euc1-az1", "euc1-az2", "euc1-az3"),
    "eu-north-1": ("eun1-az1", "eun1-az2", "eun1-az3"),
    "ap-northeast-1": ("apne1-az1", "apne1-az2", "apne1-az4"),
    "ap-northeast-2": ("apne2-az1", "apne2-az2", "apne2-az3", "apne2-az4"),
    "ap-northeast-3": ("apne3-az1", "apne3-az2", "apne3-az3"),
    "ap-southeast-1": ("apse1-az1", "apse1-az2", "apse1-az3"),
    "ap-southeast-2": ("apse2-az1", "apse2-az2", "apse2-az3"),
    "ap-south-1": ("aps1-az1", "aps1-az2", "aps1-az3"),
}

# Cloudflare's geo regions (load balancing `region_pools` keys).
CLOUDFLARE_REGIONS = ("WNAM", "ENAM", "WEU", "EEU", "NSAM", "SSAM", "OC", "ME", "NAF", "SAF",
                      "SAS", "SEAS", "NEAS")

# ISO 3166-1 alpha-2 codes (officially assigned), for residency groups' `countries`.
ISO_COUNTRIES = frozenset("""
AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS
BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE
EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM
HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC
LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA
NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW
SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO
TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
""".split())

assert set(FARGATE_ZONE_IDS) == set(AWS_REGIONS), "every supported region needs its Fargate zones"
