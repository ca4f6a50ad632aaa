"""Container runtime: what a compromised MCP server process can do inside its task.

An MCP server executes tool calls whose arguments an agent (and so, through prompt injection,
anyone whose text the agent reads) chooses. A bug in one handler turns into code execution in
the container; these controls keep that process unprivileged, unable to rewrite itself, and
holding no credential it was not given through ECS. Each applies to every container of every
ECS task definition, sidecars included.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from pulumi_policy import ResourceValidationArgs, Severity

from .control import TASK_DEFINITION, Report, Risk, as_list, as_mapping, resource_policy, task_containers

NON_ROOT_USER = '"user": "10001:10001"'

# The names the spec also refuses in a server's plain environment (mcp_estate.spec).
SECRET_LIKE_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE_?KEY|CREDENTIAL", re.IGNORECASE)
# Long-term (AKIA) and temporary (ASIA) AWS access key ids, and PEM private keys.
SECRET_LIKE_VALUE = re.compile(r"(?<![A-Z0-9])A(KI|SI)A[A-Z0-9]{16}(?![A-Z0-9])|-----BEGIN [A-Z ]*PRIVATE KEY-----")


def check_containers(args: ResourceValidationArgs, report: Report,
                     problem: Callable[[Mapping], str | None]) -> None:
    """Report `problem(container)` for every container of a task definition that has one."""
    for container in task_containers(args, report):
        message = problem(container)
        if message:
            report(f"Task definition {args.name}, container {container.get('name')}: {message}")


# -- policies -----------------------------------------------------------------------------------------

@resource_policy(
    "containers-run-as-non-root",
    "Every container sets a non-root `user`. Without one the image's USER applies, root for most base "
    "images: code execution through a tool handler then runs as root, free to change every file of the "
    "image and one kernel or runtime bug away from the host.",
    risks=[Risk.COMMAND_EXECUTION], severity=Severity.HIGH,
    remediation=f"Set {NON_ROOT_USER} (an unprivileged UID:GID) in the container definition.")
def containers_run_as_non_root(args: ResourceValidationArgs, report: Report) -> None:
    check_containers(args, report, root_user)


def root_user(container: Mapping) -> str | None:
    user = container.get("user")
    if user is None or str(user).strip() == "":
        return f"no `user` is set, so the image's USER applies (often root): set {NON_ROOT_USER}"
    name = str(user).split(":", 1)[0].strip()
    if name.lower() == "root" or (name.isdigit() and int(name) == 0):
        return f"user '{user}' is root: set {NON_ROOT_USER}"
    return None


@resource_policy(
    "containers-read-only-root-filesystem",
    "Every container has a read-only root filesystem. A compromised server process cannot drop tools into "
    "the image, nor rewrite its own code or tool descriptions so that later agents are served poisoned tools "
    "until the task is replaced; the paths it must write are explicit volumes.",
    risks=[Risk.COMMAND_EXECUTION, Risk.TOOL_INJECTION], severity=Severity.MEDIUM,
    remediation="Set \"readonlyRootFilesystem\": true and mount a volume on each path the server writes (/tmp).")
def containers_read_only_root_filesystem(args: ResourceValidationArgs, report: Report) -> None:
    check_containers(args, report, lambda c: None if c.get("readonlyRootFilesystem") is True else
                     "the root filesystem is writable: set \"readonlyRootFilesystem\": true and mount a volume "
                     "on each path the server writes (e.g. /tmp)")


@resource_policy(
    "containers-not-privileged",
    "No container is privileged. A privileged container holds every capability and the host's devices: code "
    "execution in it is code execution on the host, with access to every other task there.",
    risks=[Risk.COMMAND_EXECUTION], severity=Severity.CRITICAL,
    remediation="Remove \"privileged\" from the container definition (or set it to false).")
def containers_not_privileged(args: ResourceValidationArgs, report: Report) -> None:
    # Unset is safe (ECS defaults to false); any other value than false is not.
    check_containers(args, report, lambda c: None if c.get("privileged") in (None, False) else
                     f"\"privileged\" is {c.get('privileged')!r}: remove it (or set it to false)")


@resource_policy(
    "containers-add-no-linux-capabilities",
    "No container adds Linux capabilities (linuxParameters.capabilities.add is empty). Each added capability "
    "(SYS_PTRACE, NET_ADMIN...) widens what code execution in the container can reach: other processes, the "
    "network stack, the kernel.",
    risks=[Risk.COMMAND_EXECUTION], severity=Severity.HIGH,
    remediation="Remove linuxParameters.capabilities.add; drop ALL instead.")
def containers_add_no_linux_capabilities(args: ResourceValidationArgs, report: Report) -> None:
    check_containers(args, report, added_capabilities)


def added_capabilities(container: Mapping) -> str | None:
    added = as_list(as_mapping(as_mapping(container.get("linuxParameters")).get("capabilities")).get("add"))
    if not added:
        return None
    return f"adds Linux capabilities {', '.join(map(str, added))}: remove linuxParameters.capabilities.add " \
           "(and drop ALL)"


@resource_policy(
    "tasks-use-awsvpc-networking",
    "Task definitions use the awsvpc network mode. Each task then has its own network interface and security "
    "group, so its egress rules hold per server; in bridge or host mode tasks share the instance's network, "
    "escape their own security group and can reach the instance metadata service and the instance role's "
    "credentials.",
    risks=[Risk.CONFUSED_DEPUTY, Risk.DATA_LOSS], severity=Severity.MEDIUM,
    remediation="Set network_mode='awsvpc' on the task definition (Fargate requires it).")
def tasks_use_awsvpc_networking(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type != TASK_DEFINITION:
        return
    mode = args.props.get("networkMode")
    if mode != "awsvpc":
        report(f"Task definition {args.name} uses the {mode or 'bridge (the default)'} network mode: "
               "set network_mode='awsvpc'")


@resource_policy(
    "no-secrets-in-plain-environment",
    "No container has a secret in its plain `environment`: no variable named like one (*TOKEN*, *SECRET*, "
    "*PASSWORD*, *PASSWD*, *API_KEY*, *APIKEY*, *PRIVATE_KEY*, *CREDENTIAL*) and no value holding an AWS access "
    "key id or a PEM private key. Plain values are stored in the task definition, readable by anyone allowed "
    "ecs:DescribeTaskDefinition, and in the Pulumi state and diffs; a leaked partner or API credential reads "
    "and changes the data behind it without going through the server. `secrets` (valueFrom) keeps only a "
    "reference there: ECS reads the value with the execution role when the task starts.",
    risks=[Risk.DATA_LOSS], severity=Severity.CRITICAL,
    remediation="Move the value to Secrets Manager and reference it in `secrets`: "
                "{\"name\": \"API_TOKEN\", \"valueFrom\": \"<secret ARN>\"}.")
def no_secrets_in_plain_environment(args: ResourceValidationArgs, report: Report) -> None:
    check_containers(args, report, plain_secrets)


def plain_secrets(container: Mapping) -> str | None:
    names = [str(v.get("name")) for v in as_list(container.get("environment"))
             if isinstance(v, Mapping) and secret_like(v)]
    if not names:
        return None
    # Never echo the values: the report would leak them once more.
    return f"environment variables {', '.join(names)} hold or look like secrets in plain text: move them to " \
           "`secrets` with valueFrom a Secrets Manager ARN"


def secret_like(variable: Mapping[str, Any]) -> bool:
    return bool(SECRET_LIKE_NAME.search(str(variable.get("name") or "")) or
                SECRET_LIKE_VALUE.search(str(variable.get("value") or "")))
