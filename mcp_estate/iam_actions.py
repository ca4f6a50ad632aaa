"""AWS's IAM action catalogue, offline: the spec and the fidelity checks read it from the policy
pack, which ships it (the pack is published alone and may import nothing outside `policies/`)."""

from policies.iam_actions import matches_no_action, requires_wildcard_resource, unknown_actions

__all__ = ["matches_no_action", "requires_wildcard_resource", "unknown_actions"]
