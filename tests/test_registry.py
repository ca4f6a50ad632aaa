"""The registry: hardened repositories at the source, replicated to every region with the same hardening."""

from __future__ import annotations

import json

import pulumi_aws as aws
from conftest import ACCOUNT, Plan, policy, run_program

from mcp_estate.components.registry import Registry, RegistryArgs
from mcp_estate.contract.names import ContractTags
from mcp_estate.policies.iam_actions import unknown_actions

TAGS = ContractTags("test", "staging", "travel-platform")
REGIONS = ["eu-west-1", "us-east-1", "us-west-2"]
KEYS = {r: f"arn:aws:kms:{r}:{ACCOUNT}:key/mrk-{r}" for r in REGIONS}
REPOSITORIES = {"booking": "mcp/booking", "inventory": "mcp/inventory"}
TEMPLATE = "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate"


def plan_registry(regions: list[str] = REGIONS, protect: bool = True, seen: dict | None = None) -> Plan:
    def program():
        providers = {r: aws.Provider(f"aws-{r}", region=r) for r in REGIONS}
        registry = Registry("registry", RegistryArgs(
            account_id=ACCOUNT, namespace="mcp", source_region="us-east-1", repositories=REPOSITORIES,
            regions=regions, key_arns=KEYS, providers=providers, protect=protect, tags=TAGS,
            replica_role_name="mcp-estate-test-ecr-replica-creation"))
        if seen is not None:
            for server in REPOSITORIES:
                registry.repository_urls[server].apply(lambda url, s=server: seen.__setitem__(("url", s), url))
                registry.repository_arns[server].apply(lambda arn, s=server: seen.__setitem__(("arn", s), arn))
    return run_program(program)


def provider_of(plan: Plan, region: str) -> str:
    provider = plan.named(f"aws-{region}")
    return f"{provider.urn}::{provider.id}"


def test_repositories_are_immutable_scanned_and_encrypted_with_the_source_key():
    plan = plan_registry()
    for server, name in REPOSITORIES.items():
        repo = plan.named(f"registry-{server}-repo")
        assert repo.provider == provider_of(plan, "us-east-1")
        assert repo.inputs["name"] == name
        assert repo.inputs["imageTagMutability"] == "IMMUTABLE"
        assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
        assert repo.inputs["encryptionConfigurations"] == [{"encryptionType": "KMS", "kmsKey": KEYS["us-east-1"]}]
        assert repo.inputs["forceDelete"] is False
        assert repo.inputs["tags"] == TAGS(server=server)
        assert repo.protect is True


def test_unprotected_estate_leaves_repositories_deletable():
    assert not any(r.protect for r in plan_registry(protect=False).of_type("aws:ecr/repository:Repository"))


def test_only_untagged_images_expire_after_14_days():
    plan = plan_registry()
    lifecycle = plan.named("registry-booking-lifecycle")
    assert lifecycle.inputs["repository"] == "mcp/booking"
    assert json.loads(lifecycle.inputs["policy"])["rules"] == [{
        "rulePriority": 1, "description": "Expire untagged images 14 days after push",
        "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                      "countNumber": 14},
        "action": {"type": "expire"}}]


def test_the_namespace_replicates_from_the_source_to_every_other_region():
    plan = plan_registry()
    replication = plan.one("aws:ecr/replicationConfiguration:ReplicationConfiguration")
    assert replication.provider == provider_of(plan, "us-east-1")
    assert replication.inputs["replicationConfiguration"] == {"rules": [{
        "destinations": [{"region": "eu-west-1", "registryId": ACCOUNT},
                         {"region": "us-west-2", "registryId": ACCOUNT}],
        "repositoryFilters": [{"filter": "mcp/", "filterType": "PREFIX_MATCH"}]}]}


def test_each_destination_creates_replicas_immutable_and_encrypted_with_its_own_key():
    plan = plan_registry()
    role = plan.one("aws:iam/role:Role")
    templates = {t.name: t for t in plan.of_type(TEMPLATE)}
    assert sorted(templates) == ["registry-eu-west-1-template", "registry-us-west-2-template"]
    for region in ("eu-west-1", "us-west-2"):
        template = templates[f"registry-{region}-template"]
        assert template.provider == provider_of(plan, region)
        assert template.inputs["prefix"] == "mcp"
        assert template.inputs["appliedFors"] == ["REPLICATION"]
        assert template.inputs["imageTagMutability"] == "IMMUTABLE"
        assert template.inputs["encryptionConfigurations"] == [{"encryptionType": "KMS", "kmsKey": KEYS[region]}]
        assert template.inputs["resourceTags"] == TAGS()
        assert template.inputs["customRoleArn"] == role.outputs["arn"]


def test_replication_starts_only_once_every_template_exists():
    plan = plan_registry()
    replication = plan.one("aws:ecr/replicationConfiguration:ReplicationConfiguration")
    assert {t.urn for t in plan.of_type(TEMPLATE)} <= set(replication.dependencies)


def test_only_ecr_can_assume_the_replica_creation_role():
    role = plan_registry().one("aws:iam/role:Role")
    assert policy(role, "assumeRolePolicy")["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "ecr.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    assert role.inputs["tags"] == TAGS()


def test_the_creation_role_reaches_only_the_namespace_and_the_destination_keys():
    plan = plan_registry()
    grant = plan.one("aws:iam/rolePolicy:RolePolicy")
    assert grant.inputs["role"] == plan.one("aws:iam/role:Role").id
    ecr, kms = policy(grant, "policy")["Statement"]
    assert ecr["Action"] == ["ecr:CreateRepository", "ecr:ReplicateImage", "ecr:TagResource"]
    assert ecr["Resource"] == [f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/mcp/*",
                               f"arn:aws:ecr:us-west-2:{ACCOUNT}:repository/mcp/*"]
    assert kms["Action"] == ["kms:CreateGrant", "kms:RetireGrant", "kms:DescribeKey"]
    assert kms["Resource"] == [KEYS["eu-west-1"], KEYS["us-west-2"]]
    assert unknown_actions(ecr["Action"] + kms["Action"]) == []


def test_single_region_estate_replicates_nothing():
    plan = plan_registry(regions=["us-east-1"])
    assert plan.of_type("aws:ecr/replicationConfiguration:ReplicationConfiguration") == []
    assert plan.of_type(TEMPLATE) == []
    assert plan.of_type("aws:iam/role:Role") == []
    assert len(plan.of_type("aws:ecr/repository:Repository")) == 2


def test_registry_scanning_is_left_to_the_account():
    assert plan_registry().of_type("aws:ecr/registryScanningConfiguration:RegistryScanningConfiguration") == []


def test_urls_and_arns_are_keyed_by_server():
    seen: dict = {}
    plan_registry(seen=seen)
    assert seen[("url", "booking")] == f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/mcp/booking"
    assert seen[("arn", "inventory")] == f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/mcp/inventory"
