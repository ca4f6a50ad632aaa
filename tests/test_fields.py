"""The spec's shared field types (mcp_estate/contract/fields.py): the boundaries they draw and the
exact message a user reads, which names the value and the fix. Found by the mutation run
(`.ci/mutation contract --only mcp_estate/contract/fields.py`): each test kills a surviving mutant."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from mcp_estate.contract.fields import Cidr, DigestImage, EgressCidr, HttpsUrl, Name, Region, Scope, ToolName
from mcp_estate.contract.geography import AWS_REGIONS
from mcp_estate.contract.problems import Problem, SpecError


def refusal(field_type, value) -> str:
    """The message pydantic reports for `value`, without its "Value error, " prefix."""
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(field_type).validate_python(value)
    return caught.value.errors()[0]["msg"].removeprefix("Value error, ")


def test_a_region_vpc_is_a_16_to_a_20_and_a_21_is_refused_with_the_reason():
    for cidr in ("10.20.0.0/16", "10.20.0.0/20"):
        assert TypeAdapter(Cidr).validate_python(cidr) == cidr
    assert refusal(Cidr, "10.20.0.0/21") == ("'10.20.0.0/21' is a /21: a region's VPC must be /16 to /20 "
                                              "(room for three private and three public subnets)")


def test_a_name_is_refused_with_what_a_valid_one_looks_like():
    assert refusal(Name, "Booking") == ("'Booking' is not a valid name: use 1-24 lowercase letters, digits "
                                        "and hyphens, starting with a letter and not ending with a hyphen")


def test_an_unknown_region_is_refused_with_the_list_of_supported_ones():
    assert refusal(Region, "eu-west-9") == (f"'eu-west-9' is not a supported AWS region; allowed: "
                                            f"{', '.join(AWS_REGIONS)}")


def test_an_image_by_tag_is_refused_with_the_command_that_pins_it():
    assert refusal(DigestImage, "ghcr.io/acme/booking:1.2") == (
        "'ghcr.io/acme/booking:1.2' is not pinned by digest: use <repository>@sha256:<64 hex> "
        "(`estate lock` resolves a tag to its digest)")


def test_an_egress_destination_that_is_no_cidr_is_refused_with_an_example():
    assert refusal(EgressCidr, "partner.example") == "'partner.example' is not a CIDR such as 203.0.113.0/24"


def test_a_tool_name_outside_the_mcp_alphabet_is_refused_with_the_alphabet():
    assert refusal(ToolName, "book flight") == (
        "'book flight' is not an MCP tool name: 1-128 letters, digits, '_', '-', '.' or '/'")


@pytest.mark.parametrize("scope", ["booking read", 'booking"read', "booking\\read", ""])
def test_a_scope_outside_rfc_6749s_alphabet_is_refused_with_an_example(scope):
    assert refusal(Scope, scope) == (f"'{scope}' is not an OAuth scope token (RFC 6749: printable ASCII "
                                     "without spaces, quotes or backslashes), e.g. booking:read")
    assert TypeAdapter(Scope).validate_python("booking:read") == "booking:read"


@pytest.mark.parametrize("url", ["https://user@login.example.travel/", "https://:pw@login.example.travel/",
                                 "https://login.example.travel/?tenant=a", "https://login.example.travel/#x"])
def test_an_https_url_with_credentials_a_query_or_a_fragment_is_refused_each_alone(url):
    assert refusal(HttpsUrl, url) == (f"'{url}' carries credentials, a query or a fragment: "
                                      "give the plain https URL")


@pytest.mark.parametrize("url", ["http://login.example.travel/", "https:///oauth", "login.example.travel"])
def test_a_url_that_is_not_https_or_has_no_host_is_refused_each_alone(url):
    assert refusal(HttpsUrl, url) == f"'{url}' is not an https URL such as https://login.example.travel/"


def test_a_spec_error_says_one_problem_per_line():
    error = SpecError([Problem("servers[booking].port", "must be >= 1024"), Problem("regions", "is empty")])
    assert str(error) == "servers[booking].port: must be >= 1024\nregions: is empty"
