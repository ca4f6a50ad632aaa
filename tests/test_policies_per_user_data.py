"""What a statement grants on a state table, as the per-user-data controls read it
(policies/per_user_data.py): exact sets of item actions, for the forms a hand-written policy takes."""

from __future__ import annotations

import json

import pulumi_aws as aws
from test_per_user_data import AUTH_ON, ECS_TRUST, UNSCOPED, estate_part, found, grant

from mcp_estate.policies.per_user_data import SCOPED, UNKEYED, state_grant, unscoped_reason

TABLE = "mcp-estate-test-eu-state"
TABLE_ARN = f"arn:aws:dynamodb:eu-west-1:111122223333:table/{TABLE}"
UNKEYED_PATTERNS = ["dynamodb:Scan", "dynamodb:PartiQL*", "dynamodb:ExportTableToPointInTime",
                    "dynamodb:GetRecords"]


def test_not_action_grants_every_item_action_it_does_not_list():
    # NotAction in an Allow grants all it leaves out: listing the unkeyed actions leaves the keyed ones.
    statement = {"Effect": "Allow", "NotAction": UNKEYED_PATTERNS, "Resource": TABLE_ARN}
    assert state_grant(statement, {TABLE}) == SCOPED
    assert state_grant({**statement, "NotAction": "DynamoDB:*"}, {TABLE}) == set()
    assert state_grant({**statement, "NotAction": "s3:*"}, {TABLE}) == SCOPED | UNKEYED


def test_not_action_leaving_unkeyed_actions_is_named_with_them():
    statement = {"Effect": "Allow", "NotAction": ["dynamodb:*Item", "dynamodb:Query", "dynamodb:PartiQL*",
                                                  "dynamodb:ExportTableToPointInTime"], "Resource": TABLE_ARN}
    assert state_grant(statement, {TABLE}) == {"dynamodb:scan", "dynamodb:getrecords"}
    assert unscoped_reason(statement, {TABLE}) == (
        "grants dynamodb:getrecords, dynamodb:scan, which name no partition key: a LeadingKeys condition does "
        "not limit them (ForAllValues is true without the key)")


def test_a_grant_on_one_of_the_tables_indexes_its_stream_or_an_export_reaches_the_table():
    query = {"Effect": "Allow", "Action": "dynamodb:Query"}
    for below in ("index/by-traveller", "stream/2026-01-01T00:00:00.000", "export/01234567890123-abcdef12"):
        assert state_grant({**query, "Resource": f"{TABLE_ARN}/{below}"}, {TABLE}) == {"dynamodb:query"}, below
    # Another table whose name starts with the state table's is not the state table.
    assert state_grant({**query, "Resource": f"{TABLE_ARN}-archive/index/by-traveller"}, {TABLE}) == set()


def test_a_roles_own_inline_policy_counts_like_its_other_policies():
    def reporting(task):
        aws.iam.Role("reporting", name="reporting", assume_role_policy=ECS_TRUST, inline_policies=[
            {"name": "state", "policy": json.dumps({"Version": "2012-10-17", "Statement": [grant(resource=["*"])]})}])
    assert found(estate_part(extra=reporting), UNSCOPED, AUTH_ON) == [
        "role reporting: inline policy state grants item actions without ForAllValues:StringEquals on "
        "dynamodb:LeadingKeys bound to ${aws:PrincipalTag/<tag>}"]
