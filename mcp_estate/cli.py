"""The `estate` command: argument parsing, printing and one error boundary; the work lives in the layers below.

Each handler calls importable functions that raise typed errors; `main` is the boundary that turns
them into the message on stderr and the exit code (contract/exit_codes.py: 0 ok, 1 findings or
violations, 2 bad input).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path

import boto3

from mcp_estate.checking import check, locations, pack_config, reports
from mcp_estate.checking.check import CheckInputError
from mcp_estate.contract import exit_codes
from mcp_estate.contract.stackfile import field_lines, load_spec, stack_path
from mcp_estate.contract.validate import SpecError
from mcp_estate.offline import diff, plan
from mcp_estate.offline.runner import DuplicateUrnError, FidelityError
from mcp_estate.operations import bootstrap, lock, promote, verify
from mcp_estate.operations.bootstrap import BootstrapError
from mcp_estate.operations.image_contract import CONTAINER_USER, SCRATCH_PATH
from mcp_estate.operations.locate import LocateError, read_outputs
from mcp_estate.operations.lock import LockError
from mcp_estate.operations.promote import PromoteError
from mcp_estate.operations.verify import VerifyError
from mcp_estate.runtime import probe
from mcp_estate.runtime.probe import ProbeInputError

STACKS_DIR = Path("stacks")


class ArgumentsError(Exception):
    """A command-line value that cannot be used as given (e.g. `--args` that is not JSON)."""


def run() -> None:
    """The console script."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)   # `estate controls | head` ends quietly
    sys.exit(main())


def main(argv: list[str] | None = None) -> int:
    """Parse, run the command's handler, and map its typed errors to a message and an exit code."""
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except SpecError as error:
        return _refused(args, f"invalid stack '{args.stack}':", [str(p) for p in error.problems],
                        exit_codes.BAD_INPUT)
    except DuplicateUrnError as error:
        return _refused(args, "the engine would refuse the program: resources share a URN (name, type and "
                        "parent type):", str(error).splitlines(), exit_codes.FINDINGS)
    except FidelityError as error:
        return _refused(args, "the program builds inputs the real providers would reject:",
                        [str(error).replace("\n", "\n  ")], exit_codes.FINDINGS)
    except (CheckInputError, VerifyError, LocateError) as error:
        return _refused(args, str(error), [], exit_codes.BAD_INPUT)
    except BootstrapError as error:
        done = (["stopped after: " + "; ".join(f"{i.name} {i.status}" for i in error.done),
                 "fix the cause and rerun: every step checks before it changes anything"]
                if error.done else ["nothing was created or changed"])
        return _refused(args, str(error), done, exit_codes.BAD_INPUT)
    except LockError as error:
        return _refused(args, f"{args.server}:{args.tag} not pinned, nothing written:", error.problems, error.code)
    except PromoteError as error:
        return _refused(args, f"servers[{args.server}] not promoted, nothing written:", error.problems, error.code)
    except ArgumentsError as error:
        return _refused(args, str(error), [], exit_codes.BAD_INPUT)
    except ProbeInputError as error:
        return _refused(args, f"bad input: {error}", [], exit_codes.BAD_INPUT)


def _refused(args: argparse.Namespace, headline: str, details: list[str], code: int) -> int:
    print(f"estate {args.command}: {headline}", file=sys.stderr)
    for line in details:
        print(f"  {line}", file=sys.stderr)
    return code


# -- the commands ------------------------------------------------------------------------------

def _progress(args: argparse.Namespace) -> plan.Progress | None:
    """Progress lines on stderr (stdout stays the report) when asked, or when a person watches."""
    if args.progress or (args.progress is None and sys.stderr.isatty()):
        return plan.Progress(lambda line: print(line, file=sys.stderr, flush=True))
    return None


def _plan(args: argparse.Namespace) -> int:
    planned = plan.plan_stack(args.stack, args.stacks_dir, _progress(args), args.jobs)
    print(plan.summary(planned))
    if args.out:
        args.out.write_text(json.dumps(planned.export(), indent=1, sort_keys=True) + "\n")
        print(f"\nexport written to {args.out}")
    return exit_codes.OK


def _check(args: argparse.Namespace) -> int:
    if args.stack:
        planned = plan.plan_stack(args.stack, args.stacks_dir, _progress(args), args.jobs)
        resources, environment = planned.export()["deployment"]["resources"], planned.spec.environment
        artifact = stack_path(args.stack, args.stacks_dir)
        located = locations.resource_locations(resources, field_lines(artifact.read_text()))
    else:
        resources, artifact, located = check.read_export(args.export), args.export, {}
        # An explicit pack config decides (an export may span environments); else the tags do.
        environment = None if args.config else check.export_environment(resources)
    config = check.pack_config_for(args.config, environment, check.CONTROLS)
    if args.stack:   # the parameters the spec decides (residency, edge) come from the spec itself
        config = pack_config.with_spec(config, planned.spec)
    result = check.run_check(resources, config, check.CONTROLS)
    if args.format == "json":
        print(reports.as_json(result, located))
    elif args.format == "sarif":
        print(reports.sarif(result, check.CONTROLS, config, reports.artifact_uri(artifact), located))
    else:
        print(reports.table(result, check.CONTROLS, located))
    return exit_codes.OK if result.passed else exit_codes.FINDINGS


def _diff(args: argparse.Namespace) -> int:
    changes = diff.diff_exports(check.read_export(args.old), check.read_export(args.new))
    print(diff.as_json(changes) if args.format == "json" else diff.as_text(changes))
    return exit_codes.FINDINGS if args.exit_code and changes.changes else exit_codes.OK


def _controls(_args: argparse.Namespace) -> int:
    print(reports.controls_matrix(check.CONTROLS))
    return exit_codes.OK


def _bootstrap(args: argparse.Namespace) -> int:
    backend = bootstrap.bootstrap(boto3.Session(), args.bucket, args.region, args.key_alias)
    print(bootstrap.as_json(backend) if args.format == "json" else bootstrap.as_text(backend))
    return exit_codes.OK


def _lock(args: argparse.Namespace) -> int:
    locked = lock.lock(boto3.Session(), args.stack, args.server, args.tag, args.stacks_dir, args.allow_findings,
                       args.skip_waves)
    for warning in locked.warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    print(f"{locked.server}: {locked.tag} -> {locked.image.rsplit('@', 1)[1]}")
    print(f"  image contract met ({locked.platform}): user {CONTAINER_USER}, VOLUME {SCRATCH_PATH}")
    print(f"  {locked.scan.summary()}")
    print(f"  present in: {', '.join(locked.regions)}")
    if locked.changed:
        print(f"{locked.path}: servers[{locked.server}].image pinned (was ...@{locked.previous.rsplit('@', 1)[1]})")
    else:
        print(f"{locked.path}: servers[{locked.server}].image already pinned to this digest: nothing changed")
    return exit_codes.OK


def _promote(args: argparse.Namespace) -> int:
    if not args.start and (args.source or args.image):
        raise ArgumentsError("--from and --image go with --start")
    if args.abort:
        done = promote.abort(args.stack, args.server, args.stacks_dir)
    elif args.start:
        done = promote.start(args.stack, args.server, args.stacks_dir, args.source, args.image,
                             verify.Clients.from_environment())
    else:
        done = promote.promote(args.stack, args.server, args.stacks_dir, verify.Clients.from_environment(),
                               datetime.now(timezone.utc))
    where = f"the candidate runs in {', '.join(done.regions)}" if done.regions else "every region runs it"
    what = {"started": f"candidate ...@{done.image.rsplit('@', 1)[1]} starts at wave 1",
            "advanced": f"candidate advanced to wave {done.waves_reached}",
            "released": f"candidate released: image is now ...@{done.image.rsplit('@', 1)[1]}",
            "aborted": f"candidate removed: every region returns to ...@{done.image.rsplit('@', 1)[1]}"}
    print(f"{done.path}: servers[{done.server}]: {what[done.action]}; after review and `pulumi up`, {where}")
    return exit_codes.OK


def _verify(args: argparse.Namespace) -> int:
    _, spec = load_spec(args.stack, args.stacks_dir)
    outputs = None if args.outputs is None else read_outputs(args.outputs)
    findings = verify.verify(spec, args.stack, verify.Clients.from_environment(), outputs)
    print(verify.as_json(findings) if args.format == "json" else verify.as_text(findings, args.stack, spec))
    return exit_codes.FINDINGS if findings else exit_codes.OK


def _probe(args: argparse.Namespace) -> int:
    try:
        arguments = None if args.args is None else json.loads(args.args)
    except ValueError as error:
        raise ArgumentsError(f"--args is not JSON: {error}") from None
    token = None
    if args.token_env is not None:
        token = os.environ.get(args.token_env)
        if not token:
            raise ArgumentsError(f"--token-env {args.token_env}: the variable is unset or empty; export the "
                                 "bearer token in it (never pass a token on the command line)")
    result = probe.probe(args.url, protocol=args.protocol, tool=args.tool, arguments=arguments,
                         expect_tools_sha256=args.expect_tools_sha256, timeout=args.timeout, token=token)
    print(json.dumps(result.as_dict(), indent=2, ensure_ascii=False) if args.format == "json" else result.as_text())
    if result.failure is not None:
        failure = result.failure
        print(f"estate probe: {args.url}: {failure.step} failed ({failure.kind}): {failure.reason}", file=sys.stderr)
        return exit_codes.FINDINGS
    return exit_codes.OK


def _pack_config(args: argparse.Namespace) -> int:
    _, spec = load_spec(args.stack, args.stacks_dir)
    path = pack_config.config_path(spec.environment)
    stored = path.read_text() if path.is_file() else ""
    wanted = pack_config.render(pack_config.with_spec(json.loads(stored) if stored else {}, spec))
    if args.write:
        path.write_text(wanted)
        print(f"wrote {path}")
    elif args.check and stored != wanted:
        print(f"estate pack-config: {path} is not what stack {args.stack}'s spec generates: run "
              f"`estate pack-config --stack {args.stack} --write` and commit it", file=sys.stderr)
        return exit_codes.FINDINGS
    elif not args.check:
        print(wanted, end="")
    return exit_codes.OK


# -- the parser --------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="estate", description="Run MCP servers as a multi-region estate.")
    commands = root.add_subparsers(dest="command", required=True)
    for add in (_plan_parser, _diff_parser, _check_parser, _controls_parser, _pack_config_parser, _bootstrap_parser,
                _lock_parser, _promote_parser, _verify_parser, _probe_parser):
        add(commands)
    return root


def _stacks_dir(command: argparse.ArgumentParser) -> None:
    command.add_argument("--stacks-dir", type=Path, default=STACKS_DIR, help="default: ./stacks")


def _plan_parser(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("plan", help="build a stack's estate offline (no cloud credentials)")
    command.add_argument("--stack", required=True, help="stack name: reads stacks/Pulumi.<stack>.yaml")
    _stacks_dir(command)
    command.add_argument("--out", type=Path, help="write the resources in `pulumi stack export` shape")
    _progress_flag(command)
    command.set_defaults(handler=_plan)


def _progress_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                         help="resources registered so far, per region, on stderr every 500 "
                              "(default: when stderr is a terminal)")
    command.add_argument("--jobs", type=_jobs, default=None,
                         help="processes planning the regions side by side, the same plan as one (default: "
                              f"one per CPU from {plan.PARALLEL_FROM_SERVICES} services, a server in a region; "
                              "else 1)")


def _jobs(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of processes (1 or more)")
    return int(value)


def _diff_parser(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "diff", help="what a change does between two plan exports: create, update, replace, delete",
        description="Matches resources by URN and lists each one created, updated (with the changed inputs), "
                    "replaced or deleted, like `pulumi preview --diff`; a protected resource that would be "
                    "deleted or replaced is flagged. Exit 0 (with --exit-code: 1 when anything changes), "
                    "2 when a file is not an export.")
    command.add_argument("old", type=Path, help="the export before the change (`estate plan --out`)")
    command.add_argument("new", type=Path, help="the export after the change")
    command.add_argument("--format", choices=("text", "json"), default="text", help="default: text")
    command.add_argument("--exit-code", action="store_true", help="exit 1 when anything changes, as `git diff`")
    command.set_defaults(handler=_diff)


def _check_parser(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser("check", help="evaluate the policy pack offline, over a stack or an export",
                                  description="Exit 0 when no mandatory violation, 1 when any, 2 on bad input.")
    source = command.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", help="plan stacks/Pulumi.<stack>.yaml offline and check it")
    source.add_argument("--export", type=Path, help="check a `pulumi stack export` or `estate plan --out` file")
    _stacks_dir(command)
    _progress_flag(command)
    command.add_argument("--format", choices=("table", "json", "sarif"), default="table", help="default: table")
    command.add_argument("--config", type=Path, help="pack config, as for `pulumi preview --policy-pack-config` "
                         "(default: policies/config/<environment>.json)")
    command.set_defaults(handler=_check)


def _pack_config_parser(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "pack-config", help="print (or --write) a stack's pack config with the parameters its spec decides",
        description="Exit 0 when printed or written, 1 with --check when the stored file differs, "
                    "2 on an invalid stack.")
    command.add_argument("--stack", required=True, help="stack name: reads stacks/Pulumi.<stack>.yaml")
    _stacks_dir(command)
    action = command.add_mutually_exclusive_group()
    action.add_argument("--write", action="store_true", help="rewrite policies/config/<environment>.json")
    action.add_argument("--check", action="store_true", help="fail when that file is not what the spec gives")
    command.set_defaults(handler=_pack_config)


def _controls_parser(commands: argparse._SubParsersAction) -> None:
    commands.add_parser("controls", help="print the risk-to-control matrix (Markdown)").set_defaults(
        handler=_controls)


def _bootstrap_parser(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "bootstrap", help="create or confirm the S3 + KMS backend for Pulumi state and secrets",
        description="Idempotent: reports each part as created, in place or updated. Exit 0 when the backend "
                    "is ready, 2 when it cannot be (naming what exists).")
    command.add_argument("--bucket", required=True, help="state bucket name (globally unique)")
    command.add_argument("--region", help="default: the AWS session's region (AWS_REGION, profile)")
    command.add_argument("--key-alias", default=bootstrap.DEFAULT_ALIAS, help=f"default: {bootstrap.DEFAULT_ALIAS}")
    command.add_argument("--format", choices=("text", "json"), default="text", help="default: text")
    command.set_defaults(handler=_bootstrap)


def _lock_parser(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "lock", help="pin a server's image to the digest of a scanned tag, in the stack file",
        description="Exit 0 when pinned (or already pinned), 1 when the image breaks the image contract "
                    "(user 10001, VOLUME /tmp, the server's platform) or its scan has CRITICAL/HIGH findings, "
                    "2 when the stack, server, repository, tag, scan or a region's replica is missing.")
    command.add_argument("--stack", required=True, help="stack name: edits stacks/Pulumi.<stack>.yaml")
    command.add_argument("--server", required=True, help="server name, as in `servers`")
    command.add_argument("--tag", required=True, help="image tag to resolve in the server's repository")
    command.add_argument("--allow-findings", action="store_true",
                         help="pin even with CRITICAL/HIGH findings or no finished scan (warns)")
    command.add_argument("--skip-waves", action="store_true",
                         help="outside dev: pin every region at once instead of `estate promote` (warns)")
    _stacks_dir(command)
    command.set_defaults(handler=_lock)


def _promote_parser(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "promote", help="move a server's candidate image one wave on (or start or abort it), in the stack file",
        description="Without --start/--abort: advance the candidate by one wave when every region it runs in "
                    "is healthy (completed deployment without rollback, no alarm since it started, canary "
                    "probes succeeding since it finished, rollout.wave_bake_minutes passed); at the last wave "
                    "it becomes the released image. Reads AWS only; writes only the stack file. Exit 0 when "
                    "edited, 1 when a region blocks (each reason on stderr), 2 on bad input or unreadable AWS.")
    command.add_argument("--stack", required=True, help="stack name: edits stacks/Pulumi.<stack>.yaml")
    command.add_argument("--server", required=True, help="server name, as in `servers`")
    action = command.add_mutually_exclusive_group()
    action.add_argument("--start", action="store_true",
                        help="start a candidate at wave 1: the image released in the previous environment "
                             "(dev -> staging -> prod); in dev, the digest given with --image")
    action.add_argument("--abort", action="store_true", help="remove the candidate: every region returns to "
                                                              "the released image")
    command.add_argument("--from", dest="source", metavar="STACK",
                         help="with --start: the previous environment's stack (default: the stack named after it)")
    command.add_argument("--image", help="with --start, in dev only: the digest (sha256:...) or image to start")
    _stacks_dir(command)
    command.set_defaults(handler=_promote)


def _verify_parser(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "verify", help="compare the live estate with its stack's spec (read-only)",
        description="Exit 0 when the live estate matches the spec, 1 on findings, 2 when it could not be "
                    "read (credentials, account, access, throttling) or the stack file is invalid.")
    command.add_argument("--stack", required=True, help="stack name: reads stacks/Pulumi.<stack>.yaml")
    command.add_argument("--format", choices=("text", "json"), default="text", help="default: text")
    command.add_argument("--outputs", type=Path, metavar="FILE",
                         help="the stack's outputs (`pulumi stack output --json > FILE`, or a `pulumi stack "
                              "export`): read the state tables and secrets from them instead of finding them "
                              "by their tags (needed when one stack holds two estates)")
    _stacks_dir(command)
    command.set_defaults(handler=_verify)


def _probe_parser(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "probe", help="check one MCP server end to end, as a client would",
        description="Discover or initialize, list every tool (following pagination), optionally call one "
                    "tool, and report the protocol, each step's latency, the server and a SHA-256 of its tool "
                    "manifest. Exit 0 when every step succeeded, 1 when one failed (the reason on stderr), "
                    "2 on bad input.")
    command.add_argument("url", help="the server's Streamable HTTP endpoint, e.g. https://mcp.example.com/booking/mcp")
    command.add_argument("--format", choices=("text", "json"), default="text", help="default: text")
    command.add_argument("--protocol", choices=probe.PROTOCOLS, default="auto",
                         help=f"{probe.MODERN}: stateless; {probe.HANDSHAKE}: initialize and a session; auto "
                              f"(default): {probe.MODERN} when the server offers it")
    command.add_argument("--tool", metavar="NAME", help="also call this tool, on every probe: choose a READ-ONLY "
                         "tool, the probe cannot tell whether a call changes anything")
    command.add_argument("--args", metavar="JSON", help="the tool's arguments, a JSON object (default: {})")
    command.add_argument("--expect-tools-sha256", metavar="HEX",
                         help="fail (before any tool call) unless the tool manifest has this SHA-256")
    command.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                         help="deadline for the whole probe (default: 10)")
    command.add_argument("--token-env", metavar="VAR", help="send `Authorization: Bearer <token>`, the token read "
                         "from this environment variable (servers behind the estate's auth; a variable, so the "
                         "token stays out of shell history and process lists)")
    command.set_defaults(handler=_probe)


if __name__ == "__main__":
    run()
