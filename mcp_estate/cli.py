"""The `estate` command: argument parsing and printing only; the work lives in importable modules.

Exit codes are part of the interface: 0 ok, 1 findings or violations, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .validate import SpecError

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="estate", description="Run MCP servers as a multi-region estate.")
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="build a stack's estate offline (no cloud credentials)")
    plan.add_argument("--stack", required=True, help="stack name: reads stacks/Pulumi.<stack>.yaml")
    plan.add_argument("--stacks-dir", type=Path, default=Path("stacks"), help="default: ./stacks")
    plan.add_argument("--out", type=Path, help="write the resources in `pulumi stack export` shape")
    args = parser.parse_args(argv)
    return {"plan": _plan}[args.command](args)


def _plan(args: argparse.Namespace) -> int:
    from .offline import FidelityError
    from .plan import plan_stack, summary

    try:
        plan = plan_stack(args.stack, args.stacks_dir)
    except SpecError as error:
        print(f"estate plan: invalid stack '{args.stack}':", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FidelityError as error:
        print("estate plan: the program builds inputs the real providers would reject:", file=sys.stderr)
        print(f"  {str(error).replace(chr(10), chr(10) + '  ')}", file=sys.stderr)
        return EXIT_FINDINGS
    print(summary(plan))
    if args.out:
        args.out.write_text(json.dumps(plan.export(), indent=1, sort_keys=True) + "\n")
        print(f"\nexport written to {args.out}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
