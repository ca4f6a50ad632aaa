"""What a server's image must declare to run in the estate, read from its configuration in ECR.

Each task runs its container as `10001:10001` on a read-only root filesystem; the only writable
path is `/tmp`, an empty bind mount. On Fargate such a mount is owned by root with mode 0755, so
UID 10001 could not write to it, unless the image declares `VOLUME /tmp`: the ECS data plane then
copies the image's `/tmp` (contents, owner and mode) into the mount (AWS, "Use bind mounts with
Amazon ECS", bind-mount considerations). The image must therefore create `/tmp`, give it to 10001,
run as 10001, and declare the volume after the chown (a build step that changes a declared volume is
discarded).

`estate lock` checks what the image configuration shows (`config.User`, `config.Volumes`, the
platform), reading it the way a registry client does: BatchGetImage for the manifest (for a
multi-platform index, the entry of the server's architecture), GetDownloadUrlForLayer for the
config blob, then the blob itself, checked against its digest. The owner of `/tmp` is in a layer,
not in the configuration: the contract states it, the lock cannot see it.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from mcp_estate.contract.image import CONTAINER_UID, CONTAINER_USER, SCRATCH_PATH

# What the lock accepts from BatchGetImage, as AWS's containerd resolver asks for it: the two
# single-image manifests and the two multi-platform indexes (Docker schema 1 has no config blob).
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPTED_MEDIA_TYPES = [OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST]
# The spec's `architecture` (ECS runtimePlatform.cpuArchitecture) in OCI platform terms (GOARCH).
OCI_ARCHITECTURE = {"X86_64": "amd64", "ARM64": "arm64"}
MAX_CONFIG_BYTES = 4 * 1024 * 1024   # a configuration is a few KiB; anything this large is not one
DOWNLOAD_TIMEOUT = 30

DOCKERFILE_FIX = (f"in the Dockerfile, after installing the server: "
                  f"`RUN mkdir -p {SCRATCH_PATH} && chown {CONTAINER_USER} {SCRATCH_PATH}`, "
                  f"then `USER {CONTAINER_USER}`, then `VOLUME {SCRATCH_PATH}` "
                  "(declared last: later changes to a volume are discarded)")


class ImageConfigError(Exception):
    """The configuration could not be read; the message says what and why."""


class WrongPlatform(ImageConfigError):
    """The image has no configuration for the server's platform: it cannot run there at all."""


@dataclass(frozen=True)
class ImageConfig:
    platform: str            # `linux/arm64`
    user: str                # config.User: "" when the image sets none (root)
    volumes: frozenset[str]  # config.Volumes


def read_image_config(ecr: Any, registry: str, repository: str, digest: str,
                      architecture: str) -> ImageConfig:
    """The configuration `digest` runs with on Fargate `architecture` (X86_64 or ARM64).
    ECR errors (ClientError, BotoCoreError) propagate; everything else is an ImageConfigError."""
    wanted = OCI_ARCHITECTURE[architecture]
    manifest = _manifest(ecr, registry, repository, digest)
    if "manifests" in manifest:   # a multi-platform index: the manifest for our platform
        digest = _platform_digest(manifest, wanted, repository)
        manifest = _manifest(ecr, registry, repository, digest)
    config_digest = (manifest.get("config") or {}).get("digest")
    if not isinstance(config_digest, str):
        raise ImageConfigError(f"{_ref(repository, digest)} is not an OCI or Docker schema 2 image "
                               "manifest (no config): rebuild and push it with a current Docker or BuildKit")
    url = ecr.get_download_url_for_layer(registryId=registry, repositoryName=repository,
                                         layerDigest=config_digest)["downloadUrl"]
    document = _download_json(url, config_digest)
    config = document.get("config") or {}
    platform = f"{document.get('os')}/{document.get('architecture')}"
    if platform != f"linux/{wanted}":
        raise WrongPlatform(f"{_ref(repository, digest)} is built for {platform}, but the server runs on "
                            f"linux/{wanted} (`architecture: {architecture}`): build it for "
                            f"linux/{wanted} or change the server's `architecture`")
    return ImageConfig(platform, str(config.get("User") or ""), frozenset(config.get("Volumes") or {}))


def contract_problems(config: ImageConfig) -> list[str]:
    """What the configuration shows against the image contract: empty when it complies."""
    problems = []
    if config.user.split(":", 1)[0] != CONTAINER_UID:
        shown = f"'{config.user}'" if config.user else "root (no USER)"
        problems.append(f"its user is {shown}, not {CONTAINER_UID}: the task runs it as {CONTAINER_USER}, "
                        f"and only files built for that user are writable by it")
    if SCRATCH_PATH not in config.volumes:
        declared = ", ".join(sorted(config.volumes)) or "none"
        problems.append(f"it declares no `VOLUME {SCRATCH_PATH}` (volumes: {declared}): on Fargate the "
                        f"task's {SCRATCH_PATH} mount is then root-owned and unwritable for {CONTAINER_UID}")
    return problems


def _manifest(ecr: Any, registry: str, repository: str, digest: str) -> dict[str, Any]:
    response = ecr.batch_get_image(registryId=registry, repositoryName=repository,
                                   imageIds=[{"imageDigest": digest}], acceptedMediaTypes=ACCEPTED_MEDIA_TYPES)
    where = f"BatchGetImage: {_ref(repository, digest)}"
    if not response.get("images"):   # not an error response: a failure entry per image id
        failure = (response.get("failures") or [{}])[0]
        raise ImageConfigError(f"{where}: {failure.get('failureCode', 'no image')}: "
                               f"{failure.get('failureReason', '')}".strip())
    try:
        manifest = json.loads(response["images"][0]["imageManifest"])
    except (KeyError, ValueError):
        raise ImageConfigError(f"{where}: the manifest is not JSON") from None
    if not isinstance(manifest, dict):
        raise ImageConfigError(f"{where}: the manifest is not an object")
    return manifest


def _ref(repository: str, digest: str) -> str:
    return f"{repository}@{digest[:19]}..."


def _platform_digest(index: dict[str, Any], architecture: str, repository: str) -> str:
    """The digest of the index's linux/`architecture` image (attestations are `unknown/unknown`)."""
    platforms = []
    for entry in index.get("manifests") or []:
        platform = entry.get("platform") or {}
        platforms.append(f"{platform.get('os')}/{platform.get('architecture')}")
        if platform.get("os") == "linux" and platform.get("architecture") == architecture:
            return entry["digest"]
    raise WrongPlatform(f"{repository}: the multi-platform image has no linux/{architecture} image "
                           f"(it has {', '.join(platforms) or 'none'}): build it for linux/{architecture}")


def _download_json(url: str, digest: str) -> dict[str, Any]:
    """The blob at `url` (a pre-signed S3 URL), which must hash to `digest`, as JSON."""
    if not url.startswith(("https://", "http://")):
        raise ImageConfigError(f"GetDownloadUrlForLayer returned a URL that is not HTTP(S): {url[:40]}")
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:  # noqa: S310 - scheme checked
            blob = response.read(MAX_CONFIG_BYTES + 1)
    except urllib.error.HTTPError as error:   # before URLError: it is one
        raise ImageConfigError(f"downloading the image configuration {digest[:19]}...: HTTP {error.code}") \
            from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise ImageConfigError(f"downloading the image configuration {digest[:19]}...: {reason}") from None
    algorithm, _, expected = digest.partition(":")
    if len(blob) > MAX_CONFIG_BYTES or algorithm != "sha256" or hashlib.sha256(blob).hexdigest() != expected:
        raise ImageConfigError(f"the image configuration downloaded for {digest[:19]}... does not match "
                               "its digest")
    try:
        document = json.loads(blob)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise ImageConfigError(f"the image configuration {digest[:19]}... is not a JSON object")
    return document
