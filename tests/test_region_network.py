"""RegionNetwork: private tasks, public ALB subnets, endpoints instead of internet, flow logs."""

from __future__ import annotations

from functools import cache

import pulumi
import pulumi_aws as aws
import pytest
from conftest import ACCOUNT, Plan, policy, run_program

from mcp_estate.components.region_network import RegionNetwork, RegionNetworkArgs, carve, choose_zones

REGION = "eu-west-1"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/mrk-0123456789abcdef0123456789abcdef"
TAGS = {"mcp-estate:stack": "test", "mcp-estate:environment": "dev", "mcp-estate:owner": "platform",
        "mcp-estate:region": REGION}
ZONES = ["euw1-az1", "euw1-az2", "euw1-az3"]   # by AZ ID; the mocks' account names them b, c, a
NET = f"net-{REGION}"


@cache
def network(nat: bool, zones: int = 3, region: str = REGION) -> tuple[Plan, dict]:
    """The plan of one region's network, and its component's resolved attributes."""
    seen: dict = {}

    def program():
        provider = aws.Provider(f"aws-{region}", region=region)
        net = RegionNetwork(f"net-{region}", RegionNetworkArgs(
            region=region, account_id=ACCOUNT, cidr="10.30.0.0/16", availability_zones=zones, nat=nat,
            log_key_arn=KEY, log_retention_days=90, flow_logs_role_name=f"net-{region}-flow-logs", tags=TAGS),
            opts=pulumi.ResourceOptions(provider=provider))
        pulumi.Output.all(private=net.private_subnet_ids, public=net.public_subnet_ids,
                          prefix_lists=net.gateway_prefix_list_ids, endpoint_sg=net.endpoint_security_group_id,
                          vpc=net.vpc_id).apply(seen.update)
        seen["vpc_cidr"] = net.vpc_cidr

    return run_program(program), seen


def ids(plan: Plan, names: list[str]) -> list[str]:
    return [plan.named(n).id for n in names]


def test_each_zone_gets_a_private_and_a_public_subnet_carved_from_the_vpc():
    plan, _ = network(nat=False)
    private = {z: plan.named(f"{NET}-private-{z}").inputs for z in ZONES}
    public = {z: plan.named(f"{NET}-public-{z}").inputs for z in ZONES}
    assert {z: (i["cidrBlock"], i["availabilityZoneId"]) for z, i in private.items()} == {
        "euw1-az1": ("10.30.0.0/18", "euw1-az1"), "euw1-az2": ("10.30.64.0/18", "euw1-az2"),
        "euw1-az3": ("10.30.128.0/18", "euw1-az3")}
    assert {z: (i["cidrBlock"], i["availabilityZoneId"]) for z, i in public.items()} == {
        "euw1-az1": ("10.30.192.0/20", "euw1-az1"), "euw1-az2": ("10.30.208.0/20", "euw1-az2"),
        "euw1-az3": ("10.30.224.0/20", "euw1-az3")}
    assert all("availabilityZone" not in i for i in [*private.values(), *public.values()])
    assert all(i["mapPublicIpOnLaunch"] is False for i in [*private.values(), *public.values()])


def test_zones_follow_the_fargate_allowlist_by_az_id_not_the_accounts_zone_names():
    # The mocks' account names use1-az4 "us-east-1a" and use1-az6 "us-east-1b"; sorting names would pick them.
    plan, _ = network(nat=True, zones=3, region="us-east-1")
    subnets = plan.of_type("aws:ec2/subnet:Subnet")
    assert sorted(s.inputs["availabilityZoneId"] for s in subnets) == \
        sorted(["use1-az1", "use1-az2", "use1-az4"] * 2)
    assert sorted(n.name for n in plan.of_type("aws:ec2/natGateway:NatGateway")) == [
        "net-us-east-1-nat-use1-az1", "net-us-east-1-nat-use1-az2", "net-us-east-1-nat-use1-az4"]


def test_tokyo_and_northern_california_get_only_their_fargate_zones():
    tokyo, _ = network(nat=False, zones=3, region="ap-northeast-1")
    assert sorted({s.inputs["availabilityZoneId"] for s in tokyo.of_type("aws:ec2/subnet:Subnet")}) == [
        "apne1-az1", "apne1-az2", "apne1-az4"]
    california, _ = network(nat=False, zones=2, region="us-west-1")
    assert sorted(s.name for s in california.of_type("aws:ec2/subnet:Subnet")) == [
        "net-us-west-1-private-usw1-az1", "net-us-west-1-private-usw1-az3",
        "net-us-west-1-public-usw1-az1", "net-us-west-1-public-usw1-az3"]


def test_zones_are_taken_in_allowlist_order_among_those_the_account_offers():
    assert choose_zones("us-east-1", ["use1-az3", "use1-az6", "use1-az5", "use1-az4", "use1-az2"], 3) == [
        "use1-az2", "use1-az4", "use1-az5"]
    assert choose_zones("ap-northeast-1", ["apne1-az4", "apne1-az1", "apne1-az2", "apne1-az3"], 3) == [
        "apne1-az1", "apne1-az2", "apne1-az4"]


def test_an_account_offering_too_few_fargate_zones_fails_the_preview_naming_the_zones():
    with pytest.raises(pulumi.RunError) as error:
        choose_zones("us-west-1", ["usw1-az1", "usw1-az2"], 2)
    assert str(error.value) == (
        "us-west-1: availability_zones is 2, but this account offers only 1 of the region's Fargate zones "
        "(usw1-az1 of usw1-az1, usw1-az3): use another region")
    with pytest.raises(pulumi.RunError, match=r"offers only 2 .*\(cac1-az1, cac1-az2 of cac1-az1, cac1-az2, "
                                              r"cac1-az4\): lower availability_zones to 2$"):
        choose_zones("ca-central-1", ["cac1-az1", "cac1-az2"], 3)


def test_a_slash_20_vpc_still_holds_three_private_and_three_public_subnets():
    assert carve("10.40.0.0/20", 3) == (["10.40.0.0/22", "10.40.4.0/22", "10.40.8.0/22"],
                                        ["10.40.12.0/24", "10.40.13.0/24", "10.40.14.0/24"])


def test_subnet_ids_are_exposed_in_zone_order_and_only_for_the_requested_zones():
    plan, seen = network(nat=False, zones=2)
    assert len(plan.of_type("aws:ec2/subnet:Subnet")) == 4
    assert seen["private"] == ids(plan, [f"{NET}-private-{z}" for z in ZONES[:2]])
    assert seen["public"] == ids(plan, [f"{NET}-public-{z}" for z in ZONES[:2]])
    assert seen["vpc_cidr"] == "10.30.0.0/16"


def test_vpc_resolves_private_dns_and_its_default_security_group_allows_nothing():
    plan, seen = network(nat=False)
    vpc = plan.named(f"{NET}-vpc")
    assert vpc.inputs["cidrBlock"] == "10.30.0.0/16"
    assert vpc.inputs["enableDnsSupport"] is True and vpc.inputs["enableDnsHostnames"] is True
    default = plan.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
    assert default.inputs["vpcId"] == seen["vpc"]
    assert not default.inputs.get("ingress") and not default.inputs.get("egress")


def test_only_the_public_subnets_route_to_the_internet_gateway():
    plan, _ = network(nat=False)
    igw = plan.one("aws:ec2/internetGateway:InternetGateway")
    public_table = plan.named(f"{NET}-public-rt")
    [route] = plan.of_type("aws:ec2/route:Route")
    assert route.inputs == {"routeTableId": public_table.id, "destinationCidrBlock": "0.0.0.0/0",
                            "gatewayId": igw.id}
    associations = {a.inputs["subnetId"]: a.inputs["routeTableId"]
                    for a in plan.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")}
    assert {associations[s] for s in ids(plan, [f"{NET}-public-{z}" for z in ZONES])} == {public_table.id}
    assert [associations[s] for s in ids(plan, [f"{NET}-private-{z}" for z in ZONES])] == \
        ids(plan, [f"{NET}-private-rt-{z}" for z in ZONES])


def test_tasks_have_no_route_to_the_internet_without_nat():
    plan, _ = network(nat=False)
    private_tables = set(ids(plan, [f"{NET}-private-rt-{z}" for z in ZONES]))
    assert not [r for r in plan.of_type("aws:ec2/route:Route") if r.inputs["routeTableId"] in private_tables]
    assert not plan.of_type("aws:ec2/natGateway:NatGateway") and not plan.of_type("aws:ec2/eip:Eip")


def test_with_nat_each_zone_egresses_through_its_own_nat_gateway():
    plan, _ = network(nat=True)
    for zone in ZONES:
        nat = plan.named(f"{NET}-nat-{zone}")
        assert nat.inputs["subnetId"] == plan.named(f"{NET}-public-{zone}").id
        assert nat.inputs["allocationId"] == plan.named(f"{NET}-nat-eip-{zone}").id
        assert plan.named(f"{NET}-nat-eip-{zone}").inputs["domain"] == "vpc"
        assert plan.named(f"{NET}-private-default-{zone}").inputs == {
            "routeTableId": plan.named(f"{NET}-private-rt-{zone}").id,
            "destinationCidrBlock": "0.0.0.0/0", "natGatewayId": nat.id}


def test_interface_endpoints_serve_aws_apis_privately_in_the_private_subnets():
    plan, seen = network(nat=False)
    interface = {e.inputs["serviceName"]: e.inputs for e in plan.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
                 if e.inputs["vpcEndpointType"] == "Interface"}
    assert sorted(interface) == [f"com.amazonaws.{REGION}.{s}"
                                 for s in ("ecr.api", "ecr.dkr", "logs", "secretsmanager", "sts")]
    for inputs in interface.values():
        assert inputs["privateDnsEnabled"] is True
        assert inputs["subnetIds"] == seen["private"]
        assert inputs["securityGroupIds"] == [seen["endpoint_sg"]]


def test_endpoints_admit_https_from_the_vpc_only():
    plan, seen = network(nat=False)
    [rule] = plan.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert {k: v for k, v in rule.inputs.items() if k not in ("description", "tags")} == {
        "securityGroupId": seen["endpoint_sg"], "ipProtocol": "tcp", "fromPort": 443, "toPort": 443,
        "cidrIpv4": "10.30.0.0/16"}
    assert not plan.of_type("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")


def test_s3_and_dynamodb_gateway_endpoints_serve_every_private_route_table():
    plan, seen = network(nat=False)
    gateways = [plan.named(f"{NET}-endpoint-{s}") for s in ("s3", "dynamodb")]
    for endpoint, service in zip(gateways, ("s3", "dynamodb")):
        assert endpoint.inputs["serviceName"] == f"com.amazonaws.{REGION}.{service}"
        assert endpoint.inputs["vpcEndpointType"] == "Gateway"
        assert endpoint.inputs["routeTableIds"] == ids(plan, [f"{NET}-private-rt-{z}" for z in ZONES])
    assert seen["prefix_lists"] == {s: e.outputs["prefixListId"] for s, e in zip(("s3", "dynamodb"), gateways)}


def test_flow_logs_record_all_traffic_into_the_encrypted_log_group():
    plan, seen = network(nat=False)
    group = plan.named(f"{NET}-flow-logs")
    assert group.inputs["kmsKeyId"] == KEY and group.inputs["retentionInDays"] == 90
    flow = plan.one("aws:ec2/flowLog:FlowLog")
    assert flow.inputs["vpcId"] == seen["vpc"] and flow.inputs["trafficType"] == "ALL"
    assert flow.inputs["logDestinationType"] == "cloud-watch-logs"
    assert flow.inputs["logDestination"] == group.outputs["arn"]
    assert flow.inputs["iamRoleArn"] == plan.named(f"{NET}-flow-logs-role").outputs["arn"]


def test_only_this_accounts_flow_logs_in_this_region_can_assume_the_flow_log_role():
    plan, _ = network(nat=False)
    [statement] = policy(plan.named(f"{NET}-flow-logs-role"), "assumeRolePolicy")["Statement"]
    assert statement["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": f"arn:aws:ec2:{REGION}:{ACCOUNT}:vpc-flow-log/*"}}


def test_flow_log_role_can_only_write_to_its_own_log_group():
    plan, _ = network(nat=False)
    grant = plan.named(f"{NET}-flow-logs-write")
    group_arn = plan.named(f"{NET}-flow-logs").outputs["arn"]
    assert grant.inputs["role"] == plan.named(f"{NET}-flow-logs-role").id
    write, describe = policy(grant, "policy")["Statement"]
    assert write == {"Effect": "Allow",
                     "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                     "Resource": [group_arn, f"{group_arn}:*"]}
    # The VPC guide's flow-logs role also lists log groups; that call is judged against every group.
    assert describe == {"Effect": "Allow", "Action": "logs:DescribeLogGroups",
                        "Resource": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:*"}
    assert plan.named(f"{NET}-flow-logs-role").inputs["name"] == f"{NET}-flow-logs"


def test_endpoints_only_serve_the_estates_account_and_ecrs_layer_bucket():
    plan, _ = network(nat=False)
    endpoints = {e.inputs["serviceName"].rsplit(".", 1)[-1]: policy(e, "policy")["Statement"]
                 for e in plan.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")}
    assert endpoints["sts"] == [{"Sid": "EstateAccountCallersOnly", "Effect": "Allow", "Principal": "*",
                                 "Action": "*", "Resource": "*",
                                 "Condition": {"StringEquals": {"aws:PrincipalAccount": ACCOUNT}}}]
    assert [s["Condition"] for s in endpoints["dynamodb"]] == [{"StringEquals": {"aws:ResourceAccount": ACCOUNT}}]
    layers = [s for s in endpoints["s3"] if s["Sid"] == "EcrImageLayers"]
    assert layers == [{"Sid": "EcrImageLayers", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": f"arn:aws:s3:::prod-{REGION}-starport-layer-bucket/*"}]
