"""`McpEstate`: the estate for programs in any Pulumi language (TypeScript, YAML, Go, C#, Java).

`Estate` takes a validated `EstateSpec` (pydantic), which Pulumi's schema analyzer cannot describe to
another language. This thin facade takes the same spec as data -- the mapping a stack file holds
under `mcp-estate:estate` -- validates it with `parse_spec`, so a mistake is named exactly as in a
stack file (`servers[booking].port`), builds the `Estate` as its only child and exposes the estate's
stack outputs as typed maps. `EstateProvider` serves it as a Pulumi component package: `provider/`
(PulumiPlugin.yaml) is what `pulumi package add` reads (README, "From TypeScript or YAML").

No `from __future__ import annotations` here: the analyzer reads these annotations as live types.
"""

from typing import Any, Optional, TypedDict

import pulumi
from pulumi.errors import InputPropertiesError
from pulumi.provider import main
from pulumi.provider.experimental.component import ComponentProvider
from pulumi.provider.provider import ConstructResult
from pulumi.provider.server import ComponentInitError

from mcp_estate.contract.problems import Problem, SpecError
from mcp_estate.contract.spec import EstateSpec
from mcp_estate.contract.validate import parse_spec, stack_name_problems

from .estate import Estate

PACKAGE = "mcp-estate"   # the schema's package name: tokens are `mcp-estate:index:<Component>`


class McpEstateArgs(TypedDict):
    spec: dict[str, Any]
    ("The estate's spec: the mapping a stack file holds under `mcp-estate:estate` (README, \"Config reference\"), "
     "with the same fields and checks. Plain values only: the estate is planned from it, so it cannot wait for "
     "another resource's outputs or hold secrets.")


class McpEstate(pulumi.ComponentResource):
    # The schema's descriptions are these docstrings verbatim (the analyzer does not dedent them): the long
    # ones are written as one line, in adjacent literals.
    ("The MCP estate (every region, the edge, the watchers) from its spec, with its stack outputs. Name it "
     "`mcp-estate`, as the Python program names its estate, to get the same physical names.")

    hostname: pulumi.Output[str]
    """The public hostname clients call (`domain.hostname`)."""
    alb_dns_names: pulumi.Output[dict[str, str]]
    """Region -> DNS name of the region's ALB, the origin Cloudflare balances over."""
    alb_arns: pulumi.Output[dict[str, str]]
    """Region -> ARN of the region's ALB."""
    cluster_names: pulumi.Output[dict[str, str]]
    """Region -> name of the region's ECS cluster."""
    service_names: pulumi.Output[dict[str, dict[str, str]]]
    """Region -> server -> name of the server's ECS service in that region."""
    state_table_names: pulumi.Output[dict[str, str]]
    """Residency group -> name of its DynamoDB state table (empty at `deploy_stage: foundation`)."""
    key_arns: pulumi.Output[dict[str, str]]
    """Region -> ARN of the KMS key of the region's residency group."""
    repository_urls: pulumi.Output[dict[str, str]]
    """Server -> URL of its ECR repository (push images here, then pin them by digest)."""
    secret_arns: pulumi.Output[dict[str, str]]
    """Secret -> ARN of its Secrets Manager secret (in its home region)."""

    def __init__(self, name: str, args: McpEstateArgs, opts: Optional[pulumi.ResourceOptions] = None):
        spec = estate_spec(args.get("spec"), pulumi.get_stack())   # before registering: a bad spec builds nothing
        super().__init__(f"{PACKAGE}:index:McpEstate", name, None, opts)
        self.estate = Estate(name, spec, pulumi.ResourceOptions(parent=self))
        outputs = _flat_outputs(self.estate.stack_outputs)
        for key, value in outputs.items():
            setattr(self, key, pulumi.Output.from_input(value))
        self.register_outputs(outputs)


def estate_spec(raw: Any, stack: str) -> EstateSpec:
    """The validated spec, or a `SpecError` naming every problem (paths as in a stack file)."""
    problems = _shape_problems(raw)
    if not problems:
        try:
            spec = parse_spec(raw)
        except SpecError as error:
            problems = error.problems
    if problems := stack_name_problems(stack) + problems:
        raise SpecError(problems)
    return spec


NOT_PLAIN = "is another resource's output or a secret: the estate is planned from its spec, so give plain values"


def _shape_problems(raw: Any) -> list[Problem]:
    """What `parse_spec` cannot name for this argument: a missing or computed spec (`parse_spec`
    would name the stack file's key, and would see an Output as a bad value, not as a late one)."""
    if isinstance(raw, pulumi.Output):
        return [Problem("spec", NOT_PLAIN)]
    if not isinstance(raw, dict):
        return [Problem("spec", "must be a mapping of the estate's settings, as a stack file's mcp-estate:estate")]
    return [Problem(path, NOT_PLAIN) for path in _outputs_in(raw, "")]


def _outputs_in(value: Any, path: str) -> list[str]:
    """Where `value` holds an Output (what the provider receives for a computed or secret value),
    with list items named by their `name` as in `parse_spec`'s paths (`servers[booking].image`)."""
    if isinstance(value, pulumi.Output):
        return [path]
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _outputs_in(item, f"{path}.{key}" if path else key)]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _outputs_in(item, f"{path}[{_item_key(item, i)}]")]
    return []


def _item_key(item: Any, index: int) -> Any:
    name = item.get("name") if isinstance(item, dict) else None
    return name if isinstance(name, str) else index


def _flat_outputs(stack_outputs: dict[str, Any]) -> dict[str, Any]:
    """The estate's stack outputs (README, "Stack outputs") as one map per kind, keyed by region,
    group, server or secret: typed maps a TypeScript or YAML program indexes directly."""
    regions, groups = stack_outputs.get("regions", {}), stack_outputs["residency_groups"]
    return {
        "hostname": stack_outputs["hostname"],
        "alb_dns_names": {region: r["alb_dns_name"] for region, r in regions.items()},
        "alb_arns": {region: r["alb_arn"] for region, r in regions.items()},
        "cluster_names": {region: r["cluster_name"] for region, r in regions.items()},
        "service_names": {region: r["service_names"] for region, r in regions.items()},
        "state_table_names": {group: g["state_table_name"] for group, g in groups.items() if "state_table_name" in g},
        "key_arns": {region: arn for g in groups.values() for region, arn in g["key_arns"].items()},
        "repository_urls": stack_outputs["repository_urls"],
        "secret_arns": stack_outputs["secret_arns"]}


class EstateProvider(ComponentProvider):
    """The SDK's component provider (schema inferred from the annotations above), with one change:
    a bad spec reaches the engine as property errors (`spec.servers[booking].port: ...`), which
    it shows without the provider's traceback."""

    def __init__(self, version: str):
        super().__init__([McpEstate], PACKAGE, version=version)

    def construct(self, name: str, resource_type: str, inputs: pulumi.Inputs,
                  options: Optional[pulumi.ResourceOptions] = None) -> ConstructResult:
        try:
            return super().construct(name, resource_type, inputs, options)
        except ComponentInitError as error:
            if not isinstance(error.inner, SpecError):
                raise
            problems = error.inner.problems
            raise InputPropertiesError(f"invalid {PACKAGE} spec:\n{error.inner}", [
                {"property_path": _input_path(p.path), "reason": p.message} for p in problems]) from None


def _input_path(path: str) -> str:
    """A problem's path as a path of the component's inputs (the stack's name is not one of them)."""
    if path in ("spec", "stack", "mcp-estate:estate"):   # `parse_spec` names the whole spec by its stack-file key
        return "stack" if path == "stack" else "spec"
    return f"spec.{path}"


def serve(version: str, args: list[str]) -> None:
    """Run the provider as the plugin `pulumi package add` and the engine start (provider/__main__.py)."""
    main(EstateProvider(version), args)
