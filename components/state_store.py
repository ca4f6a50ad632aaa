"""The conversation/session state of one residency group: a DynamoDB global table.

Creates one `aws.dynamodb.Table` in the group's primary region (the component's provider) with
a replica in every other region of the group (global tables version 2019.11.21, through
`replicas`), so a session started in one region continues in another after a failover. Items
are keyed `pk`/`sk` and expire through the `expires_at` TTL attribute. Every copy is encrypted
with the group's key in its own region, has point-in-time recovery, and is deletion-protected
when the estate protects its data.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .naming import child_opts


@dataclass
class StateStoreArgs:
    table_name: str
    primary_region: str
    regions: list[str]   # the group's regions only, the primary included
    key_arns: dict[str, pulumi.Input[str]]   # region -> the group's key there
    protect: bool
    tags: dict[str, str]


class StateStore(pulumi.ComponentResource):
    def __init__(self, name: str, args: StateStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:state_store:StateStore", name, None, opts)
        self.table_name = args.table_name
        # Replicas only in the group's own regions: for a strict group this is what keeps its
        # conversation state inside its jurisdiction (a replica is a full copy of every item).
        replica_regions = sorted(set(args.regions) - {args.primary_region})
        self.table = aws.dynamodb.Table(
            f"{name}-table", name=args.table_name, billing_mode="PAY_PER_REQUEST",
            hash_key="pk", range_key="sk",
            attributes=[{"name": "pk", "type": "S"}, {"name": "sk", "type": "S"}],
            ttl={"attribute_name": "expires_at", "enabled": True},
            stream_enabled=True, stream_view_type="NEW_AND_OLD_IMAGES",   # global tables replicate from the stream
            point_in_time_recovery={"enabled": True},
            server_side_encryption={"enabled": True, "kms_key_arn": args.key_arns[args.primary_region]},
            deletion_protection_enabled=args.protect,
            replicas=[{"region_name": region, "kms_key_arn": args.key_arns[region],
                       "point_in_time_recovery": True, "propagate_tags": True,
                       "deletion_protection_enabled": args.protect} for region in replica_regions],
            tags=args.tags, opts=child_opts(self, protect=args.protect))
        self.table_arn: pulumi.Output[str] = self.table.arn
        self.register_outputs({"table_name": self.table_name, "table_arn": self.table_arn})
