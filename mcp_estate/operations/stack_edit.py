"""Edit one server's keys in a stack file as text, so the rest stays byte for byte (comments, order, quoting).

`estate lock` and `estate promote` change a value or two where the YAML parser found them, then prove
the edit: the new text must load as the old one with exactly the intended change, and validate as an
estate. A file this cannot edit safely (anchors, aliases, tags, flow-style servers) is refused, naming
the change to make by hand. The file is replaced atomically, keeping its mode.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from mcp_estate.contract import exit_codes
from mcp_estate.contract.stackfile import ESTATE_KEY, mapping_value
from mcp_estate.contract.validate import SpecError, parse_spec


class StackEditError(Exception):
    """A refusal: one line per problem, and the exit code (1 findings, 2 bad input)."""

    def __init__(self, problems: list[str], code: int = exit_codes.BAD_INPUT):
        super().__init__("; ".join(problems))
        self.problems, self.code = problems, code


def server_node(text: str, server: str) -> yaml.MappingNode:
    """The `- name: <server>` mapping under `config.<estate>.servers` (the last one, as loading keeps)."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    servers = child(child(child(root, "config"), ESTATE_KEY), "servers")
    if not isinstance(servers, yaml.SequenceNode):
        raise StackEditError([f"`{ESTATE_KEY}.servers` is not a list"])
    items = [n for n in servers.value if isinstance(n, yaml.MappingNode)
             and getattr(child(n, "name", required=False), "value", None) == server]
    if not items:
        raise StackEditError([f"no `- name: {server}` item under `{ESTATE_KEY}.servers`"])
    return items[-1]


def child(node: Any, key: str, required: bool = True) -> Any:
    """The value of `key` in a mapping node; the last one wins, as when the file is loaded."""
    found = mapping_value(node, key)
    if found is None and required:
        raise StackEditError([f"no `{key}:` found where the stack file should have one "
                              f"(config.{ESTATE_KEY}.servers)"])
    return found


def one_line_scalar(node: Any, field: str) -> yaml.ScalarNode:
    if not isinstance(node, yaml.ScalarNode) or node.style not in (None, "'", '"') \
            or node.start_mark.line != node.end_mark.line:
        raise StackEditError([f"{field} is not a one-line scalar: write it on one line and rerun"])
    return node


def replace_scalar(text: str, node: yaml.ScalarNode, value: str) -> str:
    """`text` with the scalar at `node` replaced by `value`, in the node's quoting."""
    quote = {"'": "'", '"': '"'}.get(node.style, "")
    return f"{text[:node.start_mark.index]}{quote}{value}{quote}{text[node.end_mark.index:]}"


def remove_key(text: str, mapping: yaml.MappingNode, key: str) -> str:
    """`text` without the lines of `key` and its value (from the key's line to the value's last scalar)."""
    key_node, value = next((k, v) for k, v in reversed(mapping.value) if k.value == key)
    lines = text.splitlines(keepends=True)
    last = max(n.end_mark.line for n in _scalars(value))
    return "".join(lines[:key_node.start_mark.line] + lines[last + 1:])


def insert_line_after(text: str, key_node: yaml.ScalarNode, value_node: yaml.Node, line: str) -> str:
    """`text` with `line` added after `value_node`'s line, indented as `key_node`: a sibling key."""
    lines = text.splitlines(keepends=True)
    at = value_node.end_mark.line + 1
    return "".join(lines[:at] + [" " * key_node.start_mark.column + line + "\n"] + lines[at:])


def key_node(mapping: yaml.MappingNode, key: str) -> yaml.ScalarNode:
    return next(k for k, _ in reversed(mapping.value) if k.value == key)


def _scalars(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for k, v in node.value for n in (k, *_scalars(v))]
    if isinstance(node, yaml.SequenceNode):
        return [n for v in node.value for n in _scalars(v)]
    return [node]


def check_edit(old: str, new: str, server: str, change: Callable[[dict], None], by_hand: str) -> None:
    """The new file must load as the old one with `change` applied to `server`'s item, and be a valid
    estate; else the edit is refused, telling what to do by hand."""
    expected = yaml.safe_load(old)
    for item in expected["config"][ESTATE_KEY]["servers"]:
        if isinstance(item, dict) and item.get("name") == server:
            change(item)
    try:
        after = yaml.safe_load(new)
    except yaml.YAMLError:
        after = None
    if after != expected:
        raise StackEditError([f"servers[{server}] uses YAML this edit cannot change safely (an anchor, alias, "
                              f"tag or flow style): {by_hand}"])
    try:
        parse_spec(after["config"][ESTATE_KEY])
    except SpecError as error:
        raise StackEditError([f"the edited stack would be invalid: {p.path}: {p.message}"
                              for p in error.problems]) from None


def write_atomically(path: Path, text: str) -> None:
    """Replace the file in one step, keeping its mode: readers see the old or the new file, never half."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(text.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, path.stat().st_mode & 0o7777)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
