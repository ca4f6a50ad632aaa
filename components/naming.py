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


def moved(old_name: str, old_parent: pulumi.Resource | None) -> dict:
    """Options for a child that was `old_name` directly under `old_parent` before the estate was
    split into parts (README: "Upgrading"): the alias lets the engine move it, and every resource
    below it (their names start with its name), instead of replacing it. Nothing without an old parent."""
    return {"aliases": [pulumi.Alias(name=old_name, parent=old_parent)]} if old_parent is not None else {}
