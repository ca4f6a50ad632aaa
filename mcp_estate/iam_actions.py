"""AWS's IAM action and condition-key catalogue, offline: the spec and the fidelity checks read it from
the policy pack, which ships it (the pack is published alone and may import nothing outside `policies/`)."""

from policies.iam_actions import (condition_key_defined, matches_no_action, requires_wildcard_resource,
                                  services_of, unknown_actions)

__all__ = ["condition_key_defined", "matches_no_action", "requires_wildcard_resource", "services_of",
           "unknown_actions"]
