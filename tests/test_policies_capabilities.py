"""The capability controls (policies/capabilities.py): each catches its planted fault, in the
spellings an attacker or a hurried team would use, and lets the estate's own resources pass."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
from corpus import attack, legitimate
from conftest import ACCOUNT, Plan, violations
from test_cache_and_async import with_capabilities
from test_estate import plan_of

POLICIES = ("queues-encrypted-with-a-customer-key", "queues-closed-to-other-accounts",
            "queues-have-dead-letter-queues", "workers-have-no-ingress", "caches-private-encrypted-iam")
OTHER = "999988887777"
QUEUE = "mcp-estate-eu-west-1-booking-async-queue"


@pytest.fixture(scope="module")
def base() -> Plan:
    return plan_of(with_capabilities())


@pytest.fixture
def plan(base) -> Plan:
    return Plan(copy.deepcopy(base.resources))


def found(plan: Plan, name: str) -> list[str]:
    return [v.message for v in violations(plan, policy=name)]


def plant(plan: Plan, name: str, **values) -> None:
    resource = plan.named(name)
    for key, value in values.items():
        for props in (resource.inputs, resource.outputs):
            if value is None:
                props.pop(key, None)
            else:
                props[key] = value


def add(plan: Plan, like: str, name: str, type_: str, **props) -> None:
    base = plan.named(like)
    plan.resources.append(dataclasses.replace(
        base, urn=base.urn.rsplit("::", 1)[0].rsplit("$", 1)[0] + f"${type_}::{name}", type=type_, name=name,
        inputs=dict(props), outputs={**props, "id": name}, id=name))


@pytest.mark.parametrize("name", POLICIES)
@legitimate(param="name")
def test_the_estates_own_cache_and_queues_pass(base, name):
    assert found(base, name) == []


@pytest.mark.parametrize("key, value", [("kmsMasterKeyId", "alias/aws/sqs"), ("kmsMasterKeyId", None),
                                        ("sqsManagedSseEnabled", True)])
@attack("queues-encrypted-with-a-customer-key")
def test_queue_without_a_customer_key_is_refused(plan, key, value):
    plant(plan, QUEUE, **{key: value})
    if key == "sqsManagedSseEnabled":
        plant(plan, QUEUE, kmsMasterKeyId=None)
    assert found(plan, "queues-encrypted-with-a-customer-key")


def open_policy(condition: dict | None = None, principal=None) -> str:
    statement = {"Effect": "Allow", "Principal": principal or "*", "Action": "sqs:SendMessage", "Resource": "*"}
    if condition:
        statement["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


@pytest.mark.parametrize("doc", [
    open_policy(),
    open_policy({"StringLike": {"aws:PrincipalAccount": "*"}}),                # a disguised wildcard
    open_policy({"StringNotEquals": {"aws:PrincipalAccount": ACCOUNT}}),      # a negation pins nothing
    open_policy({"StringEquals": {"aws:PrincipalAccount": OTHER}}),
    open_policy(principal={"AWS": f"arn:aws:iam::{OTHER}:root"}),
    open_policy(principal={"AWS": OTHER}),
])
@attack("queues-closed-to-other-accounts")
def test_queue_policy_open_to_others_is_refused_inline_and_standalone(plan, doc):
    plant(plan, QUEUE, policy=doc)
    assert found(plan, "queues-closed-to-other-accounts")
    fresh = Plan(plan.resources)
    plant(fresh, QUEUE, policy=None)
    add(fresh, QUEUE, "extra-queue-policy", "aws:sqs/queuePolicy:QueuePolicy", queueUrl="x", policy=doc)
    assert any("extra-queue-policy" in m for m in found(fresh, "queues-closed-to-other-accounts"))


@legitimate("queues-closed-to-other-accounts")
def test_queue_policy_pinned_to_the_estate_passes(plan):
    plant(plan, QUEUE, policy=open_policy({"StringEquals": {"aws:PrincipalAccount": ACCOUNT}}))
    assert found(plan, "queues-closed-to-other-accounts") == []


@attack("queues-have-dead-letter-queues")
def test_queue_without_a_dlq_is_refused(plan):
    plant(plan, QUEUE, redrivePolicy=None)
    assert any(QUEUE in m and "no dead-letter queue" in m for m in found(plan, "queues-have-dead-letter-queues"))


@attack("queues-have-dead-letter-queues")
def test_dlq_in_another_account_is_refused(plan):
    plant(plan, QUEUE, redrivePolicy=json.dumps({"deadLetterTargetArn": f"arn:aws:sqs:eu-west-1:{OTHER}:x",
                                                 "maxReceiveCount": 5}))
    assert any("in another account" in m for m in found(plan, "queues-have-dead-letter-queues"))


@legitimate("queues-have-dead-letter-queues")
def test_standalone_redrive_policy_counts(plan):
    queue = plan.named(QUEUE)
    redrive = queue.inputs["redrivePolicy"]
    plant(plan, QUEUE, redrivePolicy=None)
    add(plan, QUEUE, "booking-redrive", "aws:sqs/redrivePolicy:RedrivePolicy",
        queueUrl=queue.outputs["url"], redrivePolicy=redrive)
    assert found(plan, "queues-have-dead-letter-queues") == []


@attack("workers-have-no-ingress")
def test_worker_opened_by_a_separate_ingress_rule_is_refused(plan):
    sg = plan.named("mcp-estate-eu-west-1-booking-async-sg").outputs["id"]
    add(plan, "mcp-estate-eu-west-1-booking-async-to-endpoints", "sneaky-ingress",
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", securityGroupId=sg, ipProtocol="tcp",
        fromPort=22, toPort=22, cidrIpv4="10.0.0.0/8")
    assert any("sneaky-ingress" in m for m in found(plan, "workers-have-no-ingress"))


@attack("workers-have-no-ingress")
def test_worker_with_a_public_ip_is_refused(plan):
    service = plan.named("mcp-estate-eu-west-1-booking-async-service")
    network = {**service.inputs["networkConfiguration"], "assignPublicIp": True}
    plant(plan, "mcp-estate-eu-west-1-booking-async-service", networkConfiguration=network)
    assert any("public IP" in m for m in found(plan, "workers-have-no-ingress"))


@pytest.mark.parametrize("mode", [{"type": "password"}, {"type": "no-password-required"}])
@attack("caches-private-encrypted-iam")
def test_password_cache_users_are_refused(plan, mode):
    plant(plan, "mcp-estate-eu-west-1-cache-user-booking", authenticationMode=mode)
    assert found(plan, "caches-private-encrypted-iam")


@pytest.mark.parametrize("key, value", [("kmsKeyId", None), ("kmsKeyId", "alias/aws/elasticache"),
                                        ("userGroupId", None), ("securityGroupIds", None)])
@attack("caches-private-encrypted-iam")
def test_cache_without_its_key_group_or_users_is_refused(plan, key, value):
    plant(plan, "mcp-estate-eu-west-1-cache-cache", **{key: value})
    assert found(plan, "caches-private-encrypted-iam")


@legitimate("caches-private-encrypted-iam")
def test_a_cache_on_another_customer_key_of_the_estate_passes(plan):
    plant(plan, "mcp-estate-eu-west-1-cache-cache",
          kmsKeyId=f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9")
    assert found(plan, "caches-private-encrypted-iam") == []


@legitimate("workers-have-no-ingress")
def test_a_worker_with_one_more_egress_rule_and_no_public_ip_said_explicitly_passes(plan):
    sg = plan.named("mcp-estate-eu-west-1-booking-async-sg").outputs["id"]
    add(plan, "mcp-estate-eu-west-1-booking-async-to-endpoints", "to-partner",
        "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", securityGroupId=sg, ipProtocol="tcp",
        fromPort=443, toPort=443, cidrIpv4="203.0.113.0/24")
    service = plan.named("mcp-estate-eu-west-1-booking-async-service")
    plant(plan, "mcp-estate-eu-west-1-booking-async-service",
          networkConfiguration={**service.inputs["networkConfiguration"], "assignPublicIp": False})
    assert found(plan, "workers-have-no-ingress") == []


@attack("workers-have-no-ingress")
def test_worker_opened_by_an_inline_ingress_block_is_refused(plan):
    plant(plan, "mcp-estate-eu-west-1-booking-async-sg", ingress=[
        {"protocol": "tcp", "fromPort": 8080, "toPort": 8080, "cidrBlocks": ["10.0.0.0/8"]}])
    assert any("ingress" in m for m in found(plan, "workers-have-no-ingress"))
