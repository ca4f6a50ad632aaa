"""OriginCertificates: one validated ACM certificate per region, one DNS record for them all."""

from __future__ import annotations

from functools import cache

import pulumi
import pulumi_aws as aws
from conftest import Plan, run_program

from mcp_estate.components.origin_certificates import OriginCertificates, OriginCertificatesArgs
from mcp_estate.contract.names import ContractTags

HOSTNAME = "mcp.example.travel"
ZONE = "fedcba9876543210fedcba9876543210"
REGIONS = ["eu-west-1", "us-east-1"]
TAGS = ContractTags("test", "dev", "platform")


@cache
def certificates() -> tuple[Plan, dict]:
    seen: dict = {}

    def program():
        providers = {r: aws.Provider(f"aws-{r}", region=r) for r in REGIONS}
        certs = OriginCertificates("origin-tls", OriginCertificatesArgs(
            hostname=HOSTNAME, zone_id=ZONE, regions=REGIONS, providers=providers, tags=TAGS))
        pulumi.Output.all(**certs.arns).apply(seen.update)

    return run_program(program), seen


def test_each_region_gets_its_own_dns_validated_certificate_for_the_hostname():
    plan, _ = certificates()
    for region in REGIONS:
        cert = plan.named(f"origin-tls-{region}")
        assert cert.inputs == {"domainName": HOSTNAME, "validationMethod": "DNS", "keyAlgorithm": "EC_prime256v1",
                               "tags": TAGS(region=region)}
        assert cert.provider.startswith(plan.named(f"aws-{region}").urn)
        assert cert.outputs["arn"].startswith(f"arn:aws:acm:{region}:")


def test_one_dns_only_record_validates_every_region():
    plan, _ = certificates()
    record = plan.one("cloudflare:index/dnsRecord:DnsRecord")
    assert record.name == "origin-tls-validation"
    [option] = plan.named(f"origin-tls-{REGIONS[0]}").outputs["domainValidationOptions"]
    assert {k: v for k, v in record.inputs.items() if k != "comment"} == {
        "zoneId": ZONE, "proxied": False, "ttl": 60, "type": "CNAME",
        "name": option["resourceRecordName"].rstrip("."), "content": option["resourceRecordValue"].rstrip(".")}
    for region in REGIONS:
        validation = plan.named(f"origin-tls-{region}-validated")
        assert record.urn in validation.dependencies
        assert validation.inputs["validationRecordFqdns"] == [record.inputs["name"]]


def test_arns_are_the_validated_certificates_per_region():
    plan, seen = certificates()
    assert seen == {r: plan.named(f"origin-tls-{r}-validated").outputs["certificateArn"] for r in REGIONS}
    assert seen == {r: plan.named(f"origin-tls-{r}").outputs["arn"] for r in REGIONS}
