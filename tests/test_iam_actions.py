"""The offline IAM catalogue (policies/iam_actions.py) on the inputs its callers meet: an unknown
service, an action in another case, a condition key with a placeholder, the `*` of a statement.
Found by the mutation run (`.ci/mutation policy-parsers`): each test kills a mutant that survived."""

from __future__ import annotations

import pytest

from mcp_estate.policies import iam_actions
from mcp_estate.policies.iam_actions import condition_key_defined, services_of, unknown_actions


@pytest.fixture(autouse=True)
def fresh_condition_keys():
    """Build the cached condition-key table inside these tests: mutmut maps a function to the tests
    that call it, and a cached table is built once, by whichever test asks first."""
    iam_actions._condition_keys.cache_clear()


def test_unknown_actions_returns_exactly_the_actions_aws_does_not_define_as_written():
    actions = ["s3:GetObject", "S3:getobject", "s3:GetObjekt", "nosuchservice:GetThing", "s3GetObject"]
    assert unknown_actions(actions) == ["s3:GetObjekt", "nosuchservice:GetThing", "s3GetObject"]


def test_services_of_a_statement_names_each_prefix_once_and_star_names_every_service():
    assert services_of(["s3:Get*", "KMS:Decrypt", "s3:PutObject"]) == {"s3", "kms"}
    assert services_of(["s3*:List*"]) >= {"s3", "s3express", "s3-outposts"}
    everything = services_of(["*"])
    assert {"s3", "kms", "ecs", "iam"} <= everything and len(everything) > 400


@pytest.mark.parametrize("key", ["s3:ExistingObjectTag/team", "S3:EXISTINGOBJECTTAG/Team",
                                 "s3:BucketTag/cost-centre", "s3:x-amz-acl"])
def test_a_service_condition_key_is_defined_in_any_case_and_with_its_placeholder_filled(key):
    assert condition_key_defined(key, frozenset({"s3"})) is True


@pytest.mark.parametrize("key, services", [
    ("s3:ExistingObjectTag/", {"s3"}),              # the placeholder stands for at least one character
    ("s3:ExistingObjectTag<key>", {"s3"}),          # the placeholder's literal text is not a key
    ("s3:NoSuchConditionKey", {"s3"}),
    ("s3:ExistingObjectTag/team", {"kms"}),         # defined, but by a service the statement does not name
    ("s3:x-amz-acl", {"nosuchservice"}),            # a service AWS does not have defines nothing
    ("s3:x-amz-acl", set()),
])
def test_a_condition_key_no_named_service_defines_is_not_defined(key, services):
    assert condition_key_defined(key, frozenset(services)) is False
