"""The options and name fragments every component builds its children with (physical names and
tags are the contract's: mcp_estate/contract/names.py)."""

from __future__ import annotations

import pulumi


def child_opts(parent: pulumi.Resource, **options) -> pulumi.ResourceOptions:
    """Options for a component's child: parented to it (so it inherits its providers)."""
    return pulumi.ResourceOptions(parent=parent, **options)


def cidr_slug(cidr: str) -> str:
    """A resource-name-safe form of a CIDR (`173.245.48.0/20` -> `173-245-48-0-20`)."""
    return cidr.replace(".", "-").replace(":", "_").replace("/", "-")
