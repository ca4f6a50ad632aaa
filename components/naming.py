"""Names, options and tags every component builds its children with.

A child's URN holds only its parent's *type*, not its name, so every child name starts
with its component's name (`booking-us-east-1-task`), which itself comes from stable spec
names (server, region, group), never from a list position.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pulumi


def child_opts(parent: pulumi.Resource, **options) -> pulumi.ResourceOptions:
    """Options for a component's child: parented to it (so it inherits its providers)."""
    return pulumi.ResourceOptions(parent=parent, **options)


def cidr_slug(cidr: str) -> str:
    """A resource-name-safe form of a CIDR (`173.245.48.0/20` -> `173-245-48-0-20`)."""
    return cidr.replace(".", "-").replace(":", "_").replace("/", "-")


@dataclass(frozen=True)
class ContractTags:
    """The tags of design.md §5 (CONTRACT): `estate verify` finds live resources by them."""

    stack: str
    environment: str
    owner: str

    def __call__(self, *, region: str | None = None, server: str | None = None,
                 group: str | None = None) -> dict[str, str]:
        tags = {"mcp-estate:stack": self.stack, "mcp-estate:environment": self.environment,
                "mcp-estate:owner": self.owner}
        for key, value in (("region", region), ("server", server), ("residency-group", group)):
            if value is not None:
                tags[f"mcp-estate:{key}"] = value
        return tags


IAM_NAME_LIMIT = 64   # IAM role and policy names


def iam_name(name: str) -> str:
    """`name` if IAM accepts its length, else its start and a hash of the whole: still unique, still
    stable (a long stack or estate name must not make `pulumi up` fail on a role's name)."""
    if len(name) <= IAM_NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:IAM_NAME_LIMIT - len(digest) - 1].rstrip('-')}-{digest}"
