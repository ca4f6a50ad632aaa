"""The estate's image registry: ECR repositories in the source region, replicated to every region.

Creates, in the source region, one `aws.ecr.Repository` per server (immutable tags, scan on push,
encrypted with the region's key) with a lifecycle policy that expires only untagged images, and
the registry's `aws.ecr.ReplicationConfiguration` copying the namespace to every other region.
ECR creates the replica repositories itself, with default (mutable, AES256) settings unless a
repository creation template says otherwise, so each destination region gets an
`aws.ecr.RepositoryCreationTemplate` for the namespace (immutable tags, that region's key,
contract tags) and the registry one IAM role ECR assumes to create them with KMS and tags.

Registry-wide scanning (`aws.ecr.RegistryScanningConfiguration`) is deliberately not managed:
it is one setting per account and region, shared with other teams. Images are scanned on push
in the source region; a replica has the same digest, so it is the same image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mcp_estate.contract.iam_documents import document, service_trust
from mcp_estate.contract.names import ContractTags

from .naming import child_opts

UNTAGGED_IMAGE_DAYS = 14


@dataclass
class RegistryArgs:
    account_id: str
    namespace: str                  # repositories are named "<namespace>/..."
    source_region: str              # where images are pushed
    repositories: dict[str, str]    # server -> repository name
    regions: list[str]              # every region of the estate, the source included
    key_arns: dict[str, pulumi.Input[str]]   # region -> key of the region's residency group
    providers: dict[str, aws.Provider]
    protect: bool
    tags: ContractTags
    replica_role_name: str          # physical name of the role ECR creates replicas with (watched)


class Registry(pulumi.ComponentResource):
    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:registry:Registry", name, None, opts)
        self.role_names: list[str] = []   # the roles it creates, for change detection
        repositories = {server: self._repository(f"{name}-{server}", server, repository, args)
                        for server, repository in sorted(args.repositories.items())}
        destinations = sorted(set(args.regions) - {args.source_region})
        if destinations:
            templates = self._creation_templates(name, destinations, args)
            # After the templates: a replica created before its region's template would keep ECR's
            # defaults (mutable tags, AES256) for good, as a repository's encryption cannot change.
            aws.ecr.ReplicationConfiguration(
                f"{name}-replication", replication_configuration={"rules": [{
                    "destinations": [{"region": region, "registry_id": args.account_id} for region in destinations],
                    "repository_filters": [{"filter": f"{args.namespace}/", "filter_type": "PREFIX_MATCH"}]}]},
                opts=child_opts(self, provider=args.providers[args.source_region], depends_on=templates))
        self.repository_arns: dict[str, pulumi.Output[str]] = {s: r.arn for s, r in repositories.items()}
        self.repository_urls: dict[str, pulumi.Output[str]] = {s: r.repository_url for s, r in repositories.items()}
        self.register_outputs({"repository_arns": self.repository_arns, "repository_urls": self.repository_urls})

    def _repository(self, name: str, server: str, repository: str, args: RegistryArgs) -> aws.ecr.Repository:
        source = args.providers[args.source_region]
        repo = aws.ecr.Repository(
            f"{name}-repo", name=repository, image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            encryption_configurations=[{"encryption_type": "KMS", "kms_key": args.key_arns[args.source_region]}],
            force_delete=False,   # deleting a repository that still holds images fails instead
            tags=args.tags(server=server), opts=child_opts(self, provider=source, protect=args.protect))
        aws.ecr.LifecyclePolicy(f"{name}-lifecycle", repository=repo.name, policy=json.dumps(LIFECYCLE_POLICY),
                                opts=child_opts(self, provider=source))
        return repo

    def _creation_templates(self, name: str, destinations: list[str],
                            args: RegistryArgs) -> list[aws.ecr.RepositoryCreationTemplate]:
        # ECR needs a role of its own to create repositories with KMS encryption or tags.
        self.role_names.append(args.replica_role_name)
        role = aws.iam.Role(f"{name}-replica-creation-role", name=args.replica_role_name,
                            assume_role_policy=json.dumps(ECR_TRUST_POLICY),
                            description="Assumed by ECR to create replica repositories encrypted and tagged",
                            tags=args.tags(), opts=child_opts(self, provider=args.providers[args.source_region]))
        grant = aws.iam.RolePolicy(
            f"{name}-replica-creation-policy", role=role.id,
            policy=creation_role_policy(args.account_id, args.namespace, {r: args.key_arns[r] for r in destinations}),
            opts=child_opts(self, provider=args.providers[args.source_region]))
        return [aws.ecr.RepositoryCreationTemplate(
            f"{name}-{region}-template", prefix=args.namespace,   # ECR reads "mcp" as "mcp/"
            applied_fors=["REPLICATION"], description=f"Replicas of the {args.namespace}/ images of mcp-estate",
            image_tag_mutability="IMMUTABLE",
            encryption_configurations=[{"encryption_type": "KMS", "kms_key": args.key_arns[region]}],
            resource_tags=args.tags(), custom_role_arn=role.arn,
            opts=child_opts(self, provider=args.providers[region], depends_on=[grant]))
            for region in destinations]


# Only untagged images expire: tags are immutable, so a tagged image is a release that a pinned
# digest may still point at (and pull again on every scale-out), however old it is.
LIFECYCLE_POLICY = {"rules": [{
    "rulePriority": 1, "description": f"Expire untagged images {UNTAGGED_IMAGE_DAYS} days after push",
    "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                  "countNumber": UNTAGGED_IMAGE_DAYS},
    "action": {"type": "expire"}}]}

# ECR only accepts a creation role of the registry's own account, so no other account's ECR can use it.
ECR_TRUST_POLICY = service_trust("ecr.amazonaws.com")


def creation_role_policy(account_id: str, namespace: str,
                         key_arns: dict[str, pulumi.Input[str]]) -> pulumi.Output[str]:
    """What ECR needs to create a replica (AWS's documented set), on the namespace's repositories
    and the destination regions' keys only."""
    return pulumi.Output.json_dumps(document([
        {"Sid": "CreateReplicaRepositoriesOfTheNamespace", "Effect": "Allow",
         "Action": ["ecr:CreateRepository", "ecr:ReplicateImage", "ecr:TagResource"],
         "Resource": [f"arn:aws:ecr:{region}:{account_id}:repository/{namespace}/*" for region in sorted(key_arns)]},
        {"Sid": "EncryptReplicasWithTheirRegionsKey", "Effect": "Allow",
         "Action": ["kms:CreateGrant", "kms:RetireGrant", "kms:DescribeKey"],
         "Resource": [key_arns[region] for region in sorted(key_arns)]}]))
