"""The Pulumi program: validate the stack's `mcp-estate:estate` config, then build the estate."""

import pulumi

from mcp_estate.components.estate import estate_stack
from mcp_estate.contract.validate import SpecError, parse_spec, stack_name_problems

try:
    if problems := stack_name_problems(pulumi.get_stack()):
        raise SpecError(problems)
    spec = parse_spec(pulumi.Config().require_object("estate"))
except SpecError as error:   # a RunError is shown without a traceback
    raise pulumi.RunError(f"invalid mcp-estate:estate config:\n{error}") from None

estate_stack(spec)
