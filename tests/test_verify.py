"""`estate verify`: the live estate, found by its contract tags, compared with the stack's spec.

Each test plans a small two-region spec with the real components (under the mocks and the strict
inspector), deploys that plan's resources into moto (tests/moto_estate.py: names, tags, settings
and references all come from the plan), changes one thing the way an out-of-band edit would, and
expects the one finding it causes. Every test has a stack of its own in one moto backend per class (moto builds
a region's tagging backends once, which takes a second). Where moto does not emulate an answer
(DynamoDB global-table replicas, the digest a running container pulled), botocore's Stubber
plays AWS, checking our calls and its answers against the service models.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from botocore.stub import Stubber
from conftest import Plan
from moto import mock_aws
from moto.server import ThreadedMotoServer
from moto_estate import Deployed, deploy

from mcp_estate.cli import main
from mcp_estate.contract.validate import parse_spec
from mcp_estate.offline.fidelity import inspect_resource
from mcp_estate.offline.runner import run_offline
from mcp_estate.operations.locate import ByOutputs
from mcp_estate.operations.verify import (
    Clients,
    Finding,
    Live,
    ReadOnlyViolation,
    VerifyError,
    as_json,
    as_text,
    state_table_findings,
    task_digest_findings,
    verify,
)

ACCOUNT = "123456789012"   # moto's account
EU, US, FRANKFURT = "eu-west-1", "us-east-1", "eu-central-1"
DIGEST = "sha256:" + "a" * 64
OTHER_DIGEST = "sha256:" + "b" * 64
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": EU}
NOWHERE = "http://127.0.0.1:9"   # a closed port: a test that must not reach AWS cannot
ESTATE_SCRIPT = Path(sys.executable).with_name("estate")

SESSION = boto3.Session()          # the fixtures' (writing) clients: models load once per run
VERIFY_SESSION = boto3.Session()   # verify's, which its read-only guard is registered on
VERIFY_CLIENTS = Clients(VERIFY_SESSION)   # created once: moto answers whichever mock is active
STACKS = (f"v{n:02}" for n in itertools.count(1))


@cache
def _client(service: str, region: str, endpoint: str | None):
    return SESSION.client(service, region_name=region, endpoint_url=endpoint)


def client(service: str, region: str):
    """A plain client for the fixtures, on moto's mock or on AWS_ENDPOINT_URL's server."""
    return _client(service, region, os.environ.get("AWS_ENDPOINT_URL"))


def stub_client(service: str, region: str):
    """A client of its own, for Stubber to answer."""
    return SESSION.client(service, region_name=region, aws_access_key_id="x", aws_secret_access_key="x")


def estate_config(stack: str, account: str = ACCOUNT) -> dict:
    """Two regions in two groups; booking reads a secret, search does not."""
    def image(server: str) -> str:   # a repository per stack: the stacks share one registry here
        return f"{account}.dkr.ecr.{EU}.amazonaws.com/mcp/{stack}/{server}@{DIGEST}"
    return {
        "environment": "staging", "owner": "travel-platform", "aws_account_id": account, "primary_region": EU,
        "auth": {"issuer": "https://login.example.travel/", "jwks_url": "https://login.example.travel/jwks.json"},
        "domain": {"hostname": "mcp.staging.example.travel", "zone_id": "0" * 32, "cloudflare_account_id": "f" * 32},
        "residency_groups": [
            {"name": "eu", "primary_region": EU, "regions": [{"name": EU, "cidr": "10.10.0.0/16"}]},
            {"name": "us", "primary_region": US, "regions": [{"name": US, "cidr": "10.20.0.0/16"}]}],
        "servers": [
            {"name": "booking", "image": image("booking"), "secrets": ["booking-api-key"]},
            {"name": "search", "image": image("search")}],
        "edge": {"health_server": "booking"},
    }


def key_values(pairs: dict[str, str], key: str = "Key", value: str = "Value") -> list[dict]:
    return [{key: k, value: v} for k, v in pairs.items()]


def ecs_tags(pairs: dict[str, str]) -> list[dict]:
    return key_values(pairs, "key", "value")


@dataclass
class Region:
    """What the fixture built in one region, for tests to change."""
    vpc: str
    subnets: list[str]
    alb_arn: str
    alb_name: str
    alb_sg: str
    cluster: str
    services: dict[str, str] = field(default_factory=dict)     # server -> service name
    task_sgs: dict[str, str] = field(default_factory=dict)     # server -> security group id
    networks: dict[str, dict] = field(default_factory=dict)    # server -> awsvpcConfiguration


@dataclass
class Estate:
    stack: str
    regions: dict[str, Region] = field(default_factory=dict)

    @property
    def spec(self):
        return parse_spec(estate_config(self.stack))

    def tags(self, **scope: str) -> dict[str, str]:
        """The contract tags (components/naming.py ContractTags)."""
        return {"mcp-estate:stack": self.stack, "mcp-estate:environment": "staging",
                "mcp-estate:owner": "travel-platform",
                **{f"mcp-estate:{key.replace('_', '-')}": value for key, value in scope.items()}}

    def image(self, server: str, region: str, digest: str = DIGEST) -> str:
        return f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/mcp/{self.stack}/{server}@{digest}"

    def findings(self) -> list[tuple[str, str, str]]:
        return [(f.kind, f.region, f.resource) for f in self.verify()]

    def verify(self, clients: Clients = VERIFY_CLIENTS) -> list[Finding]:
        return verify(self.spec, self.stack, clients)


def build_estate(stack: str, component_name: str = "mcp-estate") -> Estate:
    """The plan of the stack's spec, built by the components (the `Estate` named `component_name`) and
    deployed into moto."""
    from mcp_estate.components.estate import Estate as EstateComponent
    estate = Estate(stack)
    spec = estate.spec
    plan = Plan(run_offline(lambda: EstateComponent(component_name, spec), stack=stack, config={},
                            account_id=ACCOUNT, inspect=inspect_resource))
    deployed = deploy(plan.resources, client)
    for region in sorted(spec.regions):
        estate.regions[region] = deployed_region(plan, deployed, region)
    return estate


def deployed_region(plan: Plan, deployed: Deployed, region: str) -> Region:
    """The region's live ids, found in the plan by type and contract tags (as verify finds them live)."""
    def tagged(token: str, **scope: str) -> list:
        wanted = {"region": region, **scope}
        return [r for r in plan.of_type(token)
                if all(r.inputs.get("tags", {}).get(f"mcp-estate:{k}") == v for k, v in wanted.items())]
    [vpc], [alb], [cluster] = (tagged("aws:ec2/vpc:Vpc"), tagged("aws:lb/loadBalancer:LoadBalancer"),
                               tagged("aws:ecs/cluster:Cluster"))
    alb_inputs = deployed.inputs[alb.name]
    built = Region(vpc=deployed.ids[vpc.name], subnets=[], alb_arn=deployed.ids[alb.name],
                   alb_name=deployed.ids[alb.name].split("/")[2], alb_sg=alb_inputs["securityGroups"][0],
                   cluster=deployed.inputs[cluster.name]["name"])
    for service in tagged("aws:ecs/service:Service"):
        server = service.inputs["tags"]["mcp-estate:server"]
        network = deployed.inputs[service.name]["networkConfiguration"]
        built.services[server] = service.outputs["name"]
        built.task_sgs[server] = network["securityGroups"][0]
        built.networks[server] = {"subnets": network["subnets"], "securityGroups": network["securityGroups"],
                                  "assignPublicIp": "DISABLED"}
        built.subnets = network["subnets"]
    return built


def security_group(ec2, vpc: str, name: str, group_tags: dict) -> str:
    return ec2.create_security_group(
        GroupName=name, Description="MCP", VpcId=vpc,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": key_values(group_tags)}])["GroupId"]


def add_service(estate: Estate, built: Region, region: str, server: str, cluster: str | None = None) -> str:
    """A Fargate service as McpService creates it, running one task (moto starts none by itself)."""
    ec2, ecs = client("ec2", region), client("ecs", region)
    cluster = cluster or built.cluster
    service_tags = estate.tags(residency_group=estate.spec.group_of[region].name, region=region, server=server)
    n = len(ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [built.vpc]}])["SecurityGroups"])
    task_sg = security_group(ec2, built.vpc, f"{server}-{region}-task-sg-{n}", service_tags)
    ec2.authorize_security_group_ingress(GroupId=task_sg, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "UserIdGroupPairs": [{"GroupId": built.alb_sg}]}])
    definition = register(estate, region, server, estate.image(server, region))
    network = {"subnets": built.subnets, "securityGroups": [task_sg], "assignPublicIp": "DISABLED"}
    name = f"{server}-{region}-service-{n:07x}"
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=definition, desiredCount=2,
                       launchType="FARGATE", networkConfiguration={"awsvpcConfiguration": network},
                       propagateTags="SERVICE", enableECSManagedTags=True, tags=ecs_tags(service_tags))
    ecs.update_service(cluster=cluster, service=name, desiredCount=2)   # moto: the tasks are running
    start_task(region, cluster, name, definition, network)
    built.services[server], built.task_sgs[server], built.networks[server] = name, task_sg, network
    return name


def register(estate: Estate, region: str, server: str, *images: str) -> str:
    """A task definition of the server's family: its container, then any other images as sidecars."""
    containers = [{"name": server if i == 0 else f"sidecar-{i}", "image": image, "essential": True,
                   "user": "10001:10001", "readonlyRootFilesystem": True,
                   "memoryReservation": 512}   # moto's run_task needs a container memory
                  for i, image in enumerate(images)]
    return client("ecs", region).register_task_definition(
        family=f"mcp-estate-{estate.stack}-{server}", networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
        cpu="512", memory="1024", containerDefinitions=containers,
        tags=ecs_tags(estate.tags(server=server)))["taskDefinition"]["taskDefinitionArn"]


def start_task(region: str, cluster: str, service: str, definition: str, network: dict) -> dict:
    return client("ecs", region).run_task(
        cluster=cluster, taskDefinition=definition, launchType="FARGATE", group=f"service:{service}",
        networkConfiguration={"awsvpcConfiguration": network})["tasks"][0]


def write_stack(directory: Path, stack: str, config: dict) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": {"mcp-estate:estate": config}}))
    return directory


@pytest.fixture(scope="class")
def moto_backend():
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")   # seconds per region, and no AMI is used
        for name, value in FAKE_CREDENTIALS.items():
            env.setenv(name, value)
        with mock_aws():
            yield


@pytest.fixture
def estate(moto_backend) -> Estate:
    return build_estate(next(STACKS))


class TestLiveEstate:
    """Against moto: a conformant estate, then one out-of-band change per test."""

    def test_the_estate_the_components_build_has_no_findings(self, estate):
        assert estate.verify() == []

    # -- images ---------------------------------------------------------------------------------

    def test_a_service_deployed_out_of_band_with_another_digest_is_image_drift(self, estate):
        built = estate.regions[US]
        tampered = register(estate, US, "booking", estate.image("booking", US, OTHER_DIGEST))
        client("ecs", US).update_service(cluster=built.cluster, service=built.services["booking"],
                                         taskDefinition=tampered)
        [finding] = estate.verify()
        assert (finding.kind, finding.region, finding.resource) == (
            "image-drift", US, f"{built.cluster}/{built.services['booking']}")
        assert finding.message == (f"task definition mcp-estate-{estate.stack}-booking:2 runs "
                                   f"{estate.image('booking', US, OTHER_DIGEST)}; the spec pins "
                                   f"{estate.image('booking', US)}")

    def test_a_task_still_running_a_tag_instead_of_the_digest_is_image_drift(self, estate):
        built = estate.regions[EU]
        by_tag = register(estate, EU, "search", f"{ACCOUNT}.dkr.ecr.{EU}.amazonaws.com/mcp/{estate.stack}/search:1.2")
        start_task(EU, built.cluster, built.services["search"], by_tag, built.networks["search"])
        [finding] = estate.verify()
        assert (finding.kind, finding.resource) == ("image-drift", f"{built.cluster}/{built.services['search']}")
        assert f"runs {ACCOUNT}.dkr.ecr.{EU}.amazonaws.com/mcp/{estate.stack}/search:1.2;" in finding.message

    def test_a_container_the_spec_does_not_declare_is_image_drift(self, estate):
        built = estate.regions[EU]
        definition = register(estate, EU, "search", estate.image("search", EU), "docker.io/evil/miner:latest")
        client("ecs", EU).update_service(cluster=built.cluster, service=built.services["search"],
                                         taskDefinition=definition)
        [finding] = estate.verify()
        assert finding.kind == "image-drift"
        assert finding.message == (f"task definition mcp-estate-{estate.stack}-search:2 has a container 'sidecar-1' "
                                   "(docker.io/evil/miner:latest) the spec does not declare")

    # -- servers ----------------------------------------------------------------------------------

    def test_a_server_whose_service_was_deleted_is_missing_from_its_region(self, estate):
        built = estate.regions[US]
        client("ecs", US).delete_service(cluster=built.cluster, service=built.services["booking"], force=True)
        assert estate.findings() == [("server-missing", US, "booking")]

    def test_a_service_running_no_task_is_a_missing_server(self, estate):
        built = estate.regions[EU]
        client("ecs", EU).update_service(cluster=built.cluster, service=built.services["search"], desiredCount=0)
        [finding] = estate.verify()
        assert (finding.kind, finding.region, finding.resource) == (
            "server-missing", EU, f"{built.cluster}/{built.services['search']}")
        assert finding.message == "the service runs no task (desired 0)"

    def test_a_service_in_a_cluster_that_is_not_the_stacks_does_not_count(self, estate):
        built = estate.regions[US]
        client("ecs", US).delete_service(cluster=built.cluster, service=built.services["booking"], force=True)
        client("ecs", US).create_cluster(clusterName=f"{estate.stack}-someone-elses")   # untagged
        add_service(estate, built, US, "booking", cluster=f"{estate.stack}-someone-elses")
        assert estate.findings() == [("server-missing", US, "booking")]

    # -- public IPs and security groups -------------------------------------------------------------

    def test_a_service_assigning_public_ips_is_reported(self, estate):
        built = estate.regions[US]
        client("ecs", US).update_service(
            cluster=built.cluster, service=built.services["booking"],
            networkConfiguration={"awsvpcConfiguration": {**built.networks["booking"], "assignPublicIp": "ENABLED"}})
        assert estate.findings() == [("public-ip", US, f"{built.cluster}/{built.services['booking']}")]

    def test_a_task_whose_interface_got_a_public_ip_is_reported(self, estate):
        ecs, ec2, built = client("ecs", EU), client("ec2", EU), estate.regions[EU]
        [task_arn] = ecs.list_tasks(cluster=built.cluster, family=f"mcp-estate-{estate.stack}-booking")["taskArns"]
        task = ecs.describe_tasks(cluster=built.cluster, tasks=[task_arn])["tasks"][0]
        interface = next(d["value"] for d in task["attachments"][0]["details"] if d["name"] == "networkInterfaceId")
        address = ec2.allocate_address(Domain="vpc")
        ec2.associate_address(AllocationId=address["AllocationId"], NetworkInterfaceId=interface)
        [finding] = estate.verify()
        assert (finding.kind, finding.resource) == ("public-ip", f"{built.cluster}/task/{task_arn.rsplit('/', 1)[-1]}")
        assert finding.message == f"the task's interface {interface} has public IP {address['PublicIp']}"

    @pytest.mark.parametrize("ranges, source", [({"IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, "0.0.0.0/0"),
                                                ({"Ipv6Ranges": [{"CidrIpv6": "::/0"}]}, "::/0")])
    def test_a_security_group_opened_to_the_internet_is_reported(self, estate, ranges, source):
        group = estate.regions[US].task_sgs["booking"]
        client("ec2", US).authorize_security_group_ingress(
            GroupId=group, IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, **ranges}])
        [finding] = estate.verify()
        assert (finding.kind, finding.region) == ("open-security-group", US)
        autoname = rf"mcp-estate-{US}-booking-task-sg-[0-9a-f]{{7}}"
        assert re.fullmatch(rf"{group} \({autoname}\)", finding.resource), finding.resource
        assert finding.message == f"ingress tcp 22 from {source}"

    def test_an_open_security_group_without_the_stacks_tag_is_not_the_stacks(self, estate):
        ec2 = client("ec2", US)
        group = ec2.create_security_group(GroupName="bastion", Description="not ours",
                                          VpcId=estate.regions[US].vpc)["GroupId"]
        ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
        assert estate.verify() == []

    def test_an_alb_whose_web_acl_was_removed_is_reported(self, estate):
        client("wafv2", EU).disassociate_web_acl(ResourceArn=estate.regions[EU].alb_arn)
        assert estate.findings() == [("alb-without-waf", EU, estate.regions[EU].alb_name)]

    # -- data -----------------------------------------------------------------------------------------

    def test_a_state_table_with_point_in_time_recovery_off_is_reported(self, estate):
        table = f"mcp-estate-{estate.stack}-us-state"
        client("dynamodb", US).update_continuous_backups(
            TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False})
        assert estate.findings() == [("state-table-pitr-off", US, table)]

    def test_a_secret_whose_replica_was_removed_is_reported(self, estate):
        name = f"mcp-estate-{estate.stack}/booking-api-key"
        client("secretsmanager", EU).remove_regions_from_replication(SecretId=name, RemoveReplicaRegions=[US])
        [finding] = estate.verify()
        assert (finding.kind, finding.region, finding.resource) == ("secret-replica-missing", US, name)
        assert finding.message.startswith("no replica:")

    def test_a_secret_replica_that_failed_is_reported(self, estate):
        name = f"mcp-estate-{estate.stack}/booking-api-key"
        client("secretsmanager", EU).remove_regions_from_replication(SecretId=name, RemoveReplicaRegions=[US])
        client("secretsmanager", US).create_secret(Name=name)   # someone's secret of the same name
        client("secretsmanager", EU).replicate_secret_to_regions(SecretId=name, AddReplicaRegions=[{"Region": US}])
        [finding] = estate.verify()
        assert (finding.kind, finding.region, finding.resource) == ("secret-replica-missing", US, name)
        assert finding.message.startswith("its replica is Failed (Replication failed: ")

    def test_a_secret_scheduled_for_deletion_is_reported_missing(self, estate):
        secrets, name = client("secretsmanager", EU), f"mcp-estate-{estate.stack}/booking-api-key"
        secrets.remove_regions_from_replication(SecretId=name, RemoveReplicaRegions=[US])
        secrets.delete_secret(SecretId=name, RecoveryWindowInDays=7)
        [missing, replica] = estate.verify()
        assert (missing.kind, missing.region, missing.message) == (
            "resource-missing", EU, "the secret is scheduled for deletion")
        assert (replica.kind, replica.region) == ("secret-replica-missing", US)

    def test_a_replica_repository_made_mutable_is_reported(self, estate):
        repository = f"mcp/{estate.stack}/search"
        client("ecr", US).put_image_tag_mutability(repositoryName=repository, imageTagMutability="MUTABLE")
        assert estate.findings() == [("mutable-repository", US, repository)]

    def test_resources_the_checks_need_are_reported_missing(self, estate):
        stack = estate.stack
        client("dynamodb", EU).delete_table(TableName=f"mcp-estate-{stack}-eu-state")
        secrets, secret = client("secretsmanager", EU), f"mcp-estate-{stack}/booking-api-key"
        secrets.remove_regions_from_replication(SecretId=secret, RemoveReplicaRegions=[US])
        secrets.delete_secret(SecretId=secret, ForceDeleteWithoutRecovery=True)
        client("ecr", EU).delete_repository(repositoryName=f"mcp/{stack}/booking")
        client("ecr", US).delete_repository(repositoryName=f"mcp/{stack}/search")   # a missing replica
        client("elbv2", US).delete_load_balancer(LoadBalancerArn=estate.regions[US].alb_arn)
        assert estate.findings() == [("resource-missing", EU, f"mcp/{stack}/booking"),
                                     ("resource-missing", EU, "secret/booking-api-key"),
                                     ("resource-missing", EU, "state/eu"),
                                     ("resource-missing", US, "alb"),
                                     ("resource-missing", US, f"mcp/{stack}/search")]

    # -- paging, read only, account ----------------------------------------------------------------------

    def test_clusters_beyond_the_first_page_of_tagged_resources_are_verified(self, estate):
        ecs, built, last = client("ecs", US), estate.regions[US], f"{estate.stack}-last"
        for n in range(60):   # the tagging API returns 50 resources a page
            ecs.create_cluster(clusterName=f"{estate.stack}-empty-{n:02}", tags=ecs_tags(estate.tags(region=US)))
        ecs.create_cluster(clusterName=last, tags=ecs_tags(estate.tags(region=US)))
        name = add_service(estate, built, US, "booking", cluster=last)
        ecs.update_service(cluster=last, service=name, networkConfiguration={"awsvpcConfiguration": {
            **built.networks["booking"], "assignPublicIp": "ENABLED"}})
        pages = client("resourcegroupstaggingapi", US).get_paginator("get_resources").paginate(
            TagFilters=[{"Key": "mcp-estate:stack", "Values": [estate.stack]}], ResourceTypeFilters=["ecs:cluster"])
        assert len(list(pages)) > 1   # the paging this test relies on
        assert estate.findings() == [("public-ip", US, f"{last}/{name}")]

    def test_verify_clients_refuse_any_call_that_could_change_the_estate(self, estate):
        clients, built = VERIFY_CLIENTS, estate.regions[US]
        with pytest.raises(ReadOnlyViolation, match="ecs DeleteService refused"):
            clients("ecs", US).delete_service(cluster=built.cluster, service=built.services["booking"], force=True)
        with pytest.raises(ReadOnlyViolation, match="secretsmanager GetSecretValue refused"):
            clients("secretsmanager", EU).get_secret_value(SecretId=f"mcp-estate-{estate.stack}/booking-api-key")
        service = client("ecs", US).describe_services(cluster=built.cluster, services=[built.services["booking"]])
        assert service["services"][0]["status"] == "ACTIVE"

    def test_a_run_makes_read_calls_only_and_reads_every_kind_of_resource(self, estate):
        operations = []
        VERIFY_SESSION.events.register("before-call", lambda model, **_: operations.append(model.name),
                                       unique_id="record")
        try:
            estate.verify(Clients(VERIFY_SESSION))   # new clients: they copy the session's handlers
        finally:
            VERIFY_SESSION.events.unregister("before-call", unique_id="record")
        assert all(op.startswith(("Describe", "List", "Get")) for op in operations)
        assert {"GetCallerIdentity", "GetResources", "ListServices", "DescribeServices", "DescribeTaskDefinition",
                "ListTasks", "DescribeTasks", "DescribeNetworkInterfaces", "DescribeSecurityGroups",
                "GetWebACLForResource", "DescribeTable", "DescribeContinuousBackups", "DescribeSecret",
                "DescribeRepositories"} == set(operations)

    def test_describe_calls_stay_within_the_api_batch_limits_moto_does_not_enforce(self, estate):
        # ECS API reference: DescribeServices takes up to 10 services, DescribeTasks up to 100 tasks.
        limits = {"DescribeServices": ("services", 10), "DescribeTasks": ("tasks", 100)}
        built, ecs = estate.regions[US], client("ecs", US)
        extra = [add_service(estate, built, US, "search") for _ in range(11)]   # 13 services in the cluster
        definition = ecs.describe_services(cluster=built.cluster, services=extra[:1])["services"][0]["taskDefinition"]
        for _ in range(10):   # and 100 more tasks
            ecs.run_task(cluster=built.cluster, taskDefinition=definition, launchType="FARGATE", count=10,
                         group=f"service:{extra[0]}",
                         networkConfiguration={"awsvpcConfiguration": built.networks["search"]})
        sizes: dict[str, list[int]] = {}

        def record(params, model, **_):
            if model.name in limits:
                sizes.setdefault(model.name, []).append(len(params[limits[model.name][0]]))
        VERIFY_SESSION.events.register("before-parameter-build", record, unique_id="batches")
        try:
            estate.verify(Clients(VERIFY_SESSION))
        finally:
            VERIFY_SESSION.events.unregister("before-parameter-build", unique_id="batches")
        assert all(max(sizes[name]) <= limit for name, (_, limit) in limits.items()), sizes
        assert max(sizes["DescribeServices"]) == 10 and max(sizes["DescribeTasks"]) == 100   # several batches

    def test_credentials_of_another_account_exit_2_instead_of_a_clean_report(self, moto_backend, tmp_path, capsys):
        stacks = write_stack(tmp_path / "stacks", "prod", estate_config("prod", account="999999999999"))
        assert main(["verify", "--stack", "prod", "--stacks-dir", str(stacks)]) == 2
        assert capsys.readouterr().err == (f"estate verify: the credentials are for account {ACCOUNT}, but stack "
                                           "'prod' lives in account 999999999999: select that account's "
                                           "profile (AWS_PROFILE)\n")


# -- global tables: moto keeps no replicas, so Stubber plays DynamoDB --------------------------------------

GROUP_SPEC = parse_spec({**estate_config("staging"), "residency_groups": [
    {"name": "eu", "primary_region": EU, "regions": [{"name": EU, "cidr": "10.10.0.0/16"},
                                                     {"name": FRANKFURT, "cidr": "10.11.0.0/16"}]}]})
TABLE = "mcp-estate-staging-eu-state"


def table_findings(replicas: list[dict], replica_pitr: str | None) -> list[Finding]:
    """The table as DescribeTable shows it in the primary region with `replicas`, PITR on there,
    and `replica_pitr` in Frankfurt (None: no table there)."""
    clients = {region: stub_client("dynamodb", region) for region in (EU, FRANKFURT)}
    with Stubber(clients[EU]) as primary, Stubber(clients[FRANKFURT]) as replica:
        primary.add_response("describe_table", {"Table": {"TableName": TABLE, "TableStatus": "ACTIVE",
                                                          "Replicas": replicas}}, {"TableName": TABLE})
        primary.add_response("describe_continuous_backups", pitr("ENABLED"), {"TableName": TABLE})
        if replica_pitr is None:
            replica.add_client_error("describe_continuous_backups", "TableNotFoundException",
                                     expected_params={"TableName": TABLE})
        else:
            replica.add_response("describe_continuous_backups", pitr(replica_pitr), {"TableName": TABLE})
        outputs = ByOutputs({"residency_groups": {"eu": {"state_table_name": TABLE}}}, "outputs.json")
        live = Live(GROUP_SPEC, "staging", lambda service, region: clients[region], outputs)
        found = [f for region in (EU, FRANKFURT) for f in state_table_findings(live, region)]
        primary.assert_no_pending_responses()
        replica.assert_no_pending_responses()
    return found


def pitr(status: str) -> dict:
    return {"ContinuousBackupsDescription": {"ContinuousBackupsStatus": "ENABLED",
                                             "PointInTimeRecoveryDescription": {"PointInTimeRecoveryStatus": status}}}


def test_a_global_table_with_its_replicas_and_recovery_on_has_no_findings():
    assert table_findings([{"RegionName": FRANKFURT, "ReplicaStatus": "ACTIVE"}], "ENABLED") == []


@pytest.mark.parametrize("replicas, replica_pitr, state", [
    ([], None, "no replica"),
    ([{"RegionName": FRANKFURT, "ReplicaStatus": "CREATION_FAILED"}], "ENABLED", "its replica is CREATION_FAILED")])
def test_a_state_table_without_a_healthy_replica_in_a_group_region_is_reported(replicas, replica_pitr, state):
    [finding] = table_findings(replicas, replica_pitr)
    assert (finding.kind, finding.region, finding.resource) == ("state-table-replica-missing", FRANKFURT, TABLE)
    assert finding.message == f"{state}: sessions of group 'eu' do not survive the loss of {EU}"


def test_a_replica_with_point_in_time_recovery_off_is_reported_in_its_region():
    [finding] = table_findings([{"RegionName": FRANKFURT, "ReplicaStatus": "ACTIVE"}], "DISABLED")
    assert (finding.kind, finding.region, finding.resource) == ("state-table-pitr-off", FRANKFURT, TABLE)


def test_a_container_that_pulled_another_digest_is_image_drift():
    """moto's tasks carry no `imageDigest`: the task as DescribeTasks returns it."""
    booking = next(s for s in GROUP_SPEC.servers if s.name == "booking")
    task = {"taskArn": f"arn:aws:ecs:{US}:{ACCOUNT}:task/mcp-estate-staging-{US}/0123abcd",
            "clusterArn": f"arn:aws:ecs:{US}:{ACCOUNT}:cluster/mcp-estate-staging-{US}",
            "containers": [{"name": "booking", "image": booking.image, "imageDigest": OTHER_DIGEST}]}
    [finding] = task_digest_findings(US, DIGEST, task)
    assert (finding.kind, finding.resource) == ("image-drift", f"mcp-estate-staging-{US}/task/0123abcd")
    assert finding.message == f"container 'booking' runs image digest {OTHER_DIGEST}; the spec pins {DIGEST}"
    task["containers"][0]["imageDigest"] = DIGEST
    assert list(task_digest_findings(US, DIGEST, task)) == []


# -- failed preconditions: exit 2, one line, no traceback ----------------------------------------------------

@pytest.fixture
def no_aws(monkeypatch, tmp_path):
    """No credentials anywhere, and an endpoint nothing listens on."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                        "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_EC2_METADATA_DISABLED": "true",
                        "AWS_ENDPOINT_URL": NOWHERE}.items():
        monkeypatch.setenv(name, value)
    return write_stack(tmp_path / "stacks", "staging", estate_config("staging"))


def test_missing_credentials_exit_2_with_a_clear_message(no_aws, capsys):
    assert main(["verify", "--stack", "staging", "--stacks-dir", str(no_aws)]) == 2
    assert capsys.readouterr().err == ("estate verify: no AWS credentials found: set AWS_PROFILE (or "
                                       "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) for the stack's account\n")


def test_a_profile_that_does_not_exist_exits_2(no_aws, monkeypatch, capsys):
    monkeypatch.setenv("AWS_PROFILE", "nope")
    assert main(["verify", "--stack", "staging", "--stacks-dir", str(no_aws)]) == 2
    assert capsys.readouterr().err == ("estate verify: The config profile (nope) could not be found: check "
                                       "AWS_PROFILE and the AWS config file\n")


@pytest.mark.parametrize("code, hint", [
    ("Throttling", "still throttled after retries, run again later"),
    ("AccessDenied", "verify needs read access (Describe/List/Get) to ECS, EC2, ELB, WAF, DynamoDB, "
                     "Secrets Manager, ECR and the tagging API in the stack's account")])
def test_throttling_and_denied_access_stop_the_run(code, hint):
    sts = stub_client("sts", EU)
    with Stubber(sts) as stub:
        stub.add_client_error("get_caller_identity", code, "Rate exceeded")
        with pytest.raises(VerifyError) as raised:
            verify(GROUP_SPEC, "staging", lambda service, region: sts)
    assert str(raised.value) == f"{EU}: GetCallerIdentity failed ({code}: Rate exceeded): {hint}"


@pytest.mark.parametrize("error", [
    EndpointConnectionError(endpoint_url="https://sts.eu-west-1.amazonaws.com/"),
    ReadTimeoutError(endpoint_url="https://sts.eu-west-1.amazonaws.com/")])
def test_an_sdk_error_that_is_not_a_client_error_stops_the_run_naming_the_region(error):
    sts = stub_client("sts", EU)

    def network_fails(**_):   # the signed request reaches the HTTP layer, which fails as a network would
        raise error
    sts.meta.events.register_first("before-send", network_fails)
    with pytest.raises(VerifyError) as raised:
        verify(GROUP_SPEC, "staging", lambda service, region: sts)
    assert str(raised.value) == f"{EU}: {error}"


def test_clients_use_boto3s_standard_retries():
    assert Clients(boto3.Session())("ecs", EU).meta.config.retries["mode"] == "standard"


def test_a_bad_stack_file_exits_2_naming_the_field(tmp_path, capsys):
    stacks = write_stack(tmp_path / "stacks", "staging", {**estate_config("staging"), "aws_account_id": "12"})
    assert main(["verify", "--stack", "staging", "--stacks-dir", str(stacks)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("estate verify: invalid stack 'staging':\n") and "aws_account_id" in err


# -- reports ----------------------------------------------------------------------------------------------

REPORTED = [Finding("image-drift", US, "c/booking-svc", "task definition f:2 runs x; the spec pins y"),
            Finding("public-ip", EU, "c/search-svc", "the service gives its tasks public IPs"),
            Finding("public-ip", US, "c/booking-svc", "the service gives its tasks public IPs")]


def test_the_text_report_groups_findings_by_kind():
    assert as_text(REPORTED, "staging", GROUP_SPEC) == "\n".join([
        f"stack staging: 3 findings in {FRANKFURT}, {EU}",
        "",
        "image-drift (1): runs an image other than the spec's pinned digest",
        f"  {US:<15} c/booking-svc  task definition f:2 runs x; the spec pins y",
        "",
        "public-ip (2): a task has (or would get) a public IP address",
        f"  {EU:<15} c/search-svc   the service gives its tasks public IPs",
        f"  {US:<15} c/booking-svc  the service gives its tasks public IPs"])
    assert as_text([], "staging", GROUP_SPEC) == (f"stack staging: no findings in {FRANKFURT}, {EU}: "
                                                  "the live estate matches the spec")


def test_the_json_report_lists_each_finding_with_its_kind_region_resource_and_message():
    assert json.loads(as_json(REPORTED[:1])) == {"findings": [
        {"kind": "image-drift", "region": US, "resource": "c/booking-svc",
         "message": "task definition f:2 runs x; the spec pins y"}]}


# -- end to end, through the console script --------------------------------------------------------------

@pytest.fixture
def moto_server(monkeypatch):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for name, value in {**FAKE_CREDENTIALS, "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
                        "AWS_ENDPOINT_URL": f"http://{host}:{port}"}.items():
        monkeypatch.setenv(name, value)
    yield
    server.stop()


def test_the_console_script_verifies_a_live_estate_end_to_end(moto_server, tmp_path):
    estate = build_estate("e2e")
    stacks = write_stack(tmp_path / "stacks", "e2e", estate_config("e2e"))
    alb_sg = estate.regions[EU].alb_sg
    client("ec2", EU).authorize_security_group_ingress(GroupId=alb_sg, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    run = subprocess.run([str(ESTATE_SCRIPT), "verify", "--stack", "e2e", "--stacks-dir", str(stacks),
                          "--format", "json"], capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stderr) == (1, "")
    [finding] = json.loads(run.stdout)["findings"]
    assert re.fullmatch(rf"{alb_sg} \(mcp-estate-{EU}-front-alb-sg-[0-9a-f]{{7}}\)", finding.pop("resource"))
    assert finding == {"kind": "open-security-group", "region": EU, "message": "ingress tcp 443 from 0.0.0.0/0"}
