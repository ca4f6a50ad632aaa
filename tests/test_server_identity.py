"""A server's roles in one residency group: trusted only by its own ECS tasks, allowed only what it declares
and needs, in the group's regions."""

from __future__ import annotations

import pulumi_aws as aws
import pytest
from conftest import ACCOUNT, policy, run_program

from mcp_estate.components.server_identity import Grant, ServerIdentity, ServerIdentityArgs, role_name

REGIONS = ["eu-central-1", "eu-west-1"]
PREFIX = "mcp-estate-test"
TAGS = {"mcp-estate:stack": "test", "mcp-estate:environment": "prod", "mcp-estate:owner": "travel-platform",
        "mcp-estate:server": "booking", "mcp-estate:residency-group": "eu"}
TABLES = [f"arn:aws:dynamodb:{r}:{ACCOUNT}:table/mcp-estate-test-eu-state" for r in REGIONS]
SESSIONS = Grant(actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"],
                 resources=sorted(TABLES + [f"{t}/index/*" for t in TABLES]))
PARTNER = Grant(actions=["secretsmanager:GetSecretValue"],
                resources=[f"arn:aws:secretsmanager:{r}:{ACCOUNT}:secret:mcp-estate-test/partner-token-??????"
                           for r in REGIONS])
REPOSITORIES = [f"arn:aws:ecr:{r}:{ACCOUNT}:repository/mcp/booking" for r in REGIONS]
LOG_GROUPS = [f"arn:aws:logs:{r}:{ACCOUNT}:log-group:/mcp-estate-test/booking:*" for r in REGIONS]
SECRETS = [f"arn:aws:secretsmanager:{r}:{ACCOUNT}:secret:mcp-estate-test/booking-api-key-??????" for r in REGIONS]
KEYS = [f"arn:aws:kms:{r}:{ACCOUNT}:key/mrk-0123456789abcdef0123456789abcdef" for r in REGIONS]


def identity_args(**overrides) -> ServerIdentityArgs:
    values = dict(server="booking", group="eu", name_prefix=PREFIX, account_id=ACCOUNT, regions=REGIONS,
                  grants=[SESSIONS, PARTNER],
                  repository_arns=REPOSITORIES, log_group_arns=LOG_GROUPS, secret_arns=SECRETS, key_arns=KEYS,
                  tags=TAGS)
    return ServerIdentityArgs(**{**values, **overrides})


def plan_of(**overrides):
    return run_program(lambda: ServerIdentity("booking-eu-identity", identity_args(**overrides)))


@pytest.fixture(scope="module")
def plan():
    """The default plan, shared by the tests that only read it."""
    return plan_of()


def statements(plan, name: str) -> list[dict]:
    return policy(plan.named(name), "policy")["Statement"]


def test_the_task_role_trusts_only_ecs_tasks_of_the_account_in_the_groups_regions(plan):
    assert policy(plan.named("booking-eu-identity-task"), "assumeRolePolicy")["Statement"] == [{
        "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": [ACCOUNT]},
                      "ArnLike": {"aws:SourceArn": [f"arn:aws:ecs:eu-central-1:{ACCOUNT}:*",
                                                    f"arn:aws:ecs:eu-west-1:{ACCOUNT}:*"]}}}]


def test_the_execution_role_trusts_ecs_tasks_as_aws_documents_it_with_no_condition(plan):
    # AWS documents aws:SourceAccount / aws:SourceArn for task roles only; the ECS agent assumes this one.
    assert policy(plan.named("booking-eu-identity-execution"), "assumeRolePolicy")["Statement"] == [{
        "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]


def test_the_roles_are_named_for_the_estate_server_and_group(plan):
    assert plan.named("booking-eu-identity-task").inputs["name"] == "mcp-estate-test-booking-eu-task"
    assert plan.named("booking-eu-identity-execution").inputs["name"] == "mcp-estate-test-booking-eu-exec"


def test_role_names_fit_iams_64_characters_and_stay_distinct_for_long_names():
    prefix = "mcp-estate-" + "a-very-long-stack-name-for-a-feature-branch"
    names = {role_name(prefix, server, group, kind)
             for server in ("booking-and-reservations", "booking-and-reservationz")
             for group in ("americas-and-caribbean-1", "americas-and-caribbean-2") for kind in ("task", "exec")}
    assert len(names) == 8 and all(len(n) <= 64 for n in names)
    assert role_name(prefix, "booking", "eu", "task") == role_name(prefix, "booking", "eu", "task")


def test_no_managed_policy_is_attached_to_either_role(plan):
    assert plan.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment") == []
    assert all("managedPolicyArns" not in role.inputs for role in plan.of_type("aws:iam/role:Role"))


def test_task_role_carries_exactly_the_declared_grants(plan):
    grants = plan.named("booking-eu-identity-task-grants")
    assert grants.inputs["role"] == plan.named("booking-eu-identity-task").outputs["name"]
    assert statements(plan, "booking-eu-identity-task-grants") == [
        {"Effect": "Allow", "Action": SESSIONS.actions, "Resource": SESSIONS.resources},
        {"Effect": "Allow", "Action": PARTNER.actions, "Resource": PARTNER.resources},
    ]


def test_reordering_grants_changes_nothing():
    forward = plan_of(grants=[SESSIONS, PARTNER]).named("booking-eu-identity-task-grants").inputs["policy"]
    backward = plan_of(grants=[PARTNER, SESSIONS]).named("booking-eu-identity-task-grants").inputs["policy"]
    assert forward == backward


def test_a_server_without_grants_gets_a_task_role_with_no_permission_at_all():
    plan = plan_of(grants=[])
    assert [p.name for p in plan.of_type("aws:iam/rolePolicy:RolePolicy")] == ["booking-eu-identity-execution-policy"]


def test_execution_role_pulls_only_its_image_writes_only_its_logs_reads_only_its_secrets(plan):
    assert statements(plan, "booking-eu-identity-execution-policy") == [
        {"Sid": "EcrLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        {"Sid": "PullOwnImage", "Effect": "Allow",
         "Action": ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
         "Resource": REPOSITORIES},
        {"Sid": "WriteOwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": LOG_GROUPS},
        {"Sid": "ReadOwnSecrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": SECRETS},
        {"Sid": "DecryptOwnSecrets", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": KEYS,
         "Condition": {"StringEquals": {"kms:ViaService": ["secretsmanager.eu-central-1.amazonaws.com",
                                                           "secretsmanager.eu-west-1.amazonaws.com"]}}},
    ]


def test_execution_role_of_a_server_without_secrets_can_neither_read_secrets_nor_decrypt():
    actions = {s["Action"] if isinstance(s["Action"], str) else tuple(s["Action"])
               for s in statements(plan_of(secret_arns=[]), "booking-eu-identity-execution-policy")}
    assert "secretsmanager:GetSecretValue" not in actions and "kms:Decrypt" not in actions


def test_key_arns_from_other_resources_land_in_the_execution_policy():
    def program():
        key = aws.kms.Key("secrets-key", multi_region=True)
        ServerIdentity("booking-eu-identity", identity_args(key_arns=[key.arn]))

    plan = run_program(program)
    decrypt = statements(plan, "booking-eu-identity-execution-policy")[-1]
    assert decrypt["Resource"] == [plan.named("secrets-key").outputs["arn"]]


def test_a_task_definition_using_the_roles_waits_for_their_policies():
    def program():
        identity = ServerIdentity("booking-eu-identity", identity_args())
        aws.ecs.TaskDefinition("booking-task", family="booking", container_definitions="[]",
                               task_role_arn=identity.task_role_arn,
                               execution_role_arn=identity.execution_role_arn)

    plan = run_program(program)
    dependencies = plan.named("booking-task").dependencies
    assert plan.named("booking-eu-identity-execution-policy").urn in dependencies
    assert plan.named("booking-eu-identity-task-grants").urn in dependencies


def test_roles_carry_the_contract_tags(plan):
    assert all(role.inputs["tags"] == TAGS for role in plan.of_type("aws:iam/role:Role"))


def test_roles_are_children_of_the_identity_component(plan):
    component = plan.one("mcp-estate:server_identity:ServerIdentity")
    assert {r.name for r in plan.children_of(component)} == {
        "booking-eu-identity-task", "booking-eu-identity-task-grants",
        "booking-eu-identity-execution", "booking-eu-identity-execution-policy"}


def test_a_server_granted_state_may_use_the_tables_keys_only_through_dynamodb():
    keys = dict(zip(REGIONS, KEYS))
    [*grants, key_use] = statements(plan_of(state_key_arns=keys), "booking-eu-identity-task-grants")
    assert key_use == {"Effect": "Allow",
                       "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*",
                                  "kms:ReEncrypt*"],
                       "Resource": KEYS,
                       "Condition": {"StringEquals": {"kms:ViaService": ["dynamodb.eu-central-1.amazonaws.com",
                                                                         "dynamodb.eu-west-1.amazonaws.com"]}}}
    assert len(grants) == 2


def test_a_server_without_state_keys_gets_no_key_permission(plan):
    assert not any(a.startswith("kms:") for s in statements(plan, "booking-eu-identity-task-grants")
                   for a in s["Action"])
