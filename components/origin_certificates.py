"""The origin TLS certificates: one validated ACM certificate per region for the estate hostname.

Cloudflare (SSL mode strict) connects to each region's ALB with SNI = the estate hostname and
checks the certificate, so every region's HTTPS listener needs a publicly trusted certificate
for that name. ACM certificates are regional: one per region, validated by DNS.

ACM derives the DNS-validation CNAME from the domain and the account, not the region, so one
Cloudflare record (DNS-only, short TTL) validates every region's certificate; it is created
once, from one certificate's validation option for the hostname, and every region's
validation waits for it. Key algorithm: ECDSA P-256, accepted by ALB and by Cloudflare's
origin connections, with smaller and faster handshakes than RSA 2048 at equal or better strength.

Requires: `providers` holds an `aws.Provider` per region; the Cloudflare provider may edit `zone_id`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_cloudflare as cloudflare

from mcp_estate.contract.names import ContractTags

from .naming import child_opts

KEY_ALGORITHM = "EC_prime256v1"


@dataclass
class OriginCertificatesArgs:
    hostname: str
    zone_id: str
    regions: list[str]
    providers: dict[str, aws.Provider]
    tags: ContractTags


def validation_field(certificate: aws.acm.Certificate, domain: str, field: str) -> pulumi.Output[str]:
    """One field of `domain`'s validation record, without the trailing dot Cloudflare drops."""
    return certificate.domain_validation_options.apply(
        lambda options: getattr(next(o for o in options if o.domain_name == domain), field).rstrip("."))


class OriginCertificates(pulumi.ComponentResource):
    def __init__(self, name: str, args: OriginCertificatesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:origin_certificates:OriginCertificates", name, None, opts)
        certificates = {region: aws.acm.Certificate(
            f"{name}-{region}", domain_name=args.hostname, validation_method="DNS", key_algorithm=KEY_ALGORITHM,
            tags=args.tags(region=region), opts=child_opts(self, provider=args.providers[region]))
            for region in args.regions}

        # The record is the same for every region: read it from any one certificate.
        template = certificates[args.regions[0]]
        record = cloudflare.DnsRecord(
            f"{name}-validation", zone_id=args.zone_id, proxied=False, ttl=60,
            name=validation_field(template, args.hostname, "resource_record_name"),
            type=validation_field(template, args.hostname, "resource_record_type"),
            content=validation_field(template, args.hostname, "resource_record_value"),
            comment=f"ACM DNS validation for {args.hostname} (every region)", opts=child_opts(self))

        # Each validation names its own certificate's record: were it ever different, the
        # validation fails at once instead of waiting for a record that never comes.
        self.arns = {region: aws.acm.CertificateValidation(
            f"{name}-{region}-validated", certificate_arn=certificate.arn,
            validation_record_fqdns=[validation_field(certificate, args.hostname, "resource_record_name")],
            opts=child_opts(self, provider=args.providers[region], depends_on=[record])).certificate_arn
            for region, certificate in certificates.items()}

        self.register_outputs({"arns": self.arns})
