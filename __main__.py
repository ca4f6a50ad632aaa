"""The Pulumi program: validate the stack's `mcp-estate:estate` config, then build the estate.

A stack named `<estate>.<part>` builds one part of the estate of stack `<estate>` (spec `layout:
stack-per-region`, components/stack_layout.py): its spec is read from that stack's file.
"""

from pathlib import Path

import pulumi

from mcp_estate.components.stack_layout import layout_stack, part_of, part_problems
from mcp_estate.contract.problems import Problem
from mcp_estate.contract.stackfile import load_spec
from mcp_estate.contract.validate import SpecError, parse_spec, stack_name_problems

STACKS_DIR = Path(__file__).resolve().parent / "stacks"   # Pulumi.yaml: stackConfigDir

try:
    stack = pulumi.get_stack()
    estate, part = part_of(stack)
    if problems := stack_name_problems(estate):
        raise SpecError(problems)
    if part is None:
        spec = parse_spec(pulumi.Config().require_object("estate"))
    elif pulumi.Config().get_object("estate") is not None:
        raise SpecError([Problem("mcp-estate:estate", f"stack {stack} is a part of the estate of stack {estate}, "
                                 f"whose file holds the spec: remove it from Pulumi.{stack}.yaml")])
    else:
        spec = load_spec(estate, STACKS_DIR)[1]
    if problems := part_problems(spec, stack):
        raise SpecError(problems)
except SpecError as error:   # a RunError is shown without a traceback
    raise pulumi.RunError(f"invalid mcp-estate:estate config:\n{error}") from None

layout_stack(spec, stack)
