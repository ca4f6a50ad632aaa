"""The SQS interface endpoint of a region whose servers declare `async`.

Task and worker security groups reach AWS APIs only through the VPC's interface endpoints (HTTPS to
the VPC's CIDR): without this endpoint SQS would be unreachable from the private subnets. It sits
behind the network's endpoint security group and carries the same policy as the other interface
endpoints (callers of the estate's account only, components/region_network.py). Only regions that
need it get it: an interface endpoint is billed per hour and zone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .naming import child_opts
from .region_network import interface_endpoint_policy


@dataclass
class QueueEndpointArgs:
    region: str
    account_id: str
    vpc_id: pulumi.Input[str]
    private_subnet_ids: list[pulumi.Input[str]]
    endpoint_security_group_id: pulumi.Input[str]
    tags: dict[str, str]


class QueueEndpoint(pulumi.ComponentResource):
    def __init__(self, name: str, args: QueueEndpointArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:queue_endpoint:QueueEndpoint", name, None, opts)
        self.endpoint = aws.ec2.VpcEndpoint(
            f"{name}-sqs", vpc_id=args.vpc_id, service_name=f"com.amazonaws.{args.region}.sqs",
            vpc_endpoint_type="Interface", private_dns_enabled=True, subnet_ids=args.private_subnet_ids,
            security_group_ids=[args.endpoint_security_group_id],
            policy=json.dumps(interface_endpoint_policy(args.account_id)), tags=args.tags, opts=child_opts(self))
        self.register_outputs({"endpoint_id": self.endpoint.id})
