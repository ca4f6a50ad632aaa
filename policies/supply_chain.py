"""Supply chain: the code a server runs is exactly the image that was reviewed, from our registry.

An MCP server's image is also its tool catalogue: the tools, their descriptions and their
handlers ship inside it. Whoever can change which image runs can change what every agent is
told a tool does (tool injection) and what the tool then executes (code integrity).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pulumi_policy import ResourceValidationArgs, Severity

from .control import (TASK_DEFINITION, Report, Risk, as_list, as_mapping, ecs_containers, provider_accounts,
                      resource_policy)

LAMBDA_FUNCTION = "aws:lambda/function:Function"
REPOSITORY = "aws:ecr/repository:Repository"
CREATION_TEMPLATE = "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate"
IMAGE_RUNNERS = (TASK_DEFINITION, LAMBDA_FUNCTION)   # what runs a container image

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# <account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]: a private ECR registry.
PRIVATE_ECR = re.compile(r"(?P<account>\d{12})\.dkr\.ecr(-fips)?\.[a-z]{2}(-[a-z]+)+-\d+\.amazonaws\.com(\.cn)?")
DOCKER_HUB = "docker.io"
PUBLIC_REGISTRIES = {DOCKER_HUB, "registry-1.docker.io", "index.docker.io", "public.ecr.aws", "ghcr.io", "quay.io",
                     "gcr.io", "registry.k8s.io", "mcr.microsoft.com"}
PIN_FIX = "pin it as <repository>@sha256:<64 hex digest> (`estate lock` resolves a tag to its digest)"


# -- where images appear -----------------------------------------------------------------------------

def images(args: ResourceValidationArgs, report: Report) -> Iterator[tuple[str, str]]:
    """(where, image) for every image the resource runs: each container of a task definition
    (sidecars included) and a container-image Lambda function."""
    for container in ecs_containers(args, report):
        image = container.get("image")
        yield f"Task definition {args.name}, container {container.get('name')}", image if isinstance(image, str) else ""
    if args.resource_type == LAMBDA_FUNCTION and args.props.get("imageUri") is not None:
        yield f"Lambda function {args.name}", str(args.props["imageUri"])


def unpinned(image: str) -> str | None:
    """Why `image` is not pinned by a full digest; None when it is (a tag next to it is fine)."""
    if not image:
        return "is missing"
    name, at, digest = image.partition("@")
    if at:
        return None if DIGEST.fullmatch(digest) else \
            f"has digest '{digest}', which is not a full sha256 digest (sha256: and 64 lowercase hex)"
    last = name.rsplit("/", 1)[-1]
    return "is pinned by a tag only, which can be moved to another image" if ":" in last else \
        "names no digest, so it runs whatever `latest` points at when a task starts"


def registry_host(image: str) -> str:
    """The registry an image is pulled from, by Docker's rule: a first path component with a
    dot or a port (or `localhost`) is a host; anything else is a Docker Hub namespace."""
    first, slash, _ = image.partition("@")[0].partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first.lower()
    return DOCKER_HUB


# -- policies -----------------------------------------------------------------------------------------

@resource_policy(
    "images-pinned-by-digest",
    "Every container image (ECS containers, sidecars included, and container-image Lambda functions) is "
    "pinned by a full sha256 digest. A tag is a pointer anyone with push rights can move, and ECS resolves it "
    "again at every task start: a moved tag silently swaps the server's code and the tool descriptions agents "
    "read, in every region, at the next scale-out.",
    applies_to=IMAGE_RUNNERS,
    risks=[Risk.CODE_INTEGRITY, Risk.TOOL_INJECTION], severity=Severity.HIGH,
    remediation="Reference images as <repository>@sha256:<digest>; `estate lock` resolves tags to digests.")
def images_pinned_by_digest(args: ResourceValidationArgs, report: Report) -> None:
    for where, image in images(args, report):
        reason = unpinned(image)
        if reason:
            report(f"{where}: image '{image}' {reason}: {PIN_FIX}")


@resource_policy(
    "images-from-allowed-registries",
    "Every container image comes from an allowed registry: the hosts (or account prefixes, e.g. "
    "'111122223333.dkr.ecr.') listed in the policy's `allowedRegistries` config; else the private ECR of an "
    "account the resource's AWS provider is restricted to (allowedAccountIds); with neither, the estate's "
    "account is unknown and even a private ECR image is reported, since it may be another account's. "
    "Public registries (Docker Hub, ghcr.io, quay.io, public.ecr.aws...) are open to typosquatting and "
    "hijacked publisher accounts, sit outside the estate's scanning and immutability, and are unreachable "
    "from private subnets without NAT or rate-limited, which fails scale-out when it matters most.",
    applies_to=IMAGE_RUNNERS,
    risks=[Risk.CODE_INTEGRITY, Risk.TOOL_INJECTION, Risk.AVAILABILITY], severity=Severity.HIGH,
    remediation="Copy the image into the estate's private ECR repository (pinned by digest) and reference it "
                "there; allow another registry explicitly with `allowedRegistries` in the pack config.",
    config={"allowedRegistries": {"type": "array", "items": {"type": "string"}}})
def images_from_allowed_registries(args: ResourceValidationArgs, report: Report) -> None:
    configured = [str(entry).strip().lower() for entry in as_list(args.get_config().get("allowedRegistries"))]
    accounts = provider_accounts(args)
    for where, image in images(args, report):
        if not image:
            continue   # images-pinned-by-digest reports a container without an image
        host = registry_host(image)
        if configured:
            allowed, rule = allowed_by_config(host, configured), f"allowedRegistries {configured}"
        elif accounts:
            match = PRIVATE_ECR.fullmatch(host)
            allowed, rule = bool(match and match["account"] in accounts), \
                f"the private ECR of account {' or '.join(sorted(accounts))} (the provider's allowedAccountIds)"
        elif match := PRIVATE_ECR.fullmatch(host):
            report(f"{where}: image '{image}' comes from the private ECR of account {match['account']}, but this "
                   "check cannot tell the estate's account (no allowedRegistries config, no allowedAccountIds on "
                   f"the resource's AWS provider): set allowedRegistries, e.g. ['{match['account']}.dkr.ecr.']")
            continue
        else:
            allowed, rule = False, "the estate's private ECR (set allowedRegistries to name it)"
        if not allowed:
            source = f"the public registry {host}" if host in PUBLIC_REGISTRIES else f"the registry {host}"
            report(f"{where}: image '{image}' comes from {source}; allowed: {rule}. Copy the image into the "
                   "estate's private ECR and reference it there by digest")


def allowed_by_config(host: str, entries: list[str]) -> bool:
    """An entry is a registry host (exact match) or a prefix of private ECR hosts: '111122223333' or
    '111122223333.dkr.ecr.' allows that account's ECR in every region. A prefix only ever matches a
    private ECR host, so '111122223333.dkr.ecr.attacker.example' cannot pass as one."""
    return any(host == entry or (host.startswith(entry.rstrip(".") + ".") and PRIVATE_ECR.fullmatch(host))
               for entry in entries)


@resource_policy(
    "ecr-repositories-immutable-and-scanned",
    "ECR repositories have IMMUTABLE tags and scan on push, and repository creation templates (which set up "
    "replica repositories in the other regions) create them IMMUTABLE. A release tag must name one image for "
    "good: `estate lock` turns tags into the digests the estate runs, so a movable tag lets a push rewrite what "
    "gets locked. IMMUTABLE_WITH_EXCLUSION is not enough: the tags matching its exclusion filters stay movable, "
    "and nothing stops a release from carrying one. Scan on push reports known vulnerabilities in a server's "
    "dependencies before it is deployed.",
    applies_to=[REPOSITORY, CREATION_TEMPLATE],
    risks=[Risk.CODE_INTEGRITY, Risk.TOOL_INJECTION, Risk.COMMAND_EXECUTION], severity=Severity.HIGH,
    remediation="Set image_tag_mutability='IMMUTABLE' and image_scanning_configuration={'scan_on_push': True}.")
def ecr_repositories_immutable_and_scanned(args: ResourceValidationArgs, report: Report) -> None:
    props = args.props
    if args.resource_type == REPOSITORY:
        where = f"ECR repository {props.get('name') or args.name}"
        problem = mutability_problem(props.get("imageTagMutability"))
        if problem:
            report(f"{where} {problem}")
        if as_mapping(props.get("imageScanningConfiguration")).get("scanOnPush") is not True:
            report(f"{where} does not scan images on push: set image_scanning_configuration={{'scan_on_push': True}}")
    elif args.resource_type == CREATION_TEMPLATE:
        problem = mutability_problem(props.get("imageTagMutability"))
        if problem:
            report(f"ECR repository creation template {props.get('prefix') or args.name} {problem}")


def mutability_problem(mutability: Any) -> str | None:
    if mutability == "IMMUTABLE":
        return None
    if mutability == "IMMUTABLE_WITH_EXCLUSION":
        return ("has IMMUTABLE_WITH_EXCLUSION tags: tags matching its exclusion filters can still be moved to "
                "another image; set image_tag_mutability='IMMUTABLE'")
    return f"has {mutability or 'MUTABLE (the default)'} tags: set image_tag_mutability='IMMUTABLE'"
