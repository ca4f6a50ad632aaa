"""`estate diff`: what a change does, between two plan exports (`estate plan --out`, `pulumi stack export`).

Resources are matched by URN, as the engine matches them: a URN only in the new export is created, one
only in the old is deleted, one in both with different inputs is updated or replaced. For an update
the changed input paths are listed leaf by leaf; JSON held in strings (IAM policies, container
definitions) is expanded, so a changed image names `containerDefinitions<json>[0].image`.

Replacement is the provider's decision (its schema's ForceNew), which is not available offline.
What is used instead, and said in the output:
- a short table of resource types whose complete ForceNew set was read from the Terraform provider's
  schema that pulumi-aws bridges (`internal/service/<svc>/<resource>.go`): for those the verdict is
  `update` or `replace`;
- the SDK docstrings: a property documented as "Changing this forces a new resource" (and the
  similar phrasings) replaces, whatever the type;
- a name chosen at creation: `name` / `namePrefix` of a type that autonames (its Args has
  `namePrefix`), and `region` (a resource cannot move region in place).
Any other update is reported as `update (may replace)`: `pulumi preview --diff` is the authority.
A protected resource that would be deleted or replaced is flagged: the engine refuses to delete it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any, Iterator

from pulumi.runtime import rpc

from .fidelity import _args_class, _fields

# How an export marks a secret: {sig key: secret sig, "plaintext" | "ciphertext" | "value": ...}.
SECRET_MARK = (rpc._special_sig_key, rpc._special_secret_sig)

CREATE, UPDATE, REPLACE, DELETE = "create", "update", "replace", "delete"
SYMBOLS = {CREATE: "+", UPDATE: "~", REPLACE: "+-", DELETE: "-"}


# -- flattening: one leaf per value, JSON strings expanded (also the golden snapshots' text) ------

def property_leaves(value: Any, path: str) -> Iterator[tuple[str, str, bool]]:
    """(path, JSON text, secret?) of every leaf of `value`; a secret is one leaf, never expanded,
    compared by its (plain or cipher) text and shown as `[secret]`."""
    if isinstance(value, dict) and value.get(SECRET_MARK[0]) == SECRET_MARK[1]:
        yield path, json.dumps({k: v for k, v in value.items() if k != SECRET_MARK[0]}, sort_keys=True), True
        return
    if isinstance(value, str) and value[:1] in "[{":
        try:
            value, path = json.loads(value), f"{path}<json>"
        except json.JSONDecodeError:
            pass
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from property_leaves(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from property_leaves(item, f"{path}[{index}]")
    else:
        yield path, json.dumps(value, sort_keys=True), False


# -- the diff ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PropertyChange:
    path: str
    old: str | None          # JSON text; None when the path is new
    new: str | None          # None when the path is gone
    secret: bool
    replaces: bool           # this property forces replacement (as far as known offline)


@dataclass(frozen=True)
class ResourceChange:
    urn: str
    type: str
    op: str                  # create | update | replace | delete
    properties: tuple[PropertyChange, ...]
    protected: bool          # `protect` set on the resource as it is now (the old export)
    may_replace: bool = False   # an update whose replacement the offline knowledge cannot rule out

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[1]

    @property
    def refused(self) -> bool:
        """The engine refuses to delete a protected resource, so `pulumi up` would stop here."""
        return self.protected and self.op in (DELETE, REPLACE)


@dataclass(frozen=True)
class Diff:
    changes: tuple[ResourceChange, ...]
    unchanged: int

    def counts(self) -> dict[str, int]:
        return {op: sum(c.op == op for c in self.changes) for op in (CREATE, UPDATE, REPLACE, DELETE)}


def diff_exports(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> Diff:
    """The change from `old` to `new` (each an export's `deployment.resources`), in the new
    export's order, then the deletions in the old one's."""
    old_by_urn, new_by_urn = {r["urn"]: r for r in old}, {r["urn"]: r for r in new}
    changes, unchanged = [], 0
    for urn, resource in new_by_urn.items():
        if urn not in old_by_urn:
            changes.append(ResourceChange(urn, resource["type"], CREATE, (), False))
        elif change := _update(old_by_urn[urn], resource):
            changes.append(change)
        else:
            unchanged += 1
    changes += [ResourceChange(urn, r["type"], DELETE, (), bool(r.get("protect")))
                for urn, r in old_by_urn.items() if urn not in new_by_urn]
    return Diff(tuple(changes), unchanged)


def _update(old: dict[str, Any], new: dict[str, Any]) -> ResourceChange | None:
    before = {p: (v, s) for p, v, s in property_leaves(old.get("inputs") or {}, "")}
    after = {p: (v, s) for p, v, s in property_leaves(new.get("inputs") or {}, "")}
    forcing, complete = forcing_inputs(new["type"]) if new.get("custom") else (frozenset(), True)
    properties = []
    for path in sorted(before.keys() | after.keys(), key=_natural):
        was, now = before.get(path, (None, False)), after.get(path, (None, False))
        if was[0] != now[0]:
            properties.append(PropertyChange(path, was[0], now[0], was[1] or now[1], _root(path) in forcing))
    if bool(old.get("protect")) != bool(new.get("protect")):   # an option, shown as pulumi shows it
        properties.append(PropertyChange("[protect]", json.dumps(bool(old.get("protect"))),
                                         json.dumps(bool(new.get("protect"))), False, False))
    if not properties:
        return None
    replaced = any(p.replaces for p in properties)
    inputs_changed = any(_root(p.path) not in IN_PLACE for p in properties)
    return ResourceChange(new["urn"], new["type"], REPLACE if replaced else UPDATE, tuple(properties),
                          bool(old.get("protect")), may_replace=not (replaced or complete) and inputs_changed)


def _natural(path: str) -> list[Any]:
    """`metrics[2]` before `metrics[10]`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def _root(path: str) -> str:
    """The top-level input a leaf belongs to: `containerDefinitions<json>[0].image` -> `containerDefinitions`."""
    return re.split(r"[.\[<]", path, maxsplit=1)[0]


# -- what forces replacement -----------------------------------------------------------------

# Types whose every ForceNew input was read from the Terraform provider's schema (pulumi-aws bridges
# it); for these an input not listed is a sure in-place update. ALL_BUT: everything but these.
#  - aws_ecs_task_definition (internal/service/ecs/task_definition.go): a task definition revision is
#    immutable; every argument is ForceNew except tags, skip_destroy and track_latest.
#  - aws_subnet (internal/service/ec2/vpc_subnet.go): the ForceNew arguments below; ipv6_cidr_block
#    only when assign_ipv6_address_on_creation was on (counted as replacing: the safe side).
ALL_BUT = "all but"
VERIFIED_FORCE_NEW: dict[str, tuple[str, frozenset[str]]] = {
    "aws:ecs/taskDefinition:TaskDefinition": (ALL_BUT, frozenset({"tags", "skipDestroy", "trackLatest"})),
    "aws:ec2/subnet:Subnet": ("only", frozenset({
        "availabilityZone", "availabilityZoneId", "cidrBlock", "ipv4IpamPoolId", "ipv4NetmaskLength",
        "ipv6CidrBlock", "ipv6IpamPoolId", "ipv6Native", "ipv6NetmaskLength", "outpostArn", "vpcId",
        "region"})),
}

# Inputs no AWS resource replaces for: the provider's shared tags schema (internal/tags: TagsSchema) is
# not ForceNew, tags are changed through the tagging APIs. `[protect]` is an engine option, not an input.
IN_PLACE = frozenset({"tags", "[protect]"})

# "Changing this forces a new resource (to be created)", "Changing this value forces replacement",
# "Forces new resource", "will force a new resource": the SDK docstrings' phrasings (pulumi-aws 7.51,
# pulumi-cloudflare 6.23).
_FORCES_NEW = re.compile(r"\bforces? (?:a )?(?:new resource|replacement|resource replacement)"
                         r"|\bwill force a (?:new resource|replacement)", re.IGNORECASE)


@cache
def forcing_inputs(type_token: str) -> tuple[frozenset[str], bool]:
    """(the inputs of `type_token` whose change replaces the resource, whether that set is complete).
    Complete only for the verified types; otherwise what the docstrings and naming tell."""
    names = _wire_names(type_token)
    if type_token in VERIFIED_FORCE_NEW:
        kind, listed = VERIFIED_FORCE_NEW[type_token]
        return (frozenset(names.values()) - listed if kind == ALL_BUT else listed), True
    args_cls = _args_class(type_token) if names else None
    documented = {wire for py, wire in names.items()
                  if _FORCES_NEW.search(getattr(getattr(args_cls, py, None), "__doc__", None) or "")}
    autonamed = {"name", "namePrefix"} if "namePrefix" in names.values() else set()
    regional = {"region"} if type_token.startswith("aws:") and "region" in names.values() else set()
    return frozenset(documented | autonamed | regional), False


@cache
def _wire_names(type_token: str) -> dict[str, str]:
    """Python name -> engine name of the type's inputs; empty for a type the SDKs do not know."""
    try:
        return dict(_fields(_args_class(type_token))[2])
    except (ImportError, KeyError, AttributeError, ValueError):
        return {}


# -- reports -----------------------------------------------------------------------------------

def as_text(diff: Diff) -> str:
    """Like `pulumi preview --diff`: a line per changed resource, its changed inputs under an
    update or a replacement, then the counts."""
    lines = []
    for change in diff.changes:
        note = ", may replace" if change.may_replace else ""
        lines.append(f"{SYMBOLS[change.op]} {change.type} {change.name}: ({change.op}{note})")
        if change.refused:
            lines.append(f"    !! PROTECTED: `pulumi up` refuses to {change.op} it; unprotect it first "
                         "(protect: false) if this is intended")
        lines += [f"    {_property_line(p)}" for p in change.properties]
    counts = diff.counts()
    lines += ["", "Resources:"] + [f"    {SYMBOLS[op]} {n} to {op}" for op, n in counts.items() if n]
    lines.append(f"    {diff.unchanged} unchanged")
    if may := sum(c.may_replace for c in diff.changes):
        lines.append(f"{may} update(s) may replace: offline, replacement is known only from the SDK's docs; "
                     "`pulumi preview --diff` decides")
    if refused := [c.name for c in diff.changes if c.refused]:
        lines.append(f"!! {len(refused)} protected resource(s) would be deleted or replaced: {', '.join(refused)}")
    return "\n".join(lines)


def _property_line(change: PropertyChange) -> str:
    old, new = (None if v is None else "[secret]" if change.secret else v for v in (change.old, change.new))
    forces = " (forces replacement)" if change.replaces else ""
    if old is None:
        return f"+ {change.path}: {new}{forces}"
    if new is None:
        return f"- {change.path}: {old}{forces}"
    return f"~ {change.path}: {old} => {new}{forces}"


def as_json(diff: Diff) -> str:
    return json.dumps({
        "summary": {**diff.counts(), "unchanged": diff.unchanged},
        "refused": [c.urn for c in diff.changes if c.refused],
        "changes": [{"urn": c.urn, "type": c.type, "name": c.name, "op": c.op, "mayReplace": c.may_replace,
                     "protected": c.protected, "refused": c.refused,
                     "properties": [_property_json(p) for p in c.properties]} for c in diff.changes],
    }, indent=2)


def _property_json(change: PropertyChange) -> dict[str, Any]:
    def shown(text: str | None) -> Any:
        return None if text is None else "[secret]" if change.secret else json.loads(text)
    op = "add" if change.old is None else "delete" if change.new is None else "update"
    return {"path": change.path, "op": op, "old": shown(change.old), "new": shown(change.new),
            "forcesReplacement": change.replaces}
