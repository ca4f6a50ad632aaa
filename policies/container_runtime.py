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

from .control import (TASK_DEFINITION, Report, Risk, as_list, as_mapping, ecs_containers, lookup,
                      resource_policy)
from .secret_names import secret_like_name

NON_ROOT_USER = '"user": "10001:10001"'
# runc (libcontainer/user GetExecUser) takes a user part strconv.Atoi accepts as a UID (an optional
# sign, ASCII digits, leading zeros: "+0", "-0" and "000" are all 0) and looks anything else up by
# name in the image's /etc/passwd; UIDs outside 0..2^31-1 are refused (containerd would wrap them).
GO_ATOI = re.compile(r"[+-]?[0-9]+")
MAX_ID = 2 ** 31 - 1
USER_NAMES_CONFIG = {"nonRootUserNames": {"type": "array", "items": {"type": "string"}}}


def check_containers(args: ResourceValidationArgs, report: Report,
                     problem: Callable[[Mapping], str | None]) -> None:
    """Report `problem(container)` for every container of a task definition that has one."""
    for container in ecs_containers(args, report):
        message = problem(container)
        if message:
            report(f"Task definition {args.name}, container {container.get('name')}: {message}")


# -- policies -----------------------------------------------------------------------------------------

@resource_policy(
    "containers-run-as-non-root",
    "Every container sets a `user` whose UID is not 0, read as the runtime reads it. Without one the "
    "image's USER applies, root for most base images: code execution through a tool handler then runs as "
    "root, free to change every file of the image and one kernel or runtime bug away from the host. The "
    "user part is a UID when Go's strconv.Atoi reads it as one (so \"+0\", \"00\", \"-0\" are root), and "
    "an empty one (\":10001\") keeps root. Any other name resolves through the image's /etc/passwd, which "
    "the pack cannot read: only `root` is known, and other names are refused unless the policy's "
    "`nonRootUserNames` config lists them (e.g. distroless's \"nonroot\"). Container definitions are read "
    "as the AWS provider decodes them: keys in any case, a key set twice refused.",
    applies_to=[TASK_DEFINITION],
    risks=[Risk.COMMAND_EXECUTION], severity=Severity.HIGH,
    remediation=f"Set {NON_ROOT_USER} (an unprivileged numeric UID:GID) in the container definition.",
    config=USER_NAMES_CONFIG)
def containers_run_as_non_root(args: ResourceValidationArgs, report: Report) -> None:
    names = {str(n) for n in as_list(args.get_config().get("nonRootUserNames"))} - {"root"}
    check_containers(args, report, lambda container: root_user(container.get("user"), names))


def root_user(user: Any, non_root_names: set[str] = frozenset()) -> str | None:
    """Why `user` may run as UID 0 (or cannot be judged), None when runc gives it a non-zero UID."""
    if user is None or user == "":
        return f"no `user` is set, so the image's USER applies (often root): set {NON_ROOT_USER}"
    if not isinstance(user, str):
        return f"user {user!r} is not a string, so it cannot be checked: set {NON_ROOT_USER}"
    name = user.split(":", 1)[0]
    if name == "":
        return f"user '{user}' names no user, so the UID stays root: set {NON_ROOT_USER}"
    if GO_ATOI.fullmatch(name):
        uid = int(name)
        if uid == 0:
            return f"user '{user}' is UID 0, root: set {NON_ROOT_USER}"
        if not 0 < uid <= MAX_ID:
            return f"user '{user}' is outside the UIDs 1..{MAX_ID}: set {NON_ROOT_USER}"
        return None
    if name == "root":
        return f"user '{user}' is root: set {NON_ROOT_USER}"
    if name in non_root_names:
        return None
    return f"user '{user}' is a name the image's /etc/passwd resolves, possibly to UID 0, which this check " \
           f"cannot read: set a numeric UID ({NON_ROOT_USER}) or list the name in nonRootUserNames"


@resource_policy(
    "containers-read-only-root-filesystem",
    "Every container has a read-only root filesystem (`readonlyRootFilesystem` exactly true, in any key "
    "case, set once). A compromised server process cannot drop tools into "
    "the image, nor rewrite its own code or tool descriptions so that later agents are served poisoned tools "
    "until the task is replaced; the paths it must write are explicit volumes.",
    applies_to=[TASK_DEFINITION],
    risks=[Risk.COMMAND_EXECUTION, Risk.TOOL_INJECTION], severity=Severity.MEDIUM,
    remediation="Set \"readonlyRootFilesystem\": true and mount a volume on each path the server writes (/tmp).")
def containers_read_only_root_filesystem(args: ResourceValidationArgs, report: Report) -> None:
    check_containers(args, report, writable_root)


def writable_root(container: Mapping) -> str | None:
    value = container.get("readonlyRootFilesystem")
    if value is True:
        return None
    if value not in (None, False):
        return f"\"readonlyRootFilesystem\" is {value!r}, not a boolean, so it cannot be checked: set it to true"
    return "the root filesystem is writable: set \"readonlyRootFilesystem\": true and mount a volume " \
           "on each path the server writes (e.g. /tmp)"


@resource_policy(
    "containers-not-privileged",
    "No container is privileged (`privileged` absent or false, in any key case, set once). A privileged "
    "container holds every capability and the host's devices: code "
    "execution in it is code execution on the host, with access to every other task there.",
    applies_to=[TASK_DEFINITION],
    risks=[Risk.COMMAND_EXECUTION], severity=Severity.CRITICAL,
    remediation="Remove \"privileged\" from the container definition (or set it to false).")
def containers_not_privileged(args: ResourceValidationArgs, report: Report) -> None:
    # Unset is safe (ECS defaults to false); any other value than false is not.
    check_containers(args, report, lambda c: None if c.get("privileged") in (None, False) else
                     f"\"privileged\" is {c.get('privileged')!r}: remove it (or set it to false)")


@resource_policy(
    "containers-add-no-linux-capabilities",
    "No container adds Linux capabilities (linuxParameters.capabilities.add is empty, in any key case, set "
    "once). Each added capability "
    "(SYS_PTRACE, NET_ADMIN...) widens what code execution in the container can reach: other processes, the "
    "network stack, the kernel.",
    applies_to=[TASK_DEFINITION],
    risks=[Risk.COMMAND_EXECUTION], severity=Severity.HIGH,
    remediation="Remove linuxParameters.capabilities.add; drop ALL instead.")
def containers_add_no_linux_capabilities(args: ResourceValidationArgs, report: Report) -> None:
    check_containers(args, report, added_capabilities)


def added_capabilities(container: Mapping) -> str | None:
    parameters = container.get("linuxParameters")
    capabilities = as_mapping(parameters).get("capabilities")
    added = as_mapping(capabilities).get("add")
    if any(v is not None and not isinstance(v, Mapping) for v in (parameters, capabilities)) or \
            (added is not None and not isinstance(added, list)):
        return "linuxParameters.capabilities is not shaped as ECS reads it, so it cannot be checked: " \
               "remove linuxParameters.capabilities.add (and drop ALL)"
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
    applies_to=[TASK_DEFINITION],
    risks=[Risk.CONFUSED_DEPUTY, Risk.DATA_LOSS], severity=Severity.MEDIUM,
    remediation="Set network_mode='awsvpc' on the task definition (Fargate requires it).")
def tasks_use_awsvpc_networking(args: ResourceValidationArgs, report: Report) -> None:
    mode = args.props.get("networkMode")
    if mode != "awsvpc":
        report(f"Task definition {args.name} uses the {mode or 'bridge (the default)'} network mode: "
               "set network_mode='awsvpc'")


# -- secrets in plain text --------------------------------------------------------------------------------

LAMBDA_FUNCTION = "aws:lambda/function:Function"
SSM_PARAMETER = "aws:ssm/parameter:Parameter"

SECRET_LIKE_VALUE = re.compile(
    r"(?<![A-Z0-9])A(KI|SI)A[A-Z0-9]{16}(?![A-Z0-9])"           # AWS access key ids (long-term, temporary)
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----"                       # PEM private keys
    r"|[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:(?!\$)[^/\s@]+@"      # URLs with a password (not a $REFERENCE)
    r"|\b(gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{22,}|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|sk_live_[A-Za-z0-9]{16,})"                                # GitHub, Slack, Stripe tokens
    r"|(?i:\b(password|passwd|pwd)\s*=\s*(?![\s$;])[^;\s]+)")    # connection strings: Password=...
# In a command: --db-password=x, --token x, and shell assignments API_TOKEN=x (not $REFERENCES).
_FLAG = re.compile(r"--?([A-Za-z0-9][\w.-]*)(?:=(.*))?", re.DOTALL)
_ASSIGNMENT = re.compile(r"(?:^|[\s;&|(\"'])([A-Za-z_][A-Za-z0-9_]*)=(?![\s$;&|\"']|$)")
SECRET_NAMES_CONFIG = {"notSecretNames": {"type": "array", "items": {"type": "string"}}}


def secret_like_value(value: Any) -> bool:
    return isinstance(value, str) and bool(SECRET_LIKE_VALUE.search(value))


def secret_arguments(arguments: Any, not_secret: frozenset[str]) -> list[int]:
    """The positions of the arguments of a command that hold a secret: a secret-like value, a secret
    flag with its value (--password=x, or --password x) or a shell assignment (API_TOKEN=x)."""
    arguments = [str(a) for a in as_list(arguments)]
    found = []
    for i, argument in enumerate(arguments):
        flag = _FLAG.fullmatch(argument)
        following = arguments[i + 1] if i + 1 < len(arguments) else ""
        if secret_like_value(argument) \
                or any(secret_like_name(m.group(1), not_secret) for m in _ASSIGNMENT.finditer(argument)):
            found.append(i)
        elif flag and secret_like_name(flag.group(1), not_secret):
            if flag.group(2) and not flag.group(2).startswith("$"):
                found.append(i)
            elif flag.group(2) is None and following and not following.startswith(("-", "$")):
                found.append(i + 1)
    return found


def container_secrets(container: Mapping, not_secret: frozenset[str]) -> str | None:
    """Where a container holds a secret in plain text: its environment, command, entryPoint, labels."""
    places = [f"environment variable {v.get('name')}" for v in as_list(container.get("environment"))
              if isinstance(v, Mapping) and (secret_like_name(v.get("name"), not_secret)
                                             or secret_like_value(v.get("value")))]
    places += [f"{field} argument {i}" for field in ("entryPoint", "command")
               for i in secret_arguments(container.get(field), not_secret)]
    places += [f"docker label {k}" for k, v in as_mapping(container.get("dockerLabels")).items()
               if secret_like_name(k, not_secret) or secret_like_value(v)]
    # Never echo the values: the report would leak them once more.
    if not places:
        return None
    return f"plain-text secret (or what looks like one) in {', '.join(places)}: move it to `secrets` with " \
           "valueFrom a Secrets Manager ARN (read from the environment, never from the command line)"


@resource_policy(
    "no-secrets-in-plain-environment",
    "No secret in plain text where a task or function is configured: a container's `environment`, "
    "`command`, `entryPoint` and `dockerLabels` (read as ECS reads the definition), a Lambda function's "
    "environment, and SSM parameters of type String or StringList. A secret is a name that names one (a word "
    "TOKEN, SECRET, PASSWORD, PASSWD, PASS, PWD, PASSPHRASE, CREDENTIAL(S), or API/PRIVATE/SIGNING/ENCRYPTION/"
    "MASTER KEY; not when its last word says it is about one: *_TOKEN_URL, *_PASSWORD_FILE, *_SECRET_ARN, "
    "*_ISSUER...; a name the pack config's `notSecretNames` lists is exempt by name, never by value), a "
    "flag or shell assignment so named in a command (--db-password=x, API_TOKEN=x), or a value holding an "
    "AWS access key id, a PEM private key, a URL with a password, a Password= connection string or a "
    "GitHub, Slack or Stripe token. Plain values are stored in the task definition, function or parameter, "
    "readable by anyone allowed to describe it, and in the Pulumi state and diffs; a leaked partner or API "
    "credential reads and changes the data behind it without going through the server. `secrets` "
    "(valueFrom) keeps only a reference there: ECS reads the value with the execution role when the task "
    "starts. Values that are other resources' outputs are judged once known (`pulumi up`).",
    applies_to=[TASK_DEFINITION, LAMBDA_FUNCTION, SSM_PARAMETER],
    risks=[Risk.DATA_LOSS], severity=Severity.CRITICAL,
    remediation="Move the value to Secrets Manager and reference it in `secrets`: "
                "{\"name\": \"API_TOKEN\", \"valueFrom\": \"<secret ARN>\"}; make SSM parameters SecureString.",
    config=SECRET_NAMES_CONFIG)
def no_secrets_in_plain_environment(args: ResourceValidationArgs, report: Report) -> None:
    not_secret = frozenset(str(n) for n in as_list(args.get_config().get("notSecretNames")))
    check_containers(args, report, lambda container: container_secrets(container, not_secret))
    if args.resource_type == LAMBDA_FUNCTION:
        variables = as_mapping(as_mapping(lookup(args.props, "environment")).get("variables"))
        names = [str(k) for k, v in sorted(variables.items())
                 if secret_like_name(k, not_secret) or secret_like_value(v)]
        if names:
            report(f"Lambda function {args.name}: plain-text secret (or what looks like one) in environment "
                   f"variables {', '.join(names)}: read them from Secrets Manager at start (the Parameters and Secrets "
                   "extension, or the SDK) and keep only the secret's ARN in the environment")
    elif args.resource_type == SSM_PARAMETER and args.props.get("type") != "SecureString":
        values = [lookup(args.props, key) for key in ("value", "insecureValue")]
        if secret_like_name(str(args.props.get("name") or "").rsplit("/", 1)[-1], not_secret) \
                or any(secret_like_value(v) for v in values):
            report(f"SSM parameter {args.props.get('name') or args.name} holds or looks like a secret in a plain "
                   f"{args.props.get('type')} parameter: make it type SecureString with the estate's KMS key, or "
                   "keep it in Secrets Manager")
