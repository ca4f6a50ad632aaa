"""Where an estate's named resources are, for the tools that read the live estate: found by the contract
tags, or read from the stack's outputs. Never computed from a name.

Every physical name starts with the `Estate` component's name, which is the program's choice (a platform
team embeds the estate under its own name, or two estates in one program), so a tool that rebuilt
`mcp-estate-<stack>-<group>-state` would read the wrong table, or none. Instead:

- `ByTags` (the default) asks the Resource Groups Tagging API (`tag:GetResources`, which returns every
  resource type but IAM users and roles) in the resource's region for the one resource of the type that
  carries the stack's tag and the tag saying what it is: `mcp-estate:residency-group` on a group's state
  table, `mcp-estate:secret` on a secret. Several such resources (a copy someone tagged, or two estates
  in one stack) are an error, never a guess: `--outputs` then says which.
- `ByOutputs` reads them from the stack's outputs (components/estate.py `_outputs`): the file
  `pulumi stack output --json` prints, or a `pulumi stack export` / `estate plan --out` document, whose
  root stack resource carries them.

A resource that is not found is `None`: for `estate verify` that is a finding (a deleted table is
drift), told with the tags and the region it looked in.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from mcp_estate.contract.names import GROUP_TAG, SECRET_TAG, STACK_TAG

TABLE_TYPE, SECRET_TYPE = "dynamodb:table", "secretsmanager:secret"   # GetResources' ResourceTypeFilters
STACK_RESOURCE = "pulumi:pulumi:Stack"
TYPE_NAMES = {"state_table": "DynamoDB table", "secret": "secret"}   # the kinds a Locator finds


class LocateError(Exception):
    """The estate's resources cannot be told apart, or its outputs lack one: one line naming what and where."""


class Locator(Protocol):
    def state_table(self, group: str, region: str) -> str | None:
        """The name of residency group `group`'s state table (in its primary region `region`)."""

    def secret(self, secret: str, region: str) -> str | None:
        """The ARN (or name) of the spec's secret `secret` in its home region `region`."""

    def where(self, kind: str, name: str, region: str) -> str:
        """How the resource was looked for, for a finding's message."""


def described_tags(tags: dict[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in tags.items())


class ByTags:
    """Each resource found by its contract tags with the tagging API of its region (asked once per resource)."""

    def __init__(self, stack: str, clients: Callable[[str, str], Any]):
        self.stack, self._clients = stack, clients
        self._found: dict[tuple, str | None] = {}

    def state_table(self, group: str, region: str) -> str | None:
        arn = self._one(TABLE_TYPE, self._table_tags(group), region)
        return None if arn is None else arn.split(":table/", 1)[1]

    def secret(self, secret: str, region: str) -> str | None:
        return self._one(SECRET_TYPE, self._secret_tags(secret), region)

    def where(self, kind: str, name: str, region: str) -> str:
        tags = self._table_tags(name) if kind == "state_table" else self._secret_tags(name)
        return f"no {TYPE_NAMES[kind]} tagged {described_tags(tags)} in {region}"

    def _table_tags(self, group: str) -> dict[str, str]:
        return {STACK_TAG: self.stack, GROUP_TAG: group}

    def _secret_tags(self, secret: str) -> dict[str, str]:
        return {STACK_TAG: self.stack, SECRET_TAG: secret}

    def _one(self, resource_type: str, tags: dict[str, str], region: str) -> str | None:
        key = (resource_type, tuple(tags.items()), region)
        if key not in self._found:
            self._found[key] = self._find(resource_type, tags, region)
        return self._found[key]

    def _find(self, resource_type: str, tags: dict[str, str], region: str) -> str | None:
        pages = self._clients("resourcegroupstaggingapi", region).get_paginator("get_resources").paginate(
            TagFilters=[{"Key": key, "Values": [value]} for key, value in tags.items()],
            ResourceTypeFilters=[resource_type])
        arns = sorted({r["ResourceARN"] for page in pages for r in page["ResourceTagMappingList"]})
        if len(arns) > 1:
            raise LocateError(f"{region}: {len(arns)} resources of type {resource_type} are tagged "
                              f"{described_tags(tags)} ({', '.join(arns)}): cannot tell which is the estate's; "
                              "remove the tags from the others, or pass the stack's outputs with --outputs")
        return arns[0] if arns else None


class ByOutputs:
    """Each resource read from the stack's outputs (`pulumi stack output --json`)."""

    def __init__(self, outputs: dict[str, Any], source: str):
        self._outputs, self._source = outputs, source

    def state_table(self, group: str, region: str) -> str | None:
        return self._value(["residency_groups", group, "state_table_name"])

    def secret(self, secret: str, region: str) -> str | None:
        return self._value(["secret_arns", secret])

    def where(self, kind: str, name: str, region: str) -> str:
        return f"the {TYPE_NAMES[kind]} named in {self._source} does not exist in {region}"

    def _value(self, keys: list[str]) -> str:
        value: Any = self._outputs
        for depth, key in enumerate(keys):
            if not isinstance(value, dict) or key not in value:
                path = ".".join(keys[:depth + 1])
                raise LocateError(f"{self._source}: the stack outputs have no `{path}`: pass the outputs of "
                                  "this stack (`pulumi stack output --json > outputs.json`) after a full deploy")
            value = value[key]
        if not isinstance(value, str):
            raise LocateError(f"{self._source}: `{'.'.join(keys)}` is {json.dumps(value)}, not a name or ARN")
        return value


def read_outputs(path: Path) -> ByOutputs:
    """The stack outputs in `path`: `pulumi stack output --json`, or a stack export (`estate plan --out`)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise LocateError(f"--outputs {path}: {error.strerror}") from None
    except ValueError as error:
        raise LocateError(f"--outputs {path}: not JSON ({error})") from None
    if isinstance(document, dict) and "deployment" in document:
        roots = [r for r in document["deployment"].get("resources", []) if r.get("type") == STACK_RESOURCE]
        if len(roots) != 1:
            raise LocateError(f"--outputs {path}: a stack export with {len(roots)} {STACK_RESOURCE} resources")
        document = roots[0].get("outputs", {})
    if not isinstance(document, dict):
        raise LocateError(f"--outputs {path}: expected the JSON object `pulumi stack output --json` prints")
    return ByOutputs(document, str(path))
