"""The shared IAM-document builders every component writes its policies with."""

from __future__ import annotations

from mcp_estate.contract.iam_documents import document, service_trust


def test_a_document_keeps_its_statements_in_order_under_the_current_language_version():
    first, second = {"Sid": "A", "Effect": "Deny"}, {"Sid": "B", "Effect": "Allow"}
    # 2012-10-17: the version under which ${aws:PrincipalTag/...} in the per-user policies is a variable.
    assert document(iter([first, second])) == {"Version": "2012-10-17", "Statement": [first, second]}


def test_a_service_trust_without_condition_has_no_condition_element():
    assert service_trust("ecs-tasks.amazonaws.com") == {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def test_a_service_trust_carries_its_confused_deputy_condition():
    condition = {"StringEquals": {"aws:SourceAccount": "111122223333"}}
    [statement] = service_trust("lambda.amazonaws.com", condition)["Statement"]
    assert statement["Condition"] == condition and statement["Principal"] == {"Service": "lambda.amazonaws.com"}
