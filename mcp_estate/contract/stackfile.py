"""Read a stack's `stacks/Pulumi.<stack>.yaml` and its validated spec.

Every way a stack file can be wrong (missing, not YAML, a key given twice, no `config`, no estate
object, invalid estate) ends in a `SpecError` naming the file and the field, never a traceback.
`field_lines` maps each spec field to its line, so findings can point at what caused them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .spec import EstateSpec
from .validate import Problem, SpecError, parse_spec, stack_name_problems

ESTATE_KEY = "mcp-estate:estate"
_PARENT = re.compile(r"(\.[^.\[\]]+|\[[^\]]*\])$")   # the last `.field` or `[item]` of a spec path


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML that refuses a key given twice in one mapping: PyYAML keeps the last silently, Pulumi's
    YAML parser refuses the file, so a reviewer could read one value while another is deployed."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (lines {seen[key]} and {line}): keep one",
                    key_node.start_mark)
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """The document, refusing duplicate keys (see `_UniqueKeyLoader`)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)   # noqa: S506 - a SafeLoader subclass


def stack_path(stack: str, stacks_dir: Path) -> Path:
    return stacks_dir / f"Pulumi.{stack}.yaml"


def load_config(stack: str, stacks_dir: Path) -> dict[str, Any]:
    """The stack file's `config` mapping (all namespaces: `aws:region`, `mcp-estate:estate`...)."""
    path = stack_path(stack, stacks_dir)
    problems = stack_name_problems(stack)
    if problems:
        raise SpecError(problems)
    if not path.is_file():
        known = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in stacks_dir.glob("Pulumi.*.yaml"))
        raise SpecError([Problem(str(path), f"no such stack file (stacks in {stacks_dir}: "
                                            f"{', '.join(known) or 'none'})")])
    try:
        document = load_yaml(path.read_text())
    except yaml.YAMLError as error:
        raise SpecError([Problem(str(path), f"not valid YAML: {error}")]) from None
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict) or ESTATE_KEY not in config:
        raise SpecError([Problem(str(path), f"needs a `config:` mapping with the `{ESTATE_KEY}` object "
                                            "(see the config reference in README.md)")])
    return config


def load_spec(stack: str, stacks_dir: Path) -> tuple[dict[str, Any], EstateSpec]:
    config = load_config(stack, stacks_dir)
    try:
        return config, parse_spec(config[ESTATE_KEY])
    except SpecError as error:
        path = stack_path(stack, stacks_dir)
        lines = field_lines(path.read_text())
        raise SpecError([Problem(f"{path}:{closest_line(p.path, lines)}: {p.path}", p.message)
                         for p in error.problems]) from None


def closest_line(field: str, lines: dict[str, int]) -> int:
    """The line of `field`, else of its nearest written ancestor (a default is not in the file),
    else of the estate object."""
    while field in lines or _PARENT.search(field):
        if field in lines:
            return lines[field]
        field = _PARENT.sub("", field)
    return min(lines.values(), default=2) - 1


def field_lines(text: str) -> dict[str, int]:
    """Each field of the estate object, as `Problem` paths name it (`servers[booking].image`,
    `residency_groups[eu].regions[eu-west-1]`), mapped to its 1-based line in the stack file."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    estate = mapping_value(mapping_value(root, "config"), ESTATE_KEY)
    lines: dict[str, int] = {}
    if estate is not None:
        _walk(estate, "", lines)
    return lines


def mapping_value(node: Any, key: str) -> Any:
    """The value node of `key` in a mapping node (the last one wins, as when the file is loaded), or None."""
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in reversed(node.value) if isinstance(k, yaml.ScalarNode) and k.value == key), None)


def _walk(node: Any, path: str, lines: dict[str, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = f"{path}.{key.value}" if path else str(key.value)
            lines[child] = key.start_mark.line + 1
            _walk(value, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            name = mapping_value(item, "name")
            label = name.value if isinstance(name, yaml.ScalarNode) else str(index)
            child = f"{path}[{label}]"
            lines[child] = item.start_mark.line + 1
            _walk(item, child, lines)
