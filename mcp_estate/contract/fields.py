"""The field types every part of the spec shares: names, regions, countries, CIDRs, URLs, images.

Each one validates a single value and says what a valid one looks like; the models that use them
live in spec.py (the estate), auth.py, surface.py, rollout.py and capabilities.py.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .geography import AWS_REGIONS, ISO_COUNTRIES

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,22}[a-z0-9]$|^[a-z]$")
DIGEST_IMAGE = re.compile(r"^(?P<repository>[^@\s]+?)(:[\w][\w.-]{0,127})?@sha256:[0-9a-f]{64}$")
# RFC 6749 scope-token: printable ASCII except space, `"` and `\`.
_SCOPE = re.compile(r'^[\x21\x23-\x5B\x5D-\x7E]{1,128}$')
# MCP tool names (2025-11-25 "Tool names"): 1-128 of A-Z a-z 0-9 _ - . /
_TOOL = re.compile(r"^[A-Za-z0-9_.\-/]{1,128}$")


class Strict(BaseModel):
    """Unknown keys are typos: reject them instead of ignoring them."""
    model_config = ConfigDict(extra="forbid", frozen=True)


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"'{value}' is not a valid name: use 1-24 lowercase letters, digits and "
                         "hyphens, starting with a letter and not ending with a hyphen")
    return value


def _aws_region(value: str) -> str:
    if value not in AWS_REGIONS:
        raise ValueError(f"'{value}' is not a supported AWS region; allowed: {', '.join(AWS_REGIONS)}")
    return value


def _country(value: str) -> str:
    if value not in ISO_COUNTRIES:
        raise ValueError(f"'{value}' is not an ISO 3166-1 alpha-2 country code (e.g. DE, FR, US)")
    return value


def _cidr(value: str) -> str:
    try:
        network = ipaddress.IPv4Network(value)
    except ValueError as error:
        raise ValueError(f"'{value}' is not a valid IPv4 CIDR ({error}); e.g. 10.20.0.0/16") from None
    if not network.is_private:
        raise ValueError(f"'{value}' is not a private range: use RFC 1918 space such as 10.20.0.0/16")
    if not 16 <= network.prefixlen <= 20:
        raise ValueError(f"'{value}' is a /{network.prefixlen}: a region's VPC must be /16 to /20 "
                         "(room for three private and three public subnets)")
    return value


def _egress_cidr(value: str) -> str:
    """A destination outside the VPC: IPv4 (the VPCs have no IPv6) and no wider than a /8."""
    try:
        network = ipaddress.ip_network(value)
    except ValueError:
        raise ValueError(f"'{value}' is not a CIDR such as 203.0.113.0/24") from None
    if network.version == 6:
        raise ValueError(f"'{value}' is IPv6: the estate's VPCs are IPv4-only, the rule would do nothing")
    if network.prefixlen < 8:
        raise ValueError(f"'{value}' is a /{network.prefixlen}, a large part of the internet: declare the "
                         "destination's own range (a /8 or narrower)")
    return value


def _https_url(value: str) -> str:
    """An absolute https URL with a host and no credentials, query or fragment (RFC 8414, 9728)."""
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"'{value}' is not an https URL such as https://login.example.travel/")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(f"'{value}' carries credentials, a query or a fragment: give the plain https URL")
    return value


def _scope(value: str) -> str:
    if not _SCOPE.match(value):
        raise ValueError(f"'{value}' is not an OAuth scope token (RFC 6749: printable ASCII without "
                         "spaces, quotes or backslashes), e.g. booking:read")
    return value


def _tool(value: str) -> str:
    if not _TOOL.match(value):
        raise ValueError(f"'{value}' is not an MCP tool name: 1-128 letters, digits, '_', '-', '.' or '/'")
    return value


# What EC2 takes in a security group rule's description (botocore's ec2 model, `IpRange.Description`).
_RULE_DESCRIPTION = re.compile(r"[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]{1,255}")


def _rule_description(value: str) -> str:
    if not _RULE_DESCRIPTION.fullmatch(value):
        raise ValueError(f"'{value}' cannot describe a security group rule: 1-255 of letters, digits, spaces "
                         "and ._-:/()#,@[]+=&;{}!$* (EC2 refuses others, an apostrophe included)")
    return value


def _digest_image(image: str) -> str:
    if not DIGEST_IMAGE.match(image):
        raise ValueError(f"'{image}' is not pinned by digest: use <repository>@sha256:<64 hex> "
                         "(`estate lock` resolves a tag to its digest)")
    return image


Name = Annotated[str, AfterValidator(_name)]
Region = Annotated[str, AfterValidator(_aws_region)]
Country = Annotated[str, AfterValidator(_country)]
Cidr = Annotated[str, AfterValidator(_cidr)]
EgressCidr = Annotated[str, AfterValidator(_egress_cidr)]
Port = Annotated[int, Field(ge=1024, le=65535, description="non-root containers bind ports >= 1024")]
HttpsUrl = Annotated[str, AfterValidator(_https_url)]
Scope = Annotated[str, AfterValidator(_scope)]
ToolName = Annotated[str, AfterValidator(_tool)]
RuleDescription = Annotated[str, AfterValidator(_rule_description)]
DigestImage = Annotated[str, AfterValidator(_digest_image)]
