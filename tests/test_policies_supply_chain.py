"""Supply-chain controls: pinned images, from allowed registries, in immutable scanned repositories."""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws
import pytest

from corpus import attack, legitimate
from conftest import ACCOUNT, run_program, run_with_planted_fault, violations

DIGEST = "sha256:" + "ab" * 32
ECR = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"
PINNED = f"{ECR}/mcp/booking@{DIGEST}"
OTHER_ACCOUNT_IMAGE = f"444455556666.dkr.ecr.eu-west-1.amazonaws.com/mcp/booking@{DIGEST}"


def task(*images: str, name: str = "booking-task", opts: pulumi.ResourceOptions | None = None) -> None:
    """A Fargate task definition with one container per image (the first is the server, then sidecars)."""
    aws.ecs.TaskDefinition(
        name, family="booking", network_mode="awsvpc", requires_compatibilities=["FARGATE"], cpu="256",
        memory="512", opts=opts,
        container_definitions=json.dumps([{"name": f"c{i}", "image": image, "essential": i == 0}
                                          for i, image in enumerate(images)]))


def found(program, policy: str, config: dict | None = None) -> list[str]:
    return [v.message for v in violations(run_program(program), config, policy=policy)]


# -- images-pinned-by-digest ------------------------------------------------------------------------

@pytest.mark.parametrize("image", [PINNED, f"{ECR}/mcp/booking:1.4.2@{DIGEST}"])
@legitimate("images-pinned-by-digest")
def test_an_image_pinned_by_full_digest_passes_with_or_without_a_tag(image):
    assert found(lambda: task(image), "images-pinned-by-digest") == []


@pytest.mark.parametrize("image, reason", [
    (f"{ECR}/mcp/booking:1.4.2", "pinned by a tag only"),
    (f"{ECR}/mcp/booking", "names no digest"),
    (f"{ECR}/mcp/booking@sha256:abcdef", "not a full sha256 digest"),
    (f"{ECR}/mcp/booking@{DIGEST.upper().replace('SHA256', 'sha256')}", "not a full sha256 digest"),
])
@attack("images-pinned-by-digest")
def test_a_tag_a_bare_name_or_a_short_digest_is_not_pinned(image, reason):
    [message] = found(lambda: task(image), "images-pinned-by-digest")
    assert message.startswith("Task definition booking-task, container c0: image")
    assert reason in message and "@sha256:<64 hex digest>" in message


@attack("images-pinned-by-digest")
def test_a_sidecar_with_a_tag_is_reported_even_when_the_server_is_pinned():
    [message] = found(lambda: task(PINNED, f"{ECR}/mcp/otel-collector:0.98"), "images-pinned-by-digest")
    assert "container c1" in message and "otel-collector:0.98" in message


@attack("images-pinned-by-digest")
def test_a_container_image_lambda_function_is_pinned_by_digest_too():
    def program():
        role = "arn:aws:iam::111122223333:role/fn"
        aws.lambda_.Function("pinned-fn", package_type="Image", image_uri=PINNED, role=role)
        aws.lambda_.Function("tagged-fn", package_type="Image", image_uri=f"{ECR}/mcp/booking:latest", role=role)
    [message] = found(program, "images-pinned-by-digest")
    assert message.startswith("Lambda function tagged-fn: image") and "pinned by a tag only" in message


@attack("images-pinned-by-digest")
def test_unreadable_container_definitions_are_reported_not_passed():
    def program():
        aws.ecs.TaskDefinition("broken-task", family="broken", container_definitions="not json")
    plan = run_with_planted_fault(program, "'broken-task': containerDefinitions is not JSON")
    assert [v.message for v in violations(plan, policy="images-pinned-by-digest")] == [
        "Task definition broken-task: containerDefinitions is not JSON (Expecting value: line 1 column 1 "
        "(char 0)), so it cannot be checked"]


# -- images-from-allowed-registries ------------------------------------------------------------------

@attack("images-from-allowed-registries")
def test_without_config_or_provider_accounts_a_private_ecr_image_cannot_be_judged():
    # Another account's ECR is as foreign as Docker Hub: with nothing naming the estate's account,
    # allowing any private ECR would let it through.
    assert found(lambda: task(OTHER_ACCOUNT_IMAGE), "images-from-allowed-registries") == [
        f"Task definition booking-task, container c0: image '{OTHER_ACCOUNT_IMAGE}' comes from the private ECR of "
        "account 444455556666, but this check cannot tell the estate's account (no allowedRegistries config, no "
        "allowedAccountIds on the resource's AWS provider): set allowedRegistries, e.g. ['444455556666.dkr.ecr.']"]


@pytest.mark.parametrize("image, host", [
    (f"nginx@{DIGEST}", "docker.io"),                       # no host at all: Docker Hub
    (f"library/nginx:1.27@{DIGEST}", "docker.io"),
    (f"docker.io/library/nginx@{DIGEST}", "docker.io"),
    (f"ghcr.io/acme/mcp-booking@{DIGEST}", "ghcr.io"),
    (f"public.ecr.aws/acme/mcp-booking@{DIGEST}", "public.ecr.aws"),
    (f"quay.io/acme/mcp-booking@{DIGEST}", "quay.io"),
])
@attack("images-from-allowed-registries")
def test_images_from_public_registries_are_reported(image, host):
    [message] = found(lambda: task(image), "images-from-allowed-registries")
    assert f"container c0: image '{image}' comes from the public registry {host}" in message
    assert "allowed: the estate's private ECR (set allowedRegistries to name it)" in message


@attack("images-from-allowed-registries")
def test_a_host_that_only_looks_like_ecr_is_not_allowed():
    image = f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com.attacker.example/mcp/booking@{DIGEST}"
    [message] = found(lambda: task(image), "images-from-allowed-registries")
    assert "comes from the registry 111122223333.dkr.ecr.eu-west-1.amazonaws.com.attacker.example" in message


@attack("images-from-allowed-registries")
def test_configured_registries_allow_exact_hosts_and_account_prefixes_only():
    config = {"images-from-allowed-registries": {"allowedRegistries": [
        "111122223333.dkr.ecr.", "registry.example.travel"]}}
    allowed = [PINNED, f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/mcp/booking@{DIGEST}",
               f"registry.example.travel/mcp/booking@{DIGEST}"]
    refused = [OTHER_ACCOUNT_IMAGE, f"{ACCOUNT}.dkr.ecr.attacker.example/mcp/booking@{DIGEST}",
               f"registry.example.travel.attacker.example/mcp/booking@{DIGEST}"]
    messages = found(lambda: task(*allowed, *refused), "images-from-allowed-registries", config)
    assert [m.split(":", 1)[0] for m in messages] == [
        "Task definition booking-task, container c3", "Task definition booking-task, container c4",
        "Task definition booking-task, container c5"]
    assert "allowed: allowedRegistries ['111122223333.dkr.ecr.', 'registry.example.travel']" in messages[0]


@attack("images-from-allowed-registries")
def test_a_bare_account_id_allows_that_accounts_ecr_in_every_region():
    config = {"images-from-allowed-registries": {"allowedRegistries": [ACCOUNT]}}
    messages = found(lambda: task(PINNED, OTHER_ACCOUNT_IMAGE), "images-from-allowed-registries", config)
    assert len(messages) == 1 and "container c1" in messages[0]


@attack("images-from-allowed-registries")
def test_a_provider_restricted_to_an_account_allows_only_that_accounts_ecr():
    def program():
        provider = aws.Provider("aws-eu-west-1", region="eu-west-1", allowed_account_ids=[ACCOUNT])
        task(PINNED, OTHER_ACCOUNT_IMAGE, opts=pulumi.ResourceOptions(provider=provider))
    [message] = found(program, "images-from-allowed-registries")
    assert "container c1" in message
    assert "allowed: the private ECR of account 111122223333 (the provider's allowedAccountIds)" in message


@attack("images-from-allowed-registries")
def test_lambda_images_come_from_allowed_registries_too():
    def program():
        aws.lambda_.Function("hub-fn", package_type="Image", image_uri=f"ghcr.io/acme/fn@{DIGEST}",
                             role="arn:aws:iam::111122223333:role/fn")
    [message] = found(program, "images-from-allowed-registries")
    assert message.startswith("Lambda function hub-fn: image") and "public registry ghcr.io" in message


# -- ecr-repositories-immutable-and-scanned ----------------------------------------------------------

@legitimate("ecr-repositories-immutable-and-scanned")
def test_an_immutable_repository_scanned_on_push_passes():
    def program():
        aws.ecr.Repository("booking-repo", name="mcp/booking", image_tag_mutability="IMMUTABLE",
                           image_scanning_configuration={"scan_on_push": True})
    assert found(program, "ecr-repositories-immutable-and-scanned") == []


@pytest.mark.parametrize("settings, expected", [
    ({"image_tag_mutability": "MUTABLE"}, "has MUTABLE tags"),
    ({}, "has MUTABLE (the default) tags"),
    ({"image_tag_mutability": "MUTABLE_WITH_EXCLUSION",
      "image_tag_mutability_exclusion_filters": [{"filter": "release-*", "filter_type": "WILDCARD"}]},
     "has MUTABLE_WITH_EXCLUSION tags"),
    ({"image_tag_mutability": "IMMUTABLE_WITH_EXCLUSION",
      "image_tag_mutability_exclusion_filters": [{"filter": "latest", "filter_type": "WILDCARD"}]},
     "tags matching its exclusion filters can still be moved"),
])
@attack("ecr-repositories-immutable-and-scanned")
def test_a_repository_with_movable_tags_is_reported(settings, expected):
    def program():
        aws.ecr.Repository("booking-repo", name="mcp/booking", image_scanning_configuration={"scan_on_push": True},
                           **settings)
    [message] = found(program, "ecr-repositories-immutable-and-scanned")
    assert message.startswith("ECR repository mcp/booking ") and expected in message
    assert "set image_tag_mutability='IMMUTABLE'" in message


@pytest.mark.parametrize("scanning", [None, {"scan_on_push": False}])
@attack("ecr-repositories-immutable-and-scanned")
def test_a_repository_that_does_not_scan_on_push_is_reported(scanning):
    def program():
        aws.ecr.Repository("booking-repo", name="mcp/booking", image_tag_mutability="IMMUTABLE",
                           image_scanning_configuration=scanning)
    assert found(program, "ecr-repositories-immutable-and-scanned") == [
        "ECR repository mcp/booking does not scan images on push: set "
        "image_scanning_configuration={'scan_on_push': True}"]


@attack("ecr-repositories-immutable-and-scanned")
def test_replica_repositories_are_created_immutable():
    def program():
        for name, mutability in (("good-template", "IMMUTABLE"), ("bad-template", "MUTABLE")):
            aws.ecr.RepositoryCreationTemplate(name, prefix=name.split("-")[0], applied_fors=["REPLICATION"],
                                               image_tag_mutability=mutability)
    assert found(program, "ecr-repositories-immutable-and-scanned") == [
        "ECR repository creation template bad has MUTABLE tags: set image_tag_mutability='IMMUTABLE'"]
