"""`estate bootstrap`: create, or confirm, the self-managed Pulumi backend of an AWS account.

The backend is an S3 bucket for the state (versioned, SSE-KMS with a bucket key, all public
access blocked, TLS-only bucket policy) and a symmetric KMS key with yearly rotation behind an
alias, for `pulumi stack init --secrets-provider awskms://alias/...`.

Every step reads before it writes, so a second run changes nothing and says so. A setting that
drifted is put back: re-enabling versioning or TLS-only access loses nothing, while leaving
them off leaves the state without its history or readable in clear on the wire. A key that is
disabled, pending deletion or not a symmetric encryption key is refused, never repaired: who
disabled it had a reason this command cannot know. Steps run in dependency order (key and
alias before the encryption that names the key; public access blocked before any policy), and
a failure reports what exists, so a rerun continues where it stopped.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from mcp_estate.contract.iam_documents import VERSION

from .aws_errors import client_error_text

DEFAULT_ALIAS = "alias/pulumi-state"
CREATED, IN_PLACE, UPDATED = "created", "in place", "updated"
TLS_SID = "DenyInsecureTransport"
PUBLIC_ACCESS_BLOCK = {"BlockPublicAcls": True, "IgnorePublicAcls": True,
                       "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
# No dots: a dotted name breaks TLS certificate checks for virtual-hosted-style URLs.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_ALIAS = re.compile(r"^alias/[A-Za-z0-9/_-]{1,250}$")


@dataclass(frozen=True)
class Item:
    """One part of the backend and what this run did about it."""
    name: str
    status: str        # created | in place | updated
    detail: str


@dataclass(frozen=True)
class Backend:
    account: str
    region: str
    bucket: str
    alias: str
    key_arn: str
    items: list[Item]

    @property
    def changed(self) -> bool:
        return any(item.status != IN_PLACE for item in self.items)

    @property
    def backend_url(self) -> str:
        # Pulumi's documented S3 form (CLI >= 3.33.1): region in the URL, AWS SDK v2.
        return f"s3://{self.bucket}?region={self.region}&awssdk=v2"

    @property
    def secrets_provider(self) -> str:
        return f"awskms://{self.alias}?region={self.region}"

    def commands(self) -> list[str]:
        return [f"pulumi login '{self.backend_url}'",
                f'pulumi stack init <stack> --secrets-provider "{self.secrets_provider}"']


class BootstrapError(Exception):
    """Why the run stopped, and what was already in place or changed when it did."""

    def __init__(self, message: str, done: list[Item]):
        super().__init__(message)
        self.done = done


def bootstrap(session: boto3.Session, bucket: str, region: str | None, alias: str) -> Backend:
    """Create or confirm the backend; raises BootstrapError, naming what exists, if it cannot."""
    _check_names(bucket, alias)
    # AWS_REGION first, as the AWS CLI does; botocore itself reads only AWS_DEFAULT_REGION and profiles.
    region = region or os.environ.get("AWS_REGION") or session.region_name
    if not region:
        raise BootstrapError("no AWS region: pass --region or set AWS_REGION", [])
    done: list[Item] = []
    try:
        identity = session.client("sts", region_name=region).get_caller_identity()
        account, partition = identity["Account"], identity["Arn"].split(":")[1]
        s3, kms = session.client("s3", region_name=region), session.client("kms", region_name=region)
        owner = {"ExpectedBucketOwner": account}
        exists = _bucket_exists(s3, bucket, region, owner)
        key_arn, fresh = _ensure_key(kms, alias, done)
        _ensure_rotation(kms, key_arn, fresh, done)
        _ensure_bucket(s3, bucket, region, exists, done)
        _ensure_public_access_block(s3, bucket, owner, done)
        _ensure_encryption(s3, bucket, key_arn, owner, done)
        _ensure_versioning(s3, bucket, owner, done)
        _ensure_tls_only(s3, bucket, partition, owner, done)
    except ClientError as error:
        raise BootstrapError(client_error_text(error), done) from None
    except BotoCoreError as error:
        raise BootstrapError(str(error), done) from None
    return Backend(account, region, bucket, alias, key_arn, done)


def _check_names(bucket: str, alias: str) -> None:
    if not _BUCKET.match(bucket):
        raise BootstrapError(f"'{bucket}' is not a usable bucket name: 3-63 lowercase letters, digits and "
                             "hyphens, starting and ending with a letter or digit (no dots)", [])
    if not _ALIAS.match(alias) or alias.startswith("alias/aws/"):
        raise BootstrapError(f"'{alias}' is not a KMS alias of yours: use alias/<name> "
                             f"(e.g. {DEFAULT_ALIAS}); alias/aws/ is reserved for AWS", [])


# -- the bucket must be ours (or free) and in the region, before anything is created -----------

def _bucket_exists(s3: Any, bucket: str, region: str, owner: dict) -> bool:
    try:
        response = s3.head_bucket(Bucket=bucket, **owner)
    except ClientError as error:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404:
            return False
        if status == 403:
            raise BootstrapError(f"bucket '{bucket}' exists and account {owner['ExpectedBucketOwner']} does not "
                                 "own it (or may not read it): choose another name", []) from None
        raise
    actual = response.get("BucketRegion") or \
        response["ResponseMetadata"].get("HTTPHeaders", {}).get("x-amz-bucket-region", region)
    if actual != region:
        raise BootstrapError(f"bucket '{bucket}' is in {actual}, not {region}: rerun with --region {actual}", [])
    return True


def _ensure_bucket(s3: Any, bucket: str, region: str, exists: bool, done: list[Item]) -> None:
    if exists:
        done.append(Item("bucket", IN_PLACE, f"s3://{bucket} ({region})"))
        return
    # us-east-1 is the one region that rejects a LocationConstraint naming it.
    location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
    try:
        s3.create_bucket(Bucket=bucket, ObjectOwnership="BucketOwnerEnforced", **location)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "BucketAlreadyExists":
            raise BootstrapError(f"bucket '{bucket}' belongs to another account: choose another name",
                                 done) from None
        raise
    done.append(Item("bucket", CREATED, f"s3://{bucket} ({region}), ACLs disabled"))


# -- the secrets-provider key ----------------------------------------------------------------

def _ensure_key(kms: Any, alias: str, done: list[Item]) -> tuple[str, bool]:
    """The key's ARN, and whether this run created it."""
    try:
        key = kms.describe_key(KeyId=alias)["KeyMetadata"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NotFoundException":
            raise
        return _create_key(kms, alias, done), True
    problem = _unusable(key)
    if problem:
        raise BootstrapError(f"{alias} points at {key['Arn']}, which {problem}: "
                             "point the alias at a usable key or pass another --key-alias", done)
    done.append(Item("kms key", IN_PLACE, key["Arn"]))
    done.append(Item("kms alias", IN_PLACE, f"{alias} -> {key['KeyId']}"))
    return key["Arn"], False


def _unusable(key: dict) -> str | None:
    if key.get("KeySpec") != "SYMMETRIC_DEFAULT":   # the one spec whose usage is ENCRYPT_DECRYPT only
        return "is not a symmetric encryption key"
    if key.get("KeyState") != "Enabled":
        return f"is {key.get('KeyState')}"
    return None


def _create_key(kms: Any, alias: str, done: list[Item]) -> str:
    key = kms.create_key(Description=f"Pulumi secrets provider ({alias}), created by estate bootstrap",
                         KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT")["KeyMetadata"]
    done.append(Item("kms key", CREATED, key["Arn"]))
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    done.append(Item("kms alias", CREATED, f"{alias} -> {key['KeyId']}"))
    return key["Arn"]


def _ensure_rotation(kms: Any, key_arn: str, fresh: bool, done: list[Item]) -> None:
    if kms.get_key_rotation_status(KeyId=key_arn)["KeyRotationEnabled"]:
        done.append(Item("key rotation", IN_PLACE, "automatic, yearly"))
        return
    kms.enable_key_rotation(KeyId=key_arn)
    done.append(Item("key rotation", CREATED if fresh else UPDATED,
                     "automatic, yearly" if fresh else "was off; enabled (automatic, yearly)"))


# -- the bucket's settings -------------------------------------------------------------------

def _ensure_public_access_block(s3: Any, bucket: str, owner: dict, done: list[Item]) -> None:
    try:
        current = s3.get_public_access_block(Bucket=bucket, **owner)["PublicAccessBlockConfiguration"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchPublicAccessBlockConfiguration":
            raise
        current = None
    if current == PUBLIC_ACCESS_BLOCK:
        done.append(Item("public access", IN_PLACE, "all four blocks on"))
        return
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK, **owner)
    off = sorted(k for k, v in (current or {}).items() if not v)
    done.append(Item("public access", UPDATED if current else CREATED,
                     f"{', '.join(off)} were off; all four blocks on" if current else "all four blocks on"))


def _ensure_encryption(s3: Any, bucket: str, key_arn: str, owner: dict, done: list[Item]) -> None:
    try:
        rules = s3.get_bucket_encryption(Bucket=bucket, **owner)["ServerSideEncryptionConfiguration"]["Rules"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        rules = []
    current = rules[0] if rules else {}
    default = current.get("ApplyServerSideEncryptionByDefault", {})
    key_id = key_arn.rsplit("/", 1)[1]
    if default.get("SSEAlgorithm") == "aws:kms" and default.get("KMSMasterKeyID") in (key_arn, key_id) \
            and current.get("BucketKeyEnabled"):
        done.append(Item("encryption", IN_PLACE, "SSE-KMS with the key, bucket key on"))
        return
    s3.put_bucket_encryption(Bucket=bucket, **owner, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
        "BucketKeyEnabled": True}]})   # bucket key: far fewer KMS calls, same key
    was = default.get("KMSMasterKeyID") or default.get("SSEAlgorithm")
    done.append(Item("encryption", UPDATED if was else CREATED, "SSE-KMS with the key, bucket key on"
                     + (f" (was {was}; applies to objects written from now on)" if was else "")))


def _ensure_versioning(s3: Any, bucket: str, owner: dict, done: list[Item]) -> None:
    status = s3.get_bucket_versioning(Bucket=bucket, **owner).get("Status")
    if status == "Enabled":
        done.append(Item("versioning", IN_PLACE, "enabled"))
        return
    # Re-enabling keeps every existing version; it only keeps future ones too.
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}, **owner)
    done.append(Item("versioning", UPDATED if status else CREATED,
                     f"was {status}; re-enabled" if status else "enabled"))


def tls_only_statement(partition: str, bucket: str) -> dict:
    """Deny every request to the bucket and its objects that does not use TLS."""
    arn = f"arn:{partition}:s3:::{bucket}"
    return {"Sid": TLS_SID, "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def _ensure_tls_only(s3: Any, bucket: str, partition: str, owner: dict, done: list[Item]) -> None:
    try:
        policy = json.loads(s3.get_bucket_policy(Bucket=bucket, **owner)["Policy"])
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchBucketPolicy":
            raise
        policy = None
    wanted = tls_only_statement(partition, bucket)
    statements = (policy or {}).get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements
    if any(_same_statement(s, wanted) for s in statements):
        done.append(Item("tls-only policy", IN_PLACE, "requests without TLS denied"))
        return
    # Other statements (e.g. a CI role's access) are kept: only ours is added or replaced.
    kept = [s for s in statements if s.get("Sid") != TLS_SID]
    document = {"Version": VERSION, **(policy or {}), "Statement": [*kept, wanted]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(document), **owner)
    done.append(Item("tls-only policy", UPDATED if policy else CREATED, "requests without TLS denied"
                     + (" (added to the existing policy)" if policy else "")))


def _same_statement(actual: dict, wanted: dict) -> bool:
    def listed(value: Any) -> list:
        return sorted(value) if isinstance(value, list) else [value]
    principal = actual.get("Principal")
    return (actual.get("Effect") == "Deny" and principal in ("*", {"AWS": "*"})
            and listed(actual.get("Action")) in (["s3:*"], ["*"])
            and listed(actual.get("Resource")) == sorted(wanted["Resource"])
            and actual.get("Condition") == wanted["Condition"])


# -- reports ---------------------------------------------------------------------------------

def as_text(backend: Backend) -> str:
    lines = [f"Pulumi backend, account {backend.account}, {backend.region}:"]
    lines += [f"  {i.name:<16} {i.status:<9} {i.detail}" for i in backend.items]
    changes = sum(i.status != IN_PLACE for i in backend.items)
    lines.append(f"{changes} change(s) made." if changes else "Nothing changed: everything was already in place.")
    lines += ["", "Next, with the same AWS credentials:", *(f"  {c}" for c in backend.commands())]
    return "\n".join(lines)


def as_json(backend: Backend) -> str:
    return json.dumps({
        "account": backend.account, "region": backend.region, "bucket": backend.bucket,
        "key_alias": backend.alias, "key_arn": backend.key_arn, "changed": backend.changed,
        "items": [asdict(i) for i in backend.items], "backend_url": backend.backend_url,
        "secrets_provider": backend.secrets_provider, "commands": backend.commands()}, indent=2)
