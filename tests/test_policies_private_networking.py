"""Private networking controls: the internet reaches the estate only through Cloudflare."""

from __future__ import annotations

import ipaddress
import json
from functools import cache

import pulumi
import pulumi_aws as aws
import pulumi_cloudflare as cloudflare
import pytest

from mcp_estate.contract.names import ContractTags
from mcp_estate.components.origin_certificates import OriginCertificates, OriginCertificatesArgs
from mcp_estate.components.region_compute import RegionCompute, RegionComputeArgs
from mcp_estate.components.region_network import RegionNetwork, RegionNetworkArgs
from mcp_estate.offline.mocks import CLOUDFLARE_IPV4, CLOUDFLARE_IPV6
from mcp_estate.policies.private_networking import is_world
from corpus import attack, legitimate
from conftest import ACCOUNT, Plan, as_object, run_program, violations

VPC = "vpc-0a1b2c3d4e5f60718"
SG = "sg-0123456789abcdef0"
SUBNETS = ["subnet-0aaa", "subnet-0bbb"]
ZONE = "fedcba9876543210fedcba9876543210"
BUCKET_ARN = "arn:aws:s3:::mcp-estate-test-exports"
POLICIES = ("no-ingress-from-the-internet", "ecs-services-without-public-ips", "databases-not-publicly-accessible",
            "instances-without-public-ips", "function-urls-require-auth", "resource-policies-not-open-to-everyone",
            "origin-dns-records-proxied", "no-egress-to-the-internet")


def messages(policy: str, program, config: dict | None = None) -> list[str]:
    return [v.message for v in violations(run_program(program), config, policy=policy)]


FIX_INGRESS = ", bypassing Cloudflare: admit only a security group (the ALB's) or known ranges (Cloudflare's " \
              "prefix lists)"
FIX_EGRESS = ": allow only a security group, a prefix list or the partner ranges the server declares " \
             "(servers[].egress)"
# Egress to a prefix list the test stack does not define (an AWS-managed one), exempt by the documented config.
ALLOW_PL = {policy: {"allowedPrefixLists": ["pl-0123456789abcdef0"]}
            for policy in ("no-ingress-from-the-internet", "no-egress-to-the-internet")}


# -- no-ingress-from-the-internet ------------------------------------------------------------------------

OPEN_INGRESS = {
    "inline-ipv4": (lambda: aws.ec2.SecurityGroup("open", vpc_id=VPC, ingress=[
        {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["10.30.0.0/16", "0.0.0.0/0"]}]),
        "security group open admits 0.0.0.0/0 (open), the whole internet"),
    "inline-ipv6": (lambda: aws.ec2.SecurityGroup("open", vpc_id=VPC, ingress=[
        {"protocol": "tcp", "from_port": 443, "to_port": 443, "ipv6_cidr_blocks": ["::/0"]}]),
        "security group open admits ::/0 (open), the whole internet"),
    "default-group": (lambda: aws.ec2.DefaultSecurityGroup("open", vpc_id=VPC, ingress=[
        {"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}]),
        "default security group open admits 0.0.0.0/0 (open), the whole internet"),
    "rule-ipv4": (lambda: aws.ec2.SecurityGroupRule(
        "open", type="ingress", security_group_id=SG, protocol="tcp", from_port=22, to_port=22,
        cidr_blocks=["0.0.0.0/0"]), f"security group {SG} admits 0.0.0.0/0 (open), the whole internet"),
    "rule-ipv6-long-form": (lambda: aws.ec2.SecurityGroupRule(
        "open", type="ingress", security_group_id=SG, protocol="tcp", from_port=22, to_port=22,
        ipv6_cidr_blocks=["0:0:0:0:0:0:0:0/0"]),
        f"security group {SG} admits 0:0:0:0:0:0:0:0/0 (open), the whole internet"),
    "ingress-rule-ipv4": (lambda: aws.vpc.SecurityGroupIngressRule(
        "open", security_group_id=SG, ip_protocol="tcp", from_port=443, to_port=443, cidr_ipv4="0.0.0.0/0"),
        f"security group {SG} admits 0.0.0.0/0 (open), the whole internet"),
    "ingress-rule-ipv6": (lambda: aws.vpc.SecurityGroupIngressRule(
        "open", security_group_id=SG, ip_protocol="-1", cidr_ipv6="::/0"),
        f"security group {SG} admits ::/0 (open), the whole internet"),
    "ingress-rule-host-bits": (lambda: aws.vpc.SecurityGroupIngressRule(
        "open", security_group_id=SG, ip_protocol="-1", cidr_ipv4="10.1.2.3/0"),
        f"security group {SG} admits 10.1.2.3/0 (open), the whole internet"),
}


@pytest.mark.parametrize("shape", sorted(OPEN_INGRESS))
@attack("no-ingress-from-the-internet")
def test_every_way_of_admitting_the_whole_internet_is_refused(shape):
    program, exposure = OPEN_INGRESS[shape]
    assert messages("no-ingress-from-the-internet", program) == [exposure + FIX_INGRESS]


@pytest.mark.parametrize("entries, shown", [
    ([{"cidr": "173.245.48.0/20"}, {"cidr": "0.0.0.0/0", "description": "temporary"}], "0.0.0.0/0 (open), the whole"),
    ([{"cidr": "0.0.0.0/2"}, {"cidr": "64.0.0.0/2"}, {"cidr": "128.0.0.0/2"}, {"cidr": "192.0.0.0/2"}],
     "0.0.0.0/2 (open), 64.0.0.0/2 (open), 128.0.0.0/2 (open), 192.0.0.0/2 (open), together the whole")])
@attack("no-ingress-from-the-internet")
def test_a_prefix_list_listing_the_internet_is_refused(entries, shown):
    def program():
        aws.ec2.ManagedPrefixList("open", name="partners", address_family="IPv4", max_entries=4, entries=entries)
    assert messages("no-ingress-from-the-internet", program) == [
        f"managed prefix list open lists {shown} internet: list only known ranges (Cloudflare's)"]


@attack("no-ingress-from-the-internet")
def test_prefix_list_entries_of_one_list_are_combined():
    def program():
        ranges = aws.ec2.ManagedPrefixList("partners", name="partners", address_family="IPv4", max_entries=3,
                                           entries=[{"cidr": "0.0.0.0/2"}])
        aws.ec2.ManagedPrefixListEntry("second", prefix_list_id=ranges.id, cidr="64.0.0.0/2")
        aws.ec2.ManagedPrefixListEntry("rest", prefix_list_id=ranges.id, cidr="128.0.0.0/1")
    [found] = messages("no-ingress-from-the-internet", program)
    assert found == ("managed prefix list partners lists 0.0.0.0/2 (partners), 64.0.0.0/2 (second), "
                     "128.0.0.0/1 (rest), together the whole internet: list only known ranges (Cloudflare's)")


@legitimate("no-ingress-from-the-internet")
def test_security_groups_admitting_known_sources_pass():
    def program():
        aws.ec2.SecurityGroup("alb", vpc_id=VPC, ingress=[
            {"protocol": "tcp", "from_port": 443, "to_port": 443, "prefix_list_ids": ["pl-0123456789abcdef0"]},
            {"protocol": "tcp", "from_port": 8080, "to_port": 8080, "security_groups": [SG]}],
            egress=[{"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}])
        aws.ec2.SecurityGroupRule("egress", type="egress", security_group_id=SG, protocol="tcp", from_port=443,
                                  to_port=443, cidr_blocks=["0.0.0.0/0"], ipv6_cidr_blocks=["::/0"])
        aws.vpc.SecurityGroupIngressRule("from-vpc", security_group_id=SG, ip_protocol="tcp", from_port=443,
                                         to_port=443, cidr_ipv4="10.30.0.0/16")
        aws.ec2.ManagedPrefixList("cloudflare", name="cloudflare-ipv6", address_family="IPv6", max_entries=1,
                                  entries=[{"cidr": "2400:cb00::/32"}])
    assert messages("no-ingress-from-the-internet", program, ALLOW_PL) == []


@pytest.mark.parametrize("cidr, world", [
    ("0.0.0.0/0", True), ("::/0", True), ("0:0:0:0:0:0:0:0/0", True), (" 0.0.0.0/0 ", True), ("10.0.0.0/0", True),
    ("2000::/3", True), ("::/1", True), ("0.0.0.0/1", False), ("10.30.0.0/16", False), ("2400:cb00::/32", False),
    ("2000::/4", False), ("pl-0123", False), (None, False)])
def test_the_world_is_all_of_ipv4_or_all_public_ipv6(cidr, world):
    assert is_world(cidr) is world


def split_over_rules():
    group = aws.ec2.SecurityGroup("tasks", vpc_id=VPC, ingress=[
        {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/2"]}])
    aws.ec2.SecurityGroupRule("second", type="ingress", security_group_id=group.id, protocol="tcp", from_port=22,
                              to_port=22, cidr_blocks=["64.0.0.0/2"])
    aws.vpc.SecurityGroupIngressRule("third", security_group_id=group.id, ip_protocol="tcp", from_port=8080,
                                     to_port=8080, cidr_ipv4="128.0.0.0/1")


def all_but_the_private_ranges():
    # Every public address, without 10.0.0.0/8: no one on the internet is missing.
    for i, network in enumerate(ipaddress.ip_network("0.0.0.0/0").address_exclude(ipaddress.ip_network("10.0.0.0/8"))):
        aws.vpc.SecurityGroupIngressRule(f"part-{i}", security_group_id=SG, ip_protocol="tcp", from_port=443,
                                         to_port=443, cidr_ipv4=str(network))


def through_two_half_prefix_lists():
    lists = [aws.ec2.ManagedPrefixList(f"half-{i}", name=f"half-{i}", address_family="IPv4", max_entries=1,
                                       entries=[{"cidr": half}]) for i, half in enumerate(["0.0.0.0/1", "128.0.0.0/1"])]
    for i, ranges in enumerate(lists):
        aws.vpc.SecurityGroupIngressRule(f"from-half-{i}", security_group_id=SG, ip_protocol="tcp", from_port=443,
                                         to_port=443, prefix_list_id=ranges.id)


def ipv6_over_rules():
    aws.vpc.SecurityGroupIngressRule("low", security_group_id=SG, ip_protocol="tcp", from_port=443, to_port=443,
                                     cidr_ipv6="2000::/4")
    aws.ec2.SecurityGroupRule("high", type="ingress", security_group_id=SG, protocol="tcp", from_port=443,
                              to_port=443, ipv6_cidr_blocks=["3000::/4"])


@pytest.mark.parametrize("program, exposure", [
    (split_over_rules, "security group tasks admits 0.0.0.0/2 (tasks), 64.0.0.0/2 (second), 128.0.0.0/1 (third), "
                       "together the whole internet"),
    (ipv6_over_rules, f"security group {SG} admits 2000::/4 (low), 3000::/4 (high), together the whole internet"),
    (through_two_half_prefix_lists, f"security group {SG} admits 0.0.0.0/1 (half-0), 128.0.0.0/1 (half-1), "
                                    "together the whole internet")])
@attack("no-ingress-from-the-internet")
def test_ranges_split_over_several_resources_are_combined_per_security_group(program, exposure):
    # (each half-internet prefix list is refused on its own too, as a large part of the internet)
    assert exposure + FIX_INGRESS in messages("no-ingress-from-the-internet", program)


@attack("no-ingress-from-the-internet")
def test_all_public_addresses_without_the_private_ranges_is_still_the_internet():
    [found] = messages("no-ingress-from-the-internet", all_but_the_private_ranges)
    assert found.startswith(f"security group {SG} admits 0.0.0.0/5 (part-4), 8.0.0.0/7 (part-6), "
                            "11.0.0.0/8 (part-7), ") and \
        found.endswith("together the whole internet" + FIX_INGRESS)


@legitimate("no-ingress-from-the-internet")
def test_halves_in_two_different_security_groups_are_not_combined():
    def program():
        aws.vpc.SecurityGroupIngressRule("low", security_group_id=SG, ip_protocol="tcp", from_port=443, to_port=443,
                                         cidr_ipv4="10.30.0.0/16")
        aws.vpc.SecurityGroupIngressRule("high", security_group_id="sg-0fedcba9876543210", ip_protocol="tcp",
                                         from_port=443, to_port=443, cidr_ipv4="10.40.0.0/16")
    assert messages("no-ingress-from-the-internet", program) == []


@attack("no-ingress-from-the-internet")
def test_what_cannot_be_judged_is_reported():
    def program():
        aws.vpc.SecurityGroupIngressRule("odd", security_group_id=SG, ip_protocol="tcp", from_port=443,
                                         to_port=443, cidr_ipv4="0.0.0.0/00/0")
        aws.vpc.SecurityGroupIngressRule("foreign", security_group_id=SG, ip_protocol="tcp", from_port=443,
                                         to_port=443, prefix_list_id="pl-0badc0ffee0000000")
    assert messages("no-ingress-from-the-internet", program) == [
        f"security group {SG}: foreign uses prefix list pl-0badc0ffee0000000, which this stack does not define, so "
        "what it opens cannot be checked: define the list in the stack, or name it in the policy's "
        "allowedPrefixLists config",
        f"security group {SG}: odd names '0.0.0.0/00/0', which is not a CIDR, so what it opens cannot be checked: "
        "write it as a CIDR (203.0.113.0/24)"]


# -- no-egress-to-the-internet ---------------------------------------------------------------------------

OPEN_EGRESS = {
    "inline-ipv4": (lambda: aws.ec2.SecurityGroup("open", vpc_id=VPC, egress=[
        {"protocol": "-1", "from_port": 0, "to_port": 0, "cidr_blocks": ["0.0.0.0/0"]}]),
        "security group open allows egress to 0.0.0.0/0 (open), the whole internet"),
    "default-group-ipv6": (lambda: aws.ec2.DefaultSecurityGroup("open", vpc_id=VPC, egress=[
        {"protocol": "-1", "from_port": 0, "to_port": 0, "ipv6_cidr_blocks": ["::/0"]}]),
        "default security group open allows egress to ::/0 (open), the whole internet"),
    "rule": (lambda: aws.ec2.SecurityGroupRule("open", type="egress", security_group_id=SG, protocol="tcp",
                                               from_port=443, to_port=443, cidr_blocks=["0.0.0.0/0"]),
             f"security group {SG} allows egress to 0.0.0.0/0 (open), the whole internet"),
    "rule-halves": (lambda: aws.ec2.SecurityGroupRule("open", type="egress", security_group_id=SG, protocol="tcp",
                                                      from_port=443, to_port=443,
                                                      cidr_blocks=["0.0.0.0/1", "128.0.0.0/1"]),
                    f"security group {SG} allows egress to 0.0.0.0/1 (open), 128.0.0.0/1 (open), together the "
                    "whole internet"),
    "egress-rule-ipv4": (lambda: aws.vpc.SecurityGroupEgressRule(
        "open", security_group_id=SG, ip_protocol="tcp", from_port=443, to_port=443, cidr_ipv4="0.0.0.0/0"),
        f"security group {SG} allows egress to 0.0.0.0/0 (open), the whole internet"),
    "egress-rule-ipv6-global-unicast": (lambda: aws.vpc.SecurityGroupEgressRule(
        "open", security_group_id=SG, ip_protocol="-1", cidr_ipv6="2000::/3"),
        f"security group {SG} allows egress to 2000::/3 (open), the whole internet"),
    "split-over-two-resource-types": (lambda: [
        aws.vpc.SecurityGroupEgressRule("low", security_group_id=SG, ip_protocol="tcp", from_port=443, to_port=443,
                                        cidr_ipv4="0.0.0.0/1"),
        aws.ec2.SecurityGroupRule("high", type="egress", security_group_id=SG, protocol="tcp", from_port=80,
                                  to_port=80, cidr_blocks=["128.0.0.0/1"])],
        f"security group {SG} allows egress to 0.0.0.0/1 (low), 128.0.0.0/1 (high), together the whole internet"),
}


@pytest.mark.parametrize("shape", sorted(OPEN_EGRESS))
@attack("no-egress-to-the-internet")
def test_every_way_of_allowing_egress_to_the_whole_internet_is_refused(shape):
    program, exposure = OPEN_EGRESS[shape]
    assert messages("no-egress-to-the-internet", program) == [exposure + FIX_EGRESS]


@legitimate("no-egress-to-the-internet")
def test_egress_to_partners_endpoints_and_groups_passes():
    def program():
        aws.ec2.SecurityGroup("tasks", vpc_id=VPC, egress=[
            {"protocol": "tcp", "from_port": 443, "to_port": 443, "prefix_list_ids": ["pl-0123456789abcdef0"]},
            {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": ["203.0.113.0/24"]}])
        aws.vpc.SecurityGroupEgressRule("to-partner", security_group_id=SG, ip_protocol="tcp", from_port=443,
                                        to_port=443, cidr_ipv4="198.51.100.0/24")
        aws.vpc.SecurityGroupEgressRule("to-endpoints", security_group_id=SG, ip_protocol="tcp", from_port=443,
                                        to_port=443, referenced_security_group_id="sg-0fedcba9876543210")
        aws.ec2.SecurityGroupRule("ingress", type="ingress", security_group_id=SG, protocol="tcp", from_port=443,
                                  to_port=443, cidr_blocks=["10.30.0.0/16"])
        aws.ec2.Route("nat", route_table_id="rtb-0a1b", destination_cidr_block="0.0.0.0/0",
                      nat_gateway_id="nat-0a1b2c3d")   # a route is not a permission
    assert messages("no-egress-to-the-internet", program, ALLOW_PL) == []


@legitimate("no-egress-to-the-internet")
def test_egress_to_a_gateway_endpoints_prefix_list_passes_without_config():
    def program():
        endpoint = aws.ec2.VpcEndpoint("s3", vpc_id=VPC, service_name="com.amazonaws.eu-west-1.s3",
                                       vpc_endpoint_type="Gateway", route_table_ids=["rtb-0a1b"])
        aws.vpc.SecurityGroupEgressRule("to-s3", security_group_id=SG, ip_protocol="tcp", from_port=443,
                                        to_port=443, prefix_list_id=endpoint.prefix_list_id)
    assert messages("no-egress-to-the-internet", program) == []


# -- ecs-services-without-public-ips --------------------------------------------------------------------

def ecs_service(name: str, **network):
    return aws.ecs.Service(name, cluster="arn:aws:ecs:eu-west-1:111122223333:cluster/mcp", launch_type="FARGATE",
                           task_definition="arn:aws:ecs:eu-west-1:111122223333:task-definition/booking:1",
                           desired_count=2, network_configuration={"subnets": SUBNETS, **network})


@attack("ecs-services-without-public-ips")
def test_ecs_services_and_task_sets_with_public_ips_are_refused():
    def program():
        ecs_service("public", assign_public_ip=True)
        aws.ecs.TaskSet("public-set", cluster="mcp", service="booking", task_definition="booking:1",
                        network_configuration={"subnets": SUBNETS, "assign_public_ip": True})
    assert sorted(messages("ecs-services-without-public-ips", program)) == [
        "ECS service public gives its tasks public IPs: set network_configuration.assign_public_ip=False; tasks "
        "in private subnets reach AWS through VPC endpoints",
        "ECS task set public-set gives its tasks public IPs: set network_configuration.assign_public_ip=False; "
        "tasks in private subnets reach AWS through VPC endpoints"]


@legitimate("ecs-services-without-public-ips")
def test_ecs_services_without_public_ips_pass():
    def program():
        ecs_service("private", assign_public_ip=False)
        ecs_service("default")   # AWS's default for awsvpc tasks is no public IP
    assert messages("ecs-services-without-public-ips", program) == []


# -- databases-not-publicly-accessible ------------------------------------------------------------------

@attack("databases-not-publicly-accessible")
def test_publicly_accessible_databases_are_refused():
    def program():
        aws.rds.Instance("orders", engine="postgres", instance_class="db.t4g.micro", allocated_storage=20,
                         publicly_accessible=True)
        aws.rds.ClusterInstance("aurora-1", cluster_identifier="aurora", instance_class="db.r6g.large",
                                engine="aurora-postgresql", publicly_accessible=True)
        aws.redshift.Cluster("warehouse", cluster_identifier="warehouse", node_type="ra3.xlplus",
                             publicly_accessible=True)
        aws.dms.ReplicationInstance("migration", replication_instance_class="dms.t3.micro",
                                    replication_instance_id="migration")
        aws.rds.Cluster("multi-az", engine="postgres", db_cluster_instance_class="db.r6gd.large",
                        storage_type="io1", allocated_storage=100, iops=1000)
    assert sorted(messages("databases-not-publicly-accessible", program)) == [
        "DMS replication instance migration leaves publicly_accessible unset, and AWS then makes it public: "
        "set publicly_accessible=False",
        "RDS cluster instance aurora-1 is publicly accessible: set publicly_accessible=False",
        "RDS cluster multi-az leaves publicly_accessible unset, and AWS then makes it public: "
        "set publicly_accessible=False",
        "RDS instance orders is publicly accessible: set publicly_accessible=False",
        "Redshift cluster warehouse is publicly accessible: set publicly_accessible=False"]


@legitimate("databases-not-publicly-accessible")
def test_private_databases_pass():
    def program():
        aws.rds.Instance("orders", engine="postgres", instance_class="db.t4g.micro", allocated_storage=20)
        aws.rds.Cluster("aurora", engine="aurora-postgresql")   # Aurora: instances decide, private by default
        aws.dms.ReplicationInstance("migration", replication_instance_class="dms.t3.micro",
                                    replication_instance_id="migration", publicly_accessible=False)
        aws.rds.Cluster("multi-az", engine="postgres", db_cluster_instance_class="db.r6gd.large",
                        storage_type="io1", allocated_storage=100, iops=1000, publicly_accessible=False)
    assert messages("databases-not-publicly-accessible", program) == []


# -- instances-without-public-ips ----------------------------------------------------------------------

@attack("instances-without-public-ips")
def test_every_way_of_giving_a_machine_a_public_ip_is_refused():
    def program():
        aws.ec2.Instance("bastion", ami="ami-0123456789abcdef0", instance_type="t3.micro",
                         subnet_id=SUBNETS[0], associate_public_ip_address=True)
        aws.ec2.LaunchTemplate("workers", image_id="ami-0123456789abcdef0",
                               network_interfaces=[{"associate_public_ip_address": "true"}])
        aws.ec2.Subnet("public", vpc_id=VPC, cidr_block="10.30.192.0/20", map_public_ip_on_launch=True)
        aws.ec2.Eip("bastion-ip", domain="vpc", instance="i-0123456789abcdef0")
        aws.ec2.EipAssociation("bastion-ip-association", allocation_id="eipalloc-0123",
                               network_interface_id="eni-0123")
    found = sorted(messages("instances-without-public-ips", program))
    assert found == [
        "EC2 instance bastion gives a machine a public IP address: set associate_public_ip_address=False",
        "Elastic IP association bastion-ip-association gives a machine a public IP address: remove it: reach the "
        "machine through the ALB or SSM",
        "Elastic IP bastion-ip gives a machine a public IP address: attach it to nothing but a NAT gateway "
        "(by allocation id)",
        'launch template workers gives a machine a public IP address: set '
        'network_interfaces[].associate_public_ip_address="false"',
        "subnet public gives a machine a public IP address: set map_public_ip_on_launch=False"]


@legitimate("instances-without-public-ips")
def test_machines_without_public_ips_pass():
    def program():
        aws.ec2.Instance("worker", ami="ami-0123456789abcdef0", instance_type="t3.micro", subnet_id=SUBNETS[0],
                         associate_public_ip_address=False)
        aws.ec2.LaunchTemplate("workers", image_id="ami-0123456789abcdef0",
                               network_interfaces=[{"associate_public_ip_address": "false"}])
        aws.ec2.Subnet("public", vpc_id=VPC, cidr_block="10.30.192.0/20", map_public_ip_on_launch=False)
        aws.ec2.Eip("nat-ip", domain="vpc")
    assert messages("instances-without-public-ips", program) == []


# -- function-urls-require-auth ---------------------------------------------------------------------------

@attack("function-urls-require-auth")
def test_function_urls_without_auth_are_refused_and_iam_auth_passes():
    def program():
        aws.lambda_.FunctionUrl("open", function_name="booking-webhook", authorization_type="NONE")
        aws.lambda_.FunctionUrl("signed", function_name="booking-webhook", authorization_type="AWS_IAM")
    assert messages("function-urls-require-auth", program) == [
        'Lambda function URL open lets anyone on the internet invoke the function, bypassing Cloudflare: set '
        'authorization_type="AWS_IAM"']


# -- resource-policies-not-open-to-everyone --------------------------------------------------------------

def statement(principal, condition=None, effect="Allow", key="Principal") -> dict:
    found = {"Sid": "Read", "Effect": effect, key: principal, "Action": "s3:GetObject", "Resource": f"{BUCKET_ARN}/*"}
    return {**found, "Condition": condition} if condition else found


def bucket_policy_plan(*statements: dict) -> Plan:
    return run_program(lambda: aws.s3.BucketPolicy("exports", bucket="mcp-estate-test-exports", policy=json.dumps(
        {"Version": "2012-10-17", "Statement": list(statements)})))


OPEN_STATEMENTS = {
    "star": statement("*"),
    "aws-star": statement({"AWS": "*"}),
    "aws-star-in-a-list": statement({"AWS": ["arn:aws:iam::111122223333:root", "*"]}),
    "not-principal": statement({"AWS": "arn:aws:iam::111122223333:role/admin"}, key="NotPrincipal"),
    "tls-only-is-not-who": statement("*", {"Bool": {"aws:SecureTransport": "true"}}),
    "if-exists-passes-without-the-key": statement("*", {"StringEqualsIfExists": {"aws:SourceVpce": "vpce-0a1b"}}),
    "source-ip-of-the-world": statement("*", {"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}),
}


@pytest.mark.parametrize("shape", sorted(OPEN_STATEMENTS))
@pytest.mark.parametrize("form", ["json", "object"])
def test_bucket_policies_open_to_everyone_are_refused(shape, form):
    plan = bucket_policy_plan(OPEN_STATEMENTS[shape])
    if form == "object":
        plan = as_object(plan, "exports", "policy")
    assert [v.message for v in violations(plan, policy="resource-policies-not-open-to-everyone")] == [
        "bucket policy exports allows everyone s3:GetObject (statement Read): name the principals, or add a "
        "condition on aws:SourceArn, aws:PrincipalOrgID or aws:SourceVpce"]


def everyone_reads(action: str, resource: str = "*", condition: dict | None = None) -> str:
    found = {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": action, "Resource": resource}
    return json.dumps({"Version": "2012-10-17", "Statement": [{**found, "Condition": condition} if condition
                                                               else found]})


@attack("resource-policies-not-open-to-everyone")
def test_every_kind_of_resource_policy_open_to_everyone_is_refused():
    secret = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:mcp/booking-AbCdEf"

    def program():
        aws.secretsmanager.SecretPolicy("secret", secret_arn=secret, policy=everyone_reads(
            "secretsmanager:GetSecretValue"))
        aws.ecr.RepositoryPolicy("repo", repository="mcp/booking", policy=everyone_reads("ecr:BatchGetImage"))
        aws.kms.Key("key", policy=everyone_reads("kms:Decrypt", condition={
            "StringLike": {"kms:CallerAccount": "*"}}))
        aws.kms.ReplicaKey("replica", primary_key_arn=f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/mrk-0a1b",
                           policy=everyone_reads("kms:Decrypt"))
        aws.dynamodb.ResourcePolicy("table", resource_arn=f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/state",
                                    policy=everyone_reads("dynamodb:GetItem"))
        aws.sns.TopicPolicy("topic", arn=f"arn:aws:sns:eu-west-1:{ACCOUNT}:alerts", policy=everyone_reads(
            "sns:Publish", condition={"ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:eu-west-1:*:alarm:*"}}))
        aws.sqs.QueuePolicy("queue", queue_url="https://sqs.eu-west-1.amazonaws.com/111122223333/q",
                            policy=everyone_reads("sqs:SendMessage", condition={
                                "IpAddress": {"aws:SourceIp": ["0.0.0.0/1", "128.0.0.0/1"]}}))
        aws.lambda_.Permission("invoke", action="lambda:InvokeFunction", function="canary", principal="*")
    assert sorted(messages("resource-policies-not-open-to-everyone", program)) == sorted([
        f"{kind} allows everyone {action}: name the principals, or add a condition on aws:SourceArn, "
        "aws:PrincipalOrgID or aws:SourceVpce" for kind, action in [
            ("secret policy secret", "secretsmanager:GetSecretValue"),
            ("ECR repository policy repo", "ecr:BatchGetImage"),
            ("KMS key key", "kms:Decrypt"), ("KMS replica key replica", "kms:Decrypt"),
            ("DynamoDB resource policy table", "dynamodb:GetItem"), ("SNS topic policy topic", "sns:Publish"),
            ("SQS queue policy queue", "sqs:SendMessage")]] + [
        "Lambda permission invoke lets anyone invoke canary: name the service or account as principal, and set "
        "source_arn or source_account"])


@legitimate("resource-policies-not-open-to-everyone")
def test_resource_policies_pinned_to_the_account_or_a_source_pass():
    def program():
        aws.kms.Key("key", policy=everyone_reads("kms:Decrypt", condition={
            "StringEquals": {"kms:CallerAccount": ACCOUNT,
                             "kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}}))
        aws.sns.TopicPolicy("topic", arn=f"arn:aws:sns:eu-west-1:{ACCOUNT}:alerts", policy=everyone_reads(
            "sns:Publish", condition={"ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:eu-west-1:{ACCOUNT}:alarm:*"}}))
        aws.lambda_.Permission("schedule", action="lambda:InvokeFunction", function="canary",
                               principal="events.amazonaws.com",
                               source_arn=f"arn:aws:events:eu-west-1:{ACCOUNT}:rule/canary")
        aws.lambda_.Permission("anyone-from-the-org", action="lambda:InvokeFunction", function="canary",
                               principal="*", principal_org_id="o-a1b2c3d4e5")
    assert messages("resource-policies-not-open-to-everyone", program) == []


@legitimate("resource-policies-not-open-to-everyone")
def test_bucket_policies_naming_who_or_denying_pass():
    plan = bucket_policy_plan(
        statement({"AWS": "arn:aws:iam::111122223333:role/exporter"}),
        statement("*", {"StringEquals": {"aws:SourceVpce": "vpce-0a1b2c3d"}}),
        statement("*", {"StringEquals": {"aws:PrincipalOrgID": "o-a1b2c3d4e5"}}),
        # the estate's own TLS-only statement: a Deny only narrows access
        {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": [BUCKET_ARN, f"{BUCKET_ARN}/*"],
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}})
    assert violations(plan, policy="resource-policies-not-open-to-everyone") == []


# -- origin-dns-records-proxied ----------------------------------------------------------------------------

@attack("origin-dns-records-proxied")
def test_dns_only_records_exposing_an_origin_are_refused():
    def program():
        cloudflare.DnsRecord("origin-eu", zone_id=ZONE, name="eu.origin.example.travel", type="CNAME", ttl=1,
                             content="mcp-eu-west-1-alb-1234.eu-west-1.elb.amazonaws.com", proxied=False)
        cloudflare.DnsRecord("origin-us", zone_id=ZONE, name="us.origin.example.travel", type="A", ttl=1,
                             content="54.77.10.10")   # proxied defaults to false
        cloudflare.Record("legacy", zone_id=ZONE, name="legacy.example.travel", type="AAAA", ttl=1,
                          content="2a05:d018::10", proxied=False)
    assert sorted(messages("origin-dns-records-proxied", program)) == [
        "Cloudflare DNS record legacy (AAAA legacy.example.travel) is DNS-only: it exposes the origin and its "
        "traffic bypasses Cloudflare's WAF; set proxied=True",
        "Cloudflare DNS record origin-eu (CNAME eu.origin.example.travel) is DNS-only: it exposes the origin and "
        "its traffic bypasses Cloudflare's WAF; set proxied=True",
        "Cloudflare DNS record origin-us (A us.origin.example.travel) is DNS-only: it exposes the origin and its "
        "traffic bypasses Cloudflare's WAF; set proxied=True"]


@attack("origin-dns-records-proxied")
def test_a_dns_only_record_named_like_a_validation_record_but_pointing_at_an_origin_is_refused():
    def program():
        cloudflare.DnsRecord("hidden", zone_id=ZONE, name="_origin.example.travel", type="CNAME", ttl=1,
                             content="mcp-eu-west-1-alb-1234.eu-west-1.elb.amazonaws.com", proxied=False)
        cloudflare.DnsRecord("fake-acm", zone_id=ZONE, name="_x.example.travel", type="A", ttl=1,
                             content="54.77.10.10", proxied=False)
    assert sorted(messages("origin-dns-records-proxied", program)) == [
        "Cloudflare DNS record fake-acm (A _x.example.travel) is DNS-only: it exposes the origin and its traffic "
        "bypasses Cloudflare's WAF; set proxied=True",
        "Cloudflare DNS record hidden (CNAME _origin.example.travel) is DNS-only: it exposes the origin and its "
        "traffic bypasses Cloudflare's WAF; set proxied=True"]


@legitimate("origin-dns-records-proxied")
def test_validation_and_dkim_records_stay_dns_only():
    def program():
        cloudflare.DnsRecord("acm-dot", zone_id=ZONE, name="_3f2a.mcp.example.travel", type="CNAME", ttl=60,
                             content="_9c1d.abcdefghij.acm-validations.aws.", proxied=False)
        cloudflare.DnsRecord("dkim", zone_id=ZONE, name="abc123._domainkey.example.travel", type="CNAME", ttl=300,
                             content="abc123.dkim.amazonses.com", proxied=False)
    assert messages("origin-dns-records-proxied", program) == []


@legitimate("origin-dns-records-proxied")
def test_proxied_records_validation_records_and_non_address_records_pass():
    def program():
        cloudflare.DnsRecord("origin", zone_id=ZONE, name="eu.origin.example.travel", type="CNAME", ttl=1,
                             content="mcp-eu-west-1-alb-1234.eu-west-1.elb.amazonaws.com", proxied=True)
        cloudflare.DnsRecord("acm", zone_id=ZONE, name="_3f2a.mcp.example.travel", type="CNAME", ttl=60,
                             content="_9c1d.abcdefghij.acm-validations.aws", proxied=False)
        cloudflare.DnsRecord("spf", zone_id=ZONE, name="example.travel", type="TXT", ttl=300,
                             content="v=spf1 -all")
        cloudflare.DnsRecord("internal", zone_id=ZONE, name="db.internal.example.travel", type="A", ttl=300,
                             content="10.30.4.17")   # a private address exposes no origin
    assert messages("origin-dns-records-proxied", program) == []


@pytest.mark.parametrize("target", [
    "abc123.execute-api.eu-west-1.amazonaws.com", "a1b2c3d4e5f6g7.awsglobalaccelerator.com", "d111111abcdef8.cloudfront.net",
    "abcdefghij.lambda-url.eu-west-1.on.aws", "MCP-EU-WEST-1-ALB-1234.EU-WEST-1.ELB.AMAZONAWS.COM."])
@attack("origin-dns-records-proxied")
def test_a_dns_only_cname_into_any_aws_endpoint_domain_is_refused_in_any_spelling(target):
    def program():
        cloudflare.DnsRecord("side-door", zone_id=ZONE, name="api.example.travel", type="CNAME", ttl=1,
                             content=target, proxied=False)
    assert messages("origin-dns-records-proxied", program) == [
        "Cloudflare DNS record side-door (CNAME api.example.travel) is DNS-only: it exposes the origin and its "
        "traffic bypasses Cloudflare's WAF; set proxied=True"]


@legitimate("origin-dns-records-proxied")
def test_dns_only_cnames_that_point_at_no_origin_pass():
    def program():   # a status page, an ACME delegation to a DNS-01 helper zone
        cloudflare.DnsRecord("status", zone_id=ZONE, name="status.example.travel", type="CNAME", ttl=300,
                             content="abcd1234.stspg-customer.com", proxied=False)
        cloudflare.DnsRecord("acme", zone_id=ZONE, name="_acme-challenge.mcp.example.travel", type="CNAME", ttl=300,
                             content="f3a9c1.auth.acme-dns.example.net.", proxied=False)
    assert messages("origin-dns-records-proxied", program) == []


@attack("origin-dns-records-proxied")
def test_a_dns_only_public_address_passes_only_when_the_config_names_it_with_a_reason():
    def program():
        cloudflare.DnsRecord("status", zone_id=ZONE, name="status.example.travel", type="A", ttl=300,
                             content="52.95.110.20", proxied=False)
    assert len(messages("origin-dns-records-proxied", program)) == 1
    listed = {"origin-dns-records-proxied": {"dnsOnlyRecords": {
        "status.example.travel": "the status page's vendor, which serves no origin of the estate"}}}
    assert messages("origin-dns-records-proxied", program, listed) == []
    other = {"origin-dns-records-proxied": {"dnsOnlyRecords": {"www.example.travel": "another record"}}}
    assert len(messages("origin-dns-records-proxied", program, other)) == 1


# -- what the estate's components build ---------------------------------------------------------------

@cache
def components_plan() -> Plan:
    region, key = "eu-west-1", "arn:aws:kms:eu-west-1:111122223333:key/mrk-0123456789abcdef0123456789abcdef"
    tags = {"mcp-estate:stack": "test", "mcp-estate:environment": "prod", "mcp-estate:owner": "platform"}

    def program():
        provider = aws.Provider(f"aws-{region}", region=region)
        opts = pulumi.ResourceOptions(provider=provider)
        net = RegionNetwork(f"net-{region}", RegionNetworkArgs(
            region=region, account_id=ACCOUNT, cidr="10.30.0.0/16", availability_zones=2, nat=True,
            log_key_arn=key, log_retention_days=90, flow_logs_role_name=f"net-{region}-flow-logs", tags=tags), opts=opts)
        RegionCompute(f"front-{region}", RegionComputeArgs(
            region=region, account_id=ACCOUNT, name_prefix=f"estate-test-{region}", vpc_id=net.vpc_id,
            public_subnet_ids=net.public_subnet_ids, certificate_arn="arn:aws:acm:eu-west-1:111122223333:"
            "certificate/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", cloudflare_ipv4_cidrs=CLOUDFLARE_IPV4,
            cloudflare_ipv6_cidrs=CLOUDFLARE_IPV6, deletion_protection=True, origin_rate_limit=3000,
            alert_key_arn=key, alert_emails=["sre.oncall@example.travel"], log_retention_days=90, tags=tags),
            opts=opts)
        OriginCertificates("origin-tls", OriginCertificatesArgs(
            hostname="mcp.example.travel", zone_id=ZONE, regions=[region], providers={region: provider},
            tags=ContractTags("test", "prod", "platform")))

    return run_program(program)


def test_the_estates_network_alb_and_validation_record_pass_every_private_networking_control():
    plan = components_plan()
    # the shapes these controls judge are really there
    assert len(plan.of_type("aws:ec2/managedPrefixList:ManagedPrefixList")) == 2
    assert plan.one("cloudflare:index/dnsRecord:DnsRecord").inputs["proxied"] is False
    assert plan.of_type("aws:ec2/eip:Eip") and plan.of_type("aws:s3/bucketPolicy:BucketPolicy")
    assert [v for v in violations(plan) if v.policy in POLICIES] == []
