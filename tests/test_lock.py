"""`estate lock`: a scanned tag's digest, present in every region, pinned into one line of the stack file.

moto's ECR has no replication: the tests create the repository and push the same manifest in
each region themselves. Scan results are set through moto's own API (its documented
`/moto-api/static/ecr/scan-finding-results`), which `describe_image_scan_findings` then returns.
moto implements no GetDownloadUrlForLayer: here it answers with a URL on a local blob server
holding the image configurations (the call's shapes are checked with Stubber in
test_image_contract.py).
"""

from __future__ import annotations

import functools
import json
import os
import stat

import boto3
import pytest
import requests
from blob_server import blob_server, config_blob, digest_of
from botocore.exceptions import EndpointConnectionError
from conftest import ROOT
from moto.core.responses import ActionResult
from moto.ecr.responses import ECRResponse
from offline_aws import mocked, moto_server, run_estate

from mcp_estate.cli import main
from mcp_estate.operations.lock import LockError, pin_image
from mcp_estate.operations.lock import lock as lock_image

MOTO_ACCOUNT, HOME = "123456789012", "us-east-1"
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1")   # the prod stack's, all running inventory
REPOSITORY, TAG = "mcp/inventory", "v2.3.0"
HOST = f"{MOTO_ACCOUNT}.dkr.ecr.{HOME}.amazonaws.com"
MOTO_API = "http://motoapi.amazonaws.com"


COMPLIANT = config_blob()                # USER 10001:10001, VOLUME /tmp, linux/amd64
BLOBS: dict[str, bytes] = {}             # the registry's blob store: every pushed image's configuration


@pytest.fixture(scope="module")
def blob_url():
    with blob_server(BLOBS) as url:
        yield url


@pytest.fixture(autouse=True)
def aws(monkeypatch, blob_url):
    def download_url(response: ECRResponse) -> ActionResult:
        digest = response._get_param("layerDigest")
        return ActionResult({"downloadUrl": f"{blob_url}/{digest}", "layerDigest": digest})

    monkeypatch.setattr(ECRResponse, "get_download_url_for_layer", download_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with mocked(monkeypatch, HOME):
        yield


@pytest.fixture
def stacks(tmp_path):
    """The shipped prod stack (comments, three servers, four regions), in moto's account."""
    text = (ROOT / "stacks" / "Pulumi.prod.yaml").read_text().replace("777788889999", MOTO_ACCOUNT)
    (tmp_path / "Pulumi.prod.yaml").write_text(text)
    return tmp_path


def stack_text(stacks) -> str:
    return (stacks / "Pulumi.prod.yaml").read_text()


@functools.cache
def ecr(region: str, endpoint: str | None = None):
    """One client per region for the whole module: building clients is most of moto's cost."""
    return boto3.client("ecr", region_name=region, endpoint_url=endpoint)


def manifest(layer: str, config: bytes) -> str:
    BLOBS[digest_of(config)] = config
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                                  "size": len(config), "digest": digest_of(config)},
                       "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 32654,
                                   "digest": f"sha256:{layer * 64}"}]})


def push(regions=REGIONS, repository=REPOSITORY, tag=TAG, layer="a", endpoint: str | None = None,
         config: bytes = COMPLIANT) -> str:
    """Push one image to `regions` (the home region's push plus emulated replicas); its digest."""
    digests = set()
    for region in regions:
        if not ecr(region, endpoint).describe_repositories()["repositories"]:
            ecr(region, endpoint).create_repository(repositoryName=repository)
        image = ecr(region, endpoint).put_image(repositoryName=repository, imageTag=tag,
                                                imageManifest=manifest(layer, config))["image"]
        digests.add(image["imageId"]["imageDigest"])
    (digest,) = digests
    return digest


def scanned(digest: str, counts: dict[str, int], status: str = "COMPLETE", api: str = MOTO_API,
            description: str = "The scan was completed successfully.") -> None:
    """Record the home region's scan result for the digest."""
    ecr(HOME, None if api == MOTO_API else api).start_image_scan(
        repositoryName=REPOSITORY, imageId={"imageDigest": digest})
    result = {"registryId": MOTO_ACCOUNT, "repositoryName": REPOSITORY, "imageId": {"imageDigest": digest},
              "imageScanStatus": {"status": status, "description": description},
              "imageScanFindings": {"findingSeverityCounts": counts}}
    requests.post(f"{api}/moto-api/static/ecr/scan-finding-results",
                  json={"region": HOME, "results": [result]}, timeout=10).raise_for_status()


def lock(stacks, *extra: str, skip_waves: bool = True) -> int:
    """`estate lock` on the shipped prod stack (four regions): past its waves unless told otherwise."""
    return main(["lock", "--stack", "prod", "--server", "inventory", "--tag", TAG, "--stacks-dir", str(stacks),
                 *(["--skip-waves"] if skip_waves else []), *extra])


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(old) == len(new)
    return [(a, b) for a, b in zip(old, new) if a != b]


def test_lock_pins_the_digest_changing_only_the_servers_image_line(stacks, capsys):
    before, digest = stack_text(stacks), push()
    scanned(digest, {"MEDIUM": 2, "LOW": 5})
    assert lock(stacks) == 0
    old_image = f"{HOST}/{REPOSITORY}@sha256:b11a85b296a90afc460430434a504e7acb04b064575b7277724688af0e59d189"
    assert changed_lines(before, stack_text(stacks)) == [
        (f"        image: {old_image}\n", f"        image: {HOST}/{REPOSITORY}@{digest}\n")]
    printed = capsys.readouterr().out
    assert f"inventory: {TAG} -> {digest}" in printed
    assert "scan COMPLETE: LOW 5, MEDIUM 2" in printed
    assert "present in: eu-central-1, eu-west-1, us-east-1, us-west-2" in printed


def test_critical_or_high_findings_refuse_with_exit_1_and_write_nothing(stacks, capsys):
    before, digest = stack_text(stacks), push()
    scanned(digest, {"CRITICAL": 1, "HIGH": 2, "LOW": 3})
    assert lock(stacks) == 1
    assert stack_text(stacks) == before
    assert f"{REPOSITORY}:{TAG} has 1 CRITICAL, 2 HIGH finding(s)" in capsys.readouterr().err


def test_allow_findings_pins_anyway_and_warns_loudly(stacks, capsys):
    before, digest = stack_text(stacks), push()
    scanned(digest, {"HIGH": 1})
    assert lock(stacks, "--allow-findings") == 0
    assert len(changed_lines(before, stack_text(stacks))) == 1
    assert "WARNING: mcp/inventory:v2.3.0 has 1 HIGH finding(s): pinned anyway" in capsys.readouterr().err


@pytest.mark.parametrize("status, reason", [("IN_PROGRESS", "has no usable scan (status IN_PROGRESS)"),
                                            (None, "has no scan")])
def test_an_unfinished_or_missing_scan_is_refused(stacks, capsys, status, reason):
    before, digest = stack_text(stacks), push()
    if status:
        scanned(digest, {}, status=status)
    assert lock(stacks) == 2
    assert stack_text(stacks) == before
    assert f"{REPOSITORY}:{TAG} {reason}: wait for the scan" in capsys.readouterr().err


@pytest.mark.parametrize("status", ["FAILED", "UNSUPPORTED_IMAGE"])
def test_a_scan_that_cannot_finish_is_refused_with_how_to_rescan(stacks, capsys, status):
    before, digest = stack_text(stacks), push()
    why = "UnsupportedImageError: The operating system is not supported"
    scanned(digest, {}, status=status, description=why)
    assert lock(stacks) == 2
    assert stack_text(stacks) == before
    err = capsys.readouterr().err
    assert (f"{REPOSITORY}:{TAG} has no usable scan (status {status}): the scan will not finish by itself "
            f"({why}): start a new one "
            f"(`aws ecr start-image-scan --repository-name {REPOSITORY} --image-id imageTag={TAG}`)") in err
    assert "wait for the scan" not in err


def test_an_unscanned_image_pins_only_with_allow_findings_and_a_warning(stacks, capsys):
    push()
    assert lock(stacks, "--allow-findings") == 0
    assert "pinned UNSCANNED because of --allow-findings" in capsys.readouterr().err


def test_an_image_not_yet_in_a_replica_region_is_refused_naming_the_region(stacks, capsys):
    before, digest = stack_text(stacks), push(regions=("us-east-1", "us-west-2", "eu-west-1"))
    scanned(digest, {})
    assert lock(stacks) == 2
    assert stack_text(stacks) == before
    err = capsys.readouterr().err
    assert "replication may lag" in err
    assert f"eu-central-1: no repository {REPOSITORY}@{digest[:19]}..." in err
    assert "eu-west-1:" not in err and "us-west-2:" not in err


def test_a_replica_with_only_an_older_image_is_refused_too(stacks, capsys):
    push(regions=("eu-central-1",), layer="0")      # an older image, already replicated
    digest = push()
    ecr("eu-central-1").batch_delete_image(
        repositoryName=REPOSITORY, imageIds=[{"imageDigest": digest}])
    scanned(digest, {})
    assert lock(stacks) == 2
    assert f"eu-central-1: no image {REPOSITORY}@" in capsys.readouterr().err


def test_a_missing_tag_or_repository_exits_2_with_the_reason(stacks, capsys):
    assert lock(stacks) == 2
    assert f"no repository '{REPOSITORY}' in registry {MOTO_ACCOUNT} (us-east-1)" in capsys.readouterr().err
    push(tag="v2.2.9")
    assert lock(stacks) == 2
    assert f"no tag '{TAG}' in {REPOSITORY} (us-east-1)" in capsys.readouterr().err


def test_an_already_pinned_digest_changes_nothing(stacks, capsys):
    scanned(push(), {})
    assert lock(stacks) == 0
    pinned = stacks / "Pulumi.prod.yaml"
    text, mtime = pinned.read_text(), pinned.stat().st_mtime_ns
    capsys.readouterr()
    assert lock(stacks) == 0
    assert "already pinned to this digest: nothing changed" in capsys.readouterr().out
    assert pinned.read_text() == text and pinned.stat().st_mtime_ns == mtime


# -- the image contract ------------------------------------------------------------------------

@pytest.mark.parametrize("config, problems", [
    (config_blob(user=""), ["its user is root (no USER), not 10001"]),
    (config_blob(user="node"), ["its user is 'node', not 10001"]),
    (config_blob(volumes=()), ["it declares no `VOLUME /tmp` (volumes: none)"]),
    (config_blob(user="0", volumes=("/var/tmp",)), ["its user is '0', not 10001",
                                                    "it declares no `VOLUME /tmp` (volumes: /var/tmp)"])])
def test_an_image_breaking_the_contract_is_refused_with_exit_1_naming_the_fix(stacks, capsys, config, problems):
    before, digest = stack_text(stacks), push(config=config, layer="e")
    scanned(digest, {})
    assert lock(stacks) == 1
    assert stack_text(stacks) == before
    lines = [line.strip() for line in capsys.readouterr().err.splitlines()]
    assert lines[1] == f"servers[inventory]: {REPOSITORY}:{TAG} (linux/amd64) does not meet the image " \
                       "contract:"
    assert [line.split(":")[0] for line in lines[2:-1]] == [p.split(":")[0] for p in problems]
    assert all(line.startswith(problem) for line, problem in zip(lines[2:-1], problems))
    assert lines[-1] == ("fix: in the Dockerfile, after installing the server: `RUN mkdir -p /tmp && chown "
                         "10001:10001 /tmp`, then `USER 10001:10001`, then `VOLUME /tmp` (declared last: later "
                         "changes to a volume are discarded)")


def test_an_image_for_another_architecture_is_refused_with_exit_1(stacks, capsys):
    before, digest = stack_text(stacks), push(config=config_blob(architecture="arm64"), layer="f")
    scanned(digest, {})
    assert lock(stacks) == 1
    assert stack_text(stacks) == before
    assert (f"servers[inventory]: {REPOSITORY}@{digest[:19]}... is built for linux/arm64, but the server runs "
            "on linux/amd64 (`architecture: X86_64`)") in capsys.readouterr().err


def test_the_contract_is_checked_and_reported_before_pinning(stacks, capsys):
    scanned(push(), {})
    assert lock(stacks) == 0
    assert "  image contract met (linux/amd64): user 10001:10001, VOLUME /tmp\n" in capsys.readouterr().out


# -- what can go wrong on the way -------------------------------------------------------------

def test_a_connection_failure_exits_2_and_writes_nothing(stacks, monkeypatch):
    scanned(push(), {})
    before = stack_text(stacks)
    session = boto3.Session()

    def unreachable(**_):
        raise EndpointConnectionError(endpoint_url=f"https://api.ecr.{HOME}.amazonaws.com/")

    session.events.register("before-call.ecr.BatchGetImage", unreachable)
    with pytest.raises(LockError) as refused:
        lock_image(session, "prod", "inventory", TAG, stacks, skip_waves=True)
    assert refused.value.code == 2
    assert refused.value.problems == [
        f'Could not connect to the endpoint URL: "https://api.ecr.{HOME}.amazonaws.com/"']
    assert stack_text(stacks) == before


def test_every_ecr_call_names_one_image_within_the_apis_limit_of_100(stacks):
    """DescribeImages and BatchGetImage take at most 100 image ids (ImageIdentifierList, max 100)."""
    scanned(push(), {})
    session, calls = boto3.Session(), []
    session.events.register("provide-client-params.ecr.*",
                            lambda params, model, **_: calls.append((model.name, params.get("imageIds"))))
    lock_image(session, "prod", "inventory", TAG, stacks, skip_waves=True)
    with_ids = [(name, ids) for name, ids in calls if ids is not None]
    assert [name for name, _ in with_ids] == ["DescribeImages", "BatchGetImage", "DescribeImages",
                                              "DescribeImages", "DescribeImages"]
    assert all(len(ids) == 1 for _, ids in with_ids)


def test_the_pinned_stack_file_keeps_its_mode(stacks):
    path = stacks / "Pulumi.prod.yaml"
    os.chmod(path, 0o640)
    scanned(push(), {})
    assert lock(stacks) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in stacks.iterdir()] == ["Pulumi.prod.yaml"]   # no temporary file left behind


def test_an_unknown_stack_or_server_exits_2(stacks, capsys):
    assert main(["lock", "--stack", "qa", "--server", "inventory", "--tag", TAG, "--stacks-dir", str(stacks)]) == 2
    assert "no such stack file (stacks in" in capsys.readouterr().err
    assert main(["lock", "--stack", "prod", "--server", "search", "--tag", TAG, "--stacks-dir", str(stacks)]) == 2
    assert "no server 'search' in the stack (servers: booking, inventory, loyalty)" in capsys.readouterr().err


def test_a_server_with_a_candidate_in_flight_is_not_locked_and_nothing_is_written(stacks, capsys):
    # Pinning `image` under a candidate would release a digest no wave has run.
    text = stack_text(stacks)
    booking = next(line for line in text.splitlines() if "/mcp/booking@" in line)
    candidate = booking.replace("image:", "candidate: {image:").replace("001d", "002d") + ", waves_reached: 1}"
    (stacks / "Pulumi.prod.yaml").write_text(text.replace(booking, f"{booking}\n{candidate}"))
    before = stack_text(stacks)
    assert main(["lock", "--stack", "prod", "--server", "booking", "--tag", TAG, "--stacks-dir", str(stacks)]) == 2
    assert "servers[booking] has a candidate in flight (sha256:002d" in capsys.readouterr().err
    assert stack_text(stacks) == before


def test_outside_dev_lock_refuses_to_skip_the_waves_and_writes_nothing(stacks, capsys):
    # Before any AWS call: the stack, not the registry, says the image must go through the waves.
    before = stack_text(stacks)
    assert lock(stacks, skip_waves=False) == 2
    assert capsys.readouterr().err.strip().endswith(
        "stack prod is prod: a new image reaches it wave by wave, `estate promote --stack prod --server "
        "inventory --start` (the digest released in the stage before); `estate lock` would pin every region at "
        "once: pass --skip-waves to do that anyway (an emergency fix)")
    assert stack_text(stacks) == before


def test_in_dev_lock_pins_without_being_told_to_skip_waves(stacks, capsys):
    text = stack_text(stacks)
    assert text.count("environment: prod") == 1
    (stacks / "Pulumi.prod.yaml").write_text(text.replace("environment: prod", "environment: dev"))
    scanned(push(), {})
    assert lock(stacks, skip_waves=False) == 0
    assert "WARNING" not in capsys.readouterr().err


def test_skipping_the_waves_says_so(stacks, capsys):
    scanned(push(), {})
    assert lock(stacks) == 0
    assert ("WARNING: prod stack prod: servers[inventory].image pinned in every region at once (--skip-waves): "
            "no wave bakes it first") in capsys.readouterr().err


# -- the text edit, on its own -------------------------------------------------------------

DEV_HOST = f"{MOTO_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
IMAGE, PINNED = f"{DEV_HOST}/mcp/booking@sha256:{'1' * 64}", f"{DEV_HOST}/mcp/booking@sha256:{'2' * 64}"


def small_stack(image_value: str, newline: str = "\n") -> str:
    """The shipped dev stack, in moto's account, with `booking`'s image written as `image_value`."""
    lines = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text().replace("111122223333", MOTO_ACCOUNT).splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("image:"))
    lines[at] = f"        image: {image_value}   # pinned by estate lock"
    return newline.join(lines) + newline


@pytest.mark.parametrize("written, expected", [
    (IMAGE, PINNED), (f"'{IMAGE}'", f"'{PINNED}'"), (f'"{IMAGE}"', f'"{PINNED}"')])
def test_the_edit_keeps_the_values_quoting_and_its_comment(written, expected):
    before = small_stack(written)
    line = "        image: {}   # pinned by estate lock\n"
    assert changed_lines(before, pin_image(before, "booking", PINNED)) == [
        (line.format(written), line.format(expected))]


def test_the_edit_keeps_windows_line_endings():
    before = small_stack(IMAGE, newline="\r\n")
    assert pin_image(before, "booking", PINNED) == before.replace(IMAGE, PINNED)


def test_an_image_shared_through_a_yaml_anchor_is_not_edited():
    text = small_stack(f"&img {IMAGE}").replace("    edge:\n", "    x-image: *img\n    edge:\n")
    with pytest.raises(LockError, match="cannot change safely"):
        pin_image(text, "booking", PINNED)


def test_the_console_script_pins_against_an_endpoint_from_the_environment(stacks):
    before = stack_text(stacks)
    with moto_server() as endpoint:
        digest = push(endpoint=endpoint)
        scanned(digest, {"LOW": 1}, api=endpoint)
        result = run_estate(endpoint, HOME, "lock", "--stack", "prod", "--server", "inventory", "--tag", TAG,
                            "--stacks-dir", str(stacks), "--skip-waves")
    assert result.returncode == 0, result.stderr
    assert changed_lines(before, stack_text(stacks))[0][1] == f"        image: {HOST}/{REPOSITORY}@{digest}\n"
