"""Per-user data: with auth on, a server reads and writes only the caller's state items, through a data
role its task role may assume only with the traveller's session tag; backends are reached by token
exchange. (moto does not evaluate dynamodb:LeadingKeys or session-tag conditions: these tests assert
the exact documents and the checks that judge them; what IAM does with them is in the README's
unverified list.)"""

from __future__ import annotations

import copy
import json

import pulumi_aws as aws
import pytest
from conftest import ACCOUNT, Plan, policy, run_program, violations
from corpus import attack, legitimate
from test_estate import SMALL, plan_of

from mcp_estate.checking.pack_config import generated
from mcp_estate.components.async_worker import queue_policy
from mcp_estate.components.per_user_data import DataRole, DataRoleArgs, data_policy, data_trust_policy
from mcp_estate.contract.per_user_data import partition_key, traveller_key
from mcp_estate.contract.problems import SpecError
from mcp_estate.contract.validate import parse_spec

TASK_ROLE = "mcp-estate-test-booking-eu-task"
TASK_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{TASK_ROLE}"
TABLE_NAME = "mcp-estate-test-eu-state"   # SMALL's eu group, stack `test`
TABLES = [f"arn:aws:dynamodb:{r}:{ACCOUNT}:table/{TABLE_NAME}" for r in ("eu-central-1", "eu-west-1")]
KEYS = {r: f"arn:aws:kms:{r}:{ACCOUNT}:key/mrk-0123456789abcdef0123456789abcdef"
        for r in ("eu-central-1", "eu-west-1")}
TAGS = {"mcp-estate:server": "booking", "mcp-estate:residency-group": "eu"}
ACTIONS = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"]


# -- the documents ------------------------------------------------------------------------------------------

def test_the_data_role_trusts_only_the_servers_task_role_with_exactly_the_traveller_tag():
    assert data_trust_policy(TASK_ROLE_ARN) == {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": TASK_ROLE_ARN}, "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {"StringLike": {"aws:RequestTag/mcp-estate-traveller": "?*"},
                      "ForAllValues:StringEquals": {"aws:TagKeys": ["mcp-estate-traveller"]}}}]}


def test_the_data_role_reaches_only_items_keyed_by_the_server_and_the_callers_tag():
    document = data_policy("booking", ACTIONS, TABLES, KEYS)
    assert document["Statement"][0] == {
        "Effect": "Allow", "Action": ACTIONS, "Resource": TABLES,   # tables only: no index, no stream
        "Condition": {"ForAllValues:StringEquals": {
            "dynamodb:LeadingKeys": ["booking#${aws:PrincipalTag/mcp-estate-traveller}"]},
            "Null": {"dynamodb:LeadingKeys": "false"}}}
    assert document["Statement"][1]["Condition"] == {"StringEquals": {"kms:ViaService": [
        "dynamodb.eu-central-1.amazonaws.com", "dynamodb.eu-west-1.amazonaws.com"]}}


def test_the_partition_key_contract_hashes_the_claim_and_prefixes_the_server():
    # SHA-256("abc"), FIPS 180-2 test vector: claims with `|` or `@` become a valid session tag value
    key = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert traveller_key("abc") == key
    assert partition_key("booking", key) == f"booking#{key}"


# -- in the estate ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small() -> Plan:
    return plan_of(SMALL)


def test_with_auth_on_the_task_role_may_only_become_its_data_role(small):
    grants = policy(small.named("mcp-estate-estate-wide-booking-eu-identity-task-grants"), "policy")
    assert grants == {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Resource": [f"arn:aws:iam::{ACCOUNT}:role/mcp-estate-test-booking-eu-data"]}]}


def test_each_group_gets_a_data_role_over_its_own_tables_only(small):
    role = small.named("mcp-estate-estate-wide-booking-eu-data-role")
    assert role.inputs["name"] == "mcp-estate-test-booking-eu-data"
    assert policy(role, "assumeRolePolicy") == data_trust_policy(TASK_ROLE_ARN)
    items = policy(small.named("mcp-estate-estate-wide-booking-eu-data-items"), "policy")["Statement"][0]
    assert items["Resource"] == TABLES and items["Action"] == ["dynamodb:GetItem", "dynamodb:PutItem"]
    americas = policy(small.named("mcp-estate-estate-wide-booking-americas-data-items"), "policy")["Statement"][0]
    assert americas["Resource"] == [f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/mcp-estate-test-americas-state"]
    assert not [r for r in small.resources
                if r.name.startswith("mcp-estate-estate-wide-loyalty-") and r.name.endswith("-data-role")]


def test_the_task_learns_its_data_role_and_tag_from_its_environment(small):
    container = json.loads(small.named("mcp-estate-eu-west-1-booking-task").inputs["containerDefinitions"])[0]
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert environment["MCP_DATA_ROLE_ARN"] == f"arn:aws:iam::{ACCOUNT}:role/mcp-estate-test-booking-eu-data"
    assert environment["MCP_TRAVELLER_TAG"] == "mcp-estate-traveller"


def test_change_detection_watches_the_data_roles(small):
    pattern = json.loads(small.named("mcp-estate-us-east-1-changes-iam-changes").inputs["eventPattern"])
    assert "mcp-estate-test-booking-eu-data" in json.dumps(pattern)


def test_with_auth_disabled_in_dev_the_task_role_keeps_its_table_grant_and_no_data_role_exists():
    raw = copy.deepcopy(SMALL) | {"environment": "dev", "auth": {"disabled": True}}
    plan = plan_of(raw)
    assert not [r for r in plan.resources if r.name.endswith("-data-role")]
    grant = policy(plan.named("mcp-estate-estate-wide-booking-eu-identity-task-grants"), "policy")["Statement"][0]
    assert grant["Action"] == ["dynamodb:GetItem", "dynamodb:PutItem"]
    assert grant["Resource"] == sorted(TABLES + [f"{t}/index/*" for t in TABLES])
    container = json.loads(plan.named("mcp-estate-eu-west-1-booking-task").inputs["containerDefinitions"])[0]
    assert "MCP_DATA_ROLE_ARN" not in {e["name"] for e in container["environment"]}


BACKENDS = copy.deepcopy(SMALL)
BACKENDS["auth"] |= {"token_exchange_url": "https://login.example.travel/oauth2/token",
                     "token_exchange_cidrs": ["192.0.2.0/24"]}
BACKENDS["servers"][0] |= {
    "secrets": ["booking-api-key", "booking-idp-client"],
    "egress": [{"cidr": "198.51.100.0/24", "description": "Partner API (declared by hand)"}],
    "backends": [{"name": "partner-api", "url": "https://api.partner.example/", "cidr": "198.51.100.0/24",
                  "client_secret": "booking-idp-client"},
                 {"name": "fares", "url": "https://fares.example/", "cidr": "203.0.113.0/24",
                  "client_secret": "booking-idp-client"}]}


@pytest.fixture(scope="module")
def with_backends() -> Plan:
    return plan_of(BACKENDS)


def test_backends_and_the_token_endpoint_get_one_egress_rule_each_on_443(with_backends):
    prefix = "mcp-estate-eu-west-1-booking-to-"
    rules = {r.name.removeprefix(prefix): r.inputs
             for r in with_backends.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
             if r.name.startswith(prefix) and r.inputs.get("cidrIpv4", "").count(".") == 3
             and r.inputs["cidrIpv4"] != "10.30.0.0/16"}
    assert {name: (i["cidrIpv4"], i["fromPort"], i["toPort"], i["description"]) for name, i in rules.items()} == {
        "198-51-100-0-24-443": ("198.51.100.0/24", 443, 443, "Partner API (declared by hand)"),
        "203-0-113-0-24-443": ("203.0.113.0/24", 443, 443, "Backend fares (fares.example)"),
        "192-0-2-0-24-443": ("192.0.2.0/24", 443, 443, "The IdP token endpoint (token exchange)")}


def test_the_task_learns_the_token_endpoint_and_each_backends_url(with_backends):
    container = json.loads(with_backends.named("mcp-estate-eu-west-1-booking-task").inputs["containerDefinitions"])[0]
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert environment["TOKEN_EXCHANGE_URL"] == "https://login.example.travel/oauth2/token"
    assert environment["BACKEND_PARTNER_API_URL"] == "https://api.partner.example/"
    assert environment["BACKEND_FARES_URL"] == "https://fares.example/"
    assert "BOOKING_IDP_CLIENT" in {s["name"] for s in container["secrets"]}


# -- the spec -----------------------------------------------------------------------------------------------

def problems(raw: dict) -> list[str]:
    with pytest.raises(SpecError) as error:
        parse_spec(raw)
    return [f"{p.path}: {p.message}" for p in error.value.problems]


@pytest.mark.parametrize("action", ["dynamodb:Scan", "dynamodb:PartiQLSelect", "dynamodb:DescribeTable"])
def test_with_auth_on_state_actions_that_name_no_key_are_refused(action):
    raw = copy.deepcopy(SMALL)
    raw["servers"][0]["permissions"][0]["actions"].append(action)
    found = problems(raw)
    assert len(found) == 1 and found[0].startswith(f"servers[booking].permissions[0].actions: {action} on `state`")


def test_with_auth_disabled_a_scan_stays_the_servers_choice():
    raw = copy.deepcopy(SMALL) | {"environment": "dev", "auth": {"disabled": True}}
    raw["servers"][0]["permissions"][0]["actions"].append("dynamodb:Scan")
    assert parse_spec(raw).servers[0].permissions[0].actions[-1] == "dynamodb:Scan"


def test_a_backend_secret_must_be_one_of_the_servers_secrets():
    raw = copy.deepcopy(BACKENDS)
    raw["servers"][0]["secrets"] = ["booking-api-key"]
    assert problems(raw) == [
        f"servers[booking].backends[{name}].client_secret: 'booking-idp-client' is not one of the server's "
        "secrets (booking-api-key): add it to servers[booking].secrets (injected from Secrets Manager like the "
        "others)" for name in ("partner-api", "fares")]


def test_backends_need_the_token_endpoint_and_its_ranges():
    raw = copy.deepcopy(BACKENDS)
    del raw["auth"]["token_exchange_url"], raw["auth"]["token_exchange_cidrs"]
    assert [p.split(":")[0] for p in problems(raw)] == ["auth.token_exchange_url", "auth.token_exchange_cidrs"]


def test_backends_without_auth_are_refused():
    raw = copy.deepcopy(BACKENDS) | {"environment": "dev", "auth": {"disabled": True}}
    assert [p.split(":")[0] for p in problems(raw)] == ["auth"]


@pytest.mark.parametrize("name", ["MCP_DATA_ROLE_ARN", "MCP_TRAVELLER_TAG", "TOKEN_EXCHANGE_URL",
                                  "BACKEND_PARTNER_API_URL"])
def test_the_estates_variables_cannot_be_set_by_hand(name):
    raw = copy.deepcopy(SMALL)
    raw["servers"][1]["environment"] = {name: "x"}
    assert problems(raw)[0].startswith(f"servers[loyalty].environment: Value error, '{name}'") or \
        problems(raw)[0].startswith(f"servers[loyalty].environment: '{name}'")


def test_a_backend_range_is_checked_like_any_egress():
    raw = copy.deepcopy(BACKENDS)
    raw["servers"][0]["backends"][0]["cidr"] = "0.0.0.0/0"
    assert problems(raw) == ["servers[booking].backends[partner-api].cidr: '0.0.0.0/0' is a /0, a large part of "
                             "the internet: declare the destination's own range (a /8 or narrower)"]


def test_the_pack_config_says_whether_auth_is_on():
    assert generated(parse_spec(SMALL))["no-unscoped-state-access-when-auth-is-on"] == {"authEnabled": True}
    dev = copy.deepcopy(SMALL) | {"environment": "dev", "auth": {"disabled": True}}
    assert generated(parse_spec(dev))["no-unscoped-state-access-when-auth-is-on"] == {"authEnabled": False}


# -- the policies, attacked ---------------------------------------------------------------------------------

SCOPED = "per-user-data-roles-scoped-by-leading-keys"
UNSCOPED = "no-unscoped-state-access-when-auth-is-on"
TRUST = "per-user-data-role-trusts-only-its-task-role"
AUTH_ON = {UNSCOPED: {"authEnabled": True}}
ECS_TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole",
    "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT}}}]})
LEADING = {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["booking#${aws:PrincipalTag/mcp-estate-traveller}"]}}


def estate_part(data_statement: dict | None = None, trust: dict | None = None, extra=None) -> Plan:
    """A state table, the task role a task definition runs as, its data role (the component's documents,
    or the statement/trust given), and whatever `extra(task_role)` adds."""
    def program():
        aws.dynamodb.Table("table", name=TABLE_NAME, hash_key="pk", range_key="sk", billing_mode="PAY_PER_REQUEST",
                           attributes=[{"name": "pk", "type": "S"}, {"name": "sk", "type": "S"}])
        task = aws.iam.Role("task", name=TASK_ROLE, assume_role_policy=ECS_TRUST, tags=TAGS)
        aws.ecs.TaskDefinition("definition", family="booking", task_role_arn=TASK_ROLE_ARN,
                               container_definitions=json.dumps([{"name": "booking", "image": "x", "essential": True}]))
        if data_statement is None and trust is None:
            DataRole("mcp-estate-estate-wide-booking-eu-data", DataRoleArgs(
                server="booking", group="eu", role_name="mcp-estate-test-booking-eu-data", task_role=task,
                task_role_arn=TASK_ROLE_ARN, actions=ACTIONS, table_arns=TABLES, state_key_arns=KEYS, tags=TAGS))
        else:
            data = aws.iam.Role("data", name="mcp-estate-test-booking-eu-data", tags=TAGS,
                                assume_role_policy=json.dumps(trust or data_trust_policy(TASK_ROLE_ARN)))
            statement = data_statement or data_policy("booking", ACTIONS, TABLES, KEYS)["Statement"][0]
            aws.iam.RolePolicy("data-items", role=data.id, policy=json.dumps(
                {"Version": "2012-10-17", "Statement": [statement]}))
        if extra:
            extra(task)
    return Plan(run_program(program).resources)


def found(plan: Plan, name: str, config: dict | None = None) -> list[str]:
    return [v.message for v in violations(plan, config, policy=name)]


@legitimate("per-user-data-roles-scoped-by-leading-keys")
@legitimate("no-unscoped-state-access-when-auth-is-on")
@legitimate("per-user-data-role-trusts-only-its-task-role")
def test_the_estates_data_role_passes_every_check():
    plan = estate_part()
    assert (found(plan, SCOPED), found(plan, UNSCOPED, AUTH_ON), found(plan, TRUST)) == ([], [], [])


def grant(actions=ACTIONS, resource=TABLES, condition=None) -> dict:
    statement = {"Effect": "Allow", "Action": actions, "Resource": resource}
    return statement | ({"Condition": condition} if condition else {})


@pytest.mark.parametrize("condition, why", [
    ({"ForAnyValue:StringEquals": LEADING["ForAllValues:StringEquals"], "StringEquals": {
        "aws:PrincipalTag/mcp-estate-traveller": "x"}}, "ForAnyValue"),
    ({"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["booking#*"]}, "Null": {
        "aws:PrincipalTag/mcp-estate-traveller": "false"}}, "StringLike with a wildcard"),
    ({"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["booking#${aws:PrincipalTag/x}*"]}}, "trailing *"),
    ({"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["${aws:RequestTag/mcp-estate-traveller}"]},
      "StringLike": {"aws:PrincipalTag/mcp-estate-traveller": "?*"}}, "request tag"),
    ({"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["booking#${aws:userid}"]},
      "StringLike": {"aws:PrincipalTag/mcp-estate-traveller": "?*"}}, "caller-chosen session name"),
    ({"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["booking#${aws:PrincipalTag/mcp-estate-traveller}",
                                                             "everyone"]}}, "a literal second key"),
])
@attack("per-user-data-roles-scoped-by-leading-keys")
def test_a_leading_keys_condition_not_bound_to_the_principal_tag_is_refused(condition, why):
    plan = estate_part(grant(condition=condition))
    assert found(plan, SCOPED) == [
        "per-user data role data: role policy data-items grants item actions without ForAllValues:StringEquals "
        "on dynamodb:LeadingKeys bound to ${aws:PrincipalTag/<tag>}"], why


@pytest.mark.parametrize("actions, named", [
    (["dynamodb:GetItem", "dynamodb:Scan"], "dynamodb:scan"),
    (["dynamodb:*"], "dynamodb:exporttabletopointintime, dynamodb:getrecords, dynamodb:partiqldelete"),
    (["dynamodb:PartiQL*"], "dynamodb:partiqldelete"),
    (["DynamoDB:S?an"], "dynamodb:scan"),
])
@attack("per-user-data-roles-scoped-by-leading-keys")
def test_actions_that_name_no_key_are_refused_even_under_the_condition(actions, named):
    plan = estate_part(grant(actions=actions, condition=LEADING))
    [message] = found(plan, SCOPED)
    assert named in message and "name no partition key" in message


@attack("per-user-data-roles-scoped-by-leading-keys")
def test_a_grant_on_the_tables_stream_or_through_a_wildcard_arn_counts():
    stream = f"{TABLES[0]}/stream/2026-01-01T00:00:00.000"
    assert found(estate_part(grant(actions=["dynamodb:GetRecords"], resource=[stream], condition=LEADING)), SCOPED)
    wildcard = f"arn:aws:dynamodb:*:{ACCOUNT}:table/*"
    assert found(estate_part(grant(resource=[wildcard])), SCOPED)


@legitimate("per-user-data-roles-scoped-by-leading-keys")
def test_the_legitimate_variants_pass():
    batch = ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem"]
    for statement in (grant(actions=batch, condition=LEADING),
                      grant(resource=[f"{TABLES[0]}/index/by-date"], condition=LEADING),
                      grant(actions=["dynamodb:DescribeTable"]),   # no item action: not judged here
                      grant(condition={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [
                          "${aws:PrincipalTag/mcp-estate-traveller}"]}})):
        assert found(estate_part(statement), SCOPED) == [], statement


def attach_unscoped_managed(task):
    managed = aws.iam.Policy("reader", name="reader", policy=json.dumps(
        {"Version": "2012-10-17", "Statement": [grant()]}))
    aws.iam.RolePolicyAttachment("reader-attachment", role=task.name, policy_arn=managed.arn)


def unscoped_role_policy(task):
    aws.iam.RolePolicy("task-grants", role=task.id, policy=json.dumps(
        {"Version": "2012-10-17", "Statement": [grant(resource=["*"])]}))


def aws_managed_reader(task):
    aws.iam.RolePolicyAttachment("ro", role=task.name,
                                 policy_arn="arn:aws:iam::aws:policy/AmazonDynamoDBReadOnlyAccess")


def table_resource_policy(task):
    aws.dynamodb.ResourcePolicy("table-policy", resource_arn=TABLES[0], policy=json.dumps(
        {"Version": "2012-10-17", "Statement": [grant(resource=TABLES[0]) | {"Principal": {"AWS": TASK_ROLE_ARN}}]}))


@pytest.mark.parametrize("extra, expected", [
    (attach_unscoped_managed, "role task: managed policy reader (attached by reader-attachment) grants item "
                              "actions without"),
    (unscoped_role_policy, "role task: role policy task-grants grants item actions without"),
    (aws_managed_reader, "role task: AWS-managed arn:aws:iam::aws:policy/AmazonDynamoDBReadOnlyAccess (attached "
                         "by ro) reads every table of the account"),
    (table_resource_policy, "table resource policy table-policy grants dynamodb:getitem, dynamodb:putitem, "
                            "dynamodb:query: with auth on"),
])
@attack("no-unscoped-state-access-when-auth-is-on")
def test_with_auth_on_no_role_reads_the_state_table_unscoped_by_any_route(extra, expected):
    plan = estate_part(extra=extra)
    [message] = found(plan, UNSCOPED, AUTH_ON)
    assert message.startswith(expected)
    assert found(plan, UNSCOPED) == []   # with auth off (dev), a task role's own grant is its choice


@pytest.mark.parametrize("trust, expected", [
    (data_trust_policy("arn:aws:iam::111122223333:role/someone-else"), "which no task definition runs tasks as"),
    ({"Version": "2012-10-17", "Statement": [data_trust_policy(TASK_ROLE_ARN)["Statement"][0] | {
        "Principal": {"AWS": [TASK_ROLE_ARN, f"arn:aws:iam::{ACCOUNT}:role/other"]}}]},
     "a second role is admitted only as the worker"),
    ({"Version": "2012-10-17", "Statement": [data_trust_policy(TASK_ROLE_ARN)["Statement"][0] | {
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}]}, "name exactly one task role"),
    ({"Version": "2012-10-17", "Statement": [data_trust_policy(TASK_ROLE_ARN)["Statement"][0] | {
        "Action": "sts:*"}]}, "allow only sts:AssumeRole and sts:TagSession"),
    ({"Version": "2012-10-17", "Statement": [data_trust_policy(TASK_ROLE_ARN)["Statement"][0] | {
        "Condition": {"StringLike": {"aws:RequestTag/mcp-estate-traveller": "?*"}}}]}, "does not require"),
    ({"Version": "2012-10-17", "Statement": [data_trust_policy(TASK_ROLE_ARN)["Statement"][0] | {
        "Condition": {"StringLike": {"aws:RequestTag/mcp-estate-traveller": "*"},
                      "ForAllValues:StringEquals": {"aws:TagKeys": ["mcp-estate-traveller"]}}}]}, "does not require"),
    ({"Version": "2012-10-17", "Statement": [data_trust_policy(TASK_ROLE_ARN)["Statement"][0], {
        "Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
     "name exactly one task role"),
])
@attack("per-user-data-role-trusts-only-its-task-role")
def test_a_data_role_trusted_by_anyone_but_its_task_role_with_the_tag_is_refused(trust, expected):
    [message] = found(estate_part(trust=trust), TRUST)
    assert message.startswith("per-user data role data ") and expected in message


@attack("per-user-data-role-trusts-only-its-task-role")
def test_a_data_role_trusting_another_servers_task_role_is_refused():
    def other(task):
        aws.iam.Role("other-task", name="mcp-estate-test-loyalty-eu-task", assume_role_policy=ECS_TRUST,
                     tags={**TAGS, "mcp-estate:server": "loyalty"})
        aws.ecs.TaskDefinition("other-definition", family="loyalty", container_definitions=json.dumps(
            [{"name": "loyalty", "image": "x", "essential": True}]),
            task_role_arn=f"arn:aws:iam::{ACCOUNT}:role/mcp-estate-test-loyalty-eu-task")
    plan = estate_part(trust=data_trust_policy(f"arn:aws:iam::{ACCOUNT}:role/mcp-estate-test-loyalty-eu-task"),
                       extra=other)
    assert [m for m in found(plan, TRUST) if "another server" in m]


# -- the worker acting as the traveller: trusted only as the consumer of a queue its task role alone feeds ------

WORKER_ROLE = "mcp-estate-test-booking-eu-worker"
WORKER_ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/{WORKER_ROLE}"
QUEUE_NAME = "mcp-estate-test-booking-tasks"
QUEUE_ARN = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:{QUEUE_NAME}"


def worker_of(name=WORKER_ROLE, tags=TAGS, queue_document=None):
    """`extra` for estate_part: a worker role tasks run as, and a task queue (the component's policy:
    only the task role sends, only `name` consumes, unless `queue_document` is given)."""
    arn = f"arn:aws:iam::{ACCOUNT}:role/{name}"

    def extra(task):
        aws.iam.Role(f"{name}-role", name=name, assume_role_policy=ECS_TRUST, tags=tags)
        aws.ecs.TaskDefinition(f"{name}-definition", family=f"{name}-worker", task_role_arn=arn,
                               container_definitions=json.dumps([{"name": "w", "image": "x", "essential": True}]))
        aws.sqs.Queue(f"{name}-queue", name=QUEUE_NAME, policy=json.dumps(
            queue_document or queue_policy(QUEUE_ARN, ACCOUNT, (TASK_ROLE_ARN, arn))))
    return extra


def trusting(*arns: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [data_trust_policy(TASK_ROLE_ARN)["Statement"][0] | {
        "Principal": {"AWS": list(arns)}}]}


@legitimate("per-user-data-role-trusts-only-its-task-role")
def test_the_data_role_may_trust_the_worker_of_its_task_roles_queue():
    assert data_trust_policy(TASK_ROLE_ARN, WORKER_ROLE_ARN)["Statement"][0]["Principal"] == {
        "AWS": [TASK_ROLE_ARN, WORKER_ROLE_ARN]}
    for trust in (data_trust_policy(TASK_ROLE_ARN, WORKER_ROLE_ARN), trusting(WORKER_ROLE_ARN, TASK_ROLE_ARN)):
        assert found(estate_part(trust=trust, extra=worker_of()), TRUST) == []


def queue_letting_the_worker_send_too() -> dict:
    document = queue_policy(QUEUE_ARN, ACCOUNT, (TASK_ROLE_ARN, WORKER_ROLE_ARN))
    document["Statement"][2]["Condition"]["StringNotEquals"]["aws:PrincipalArn"] = [TASK_ROLE_ARN, WORKER_ROLE_ARN]
    return document


def queue_whose_send_deny_lapses() -> dict:
    document = queue_policy(QUEUE_ARN, ACCOUNT, (TASK_ROLE_ARN, WORKER_ROLE_ARN))
    document["Statement"][2]["Condition"]["Bool"] = {"aws:ViaAWSService": "false"}
    return document


def queue_denying_another_queue() -> dict:
    document = queue_policy(QUEUE_ARN, ACCOUNT, (TASK_ROLE_ARN, WORKER_ROLE_ARN))
    document["Statement"][2]["Resource"] = QUEUE_ARN.replace(QUEUE_NAME, "elsewhere")
    return document


THIRD = f"arn:aws:iam::{ACCOUNT}:role/mcp-estate-test-booking-eu-reporting"


@attack("per-user-data-role-trusts-only-its-task-role")
@pytest.mark.parametrize("trust, extra, expected", [
    (trusting(TASK_ROLE_ARN, WORKER_ROLE_ARN, THIRD), worker_of(), "name exactly one task role ARN, or it and"),
    (trusting(TASK_ROLE_ARN, THIRD), worker_of(), "a second role is admitted only as the worker"),
    (trusting(TASK_ROLE_ARN, WORKER_ROLE_ARN), None, "a second role is admitted only as the worker"),
    (trusting(TASK_ROLE_ARN, WORKER_ROLE_ARN), worker_of(queue_document=queue_letting_the_worker_send_too()),
     "a second role is admitted only as the worker"),
    (trusting(TASK_ROLE_ARN, WORKER_ROLE_ARN), worker_of(queue_document=queue_whose_send_deny_lapses()),
     "a second role is admitted only as the worker"),
    (trusting(TASK_ROLE_ARN, WORKER_ROLE_ARN), worker_of(queue_document=queue_denying_another_queue()),
     "a second role is admitted only as the worker"),
    (trusting(TASK_ROLE_ARN, TASK_ROLE_ARN), worker_of(), "a second role is admitted only as the worker"),
])
def test_a_data_role_trusting_more_than_its_task_role_and_worker_is_refused(trust, extra, expected):
    [message] = found(estate_part(trust=trust, extra=extra), TRUST)
    assert message.startswith("per-user data role data trusts ") and expected in message


@attack("per-user-data-role-trusts-only-its-task-role")
@pytest.mark.parametrize("name, tags", [
    ("mcp-estate-test-loyalty-eu-worker", {**TAGS, "mcp-estate:server": "loyalty"}),          # another server's
    ("mcp-estate-test-booking-americas-worker", {**TAGS, "mcp-estate:residency-group": "americas"}),  # another group
])
def test_a_data_role_trusting_another_servers_or_groups_worker_is_refused(name, tags):
    # Even fed by its task role alone: the worker's tags say it serves another server or group.
    arn = f"arn:aws:iam::{ACCOUNT}:role/{name}"
    [message] = found(estate_part(trust=trusting(TASK_ROLE_ARN, arn), extra=worker_of(name, tags)), TRUST)
    assert message == f"per-user data role data trusts {arn}, the task role of another server or residency group"


@legitimate("no-unscoped-state-access-when-auth-is-on")
def test_with_auth_off_a_task_roles_own_unscoped_grant_is_its_choice():
    assert found(estate_part(extra=unscoped_role_policy), UNSCOPED, {UNSCOPED: {"authEnabled": False}}) == []


@legitimate("per-user-data-role-trusts-only-its-task-role")
def test_the_data_roles_own_trust_given_by_hand_passes():
    # The component's trust policy written out as a plain document, as a hand-made stack would.
    assert found(estate_part(data_statement=grant(condition=LEADING), trust=data_trust_policy(TASK_ROLE_ARN)),
                 TRUST) == []
