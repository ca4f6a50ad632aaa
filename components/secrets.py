"""One secret of the estate: its container, encrypted and replicated, never its value.

Creates an `aws.secretsmanager.Secret` in its home region (the component's provider), encrypted
with the key of that region's residency group, with a replica in every region running a server
that reads it, each encrypted with that region's key. The value is never in code, stack files
or Pulumi state: an operator sets it out of band (`aws secretsmanager put-secret-value`), and
Secrets Manager copies it to the replicas.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .naming import child_opts

RECOVERY_WINDOW_DAYS = 30   # the maximum: a deleted secret can be restored for a month


@dataclass
class EstateSecretArgs:
    secret_name: str
    home_region: str
    replica_regions: list[str]   # the home region excluded
    key_arns: dict[str, pulumi.Input[str]]   # region -> key of the region's residency group
    protect: bool
    tags: dict[str, str]


class EstateSecret(pulumi.ComponentResource):
    def __init__(self, name: str, args: EstateSecretArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:secrets:EstateSecret", name, None, opts)
        self.secret = aws.secretsmanager.Secret(
            f"{name}-secret", name=args.secret_name, kms_key_id=args.key_arns[args.home_region],
            description="mcp-estate secret: its value is set out of band "
                        "(aws secretsmanager put-secret-value), never in code or stack files",
            recovery_window_in_days=RECOVERY_WINDOW_DAYS,
            replicas=[{"region": region, "kms_key_id": args.key_arns[region]}
                      for region in sorted(args.replica_regions)],
            # Never overwrite a same-named secret found in a replica region: it may not be ours.
            force_overwrite_replica_secret=False,
            tags=args.tags, opts=child_opts(self, protect=args.protect))
        self.arn: pulumi.Output[str] = self.secret.arn
        self.register_outputs({"arn": self.arn})
