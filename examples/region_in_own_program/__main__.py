"""A platform team's own program: its AWS provider, its VPC, and one region of the MCP estate in it.

The estate's stack file (`mcp-estate:estate` in this project's stack config, the same document as
stacks/Pulumi.<stack>.yaml of the estate) says which servers run in the region; this program
decides where: in its own account provider and its own VPC. It builds the estate-wide parts
(`EstateWide`: keys, registry, secrets, state tables, certificates, server identities) and one
`Region`; no `RegionNetwork` is built, the region's tasks, canary and hooks run in the VPC below.
The Cloudflare edge and the dashboards span every region: `Estate` builds them (README: "Composing").
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from mcp_estate.components.estate_scope import EstateScope
from mcp_estate.components.estate_wide import EstateWide
from mcp_estate.components.region import NetworkRef, Region, RegionArgs
from mcp_estate.components.region_network import gateway_endpoint_policy, interface_endpoint_policy
from mcp_estate.contract.validate import parse_spec

REGION = "eu-west-1"
CIDR = "10.42.0.0/16"
ZONES = {"euw1-az1": ("10.42.0.0/20", "10.42.128.0/24"), "euw1-az2": ("10.42.16.0/20", "10.42.129.0/24")}
INTERFACE_SERVICES = ("ecr.api", "ecr.dkr", "logs", "secretsmanager", "sts")

spec = parse_spec(pulumi.Config("mcp-estate").require_object("estate"))
tags = {"team": "platform", "estate": "mcp-estate"}

# The team's provider, pinned to the estate's account.
provider = aws.Provider("platform-eu-west-1", region=REGION, allowed_account_ids=[spec.aws_account_id])
on_provider = pulumi.ResourceOptions(provider=provider)

# The team's VPC: public subnets for the ALB (and NAT), private subnets for tasks.
vpc = aws.ec2.Vpc("platform-vpc", cidr_block=CIDR, enable_dns_hostnames=True, enable_dns_support=True,
                  tags=tags, opts=on_provider)
igw = aws.ec2.InternetGateway("platform-igw", vpc_id=vpc.id, tags=tags, opts=on_provider)
public_routes = aws.ec2.RouteTable("platform-public", vpc_id=vpc.id, tags=tags, opts=on_provider,
                                   routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": igw.id}])
private_routes = aws.ec2.RouteTable("platform-private", vpc_id=vpc.id, tags=tags, opts=on_provider)
private, public = [], []
for zone, (private_cidr, public_cidr) in ZONES.items():
    private.append(aws.ec2.Subnet(f"platform-private-{zone}", vpc_id=vpc.id, cidr_block=private_cidr,
                                  availability_zone_id=zone, tags=tags, opts=on_provider))
    public.append(aws.ec2.Subnet(f"platform-public-{zone}", vpc_id=vpc.id, cidr_block=public_cidr,
                                 availability_zone_id=zone, tags=tags, opts=on_provider))
    aws.ec2.RouteTableAssociation(f"platform-private-{zone}", subnet_id=private[-1].id,
                                  route_table_id=private_routes.id, opts=on_provider)
    aws.ec2.RouteTableAssociation(f"platform-public-{zone}", subnet_id=public[-1].id,
                                  route_table_id=public_routes.id, opts=on_provider)

# NAT: the canary probes the public hostname through Cloudflare, outside AWS.
nat_address = aws.ec2.Eip("platform-nat", domain="vpc", tags=tags, opts=on_provider)
nat = aws.ec2.NatGateway("platform-nat", allocation_id=nat_address.id, subnet_id=public[0].id, tags=tags,
                         opts=on_provider)
aws.ec2.Route("platform-private-nat", route_table_id=private_routes.id, destination_cidr_block="0.0.0.0/0",
              nat_gateway_id=nat.id, opts=on_provider)

# The endpoints the tasks reach AWS through, as RegionNetwork builds them.
endpoints = aws.ec2.SecurityGroup("platform-endpoints", vpc_id=vpc.id, description="Interface endpoints",
                                  tags=tags, opts=on_provider)
aws.vpc.SecurityGroupIngressRule("platform-endpoints-https", security_group_id=endpoints.id, ip_protocol="tcp",
                                 from_port=443, to_port=443, cidr_ipv4=CIDR, description="HTTPS from the VPC",
                                 tags=tags, opts=on_provider)
for service in INTERFACE_SERVICES:
    aws.ec2.VpcEndpoint(f"platform-{service.replace('.', '-')}", vpc_id=vpc.id, vpc_endpoint_type="Interface",
                        service_name=f"com.amazonaws.{REGION}.{service}", private_dns_enabled=True,
                        subnet_ids=[s.id for s in private], security_group_ids=[endpoints.id],
                        policy=json.dumps(interface_endpoint_policy(spec.aws_account_id)), tags=tags,
                        opts=on_provider)
gateways = {service: aws.ec2.VpcEndpoint(
    f"platform-{service}", vpc_id=vpc.id, vpc_endpoint_type="Gateway", service_name=f"com.amazonaws.{REGION}.{service}",
    route_table_ids=[private_routes.id], tags=tags, opts=on_provider,
    policy=json.dumps(gateway_endpoint_policy(service, REGION, spec.aws_account_id))) for service in ("s3", "dynamodb")}

# The estate: its estate-wide parts on the team's provider, and the region in the team's VPC.
scope = EstateScope(spec, "mcp-estate")
wide = EstateWide("mcp-estate-estate-wide", scope, {REGION: provider})
region = Region("mcp-estate-eu-west-1", RegionArgs(estate=wide, region=REGION, network=NetworkRef(
    vpc_id=vpc.id, vpc_cidr=CIDR, private_subnet_ids=[s.id for s in private],
    public_subnet_ids=[s.id for s in public], endpoint_security_group_id=endpoints.id,
    gateway_prefix_list_ids={service: endpoint.prefix_list_id for service, endpoint in gateways.items()})),
    opts=on_provider)

pulumi.export("alb_dns_name", region.front.alb_dns_name)
pulumi.export("cluster_name", region.front.cluster_name)
