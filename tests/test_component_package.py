"""Usable from any Pulumi language: `McpEstate` served as a component package (components/package.py,
provider/). The schema the SDK's analyzer generates is what `pulumi package add` turns into a
TypeScript or YAML SDK; the facade plans the same estate as the Python program; a bad spec is refused
with the field named as in a stack file, before anything is registered."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import grpc
import pulumi
import pytest
from conftest import ROOT, Plan, run_program, shipped_plan, stack_config
from google.protobuf import empty_pb2
from pulumi.errors import InputPropertiesError, InputPropertyError
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc
from test_first_deploy import foundation_of
from test_stack_outputs import DEV_OUTPUTS

from mcp_estate.components.package import EstateProvider, McpEstate
from mcp_estate.contract.problems import SpecError
from mcp_estate.contract.validate import parse_spec

TOKEN = "mcp-estate:index:McpEstate"
VERSION = "0.1.0"   # pyproject.toml's, which provider/__main__.py serves
MAPS = {"albDnsNames", "albArns", "clusterNames", "keyArns", "repositoryUrls", "secretArns", "stateTableNames"}


def dev_raw() -> dict:
    return copy.deepcopy(stack_config("dev")["mcp-estate:estate"])


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(EstateProvider(VERSION).schema)


# -- the schema other languages are generated from ----------------------------------------------------

def test_the_package_is_one_component_named_mcp_estate(schema):
    assert (schema["name"], schema["version"], list(schema["resources"]), schema["types"]) == \
        ("mcp-estate", VERSION, [TOKEN], {})
    assert schema["resources"][TOKEN]["isComponent"] is True
    assert schema["resources"][TOKEN]["description"].startswith("The MCP estate (every region")


def test_its_one_input_is_the_spec_as_a_plain_map_of_any_value(schema):
    """Plain: a TypeScript SDK types it as an object, not an Input, so the compiler refuses another
    resource's output; the estate is planned from it (style: known at plan time)."""
    component = schema["resources"][TOKEN]
    spec = component["inputProperties"]["spec"]
    assert list(component["inputProperties"]) == ["spec"] and component["requiredInputs"] == ["spec"]
    assert (spec["type"], spec["plain"], spec["additionalProperties"]["$ref"]) == ("object", True, "pulumi.json#/Any")
    assert "under `mcp-estate:estate`" in spec["description"] and "Plain values only" in spec["description"]


def test_its_outputs_are_the_stack_outputs_as_typed_maps(schema):
    properties = schema["resources"][TOKEN]["properties"]
    shapes = {name: p.get("type") if "additionalProperties" not in p else
              {"map": p["additionalProperties"].get("type"),
               "of": p["additionalProperties"].get("additionalProperties", {}).get("type")}
              for name, p in properties.items()}
    assert shapes == {"hostname": "string", "serviceNames": {"map": "object", "of": "string"},
                      **{name: {"map": "string", "of": None} for name in MAPS}}
    assert schema["resources"][TOKEN]["required"] == sorted(properties)


def test_every_input_and_output_is_described_on_one_line(schema):
    component = schema["resources"][TOKEN]
    described = {**component["inputProperties"], **component["properties"]}
    assert all(p["description"] and "\n" not in p["description"] for p in described.values())
    assert component["properties"]["serviceNames"]["description"] == \
        "Region -> server -> name of the server's ECS service in that region."


def test_the_plugin_serves_that_schema_to_the_engine(schema):
    """provider/__main__.py as the Python language host runs it (`python provider/ <engine>`): it
    prints the port it listens on (127.0.0.1, chosen by the OS) and answers GetSchema."""
    plugin = subprocess.Popen([sys.executable, str(ROOT / "provider"), "127.0.0.1:1"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(plugin.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = provider_pb2_grpc.ResourceProviderStub(channel)
            served = stub.GetSchema(provider_pb2.GetSchemaRequest(version=0), timeout=60).schema
            info = stub.GetPluginInfo(empty_pb2.Empty(), timeout=60)
    finally:
        plugin.terminate()
        plugin.communicate(timeout=60)
    assert (json.loads(served), info.version) == (schema, VERSION)


# -- the same estate as the Python program ------------------------------------------------------------

def construct(raw, name: str = "mcp-estate", captured: dict | None = None) -> None:
    """Construct the facade as the engine asks the plugin to (schema names in, schema names out)."""
    result = EstateProvider(VERSION).construct(name, TOKEN, {"spec": raw})
    if captured is not None:
        pulumi.Output.all(**result.state).apply(captured.update)


@pytest.fixture(scope="module")
def facade() -> tuple[Plan, dict]:
    state: dict = {}
    return run_program(lambda: construct(dev_raw(), captured=state), "dev", stack_config("dev")), state


def identity(plan: Plan) -> dict[tuple[str, str], dict]:
    return {(r.type, r.name): r.inputs for r in plan.resources if r.type != "pulumi:pulumi:Stack"}


def test_the_facade_plans_exactly_the_resources_of_the_python_program(facade):
    plan, _ = facade
    ours, python = identity(plan), identity(shipped_plan("dev"))
    assert ours.pop((TOKEN, "mcp-estate")) == {}
    assert ours.keys() == python.keys()
    assert [key for key in ours if ours[key] != python[key]] == []


def test_the_estate_is_the_facades_only_child(facade):
    plan, _ = facade
    outer = plan.one(TOKEN)
    assert [(r.type, r.name) for r in plan.children_of(outer)] == [("mcp-estate:index:Estate", "mcp-estate")]


def test_the_facades_outputs_are_the_dev_stack_outputs_by_region_group_and_server(facade):
    _, state = facade
    region, group = DEV_OUTPUTS["regions"]["eu-west-1"], DEV_OUTPUTS["residency_groups"]["dev"]
    assert state == {
        "hostname": "mcp.dev.example.travel",
        "albDnsNames": {"eu-west-1": region["alb_dns_name"]},
        "albArns": {"eu-west-1": region["alb_arn"]},
        "clusterNames": {"eu-west-1": "mcp-estate-dev-eu-west-1"},
        "serviceNames": {"eu-west-1": {"booking": region["service_names"]["booking"]}},
        "stateTableNames": {"dev": "mcp-estate-dev-dev-state"},
        "keyArns": group["key_arns"],
        "repositoryUrls": DEV_OUTPUTS["repository_urls"],
        "secretArns": {}}


def test_a_foundation_stage_has_no_regional_outputs_yet():
    state: dict = {}
    raw = foundation_of(dev_raw())
    run_program(lambda: construct(raw, captured=state), "dev")
    assert {k: v for k, v in state.items() if v} == {
        "hostname": "mcp.dev.example.travel", "keyArns": DEV_OUTPUTS["residency_groups"]["dev"]["key_arns"],
        "repositoryUrls": DEV_OUTPUTS["repository_urls"]}


# -- a bad spec: the field, as in a stack file, and nothing registered ----------------------------------

def refused(raw, stack: str = "dev") -> tuple[Plan, Exception]:
    caught: list[Exception] = []

    def program():
        try:
            construct(raw)
        except (InputPropertiesError, InputPropertyError) as error:
            caught.append(error)

    plan = run_program(program, stack)
    assert len(caught) == 1
    return plan, caught[0]


def bad_dev() -> dict:
    raw = dev_raw()
    raw["servers"][0].update(image="registry.example/booking:latest", port=80)
    return raw


def test_every_problem_reaches_the_engine_as_a_property_error_of_spec_with_parse_specs_reason():
    with pytest.raises(SpecError) as python_error:
        parse_spec(bad_dev())
    plan, error = refused(bad_dev())
    assert error.errors == [{"property_path": f"spec.{p.path}", "reason": p.message}
                            for p in python_error.value.problems]
    assert {e["property_path"] for e in error.errors} >= {"spec.servers[booking].image", "spec.servers[booking].port"}
    assert error.message.startswith("invalid mcp-estate spec:\nservers[booking]")
    assert [r.type for r in plan.resources] == ["pulumi:pulumi:Stack"]   # refused before registering


def test_a_spec_holding_another_resources_output_is_refused_by_field():
    raw = dev_raw()
    raw["domain"]["zone_id"] = pulumi.Output.from_input("zone")
    raw["servers"][0]["image"] = pulumi.Output.secret(raw["servers"][0]["image"])
    _, error = refused(raw)
    assert [e["property_path"] for e in error.errors] == ["spec.domain.zone_id", "spec.servers[booking].image"]
    assert error.errors[0]["reason"].startswith("is another resource's output or a secret")


def test_a_spec_that_is_itself_an_output_or_not_a_mapping_is_named_spec():
    for raw in (pulumi.Output.from_input(dev_raw()), "mcp.dev.example.travel"):
        _, error = refused(raw)
        assert [e["property_path"] for e in error.errors] == ["spec"]


def test_a_stack_name_aws_cannot_use_is_refused_with_the_specs_problems():
    _, error = refused(bad_dev(), stack="Prod.EU")
    assert error.errors[0] == {"property_path": "stack", "reason": error.errors[0]["reason"]}
    assert "'Prod.EU' cannot name AWS resources" in error.errors[0]["reason"]
    assert "spec.servers[booking].port" in {e["property_path"] for e in error.errors}


def test_a_missing_spec_is_the_sdks_required_input_error():
    def program():
        EstateProvider(VERSION).construct("mcp-estate", TOKEN, {})

    with pytest.raises(InputPropertyError) as error:
        run_program(program, "dev")
    assert error.value.property_path == "spec"


def test_from_python_the_facade_raises_the_spec_error_itself():
    with pytest.raises(SpecError) as error:
        run_program(lambda: McpEstate("mcp-estate", {"spec": bad_dev()}), "dev")
    assert "servers[booking].port: " in str(error.value)
