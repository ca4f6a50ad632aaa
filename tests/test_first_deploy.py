"""The first deploy: a `foundation` stage that a later `full` stage builds on without replacing anything."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, Plan, shipped_plan, stack_config
from test_estate import SMALL

from mcp_estate.cli import main
from mcp_estate.components.estate import Estate
from mcp_estate.contract.validate import parse_spec
from mcp_estate.offline.fidelity import inspect_resource
from mcp_estate.offline.plan import plan_stack, summary
from mcp_estate.offline.runner import run_offline

FOUNDATION_TYPES = {
    "aws:kms/key:Key", "aws:kms/replicaKey:ReplicaKey", "aws:kms/alias:Alias",
    "aws:ecr/repository:Repository", "aws:ecr/lifecyclePolicy:LifecyclePolicy",
    "aws:ecr/replicationConfiguration:ReplicationConfiguration",
    "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate",
    "aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy",   # the role ECR creates replicas with
    "aws:secretsmanager/secret:Secret", "pulumi:providers:aws",
}


def plan_of(raw: dict, stack: str = "test") -> Plan:
    """As `estate plan` builds it: under the mocks of the spec's own account."""
    spec = parse_spec(raw)
    return Plan(run_offline(lambda: Estate("mcp-estate", spec), stack=stack, account_id=spec.aws_account_id,
                            config={"mcp-estate:estate": raw}, inspect=inspect_resource))


def foundation_of(raw: dict) -> dict:
    return {**copy.deepcopy(raw), "deploy_stage": "foundation"}


def comparable(plan: Plan) -> dict[str, tuple]:
    """URN -> what decides whether the engine updates or replaces a resource."""
    return {r.urn: (r.type, r.inputs, r.parent, r.provider, r.protect) for r in plan.resources}


@pytest.fixture(scope="module")
def small_foundation() -> Plan:
    return plan_of(foundation_of(SMALL))


def test_the_foundation_builds_keys_registry_secrets_and_their_providers_only(small_foundation):
    assert {r.type for r in small_foundation.resources if r.custom} == FOUNDATION_TYPES
    names = {r.name for r in small_foundation.resources if r.custom}
    wide = "mcp-estate-estate-wide"
    assert {f"{wide}-registry-booking-repo", f"{wide}-registry-loyalty-repo", f"{wide}-registry-replication",
            f"{wide}-secret-booking-api-key-secret", f"{wide}-americas-keys-us-east-1-key",
            f"{wide}-eu-keys-eu-west-1-key", f"{wide}-eu-keys-eu-central-1-key",
            "mcp-estate-aws-us-east-1", "mcp-estate-aws-eu-west-1", "mcp-estate-aws-eu-central-1"} <= names
    assert not [r for r in small_foundation.resources if r.type.startswith("cloudflare:")]


def test_the_full_stage_keeps_every_foundation_resource_as_it_is(small_foundation):
    full = comparable(plan_of(SMALL))
    foundation = comparable(small_foundation)
    assert set(foundation) < set(full)
    assert {urn: full[urn] for urn in foundation} == foundation


def test_prod_foundation_is_protected_and_kept_by_the_full_prod_stack():
    raw = stack_config("prod")["mcp-estate:estate"]
    foundation = plan_of(foundation_of(raw), stack="prod")
    full = comparable(shipped_plan("prod"))
    assert {urn: full[urn] for urn in comparable(foundation)} == comparable(foundation)
    protected = {r.type for r in foundation.resources if r.protect}
    assert protected == {"aws:kms/key:Key", "aws:kms/replicaKey:ReplicaKey", "aws:ecr/repository:Repository",
                         "aws:secretsmanager/secret:Secret"}


def test_a_planted_input_difference_would_be_caught(small_foundation):
    """The comparison above is not vacuous: moving the secret's home changes its provider and replicas."""
    moved = {**SMALL, "secrets": [{"name": "booking-api-key", "home_region": "eu-west-1"}]}
    other, foundation = comparable(plan_of(foundation_of(moved))), comparable(small_foundation)
    assert [foundation[urn][0] for urn in foundation if other.get(urn) != foundation[urn]] == [
        "aws:secretsmanager/secret:Secret"]


@pytest.fixture
def foundation_stacks(tmp_path: Path) -> Path:
    document = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    document["config"]["mcp-estate:estate"]["deploy_stage"] = "foundation"
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(document))
    return tmp_path


def test_estate_plan_plans_the_foundation_when_the_stack_file_says_so(foundation_stacks, capsys):
    plan = plan_stack("dev", foundation_stacks)
    assert {r.type for r in plan.custom_resources()} == {
        "aws:kms/key:Key", "aws:kms/alias:Alias", "aws:ecr/repository:Repository",
        "aws:ecr/lifecyclePolicy:LifecyclePolicy"}
    assert "none yet: deploy_stage is foundation" in summary(plan)
    assert main(["plan", "--stack", "dev", "--stacks-dir", str(foundation_stacks)]) == 0
    assert "resources: 4 (4 aws)" in capsys.readouterr().out


def test_the_foundation_passes_the_policy_pack(foundation_stacks):
    assert main(["check", "--stack", "dev", "--stacks-dir", str(foundation_stacks)]) == 0


def test_foundation_on_a_live_protected_stack_would_have_to_delete_its_protected_tables():
    """The guard against setting the switch on a running prod stack: the tables are built only by the
    full stage and are protected, so the engine refuses the deletes instead of tearing the estate down."""
    raw = stack_config("prod")["mcp-estate:estate"]
    foundation = comparable(plan_of(foundation_of(raw), stack="prod"))
    dropped = [r for r in shipped_plan("prod").resources if r.urn not in foundation]
    assert sorted(r.name for r in dropped if r.protect) == [
        "mcp-estate-estate-wide-americas-state-table", "mcp-estate-estate-wide-eu-state-table"]
