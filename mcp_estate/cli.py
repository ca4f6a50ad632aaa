"""The `estate` command: argument parsing and printing only; the work lives in importable modules.

Exit codes are part of the interface: 0 ok, 1 findings or violations, 2 bad input.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
from pathlib import Path

from .validate import SpecError

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT = 0, 1, 2

# Modules of mcp_estate with `add_command(subparsers)`: one subcommand each, its work inside.
OPERATIONS: tuple[str, ...] = ("bootstrap", "lock", "verify", "probe", "pack_config")


def run() -> None:
    """The console script."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)   # `estate controls | head` ends quietly
    sys.exit(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="estate", description="Run MCP servers as a multi-region estate.")
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="build a stack's estate offline (no cloud credentials)")
    plan.add_argument("--stack", required=True, help="stack name: reads stacks/Pulumi.<stack>.yaml")
    plan.add_argument("--stacks-dir", type=Path, default=Path("stacks"), help="default: ./stacks")
    plan.add_argument("--out", type=Path, help="write the resources in `pulumi stack export` shape")
    check = commands.add_parser("check", help="evaluate the policy pack offline, over a stack or an export",
                                description="Exit 0 when no mandatory violation, 1 when any, 2 on bad input.")
    source = check.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="plan stacks/Pulumi.<stack>.yaml offline and check it")
    source.add_argument("--export", type=Path, help="check a `pulumi stack export` or `estate plan --out` file")
    check.add_argument("--stacks-dir", type=Path, default=Path("stacks"), help="default: ./stacks")
    check.add_argument("--format", choices=("table", "json", "sarif"), default="table", help="default: table")
    check.add_argument("--config", type=Path, help="pack config, as for `pulumi preview --policy-pack-config` "
                       "(default: policies/config/<environment>.json)")
    commands.add_parser("controls", help="print the risk-to-control matrix (Markdown)")
    for name in OPERATIONS:   # each adds its subcommand and sets `handler`
        importlib.import_module(f".{name}", __package__).add_command(commands)
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None) or {"plan": _plan, "check": _check, "controls": _controls}[args.command]
    return handler(args)


def _planned(command: str, stack: str, stacks_dir: Path):
    """The stack's offline plan, or the exit code once the reason there is none is printed."""
    from .offline import FidelityError
    from .plan import plan_stack

    try:
        return plan_stack(stack, stacks_dir)
    except SpecError as error:
        print(f"estate {command}: invalid stack '{stack}':", file=sys.stderr)
        for problem in error.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FidelityError as error:
        print(f"estate {command}: the program builds inputs the real providers would reject:", file=sys.stderr)
        print(f"  {str(error).replace(chr(10), chr(10) + '  ')}", file=sys.stderr)
        return EXIT_FINDINGS


def _plan(args: argparse.Namespace) -> int:
    from .plan import summary

    plan = _planned("plan", args.stack, args.stacks_dir)
    if isinstance(plan, int):
        return plan
    print(summary(plan))
    if args.out:
        args.out.write_text(json.dumps(plan.export(), indent=1, sort_keys=True) + "\n")
        print(f"\nexport written to {args.out}")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from . import pack_config, reports
    from .check import CONTROLS, CheckInputError, export_environment, pack_config_for, read_export, run_check
    from .stackfile import stack_path

    try:
        if args.stack:
            plan = _planned("check", args.stack, args.stacks_dir)
            if isinstance(plan, int):
                return plan
            resources, environment = plan.export()["deployment"]["resources"], plan.spec.environment
            artifact = stack_path(args.stack, args.stacks_dir)
        else:
            resources, artifact = read_export(args.export), args.export
            # An explicit pack config decides (an export may span environments); else the tags do.
            environment = None if args.config else export_environment(resources)
        config = pack_config_for(args.config, environment, CONTROLS)
        if args.stack:   # the parameters the spec decides (residency, edge) come from the spec itself
            config = pack_config.with_spec(config, plan.spec)
    except CheckInputError as error:
        print(f"estate check: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    result = run_check(resources, config, CONTROLS)
    if args.format == "json":
        print(reports.as_json(result))
    elif args.format == "sarif":
        print(reports.sarif(result, CONTROLS, config, reports.artifact_uri(artifact)))
    else:
        print(reports.table(result, CONTROLS))
    return EXIT_OK if result.passed else EXIT_FINDINGS


def _controls(_args: argparse.Namespace) -> int:
    from .check import CONTROLS
    from .reports import controls_matrix

    print(controls_matrix(CONTROLS))
    return EXIT_OK


if __name__ == "__main__":
    run()
