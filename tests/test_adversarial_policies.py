"""The pack tried as an attacker or a hurried engineer would (issue 12): the same risk written
another way, split over resources or hidden in another field must be caught, and the legitimate
changes next to each must pass.

Container definitions are given as raw JSON strings and planned without the fidelity inspector
(which would stop them first): the policy must catch them on its own, as `pulumi preview
--policy-pack` does for a program the inspector never sees.
"""

from __future__ import annotations

import ipaddress
import json

import pulumi_aws as aws
import pytest
from conftest import ACCOUNT, Plan, run_program, violations
from corpus import attack, legitimate
from hypothesis import given
from hypothesis import strategies as st

from mcp_estate.offline.runner import run_offline
from mcp_estate.policies.container_runtime import GO_ATOI, root_user
from mcp_estate.policies.control import (
    NOT_THE_INTERNET,
    ContainerDefinitionError,
    container_definitions,
    covers_the_internet,
)

IMAGE = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/mcp/booking@sha256:" + "ab" * 32
SAFE = ('"name": "booking", "image": "' + IMAGE + '", "essential": true, "user": "10001:10001", '
        '"readonlyRootFilesystem": true, "linuxParameters": {"capabilities": {"drop": ["ALL"]}}')


def uninspected(program) -> Plan:
    return Plan(run_offline(program, stack="test", config={}, account_id=ACCOUNT))


def task_found(policy: str, *containers: str, config: dict | None = None) -> list[str]:
    """The messages of `policy` for a task whose containerDefinitions is exactly this JSON text."""
    text = "[" + ", ".join("{" + c + "}" for c in containers) + "]"
    plan = uninspected(lambda: aws.ecs.TaskDefinition(
        "task", family="booking", network_mode="awsvpc", cpu="256", memory="512", requires_compatibilities=["FARGATE"],
        container_definitions=text))
    return [v.message for v in violations(plan, config, policy=policy)]


def twice(field: str) -> str:
    return f"Task definition task: containerDefinitions[0] sets \"{field}\" twice"


# -- another spelling of the same container definition ----------------------------------------------

@pytest.mark.parametrize("policy, extra, reported", [
    # privileged: another case, a duplicate whose last (true) wins in the provider, an exact duplicate
    ("containers-not-privileged", '"Privileged": true', "container booking: \"privileged\" is True"),
    ("containers-not-privileged", '"PRIVILEGED": false, "privileged": true', twice("privileged")),
    ("containers-not-privileged", '"privileged": false, "privileged": true', twice("privileged")),
    # user: another case, Go's simple folding (U+017F is s), a root duplicate after a safe one
    ("containers-run-as-non-root", '"User": "0"', twice("user")),
    ("containers-run-as-non-root", '"u\u017fer": "+0"', twice("user")),
    ("containers-run-as-non-root", '"USER": "root"', twice("user")),
    # readonlyRootFilesystem: a false duplicate in another case, a string the provider cannot decode
    ("containers-read-only-root-filesystem", '"ReadonlyRootFilesystem": false', twice("readonlyRootFilesystem")),
    ("containers-read-only-root-filesystem", '"READONLYROOTFILE\u017fYSTEM": false', twice("readonlyRootFilesystem")),
    # capabilities: nested keys in any case, added twice
    ("containers-add-no-linux-capabilities", '"LinuxParameters": {"Capabilities": {"Add": ["SYS_ADMIN"]}}',
     twice("linuxParameters")),
])
@attack(param="policy")
def test_a_field_written_again_in_another_spelling_is_refused(policy, extra, reported):
    [message] = task_found(policy, SAFE + ", " + extra)
    assert reported in message


@pytest.mark.parametrize("policy, container, reported", [
    ("containers-not-privileged", '"name": "agent", "Privileged": true', "container agent: \"privileged\" is True"),
    ("containers-run-as-non-root", '"name": "agent", "User": "00:0"', "container agent: user '00:0' is UID 0"),
    ("containers-read-only-root-filesystem", '"name": "agent", "readonlyRootFilesystem": "true"',
     "container agent: \"readonlyRootFilesystem\" is 'true', not a boolean, so it cannot be checked"),
    ("containers-add-no-linux-capabilities",
     '"name": "agent", "linuxParameters": {"CAPABILITIES": {"ADD": ["NET_ADMIN"]}}',
     "container agent: adds Linux capabilities NET_ADMIN"),
    ("containers-add-no-linux-capabilities",
     '"name": "agent", "linuxParameters": {"capabilities": {"add": "SYS_ADMIN"}}',
     "container agent: linuxParameters.capabilities is not shaped as ECS reads it, so it cannot be checked"),
    ("containers-add-no-linux-capabilities", '"name": "agent", "linuxParameters": {"capabilities": {"add": []}, '
     '"capabilities": {"add": ["SYS_PTRACE"]}}', "containerDefinitions[1].linuxParameters sets \"capabilities\" twice"),
])
@attack(param="policy")
def test_a_sidecar_spelling_a_risk_differently_is_reported(policy, container, reported):
    [message] = task_found(policy, SAFE, container)
    assert reported in message


@pytest.mark.parametrize("policy", ["containers-not-privileged", "containers-run-as-non-root",
                                    "containers-read-only-root-filesystem", "containers-add-no-linux-capabilities"])
@attack(param="policy")
def test_several_json_documents_in_one_definition_are_refused(policy):
    plan = uninspected(lambda: aws.ecs.TaskDefinition(
        "task", family="booking", container_definitions="[{" + SAFE + "}] [{" + SAFE + ', "privileged": true}]'))
    assert [v.message for v in violations(plan, policy=policy)] == [
        "Task definition task: containerDefinitions holds 2 JSON documents; the provider decodes each over the "
        "last: give one list, so it cannot be checked"]


@pytest.mark.parametrize("policy", ["containers-not-privileged", "containers-run-as-non-root",
                                    "containers-read-only-root-filesystem", "containers-add-no-linux-capabilities"])
@legitimate(param="policy")
def test_legitimate_spellings_pass(policy):
    # The provider reads these keys as the ECS fields; labels are a map, so their case is data.
    other_case = ('"Name": "booking", "Image": "' + IMAGE + '", "User": "10001", "ReadOnlyRootFilesystem": true, '
                  '"Privileged": false, "LinuxParameters": {"Capabilities": {"Add": [], "Drop": ["ALL"]}}, '
                  '"dockerLabels": {"privileged": "no", "Privileged": "no"}, "unknownField": 1')
    assert task_found(policy, SAFE, other_case.replace('"booking"', '"sidecar"')) == []


@attack("images-from-allowed-registries")
def test_an_image_written_in_another_case_is_still_judged():
    found = task_found("images-from-allowed-registries", '"name": "booking", "Image": "docker.io/library/nginx:1.27"')
    assert found == ["Task definition task, container booking: image 'docker.io/library/nginx:1.27' comes from the "
                     "public registry docker.io; allowed: the estate's private ECR (set allowedRegistries to name "
                     "it). Copy the image into the estate's private ECR and reference it there by digest"]


@attack("images-pinned-by-digest")
def test_a_second_image_key_cannot_swap_the_reviewed_image():
    [found] = task_found("images-pinned-by-digest", SAFE + ', "IMAGE": "docker.io/evil/booking:latest"')
    assert found.startswith(twice("image"))


# -- property: any case variant or duplicate is read as ECS reads it ------------------------------

FIELDS = {"privileged": True, "user": "0", "readonlyRootFilesystem": False}


def spellings(name: str) -> st.SearchStrategy[str]:
    """Every spelling Go's encoding/json matches to the field `name`: each letter in either case, and
    s/k also as U+017F and U+212A (which fold to them)."""
    def variants(c: str) -> list[str]:
        return [c.lower(), c.upper()] + {"s": ["\u017f"], "k": ["\u212a"]}.get(c.lower(), [])
    return st.tuples(*(st.sampled_from(variants(c)) for c in name)).map("".join)


@given(field=st.sampled_from(sorted(FIELDS)), data=st.data())
def test_any_case_variant_of_a_field_is_read_as_the_field(field, data):
    key = data.draw(spellings(field))
    [container] = container_definitions(json.dumps([{key: FIELDS[field]}]))
    assert container == {field: FIELDS[field]}


@given(data=st.data())
def test_any_case_variant_of_the_added_capabilities_is_read_as_them(data):
    keys = [data.draw(spellings(name)) for name in ("linuxParameters", "capabilities", "add")]
    [container] = container_definitions(json.dumps([{keys[0]: {keys[1]: {keys[2]: ["SYS_ADMIN"]}}}]))
    assert container == {"linuxParameters": {"capabilities": {"add": ["SYS_ADMIN"]}}}


@given(field=st.sampled_from([*FIELDS, "linuxParameters"]), data=st.data())
def test_any_duplicate_of_a_field_in_any_spelling_is_refused(field, data):
    first, second = data.draw(spellings(field)), data.draw(spellings(field))
    with pytest.raises(ContainerDefinitionError, match=f'sets "{field}" twice'):
        container_definitions(f'[{{"name": "a", "{first}": null, "essential": true, "{second}": null}}]')


# -- users as runc reads them ---------------------------------------------------------------------

@given(sign=st.sampled_from(["", "+", "-"]), zeros=st.integers(1, 6),
       group=st.sampled_from(["", ":0", ":10001", ":root", ":"]))
def test_every_spelling_of_uid_0_is_refused(sign, zeros, group):
    user = f"{sign}{'0' * zeros}{group}"
    assert root_user(user) == f"user '{user}' is UID 0, root: set \"user\": \"10001:10001\""


@given(uid=st.integers(1, 2**31 - 1), sign=st.sampled_from(["", "+"]), zeros=st.integers(0, 3),
       group=st.sampled_from(["", ":0", ":10001", ":app"]))
def test_every_spelling_of_a_non_zero_uid_passes(uid, sign, zeros, group):
    assert root_user(f"{sign}{'0' * zeros}{uid}{group}") is None


@given(name=st.text(min_size=1).filter(lambda n: ":" not in n and not GO_ATOI.fullmatch(n)))
def test_every_user_name_but_a_configured_one_is_refused(name):
    assert root_user(name) is not None
    assert root_user(name, {name}) is None or name == "root"


# -- address ranges: the internet however it is split ----------------------------------------------

def split(networks: list, choices: list[int]) -> list:
    """`networks` with the subnets chosen by `choices` split into their two halves, in turn."""
    networks = list(networks)
    for choice in choices:
        network = networks.pop(choice % len(networks))
        networks += list(network.subnets()) if network.prefixlen < network.max_prefixlen else [network]
    return networks


@given(choices=st.lists(st.integers(0, 10**6), max_size=40), order=st.randoms(use_true_random=False),
       family=st.sampled_from(["0.0.0.0/0", "::/0", "2000::/3"]))
def test_any_set_of_ranges_whose_union_is_the_world_is_refused(choices, order, family):
    networks = split([ipaddress.ip_network(family)], choices)
    order.shuffle(networks)
    assert covers_the_internet(networks)


@given(choices=st.lists(st.integers(0, 10**6), max_size=40), drop=st.integers(0, 10**6))
def test_leaving_out_any_public_range_is_not_the_world(choices, drop):
    networks = split([ipaddress.ip_network("0.0.0.0/0")], choices)
    public = [n for n in networks if not any(n.subnet_of(r) for r in NOT_THE_INTERNET if r.version == 4)]
    networks.remove(public[drop % len(public)])
    assert not covers_the_internet(networks)


@given(st.lists(st.sampled_from(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7",
                                 "fe80::/10", "169.254.0.0/16"]).flatmap(
    lambda base: st.integers(ipaddress.ip_network(base).prefixlen, ipaddress.ip_network(base).prefixlen + 8).map(
        lambda length: next(ipaddress.ip_network(base).subnets(new_prefix=length)))), max_size=12))
def test_any_set_of_private_ranges_passes(networks):
    assert not covers_the_internet(networks)


@attack("no-egress-to-the-internet")
def test_ranges_across_rules_are_judged_by_the_policy_as_by_the_parser():
    def program():
        for i, network in enumerate(split([ipaddress.ip_network("2000::/3")], [0, 0, 1, 2])):
            aws.vpc.SecurityGroupEgressRule(f"part-{i}", security_group_id="sg-0123456789abcdef0", ip_protocol="tcp",
                                            from_port=443, to_port=443, cidr_ipv6=str(network))
    [found] = [v.message for v in violations(run_program(program), policy="no-egress-to-the-internet")]
    assert found.startswith("security group sg-0123456789abcdef0 allows egress to ")
    assert ", together the whole internet:" in found


# -- secrets anywhere ---------------------------------------------------------------------------------

SECRET_FIX = ": move it to `secrets` with valueFrom a Secrets Manager ARN (read from the environment, never " \
             "from the command line)"


@pytest.mark.parametrize("extra, where", [
    ('"command": ["serve", "--db-password=hunter2"]', "command argument 1"),
    ('"command": ["serve", "--token", "abc123"]', "command argument 2"),
    ('"entryPoint": ["sh", "-c", "API_TOKEN=abc123 exec /app"]', "entryPoint argument 2"),
    ('"environment": [{"name": "DATABASE_URL", "value": "postgres://app:hunter2@db:5432/orders"}]',
     "environment variable DATABASE_URL"),
    ('"environment": [{"name": "DB_PASS", "value": "hunter2"}]', "environment variable DB_PASS"),
    ('"Environment": [{"Name": "UPSTREAM", "Value": "Server=db;User Id=app;Password=hunter2;"}]',
     "environment variable UPSTREAM"),
    ('"dockerLabels": {"partner.api-key": "k"}', "docker label partner.api-key"),
])
@attack("no-secrets-in-plain-environment")
def test_a_plain_secret_anywhere_in_a_container_is_reported_without_echoing_it(extra, where):
    [message] = task_found("no-secrets-in-plain-environment", SAFE + ", " + extra)
    assert message == f"Task definition task, container booking: plain-text secret (or what looks like one) in " \
                      f"{where}{SECRET_FIX}"
    assert "hunter2" not in message and "abc123" not in message


@pytest.mark.parametrize("extra", [
    '"environment": [{"name": "OAUTH_TOKEN_URL", "value": "https://id.example/oauth2/token"}, '
    '{"name": "OAUTH_ISSUER", "value": "https://id.example"}, {"name": "PASSENGER_COUNT", "value": "2"}, '
    '{"name": "BYPASS_CACHE", "value": "1"}, {"name": "DB_PASSWORD_FILE", "value": "/run/secrets/db"}]',
    '"command": ["serve", "--token-file=/run/secrets/token", "--password", "$DB_PASSWORD"]',
    '"entryPoint": ["sh", "-c", "API_TOKEN=$API_TOKEN exec /app"]',
    '"environment": [{"name": "DATABASE_URL", "value": "postgres://app@db:5432/orders"}]',
])
@legitimate("no-secrets-in-plain-environment")
def test_names_about_secrets_and_references_to_them_pass(extra):
    assert task_found("no-secrets-in-plain-environment", SAFE + ", " + extra) == []


@attack("no-secrets-in-plain-environment")
def test_a_name_exempt_in_pack_config_passes_by_name_but_never_by_value():
    config = {"no-secrets-in-plain-environment": {"notSecretNames": ["PARTNER_TOKEN_BUCKET", "LEGACY_TOKEN"]}}
    container = SAFE + (', "environment": [{"name": "PARTNER_TOKEN_BUCKET", "value": "tokens-eu"}, '
                        '{"name": "LEGACY_TOKEN", "value": "AKIAIOSFODNN7EXAMPLE"}]')
    assert task_found("no-secrets-in-plain-environment", container, config=config) == [
        "Task definition task, container booking: plain-text secret (or what looks like one) in environment "
        f"variable LEGACY_TOKEN{SECRET_FIX}"]


@attack("no-secrets-in-plain-environment")
def test_plain_secrets_in_lambda_environments_and_ssm_string_parameters_are_reported():
    def program():
        aws.lambda_.Function("canary", role="arn:aws:iam::111122223333:role/canary", runtime="python3.12",
                             handler="index.handler", code=None, package_type="Image",
                             image_uri=IMAGE, environment={"variables": {
                                 "PARTNER_API_KEY": "k-123", "TARGET": "https://u:hunter2@mcp.example",
                                 "REGION_NAME": "eu-west-1"}})
        aws.ssm.Parameter("token", name="/mcp/booking/partner-token", type="String", value="t-123")
        aws.ssm.Parameter("url", name="/mcp/booking/upstream", type="StringList",
                          insecure_value="https://app:hunter2@db.example,https://db2.example")
        aws.ssm.Parameter("safe", name="/mcp/booking/partner-token-secure", type="SecureString", value="t-123")
        aws.ssm.Parameter("endpoint", name="/mcp/booking/token-url", type="String",
                          value="https://id.example/oauth2/token")
    found = sorted(v.message for v in violations(uninspected(program), policy="no-secrets-in-plain-environment"))
    assert found == [
        "Lambda function canary: plain-text secret (or what looks like one) in environment variables "
        "PARTNER_API_KEY, TARGET: read them from Secrets Manager at start (the Parameters and Secrets extension, "
        "or the SDK) and keep only the secret's ARN in the environment",
        "SSM parameter /mcp/booking/partner-token holds or looks like a secret in a plain String parameter: make "
        "it type SecureString with the estate's KMS key, or keep it in Secrets Manager",
        "SSM parameter /mcp/booking/upstream holds or looks like a secret in a plain StringList parameter: make "
        "it type SecureString with the estate's KMS key, or keep it in Secrets Manager"]
