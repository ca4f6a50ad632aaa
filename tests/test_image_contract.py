"""The image contract, read from an image's configuration in ECR.

moto implements no GetDownloadUrlForLayer and ignores BatchGetImage's accepted media types, so
these calls are checked with botocore's Stubber, which validates every request and response
against ECR's service model; the configuration itself is downloaded over HTTP from 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading

import boto3
import pytest
from blob_server import blob_server, config_blob, digest_of
from botocore.stub import Stubber
from conftest import shipped_plan

from mcp_estate.operations.image_contract import (
    ACCEPTED_MEDIA_TYPES,
    CONTAINER_USER,
    DOCKER_LIST,
    MAX_CONFIG_BYTES,
    OCI_INDEX,
    OCI_MANIFEST,
    SCRATCH_PATH,
    ImageConfig,
    ImageConfigError,
    WrongPlatform,
    contract_problems,
    read_image_config,
)

REGISTRY, REPOSITORY = "123456789012", "mcp/booking"
INDEX_DIGEST, AMD64, ARM64 = (f"sha256:{c * 64}" for c in "123")


class Blobs(dict):
    """The registry's blob store: digest -> bytes, served on 127.0.0.1."""

    url = ""

    def add(self, blob: bytes) -> str:
        self[digest_of(blob)] = blob
        return digest_of(blob)

    def add_config(self, **fields) -> str:
        return self.add(config_blob(**fields))

    def link(self, digest: str) -> str:
        return f"{self.url}/{digest}"


@pytest.fixture
def blobs(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    store = Blobs()
    with blob_server(store) as store.url:
        yield store


@pytest.fixture
def ecr():
    client = boto3.client("ecr", region_name="eu-west-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def image_manifest(config_digest: str, media_type: str = OCI_MANIFEST) -> str:
    return json.dumps({"schemaVersion": 2, "mediaType": media_type,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 1234,
                                  "digest": config_digest},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 99,
                                   "digest": f"sha256:{'9' * 64}"}]})


def index(*platforms: tuple[str, str, str], media_type: str = OCI_INDEX) -> str:
    """A multi-platform index of (os, architecture, digest), as `docker buildx build --platform` pushes."""
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": [
        {"mediaType": OCI_MANIFEST, "size": 500, "digest": digest,
         "platform": {"os": os, "architecture": arch}} for os, arch, digest in platforms]})


def expect_manifest(stubber: Stubber, digest: str, manifest: str, media_type: str) -> None:
    """One BatchGetImage call, for exactly one image id (the API takes at most 100 per call)."""
    stubber.add_response("batch_get_image", {
        "images": [{"registryId": REGISTRY, "repositoryName": REPOSITORY, "imageId": {"imageDigest": digest},
                    "imageManifest": manifest, "imageManifestMediaType": media_type}], "failures": []},
        {"registryId": REGISTRY, "repositoryName": REPOSITORY, "imageIds": [{"imageDigest": digest}],
         "acceptedMediaTypes": ACCEPTED_MEDIA_TYPES})


def expect_download_url(stubber: Stubber, blobs, config_digest: str) -> None:
    stubber.add_response("get_download_url_for_layer",
                         {"downloadUrl": blobs.link(config_digest), "layerDigest": config_digest},
                         {"registryId": REGISTRY, "repositoryName": REPOSITORY, "layerDigest": config_digest})


def read(client, digest: str = AMD64, architecture: str = "X86_64") -> ImageConfig:
    return read_image_config(client, REGISTRY, REPOSITORY, digest, architecture)


def test_a_single_image_manifest_gives_its_configuration(ecr, blobs):
    client, stubber = ecr
    config = blobs.add_config(user="10001", volumes=("/tmp", "/data"))
    expect_manifest(stubber, AMD64, image_manifest(config), OCI_MANIFEST)
    expect_download_url(stubber, blobs, config)
    assert read(client) == ImageConfig("linux/amd64", "10001", frozenset({"/tmp", "/data"}))


@pytest.mark.parametrize("media_type", [OCI_INDEX, DOCKER_LIST])
def test_a_multi_platform_image_is_read_for_the_servers_architecture(ecr, blobs, media_type):
    client, stubber = ecr
    config = blobs.add_config(architecture="arm64")
    attestation = ("unknown", "unknown", f"sha256:{'4' * 64}")
    platforms = index(("linux", "amd64", AMD64), ("linux", "arm64", ARM64), attestation,
                      media_type=media_type)
    expect_manifest(stubber, INDEX_DIGEST, platforms, media_type)
    expect_manifest(stubber, ARM64, image_manifest(config), OCI_MANIFEST)
    expect_download_url(stubber, blobs, config)
    expected = ImageConfig("linux/arm64", CONTAINER_USER, frozenset({"/tmp"}))
    assert read(client, INDEX_DIGEST, "ARM64") == expected


def test_a_multi_platform_image_without_the_servers_platform_is_the_wrong_platform(ecr):
    client, stubber = ecr
    expect_manifest(stubber, INDEX_DIGEST, index(("linux", "amd64", AMD64), ("windows", "arm64", ARM64)),
                    OCI_INDEX)
    with pytest.raises(WrongPlatform, match=r"has no linux/arm64 image \(it has linux/amd64, "
                                            r"windows/arm64\): build it for linux/arm64"):
        read(client, INDEX_DIGEST, "ARM64")


def test_an_image_built_for_another_architecture_is_the_wrong_platform(ecr, blobs):
    client, stubber = ecr
    config = blobs.add_config(architecture="arm64")
    expect_manifest(stubber, AMD64, image_manifest(config), OCI_MANIFEST)
    expect_download_url(stubber, blobs, config)
    with pytest.raises(WrongPlatform, match="is built for linux/arm64, but the server runs on linux/amd64 "
                                            "\\(`architecture: X86_64`\\)"):
        read(client)


def test_a_configuration_that_does_not_match_its_digest_is_refused(ecr, blobs):
    client, stubber = ecr
    config = blobs.add_config()
    blobs[config] = blobs[config].replace(b"10001:10001", b"0:0")   # swapped in transit
    expect_manifest(stubber, AMD64, image_manifest(config), OCI_MANIFEST)
    expect_download_url(stubber, blobs, config)
    with pytest.raises(ImageConfigError, match="does not match its digest"):
        read(client)


def test_a_failed_download_names_the_http_status(ecr, blobs):
    client, stubber = ecr
    missing = f"sha256:{'5' * 64}"
    expect_manifest(stubber, AMD64, image_manifest(missing), OCI_MANIFEST)
    expect_download_url(stubber, blobs, missing)
    with pytest.raises(ImageConfigError,
                       match=r"downloading the image configuration sha256:555555555555\.\.\.: HTTP 404"):
        read(client)


def test_an_image_the_registry_reports_as_a_failure_is_not_read(ecr):
    client, stubber = ecr
    stubber.add_response("batch_get_image", {"images": [], "failures": [
        {"imageId": {"imageDigest": AMD64}, "failureCode": "ImageNotFound",
         "failureReason": "Requested image not found"}]},
        {"registryId": REGISTRY, "repositoryName": REPOSITORY, "imageIds": [{"imageDigest": AMD64}],
         "acceptedMediaTypes": ACCEPTED_MEDIA_TYPES})
    with pytest.raises(ImageConfigError, match=r"BatchGetImage: mcp/booking@sha256:222222222222\.\.\.: "
                                               "ImageNotFound: Requested image not found"):
        read(client)


def test_a_schema_1_manifest_has_no_configuration_to_check(ecr):
    client, stubber = ecr
    schema1 = json.dumps({"schemaVersion": 1, "name": REPOSITORY, "fsLayers": [], "history": []})
    expect_manifest(stubber, AMD64, schema1, "application/vnd.docker.distribution.manifest.v1+json")
    with pytest.raises(ImageConfigError, match="not an OCI or Docker schema 2 image manifest"):
        read(client)


def test_a_download_url_that_is_not_http_is_never_opened(ecr):
    client, stubber = ecr
    config = f"sha256:{'6' * 64}"
    expect_manifest(stubber, AMD64, image_manifest(config), OCI_MANIFEST)
    stubber.add_response("get_download_url_for_layer",
                         {"downloadUrl": "file:///etc/passwd", "layerDigest": config},
                         {"registryId": REGISTRY, "repositoryName": REPOSITORY, "layerDigest": config})
    with pytest.raises(ImageConfigError, match="not HTTP"):
        read(client)


@contextlib.contextmanager
def one_connection(answer: bytes):
    """A server on 127.0.0.1 (port picked by the OS) that takes one connection, reads the request, sends
    `answer` and then holds the connection open until the test ends (empty `answer`: closes at once)."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            if answer:
                connection.sendall(answer)
                done.wait(60)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        done.set()
        thread.join()
        listener.close()


def download_from(ecr, url: str, config: str) -> None:
    client, stubber = ecr
    expect_manifest(stubber, AMD64, image_manifest(config), OCI_MANIFEST)
    stubber.add_response("get_download_url_for_layer", {"downloadUrl": f"{url}/{config}", "layerDigest": config},
                         {"registryId": REGISTRY, "repositoryName": REPOSITORY, "layerDigest": config})
    read(client)


def test_a_download_larger_than_any_configuration_is_refused_without_waiting_for_its_end(ecr, monkeypatch):
    # Found by the mutation run: the body is read up to the cap, not to its end. An answer that goes on
    # (here: the cap and one byte, then nothing, with the connection left open) is refused at once
    # instead of hanging `estate lock` until the download times out.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    config = f"sha256:{'7' * 64}"
    endless = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n" + b"{" * (MAX_CONFIG_BYTES + 1)
    with one_connection(endless) as url, pytest.raises(ImageConfigError, match="does not match its digest"):
        download_from(ecr, url, config)


def test_a_connection_closed_without_an_answer_is_a_download_error_naming_why(ecr, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    config = f"sha256:{'8' * 64}"
    with one_connection(b"") as url, pytest.raises(
            ImageConfigError, match=r"downloading the image configuration sha256:888888888888\.\.\.: "
                                    "Remote end closed connection without response"):
        download_from(ecr, url, config)


# -- the contract ------------------------------------------------------------------------------

@pytest.mark.parametrize("user", ["10001", "10001:10001", "10001:0"])
def test_an_image_running_as_10001_with_a_tmp_volume_meets_the_contract(user):
    assert contract_problems(ImageConfig("linux/amd64", user, frozenset({"/tmp", "/cache"}))) == []


@pytest.mark.parametrize("user, shown", [("", "root (no USER)"), ("root", "'root'"), ("0", "'0'"),
                                         ("0:10001", "'0:10001'"), ("app", "'app'"), ("100010", "'100010'"),
                                         ("10002:10001", "'10002:10001'")])
def test_any_other_user_breaks_the_contract(user, shown):
    (problem,) = contract_problems(ImageConfig("linux/amd64", user, frozenset({"/tmp"})))
    assert problem.startswith(f"its user is {shown}, not 10001: the task runs it as 10001:10001")


@pytest.mark.parametrize("volumes", [set(), {"/var/tmp"}, {"/tmp/cache"}, {"/TMP"}])
def test_an_image_without_a_tmp_volume_breaks_the_contract(volumes):
    (problem,) = contract_problems(ImageConfig("linux/amd64", "10001", frozenset(volumes)))
    assert problem.startswith("it declares no `VOLUME /tmp`")
    assert "root-owned and unwritable for 10001" in problem


def test_the_contract_is_the_one_the_task_definition_runs(monkeypatch):
    """The user the lock checks for and the path it wants declared are the task's own."""
    task = shipped_plan("dev").of_type("aws:ecs/taskDefinition:TaskDefinition")[0].inputs
    (container,) = json.loads(task["containerDefinitions"])
    assert container["user"] == CONTAINER_USER
    assert container["readonlyRootFilesystem"] is True
    (mount,) = container["mountPoints"]
    assert (mount["containerPath"], mount["readOnly"]) == (SCRATCH_PATH, False)
    assert task["volumes"] == [{"name": mount["sourceVolume"]}]   # an empty bind mount, no host path
