"""`estate bootstrap`: the S3 + KMS Pulumi backend, created once, confirmed or repaired after."""

from __future__ import annotations

import functools
import json

import boto3
import pytest
from botocore.stub import Stubber
from offline_aws import mocked, moto_server, run_estate

from mcp_estate.cli import main
from mcp_estate.operations import bootstrap as module
from mcp_estate.operations.bootstrap import CREATED, IN_PLACE, UPDATED, BootstrapError, bootstrap, tls_only_statement

REGION, BUCKET, ALIAS, MOTO_ACCOUNT = "eu-west-1", "acme-pulumi-state", "alias/pulumi-state", "123456789012"


@pytest.fixture(autouse=True)
def aws(monkeypatch):
    with mocked(monkeypatch, REGION):
        yield


def run(region: str | None = None, bucket: str = BUCKET):
    return bootstrap(boto3.Session(), bucket, region, ALIAS)


def statuses(backend) -> dict[str, str]:
    return {item.name: item.status for item in backend.items}


@functools.cache
def client(service: str, region: str = REGION):
    return boto3.client(service, region_name=region)


class StubbedS3Session:
    """A session whose S3 answers are scripted (moto cannot play another account's bucket)."""

    region_name = REGION

    def __init__(self):
        self.s3 = boto3.client("s3", region_name=REGION)   # its own: the stubber takes over every call
        self.stubber = Stubber(self.s3)

    def client(self, service: str, region_name: str | None = None):
        return self.s3 if service == "s3" else client(service, region_name or REGION)


def test_first_run_creates_a_private_versioned_tls_only_bucket_encrypted_with_a_rotating_key():
    backend = run()
    assert set(statuses(backend).values()) == {CREATED}
    s3, kms = client("s3"), client("kms")
    key = kms.describe_key(KeyId=ALIAS)["KeyMetadata"]
    assert backend.key_arn == key["Arn"] and key["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True
    assert s3.get_bucket_location(Bucket=BUCKET)["LocationConstraint"] == REGION
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    assert s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    rule = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule == {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key["Arn"]},
                    "BucketKeyEnabled": True}
    assert json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"] == [{
        "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]


def test_it_prints_the_pulumi_login_and_stack_init_lines_for_the_region(capsys):
    assert main(["bootstrap", "--bucket", BUCKET]) == 0
    printed = capsys.readouterr().out
    assert f"pulumi login 's3://{BUCKET}?region={REGION}&awssdk=v2'" in printed
    assert f'pulumi stack init <stack> --secrets-provider "awskms://{ALIAS}?region={REGION}"' in printed
    assert "8 change(s) made." in printed


def test_a_second_run_changes_nothing_and_says_so(capsys):
    first = run()
    assert main(["bootstrap", "--bucket", BUCKET]) == 0
    printed = capsys.readouterr().out
    assert "Nothing changed: everything was already in place." in printed
    assert printed.count(f" {IN_PLACE} ") == 8 and first.key_arn in printed
    assert len(client("kms").list_keys()["Keys"]) == 1


def test_in_us_east_1_the_bucket_is_created_without_a_location_constraint():
    # S3 rejects `LocationConstraint: us-east-1` (InvalidLocationConstraint), as moto does.
    backend = run(region="us-east-1")
    assert statuses(backend)["bucket"] == CREATED
    assert client("s3", "us-east-1").get_bucket_location(Bucket=BUCKET)["LocationConstraint"] is None
    assert backend.backend_url == f"s3://{BUCKET}?region=us-east-1&awssdk=v2"


def test_drifted_settings_are_put_back_and_reported_as_updated():
    run()
    s3, kms = client("s3"), client("kms")
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Suspended"})
    s3.put_public_access_block(Bucket=BUCKET, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": False, "RestrictPublicBuckets": True})
    s3.put_bucket_encryption(Bucket=BUCKET, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    kms.disable_key_rotation(KeyId=kms.describe_key(KeyId=ALIAS)["KeyMetadata"]["KeyId"])
    backend = run()
    assert statuses(backend) == {"kms key": IN_PLACE, "kms alias": IN_PLACE, "key rotation": UPDATED,
                                 "bucket": IN_PLACE, "public access": UPDATED, "encryption": UPDATED,
                                 "versioning": UPDATED, "tls-only policy": IN_PLACE}
    details = {item.name: item.detail for item in backend.items}
    assert details["versioning"] == "was Suspended; re-enabled"
    assert details["public access"] == "BlockPublicPolicy were off; all four blocks on"
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    assert s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
    assert kms.get_key_rotation_status(KeyId=backend.key_arn)["KeyRotationEnabled"] is True


def test_an_existing_alias_without_rotation_is_adopted_and_gets_rotation():
    kms = client("kms")
    key = kms.create_key(Description="made by hand")["KeyMetadata"]
    kms.create_alias(AliasName=ALIAS, TargetKeyId=key["KeyId"])
    backend = run()
    assert backend.key_arn == key["Arn"]
    assert statuses(backend)["kms alias"] == IN_PLACE and statuses(backend)["key rotation"] == UPDATED
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is True


def test_an_existing_bucket_policy_keeps_its_statements_when_tls_only_is_added():
    s3 = client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    ci = {"Sid": "CiRole", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{MOTO_ACCOUNT}:role/ci"},
          "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/*"}
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [ci]}))
    backend = run()
    assert statuses(backend)["bucket"] == IN_PLACE and statuses(backend)["tls-only policy"] == UPDATED
    statements = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"]
    assert statements == [ci, tls_only_statement("aws", BUCKET)]


def test_a_bucket_name_owned_by_another_account_exits_2_before_anything_is_created(monkeypatch, capsys):
    session = StubbedS3Session()
    session.stubber.add_client_error("head_bucket", "403", "Forbidden", 403,
                                     expected_params={"Bucket": BUCKET, "ExpectedBucketOwner": MOTO_ACCOUNT})
    session.stubber.activate()
    monkeypatch.setattr(module.boto3, "Session", lambda: session)
    assert main(["bootstrap", "--bucket", BUCKET]) == 2
    err = capsys.readouterr().err
    assert f"bucket '{BUCKET}' exists and account {MOTO_ACCOUNT} does not own it" in err
    assert "nothing was created or changed" in err
    assert client("kms").list_keys()["Keys"] == []


def test_losing_the_name_to_another_account_midway_says_what_already_exists():
    session = StubbedS3Session()
    session.stubber.add_client_error("head_bucket", "404", "Not Found", 404)
    session.stubber.add_client_error("create_bucket", "BucketAlreadyExists", "taken", 409)
    session.stubber.activate()
    with pytest.raises(BootstrapError, match="belongs to another account") as stopped:
        bootstrap(session, BUCKET, None, ALIAS)
    assert [(i.name, i.status) for i in stopped.value.done] == [
        ("kms key", CREATED), ("kms alias", CREATED), ("key rotation", CREATED)]


def test_a_bucket_in_another_region_is_refused_naming_it():
    client("s3", "us-west-2").create_bucket(Bucket=BUCKET,
                                            CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
    with pytest.raises(BootstrapError, match="is in us-west-2, not eu-west-1: rerun with --region us-west-2"):
        run()
    assert client("kms").list_keys()["Keys"] == []


def test_a_disabled_key_behind_the_alias_is_refused_not_re_enabled():
    kms = client("kms")
    key = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName=ALIAS, TargetKeyId=key["KeyId"])
    kms.disable_key(KeyId=key["KeyId"])
    with pytest.raises(BootstrapError, match="which is Disabled"):
        run()
    assert kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"
    assert client("s3").list_buckets()["Buckets"] == []


@pytest.mark.parametrize("args, message", [
    (["--bucket", "Acme.State"], "'Acme.State' is not a usable bucket name"),
    (["--bucket", BUCKET, "--key-alias", "pulumi-state"], "'pulumi-state' is not a KMS alias of yours"),
    (["--bucket", BUCKET, "--key-alias", "alias/aws/s3"], "alias/aws/ is reserved"),
])
def test_bad_names_exit_2_with_the_fix(args, message, capsys):
    assert main(["bootstrap", *args]) == 2
    assert message in capsys.readouterr().err


def test_no_region_anywhere_exits_2(monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(BootstrapError, match="no AWS region: pass --region or set AWS_REGION"):
        run()


def test_the_console_script_bootstraps_against_an_endpoint_from_the_environment():
    with moto_server() as endpoint:
        result = run_estate(endpoint, REGION, "bootstrap", "--bucket", BUCKET, "--format", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["changed"] is True and {i["status"] for i in report["items"]} == {CREATED}
    assert report["account"] == MOTO_ACCOUNT
    assert report["key_arn"].startswith(f"arn:aws:kms:{REGION}:{MOTO_ACCOUNT}:key/")
    assert report["backend_url"] == f"s3://{BUCKET}?region={REGION}&awssdk=v2"
    assert report["secrets_provider"] == f"awskms://{ALIAS}?region={REGION}"


def test_a_weakened_tls_only_statement_is_replaced_not_duplicated_and_the_others_kept():
    # Found by the mutation run (`.ci/mutation operations --sample`): a repair must replace our statement
    # (by its Sid), else the bucket policy ends with two statements of that Sid, one of them weakened.
    s3 = client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    ci = {"Sid": "CiRole", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{MOTO_ACCOUNT}:role/ci"},
          "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/*"}
    weakened = {**tls_only_statement("aws", BUCKET), "Effect": "Allow"}
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [weakened, ci]}))
    backend = run()
    assert statuses(backend)["tls-only policy"] == UPDATED
    statements = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"]
    assert statements == [ci, tls_only_statement("aws", BUCKET)]


def test_an_aws_error_stops_the_run_naming_the_operation_code_and_message():
    session = StubbedS3Session()
    session.stubber.add_client_error("head_bucket", "InternalError", "We encountered an internal error. ", 500,
                                     expected_params={"Bucket": BUCKET, "ExpectedBucketOwner": MOTO_ACCOUNT})
    session.stubber.activate()
    with pytest.raises(BootstrapError) as stopped:
        bootstrap(session, BUCKET, REGION, ALIAS)
    assert str(stopped.value) == "HeadBucket: InternalError: We encountered an internal error."
    assert stopped.value.done == []
