"""EC2 takes a security group's or a rule's description only in a small alphabet: the EC2 API reference
(botocore's ec2 model, IpRange/Ipv6Range/PrefixListId/UserIdGroupPair `Description`, and
CreateSecurityGroup's `GroupDescription`): "Up to 255 characters in length. Allowed characters are
a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{}!$*" (no `&` for a rule naming a prefix list or a group).
Anything else, an apostrophe included, fails `pulumi up` with InvalidParameterValue ("Invalid rule
description"), which no preview shows."""

from __future__ import annotations

import re

import pytest
from conftest import shipped_plan

ALPHABET = re.compile(r"[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]{0,255}")
WITHOUT_AMPERSAND = re.compile(r"[a-zA-Z0-9 ._\-:/()#,@\[\]+=;{}!$*]{0,255}")
RULES = ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
         "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "aws:ec2/securityGroupRule:SecurityGroupRule")
GROUP = "aws:ec2/securityGroup:SecurityGroup"


def descriptions(resource) -> list[tuple[str, re.Pattern]]:
    """(description, the alphabet EC2 takes for it) of a group, its inline rules, or a rule."""
    inputs = resource.inputs
    if resource.type == GROUP:
        inline = [r for key in ("ingress", "egress") for r in inputs.get(key) or []]
        return [(inputs.get("description", ""), ALPHABET)] + [(r.get("description", ""), _alphabet(r))
                                                               for r in inline]
    return [(inputs.get("description", ""), _alphabet(inputs))]


def _alphabet(rule: dict) -> re.Pattern:
    referenced = ("prefixListId", "prefixListIds", "referencedSecurityGroupId", "sourceSecurityGroupId",
                  "securityGroups")
    return WITHOUT_AMPERSAND if any(rule.get(k) for k in referenced) else ALPHABET


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_security_group_and_rule_description_is_in_ec2s_alphabet(stack):
    resources = [r for r in shipped_plan(stack).resources if r.type in (GROUP, *RULES)]
    assert len(resources) > 10
    refused = [(r.name, text) for r in resources for text, alphabet in descriptions(r)
               if not alphabet.fullmatch(str(text))]
    assert refused == []


def test_the_alphabet_refuses_what_ec2_refuses():
    assert ALPHABET.fullmatch("ALB nodes and AWS APIs via interface endpoints (HTTPS: 443) #1, @[x]+=&;{}!$*")
    for text in ("the region's MCP canary", "naïve", "a\nb", "x" * 256, 'say "hi"', "50%", "a|b"):
        assert not ALPHABET.fullmatch(text), text
    assert not WITHOUT_AMPERSAND.fullmatch("Cloudflare & friends")
