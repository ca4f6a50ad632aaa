"""`estate lock`: pin a server's image to the digest a tag points at, in the stack file.

The tag is resolved in the estate's registry (the `primary_region` ECR of `aws_account_id`,
the repository of the server's current image). The image must meet the image contract as far as
its configuration shows (user 10001, `VOLUME /tmp`, the server's platform: image_contract.py),
have passed its scan (no CRITICAL or HIGH finding, scan complete) and be present, by digest, in
every region running the server, since each region's tasks pull from their regional replica.
Only then is the one `image:` value rewritten, as a text splice at the exact place the YAML parser
found it: the rest of the file (comments, order, quoting) stays byte for byte. The new text is re-parsed and
validated before it replaces the file atomically. Any refusal writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from mcp_estate.contract import exit_codes
from mcp_estate.contract.spec import EstateSpec, Server
from mcp_estate.contract.stackfile import load_spec, stack_path
from mcp_estate.contract.validate import SpecError

from .aws_errors import client_error_text
from .image_contract import (
    DOCKERFILE_FIX,
    ImageConfigError,
    WrongPlatform,
    contract_problems,
    read_image_config,
)
from .stack_edit import (
    StackEditError,
    check_edit,
    child,
    one_line_scalar,
    replace_scalar,
    server_node,
    write_atomically,
)

BLOCKING = ("CRITICAL", "HIGH")
# Basic scanning reports COMPLETE; enhanced (Inspector) scanning ACTIVE while it monitors the image.
SCANNED = ("COMPLETE", "ACTIVE")
# States a scan leaves by itself; any other (FAILED, UNSUPPORTED_IMAGE, ...) needs someone to act.
SCANNING = ("IN_PROGRESS", "PENDING")


class LockError(StackEditError):
    """A refusal: one line per problem, and the exit code (1 findings, 2 bad input)."""


@dataclass(frozen=True)
class Scan:
    status: str                      # COMPLETE, ACTIVE, IN_PROGRESS..., or MISSING
    counts: dict[str, int]
    description: str = ""            # imageScanStatus.description: why a scan FAILED, say

    @property
    def blocking(self) -> dict[str, int]:
        return {s: self.counts[s] for s in BLOCKING if self.counts.get(s)}

    def summary(self) -> str:
        counts = ", ".join(f"{s} {n}" for s, n in sorted(self.counts.items())) or "no findings"
        return f"scan {self.status}: {counts}"


@dataclass
class Locked:
    path: Path
    server: str
    tag: str
    image: str
    previous: str
    platform: str
    scan: Scan
    regions: list[str]
    changed: bool
    warnings: list[str]


def lock(session: boto3.Session, stack: str, server_name: str, tag: str, stacks_dir: Path,
         allow_findings: bool = False, skip_waves: bool = False) -> Locked:
    """Pin `server_name`'s image to `tag`'s digest; raises LockError, writing nothing, on any refusal.
    Outside dev, `skip_waves` must say that every region may take the image at once."""
    try:
        _, spec = load_spec(stack, stacks_dir)
    except SpecError as error:
        raise LockError([f"{p.path}: {p.message}" for p in error.problems]) from None
    server = _server(spec, server_name)
    _no_candidate_in_flight(stack, server)
    warnings = _waves_skipped(stack, spec, server, skip_waves)
    registry = server.registry_host.split(".", 1)[0]
    try:
        home = session.client("ecr", region_name=spec.primary_region)
        digest = _digest(home, registry, server.repository, tag)
        platform = _contract_gate(home, registry, server, tag, digest)
        scan = _scan(home, registry, server.repository, digest)
        warnings += _scan_gate(server, tag, scan, allow_findings)
        regions = spec.server_regions(server)
        # The home region's copy was just read by its tag.
        present_everywhere(lambda region: session.client("ecr", region_name=region), registry, server.repository,
                           digest, [r for r in regions if r != spec.primary_region])
    except ClientError as error:
        raise LockError([client_error_text(error)]) from None
    except BotoCoreError as error:
        raise LockError([str(error)]) from None
    image = f"{server.registry_host}/{server.repository}@{digest}"
    locked = Locked(stack_path(stack, stacks_dir), server.name, tag, image, server.image, platform, scan,
                    regions, changed=server.digest != digest, warnings=warnings)
    if locked.changed:
        path = locked.path
        new_text = pin_image(path.read_bytes().decode("utf-8"), server.name, image)
        try:
            write_atomically(path, new_text)
        except OSError as error:
            raise LockError([f"cannot write {path}: {error.strerror}"]) from None
    return locked


def _server(spec: EstateSpec, name: str) -> Server:
    for server in spec.servers:
        if server.name == name:
            return server
    raise LockError([f"no server '{name}' in the stack (servers: {', '.join(s.name for s in spec.servers)})"])


def _digest(ecr: Any, registry: str, repository: str, tag: str) -> str:
    try:
        images = ecr.describe_images(registryId=registry, repositoryName=repository,
                                     imageIds=[{"imageTag": tag}])["imageDetails"]
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code")
        if code == "RepositoryNotFoundException":
            raise LockError([f"no repository '{repository}' in registry {registry} "
                             f"({ecr.meta.region_name}): push the image first"]) from None
        if code == "ImageNotFoundException":
            raise LockError([f"no tag '{tag}' in {repository} ({ecr.meta.region_name})"]) from None
        raise
    return images[0]["imageDigest"]


def _contract_gate(ecr: Any, registry: str, server: Server, tag: str, digest: str) -> str:
    """Refuse an image whose configuration breaks the image contract; its platform otherwise.
    No flag overrides this: such an image cannot write its /tmp, and the fix is in its Dockerfile."""
    try:
        config = read_image_config(ecr, registry, server.repository, digest, server.architecture)
    except WrongPlatform as error:
        raise LockError([f"servers[{server.name}]: {error}"], exit_codes.FINDINGS) from None
    except ImageConfigError as error:
        raise LockError([f"servers[{server.name}]: cannot read the configuration of "
                         f"{server.repository}:{tag}: {error}"]) from None
    problems = contract_problems(config)
    if problems:
        raise LockError([f"servers[{server.name}]: {server.repository}:{tag} ({config.platform}) does not "
                         "meet the image contract:", *problems, f"fix: {DOCKERFILE_FIX}"], exit_codes.FINDINGS)
    return config.platform


def _scan(ecr: Any, registry: str, repository: str, digest: str) -> Scan:
    """The scan of the digest (not the tag, which may move while we look)."""
    try:
        result = ecr.describe_image_scan_findings(registryId=registry, repositoryName=repository,
                                                  imageId={"imageDigest": digest}, maxResults=1)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ScanNotFoundException":
            return Scan("MISSING", {})
        raise
    status = result.get("imageScanStatus", {}).get("status", "MISSING")
    counts = result.get("imageScanFindings", {}).get("findingSeverityCounts", {}) if status in SCANNED else {}
    return Scan(status, dict(counts), result.get("imageScanStatus", {}).get("description", ""))


def _scan_gate(server: Server, tag: str, scan: Scan, allow_findings: bool) -> list[str]:
    """Refuse an image with blocking findings or no finished scan; with the flag, warnings instead."""
    subject = f"{server.repository}:{tag}"
    if scan.status not in SCANNED:
        reason = "has no scan" if scan.status == "MISSING" else f"has no usable scan (status {scan.status})"
        if not allow_findings:
            raise LockError([f"{subject} {reason}: {_scan_remedy(server.repository, tag, scan)}, or pass "
                             "--allow-findings to pin it unscanned"])
        return [f"{subject} {reason}: pinned UNSCANNED because of --allow-findings"]
    if scan.blocking:
        counts = ", ".join(f"{n} {s}" for s, n in scan.blocking.items())
        if not allow_findings:
            raise LockError([f"{subject} has {counts} finding(s): fix and push a new image, or pass "
                             "--allow-findings with a recorded exception"], exit_codes.FINDINGS)
        return [f"{subject} has {counts} finding(s): pinned anyway because of --allow-findings"]
    return []


def _scan_remedy(repository: str, tag: str, scan: Scan) -> str:
    if scan.status in ("MISSING", *SCANNING):
        return "wait for the scan (scan on push) and rerun"
    why = f" ({scan.description.strip()})" if scan.description.strip() else ""
    return (f"the scan will not finish by itself{why}: start a new one (`aws ecr start-image-scan "
            f"--repository-name {repository} --image-id imageTag={tag}`) or push a supported image, then rerun")


def present_everywhere(ecr_in: Callable[[str], Any], registry: str, repository: str, digest: str,
                       regions: list[str]) -> None:
    """Refuse, naming each region, a digest missing from the registry's replica in any of `regions`
    (`ecr_in`: the region's ECR client); the problems are the same for `estate lock` and `estate promote`."""
    missing = []
    for region in regions:
        try:
            ecr_in(region).describe_images(
                registryId=registry, repositoryName=repository, imageIds=[{"imageDigest": digest}])
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code not in ("RepositoryNotFoundException", "ImageNotFoundException"):
                raise
            missing.append(f"{region}: {'no repository' if code.startswith('Repository') else 'no image'} "
                           f"{repository}@{digest[:19]}...")
    if missing:
        raise LockError(["not yet replicated to every region running the server (replication may lag: "
                         "rerun in a few minutes)", *missing])


# -- the text edit -------------------------------------------------------------------------

def _waves_skipped(stack: str, spec: EstateSpec, server: Server, skip_waves: bool) -> list[str]:
    """Outside dev a new image goes through the waves (`estate promote`); pinning `image` releases it to
    every region at once, so it takes `--skip-waves` (an emergency fix), and says so."""
    if spec.environment == "dev":
        return []
    if not skip_waves:
        raise LockError([f"stack {stack} is {spec.environment}: a new image reaches it wave by wave, "
                         f"`estate promote --stack {stack} --server {server.name} --start` (the digest "
                         "released in the stage before); `estate lock` would pin every region at once: "
                         "pass --skip-waves to do that anyway (an emergency fix)"])
    return [f"{spec.environment} stack {stack}: servers[{server.name}].image pinned in every region at once "
            "(--skip-waves): no wave bakes it first"]


def _no_candidate_in_flight(stack: str, server: Server) -> None:
    """Pinning `image` under a candidate would release a digest no wave has run: refuse."""
    if server.candidate is not None:
        digest = server.candidate.image.rsplit("@", 1)[1]
        raise LockError([f"servers[{server.name}] has a candidate in flight ({digest}, waves_reached "
                         f"{server.candidate.waves_reached}): finish it with `estate promote --stack "
                         f"{stack} --server {server.name}` or withdraw it with `--abort`, then lock"])


def pin_image(text: str, server: str, image: str) -> str:
    """`text` with only `server`'s `image:` value replaced by `image`, checked by re-parsing."""
    try:
        node = one_line_scalar(child(server_node(text, server), "image"), f"servers[{server}].image")
        new_text = replace_scalar(text, node, image)
        check_edit(text, new_text, server, lambda item: item.update(image=image), f"set its image by hand to {image}")
    except StackEditError as error:
        raise LockError(error.problems, error.code) from None
    return new_text
