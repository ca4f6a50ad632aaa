"""Container runtime controls: every container of every task definition runs unprivileged and holds no secret."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pytest

from corpus import attack, legitimate
from conftest import run_program, run_with_planted_fault, violations

IMAGE = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/mcp/booking@sha256:" + "ab" * 32
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:mcp/booking-api-key-AbCdEf"
# The hardened container mcp_service builds, in the ECS API's names.
SAFE = {"name": "booking", "image": IMAGE, "essential": True, "user": "10001:10001",
        "readonlyRootFilesystem": True, "privileged": False,
        "linuxParameters": {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}},
        "environment": [{"name": "PORT", "value": "8080"}, {"name": "OAUTH_ISSUER", "value": "https://id.example"}],
        "secrets": [{"name": "BOOKING_API_KEY", "valueFrom": SECRET_ARN}]}


def task(*containers: dict, network_mode: str | None = "awsvpc", as_output: bool = False) -> None:
    definitions = list(containers) or [SAFE]
    aws.ecs.TaskDefinition(
        "booking-task", family="booking", network_mode=network_mode, cpu="256", memory="512",
        requires_compatibilities=["FARGATE"] if network_mode == "awsvpc" else ["EC2"],
        # mcp_service serializes with Output.json_dumps: the policy must read both the same way
        container_definitions=pulumi.Output.json_dumps(definitions) if as_output else json.dumps(definitions))


def without(key: str) -> dict:
    return {k: v for k, v in SAFE.items() if k != key}


def found(policy: str, *containers: dict, **task_args) -> list[str]:
    return [v.message for v in violations(run_program(lambda: task(*containers, **task_args)), policy=policy)]


RUNTIME_POLICIES = ["containers-run-as-non-root", "containers-read-only-root-filesystem", "containers-not-privileged",
                    "containers-add-no-linux-capabilities", "tasks-use-awsvpc-networking",
                    "no-secrets-in-plain-environment"]


@pytest.mark.parametrize("policy", RUNTIME_POLICIES)
def test_the_hardened_container_of_mcp_service_passes(policy):
    assert found(policy, as_output=True) == []


# -- containers-run-as-non-root ----------------------------------------------------------------------

@pytest.mark.parametrize("user", ["10001", "10001:10001", "10001:0", "1:1", "2147483647", "+10001", "010001:x"])
@legitimate("containers-run-as-non-root")
def test_a_numeric_non_zero_uid_passes(user):
    assert found("containers-run-as-non-root", dict(SAFE, user=user)) == []


# Every spelling runc's strconv.Atoi reads as UID 0: a sign, leading zeros, a group after it.
@pytest.mark.parametrize("user", ["0", "0:0", "0:10001", "00", "+0", "-0", "000:root", "0:0:0"])
@attack("containers-run-as-non-root")
def test_uid_0_in_any_spelling_is_reported(user):
    assert found("containers-run-as-non-root", dict(SAFE, user=user)) == [
        f"Task definition booking-task, container booking: user '{user}' is UID 0, root: "
        "set \"user\": \"10001:10001\""]


@pytest.mark.parametrize("user", ["root", "root:root", "root:10001"])
@attack("containers-run-as-non-root")
def test_the_root_name_is_reported(user):
    assert found("containers-run-as-non-root", dict(SAFE, user=user)) == [
        f"Task definition booking-task, container booking: user '{user}' is root: set \"user\": \"10001:10001\""]


@pytest.mark.parametrize("user", [":10001", ":0", ":"])
@attack("containers-run-as-non-root")
def test_a_group_without_a_user_keeps_root_and_is_reported(user):
    # runc leaves the UID at its default, 0, when the user part is empty.
    assert found("containers-run-as-non-root", dict(SAFE, user=user)) == [
        f"Task definition booking-task, container booking: user '{user}' names no user, so the UID stays root: "
        "set \"user\": \"10001:10001\""]


@pytest.mark.parametrize("user", ["-1", "4294967296", "2147483648", "-4294967296"])
@attack("containers-run-as-non-root")
def test_a_uid_outside_runcs_range_is_reported(user):
    # runc refuses them; containerd's uint32() would wrap -4294967296 to 0.
    [message] = found("containers-run-as-non-root", dict(SAFE, user=user))
    assert f"user '{user}' is outside the UIDs 1..2147483647" in message


@pytest.mark.parametrize("user", ["app", "ROOT", "toor", " 0", "0 ", "\uff10", "nonroot:nonroot"])
@attack("containers-run-as-non-root")
def test_a_user_name_cannot_be_judged_without_the_images_passwd_and_is_reported(user):
    # " 0" is no number to Atoi (and "０" is a fullwidth digit): a name, looked up in /etc/passwd.
    [message] = found("containers-run-as-non-root", dict(SAFE, user=user))
    assert f"user '{user}' is a name the image's /etc/passwd resolves, possibly to UID 0" in message
    assert "list the name in nonRootUserNames" in message


@attack("containers-run-as-non-root")
def test_a_user_name_the_pack_config_lists_as_non_root_passes_but_root_never_does():
    config = {"containers-run-as-non-root": {"nonRootUserNames": ["nonroot", "root"]}}
    plan = run_program(lambda: task(dict(SAFE, user="nonroot:nonroot"), dict(SAFE, name="sidecar", user="root")))
    assert [v.message for v in violations(plan, config, policy="containers-run-as-non-root")] == [
        "Task definition booking-task, container sidecar: user 'root' is root: set \"user\": \"10001:10001\""]


@attack("containers-run-as-non-root")
def test_a_user_that_is_not_a_string_cannot_be_judged():
    plan = run_with_planted_fault(lambda: task(dict(SAFE, user=10001)),
                                  "containerDefinitions[booking].user must be string")
    [message] = [v.message for v in violations(plan, policy="containers-run-as-non-root")]
    assert "user 10001 is not a string, so it cannot be checked" in message


@pytest.mark.parametrize("container", [without("user"), dict(SAFE, user="")])
@attack("containers-run-as-non-root")
def test_a_container_without_a_user_runs_as_the_images_user_and_is_reported(container):
    [message] = found("containers-run-as-non-root", container)
    assert "container booking: no `user` is set" in message


@attack("containers-run-as-non-root")
def test_a_root_sidecar_is_reported_even_when_the_server_is_not():
    [message] = found("containers-run-as-non-root", SAFE, dict(without("user"), name="otel"))
    assert message.startswith("Task definition booking-task, container otel: no `user` is set")


# -- containers-read-only-root-filesystem ------------------------------------------------------------

@pytest.mark.parametrize("container", [without("readonlyRootFilesystem"), dict(SAFE, readonlyRootFilesystem=False)])
@attack("containers-read-only-root-filesystem")
def test_a_writable_root_filesystem_is_reported(container):
    [message] = found("containers-read-only-root-filesystem", container)
    assert message.startswith("Task definition booking-task, container booking: the root filesystem is writable")
    assert '"readonlyRootFilesystem": true' in message


# -- containers-not-privileged -----------------------------------------------------------------------

@legitimate("containers-not-privileged")
def test_privileged_unset_is_the_unprivileged_default():
    assert found("containers-not-privileged", without("privileged")) == []


@attack("containers-not-privileged")
def test_a_privileged_container_is_reported():
    assert found("containers-not-privileged", SAFE, dict(SAFE, name="agent", privileged=True)) == [
        "Task definition booking-task, container agent: \"privileged\" is True: remove it (or set it to false)"]


# -- containers-add-no-linux-capabilities ------------------------------------------------------------

@legitimate("containers-add-no-linux-capabilities")
def test_dropping_capabilities_without_adding_any_passes():
    container = dict(SAFE, linuxParameters={"capabilities": {"add": [], "drop": ["ALL"]}})
    assert found("containers-add-no-linux-capabilities", container) == []


@attack("containers-add-no-linux-capabilities")
def test_an_added_capability_is_reported():
    container = dict(SAFE, linuxParameters={"capabilities": {"add": ["SYS_PTRACE", "NET_ADMIN"], "drop": ["ALL"]}})
    assert found("containers-add-no-linux-capabilities", container) == [
        "Task definition booking-task, container booking: adds Linux capabilities SYS_PTRACE, NET_ADMIN: "
        "remove linuxParameters.capabilities.add (and drop ALL)"]


# -- tasks-use-awsvpc-networking ---------------------------------------------------------------------

@pytest.mark.parametrize("mode, shown", [("bridge", "bridge"), ("host", "host"), (None, "bridge (the default)")])
@attack("tasks-use-awsvpc-networking")
def test_a_task_outside_awsvpc_networking_is_reported(mode, shown):
    assert found("tasks-use-awsvpc-networking", network_mode=mode) == [
        f"Task definition booking-task uses the {shown} network mode: set network_mode='awsvpc'"]


# -- no-secrets-in-plain-environment -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["API_TOKEN", "github_token", "CLIENT_SECRET", "DB_PASSWORD", "SMTP_PASSWD",
                                  "PARTNER_API_KEY", "partnerApiKey", "SIGNING_PRIVATE_KEY",
                                  "GOOGLE_APPLICATION_CREDENTIALS"])
@attack("no-secrets-in-plain-environment")
def test_a_secret_named_variable_in_the_plain_environment_is_reported(name):
    container = dict(SAFE, environment=[*SAFE["environment"], {"name": name, "value": "hunter2"}])
    [message] = found("no-secrets-in-plain-environment", container)
    assert message == (f"Task definition booking-task, container booking: plain-text secret (or what looks like "
                       f"one) in environment variable {name}: move it to `secrets` with valueFrom a Secrets Manager "
                       "ARN (read from the environment, never from the command line)")


@pytest.mark.parametrize("value", ["AKIAIOSFODNN7EXAMPLE", "ASIAIOSFODNN7EXAMPLE",
                                   "-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n-----END RSA PRIVATE KEY-----"])
@attack("no-secrets-in-plain-environment")
def test_a_credential_under_an_innocent_name_is_reported_without_echoing_it(value):
    container = dict(SAFE, environment=[{"name": "UPSTREAM", "value": value}])
    [message] = found("no-secrets-in-plain-environment", container)
    assert "in environment variable UPSTREAM: move it" in message and value not in message


@legitimate("no-secrets-in-plain-environment")
def test_secrets_injected_by_ecs_are_not_plain_environment():
    container = dict(SAFE, secrets=[{"name": "PARTNER_API_TOKEN", "valueFrom": SECRET_ARN}])
    assert found("no-secrets-in-plain-environment", container) == []
