"""One region's network: where the ALB faces Cloudflare and the MCP tasks run with no public IP.

Creates, per region:
- a VPC (DNS support and hostnames, needed by the endpoints' private DNS) whose default
  security group is emptied (CIS: nothing may fall back on an allow-all group);
- per availability zone a private subnet (tasks) and a public subnet (the ALB only, no
  public IP on launch), placed and named by AZ ID; CIDRs carved from the VPC: the first three
  quarters are the private subnets, the fourth is cut in four and three pieces are public;
- an internet gateway and one public route table; one private route table per AZ whose
  default route exists only when `nat` is on, then through a NAT gateway in the same AZ
  (losing an AZ does not cut the other AZs' egress);
- interface endpoints (ECR API and registry, logs, Secrets Manager, STS) behind a security
  group admitting HTTPS from the VPC only, and gateway endpoints (S3: ECR image layers;
  DynamoDB: session state) on the private route tables, so tasks need no internet route;
- VPC flow logs (all traffic) to a KMS-encrypted log group, written by a role that only the
  flow-logs service of this account and region can assume.

Zones are chosen by AZ ID from the region's Fargate allowlist (`geography.FARGATE_ZONE_IDS`,
in its order), among those the account offers: a zone *name* such as `us-west-1b` means a
different place in each older account, and some zones run no Fargate tasks. Resource names use
the AZ ID, so they are the same in every account and known before the account is asked.

Requires: the region's `aws.Provider` in `opts`; `log_key_arn` a key whose policy lets
`logs.<region>.amazonaws.com` use it.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mcp_estate.contract.geography import FARGATE_ZONE_IDS
from mcp_estate.contract.iam_documents import document, service_trust

from .naming import child_opts

INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "logs", "secretsmanager", "sts")
GATEWAY_ENDPOINTS = ("s3", "dynamodb")


@dataclass
class RegionNetworkArgs:
    region: str
    account_id: str
    cidr: str                      # /16 to /20, validated by the spec
    availability_zones: int        # 2 or 3
    nat: bool                      # a default route through NAT, only when a server declares egress
    log_key_arn: pulumi.Input[str]
    log_retention_days: int
    flow_logs_role_name: str       # a physical name, known at plan time, that change detection watches
    tags: dict[str, str]


def choose_zones(region: str, offered_zone_ids: list[str], count: int) -> list[str]:
    """The first `count` zones of the region's Fargate allowlist that the account offers (AZ IDs)."""
    allowed = FARGATE_ZONE_IDS[region]
    chosen = [zone for zone in allowed if zone in offered_zone_ids][:count]
    if len(chosen) < count:
        offered = [zone for zone in allowed if zone in offered_zone_ids]
        fix = f"lower availability_zones to {len(offered)}" if len(offered) >= 2 else "use another region"
        raise pulumi.RunError(
            f"{region}: availability_zones is {count}, but this account offers only {len(offered)} of the "
            f"region's Fargate zones ({', '.join(offered) or 'none'} of {', '.join(allowed)}): {fix}")
    return chosen


def carve(cidr: str, count: int) -> tuple[list[str], list[str]]:
    """(private, public) subnet CIDRs for `count` AZs: /16 -> private /18s and public /20s."""
    quarters = list(ipaddress.IPv4Network(cidr).subnets(prefixlen_diff=2))
    public = list(quarters[3].subnets(prefixlen_diff=2))
    return [str(n) for n in quarters[:count]], [str(n) for n in public[:count]]


def flow_logs_trust(account_id: str, region: str) -> dict:
    """Only the flow-logs service, acting for this account's flow logs in this region."""
    return service_trust("vpc-flow-logs.amazonaws.com", {
        "StringEquals": {"aws:SourceAccount": account_id},
        "ArnLike": {"aws:SourceArn": f"arn:aws:ec2:{region}:{account_id}:vpc-flow-log/*"}})


def write_to_log_group(log_group_arn: pulumi.Input[str], region: str, account_id: str) -> dict:
    """Write streams of one log group; list the account's groups in the region, which the VPC guide's
    flow-logs role lists too (DescribeLogGroups is evaluated against every group, not one)."""
    return document([
        {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
         "Resource": [log_group_arn, pulumi.Output.concat(log_group_arn, ":*")]},
        {"Effect": "Allow", "Action": "logs:DescribeLogGroups",
         "Resource": f"arn:aws:logs:{region}:{account_id}:log-group:*"}])


class RegionNetwork(pulumi.ComponentResource):
    def __init__(self, name: str, args: RegionNetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:region_network:RegionNetwork", name, None, opts)
        self._prefix, self._args = name, args
        self.vpc_cidr = args.cidr
        self.flow_logs_role_name = args.flow_logs_role_name
        azs = self._zones()

        self.vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=args.cidr, enable_dns_support=True,
                               enable_dns_hostnames=True, tags=args.tags, opts=child_opts(self))
        self.vpc_id = self.vpc.id
        # Adopting the default group with no rules empties it (CIS EC2.2).
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=self.vpc.id, tags=args.tags,
                                     opts=child_opts(self))

        private_cidrs, public_cidrs = carve(args.cidr, len(azs))
        public = {az: self._subnet("public", az, cidr) for az, cidr in zip(azs, public_cidrs)}
        private = {az: self._subnet("private", az, cidr) for az, cidr in zip(azs, private_cidrs)}
        self.public_subnet_ids = [public[az].id for az in azs]
        self.private_subnet_ids = [private[az].id for az in azs]

        igw = self._public_routes(public)
        route_tables = {az: self._private_route_table(az, subnet) for az, subnet in private.items()}
        if args.nat:
            for az in azs:
                self._nat_route(az, public[az], route_tables[az], igw)

        self.endpoint_security_group_id = self._interface_endpoints(list(private.values()))
        self.gateway_prefix_list_ids = self._gateway_endpoints([route_tables[az] for az in azs])
        self._flow_logs()

        self.register_outputs({"vpc_id": self.vpc_id, "private_subnet_ids": self.private_subnet_ids,
                               "public_subnet_ids": self.public_subnet_ids,
                               "gateway_prefix_list_ids": self.gateway_prefix_list_ids})

    def _zones(self) -> list[str]:
        # Every zone the account offers, whatever its state today: a zone that is impaired during
        # one `pulumi up` must not move the subnets to another zone (a replacement of the network).
        # The allowlist holds standard zones only, never Local Zones (no NAT, no interface endpoints).
        offered = aws.get_availability_zones(opts=pulumi.InvokeOptions(parent=self))
        return choose_zones(self._args.region, list(offered.zone_ids), self._args.availability_zones)

    def _subnet(self, role: str, zone_id: str, cidr: str) -> aws.ec2.Subnet:
        return aws.ec2.Subnet(f"{self._prefix}-{role}-{zone_id}", vpc_id=self.vpc.id,
                              availability_zone_id=zone_id, cidr_block=cidr, map_public_ip_on_launch=False,
                              tags=self._args.tags, opts=child_opts(self))

    def _public_routes(self, public: dict[str, aws.ec2.Subnet]) -> aws.ec2.InternetGateway:
        igw = aws.ec2.InternetGateway(f"{self._prefix}-igw", vpc_id=self.vpc.id, tags=self._args.tags,
                                      opts=child_opts(self))
        table = aws.ec2.RouteTable(f"{self._prefix}-public-rt", vpc_id=self.vpc.id, tags=self._args.tags,
                                   opts=child_opts(self))
        aws.ec2.Route(f"{self._prefix}-public-default", route_table_id=table.id,
                      destination_cidr_block="0.0.0.0/0", gateway_id=igw.id, opts=child_opts(self))
        for az, subnet in public.items():
            aws.ec2.RouteTableAssociation(f"{self._prefix}-public-rta-{az}", subnet_id=subnet.id,
                                          route_table_id=table.id, opts=child_opts(self))
        return igw

    def _private_route_table(self, az: str, subnet: aws.ec2.Subnet) -> aws.ec2.RouteTable:
        table = aws.ec2.RouteTable(f"{self._prefix}-private-rt-{az}", vpc_id=self.vpc.id, tags=self._args.tags,
                                   opts=child_opts(self))
        aws.ec2.RouteTableAssociation(f"{self._prefix}-private-rta-{az}", subnet_id=subnet.id,
                                      route_table_id=table.id, opts=child_opts(self))
        return table

    def _nat_route(self, az: str, public_subnet: aws.ec2.Subnet, table: aws.ec2.RouteTable,
                   igw: aws.ec2.InternetGateway) -> None:
        eip = aws.ec2.Eip(f"{self._prefix}-nat-eip-{az}", domain="vpc", tags=self._args.tags,
                          opts=child_opts(self))
        # A NAT gateway needs the internet gateway attached before it can route.
        nat = aws.ec2.NatGateway(f"{self._prefix}-nat-{az}", allocation_id=eip.id, subnet_id=public_subnet.id,
                                 tags=self._args.tags, opts=child_opts(self, depends_on=[igw]))
        aws.ec2.Route(f"{self._prefix}-private-default-{az}", route_table_id=table.id,
                      destination_cidr_block="0.0.0.0/0", nat_gateway_id=nat.id, opts=child_opts(self))

    def _interface_endpoints(self, subnets: list[aws.ec2.Subnet]) -> pulumi.Output[str]:
        group = aws.ec2.SecurityGroup(f"{self._prefix}-endpoint-sg", vpc_id=self.vpc.id,
                                      description="Interface VPC endpoints: HTTPS from inside the VPC only",
                                      tags=self._args.tags, opts=child_opts(self))
        aws.vpc.SecurityGroupIngressRule(f"{self._prefix}-endpoint-https", security_group_id=group.id,
                                         ip_protocol="tcp", from_port=443, to_port=443,
                                         cidr_ipv4=self._args.cidr, description="HTTPS from the VPC",
                                         tags=self._args.tags, opts=child_opts(self))
        for service in INTERFACE_ENDPOINTS:
            aws.ec2.VpcEndpoint(f"{self._prefix}-endpoint-{service.replace('.', '-')}", vpc_id=self.vpc.id,
                                service_name=f"com.amazonaws.{self._args.region}.{service}",
                                vpc_endpoint_type="Interface", private_dns_enabled=True,
                                subnet_ids=[s.id for s in subnets], security_group_ids=[group.id],
                                policy=json.dumps(interface_endpoint_policy(self._args.account_id)),
                                tags=self._args.tags, opts=child_opts(self))
        return group.id

    def _gateway_endpoints(self, route_tables: list[aws.ec2.RouteTable]) -> dict[str, pulumi.Output[str]]:
        """Service -> the endpoint's prefix list, which task security groups allow egress to."""
        return {service: aws.ec2.VpcEndpoint(
            f"{self._prefix}-endpoint-{service}", vpc_id=self.vpc.id,
            service_name=f"com.amazonaws.{self._args.region}.{service}", vpc_endpoint_type="Gateway",
            route_table_ids=[t.id for t in route_tables], tags=self._args.tags, opts=child_opts(self),
            policy=json.dumps(gateway_endpoint_policy(service, self._args.region, self._args.account_id)),
        ).prefix_list_id
            for service in GATEWAY_ENDPOINTS}

    def _flow_logs(self) -> None:
        args = self._args
        log_group = aws.cloudwatch.LogGroup(f"{self._prefix}-flow-logs", retention_in_days=args.log_retention_days,
                                            kms_key_id=args.log_key_arn, tags=args.tags, opts=child_opts(self))
        role = aws.iam.Role(f"{self._prefix}-flow-logs-role", name=args.flow_logs_role_name, tags=args.tags,
                            assume_role_policy=json.dumps(flow_logs_trust(args.account_id, args.region)),
                            opts=child_opts(self))
        grant = aws.iam.RolePolicy(f"{self._prefix}-flow-logs-write", role=role.id, opts=child_opts(self),
                                   policy=pulumi.Output.json_dumps(
                                       write_to_log_group(log_group.arn, args.region, args.account_id)))
        # The flow log checks the role can write when it is created: grant first.
        aws.ec2.FlowLog(f"{self._prefix}-flow-log", vpc_id=self.vpc.id, traffic_type="ALL",
                        log_destination_type="cloud-watch-logs", log_destination=log_group.arn,
                        iam_role_arn=role.arn, tags=args.tags, opts=child_opts(self, depends_on=[grant]))


# Endpoint policies: by default an endpoint reaches the whole service, any account's resources
# included, so a compromised task could copy data to a bucket or table of someone else's (with
# its own credentials or a presigned URL). These keep every call on the estate's account, except
# the one foreign bucket tasks need: ECR's image layers.
def interface_endpoint_policy(account_id: str) -> dict:
    return document([{
        "Sid": "EstateAccountCallersOnly", "Effect": "Allow", "Principal": "*", "Action": "*", "Resource": "*",
        "Condition": {"StringEquals": {"aws:PrincipalAccount": account_id}}}])


def gateway_endpoint_policy(service: str, region: str, account_id: str) -> dict:
    statements = [{"Sid": "EstateAccountResourcesOnly", "Effect": "Allow", "Principal": "*", "Action": "*",
                   "Resource": "*", "Condition": {"StringEquals": {"aws:ResourceAccount": account_id}}}]
    if service == "s3":   # ECR stores image layers in a bucket of AWS's own, per region
        statements.append({"Sid": "EcrImageLayers", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                           "Resource": f"arn:aws:s3:::prod-{region}-starport-layer-bucket/*"})
    return document(statements)
