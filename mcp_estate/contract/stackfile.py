"""Read a stack's `stacks/Pulumi.<stack>.yaml` and its validated spec.

Every way a stack file can be wrong (missing, not YAML, no `config`, no estate object,
invalid estate) ends in a `SpecError` naming the file and the field, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .spec import EstateSpec
from .validate import Problem, SpecError, parse_spec, stack_name_problems

ESTATE_KEY = "mcp-estate:estate"


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
        document = yaml.safe_load(path.read_text())
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
        raise SpecError([Problem(f"{path}: {p.path}", p.message) for p in error.problems]) from None
