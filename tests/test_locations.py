"""Findings point at the spec field behind them; a stack file with a key given twice is refused."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT
from test_check import SYNTHETIC

from mcp_estate.checking.check import CheckResult, Violation
from mcp_estate.checking.locations import Location, resource_locations, spec_field
from mcp_estate.checking.reports import as_json, sarif, table
from mcp_estate.cli import main
from mcp_estate.contract.stackfile import ESTATE_KEY, closest_line, field_lines, load_yaml

PROD = (ROOT / "stacks" / "Pulumi.prod.yaml").read_text()
PROD_LINES = PROD.splitlines()


def line_of(text: str, after: str = "") -> int:
    """The 1-based line of the first `text` at or after the line holding `after`."""
    start = next(i for i, line in enumerate(PROD_LINES) if after in line)
    return next(i for i, line in enumerate(PROD_LINES) if i >= start and text in line) + 1


def test_every_field_maps_to_the_line_it_is_written_on():
    lines = field_lines(PROD)
    assert lines["servers[booking]"] == line_of("- name: booking")
    assert lines["servers[booking].image"] == line_of("image:", after="- name: booking")
    assert lines["servers[loyalty].scaling"] == line_of("scaling:", after="- name: loyalty")
    assert lines["residency_groups[eu].regions[eu-central-1]"] == line_of("- name: eu-central-1")
    assert lines["edge.health_server"] == line_of("health_server:")
    assert lines["environment"] == line_of("environment: prod")


@pytest.mark.parametrize("tags, field", [
    ({"mcp-estate:server": "booking", "mcp-estate:region": "eu-central-1"}, "servers[booking]"),
    ({"mcp-estate:region": "eu-central-1", "mcp-estate:residency-group": "eu"},
     "residency_groups[eu].regions[eu-central-1]"),
    ({"mcp-estate:residency-group": "eu"}, "residency_groups[eu]"),
    ({"mcp-estate:server": "not-in-the-file"}, None),
    ({"mcp-estate:stack": "prod"}, None),
])
def test_the_most_specific_tag_names_the_field(tags, field):
    assert spec_field(tags, field_lines(PROD)) == field


def test_a_resource_without_contract_tags_points_at_the_estate_object():
    lines = field_lines(PROD)
    located = resource_locations([{"urn": "u1", "inputs": {}}, {"urn": "u2", "inputs": {"tags": "unknown"}},
                                  {"urn": "u3", "inputs": {"tags": {"mcp-estate:server": "inventory"}}}], lines)
    estate = Location(ESTATE_KEY, line_of(f"{ESTATE_KEY}:"))
    assert located == {"u1": estate, "u2": estate, "u3": Location("servers[inventory]", line_of("- name: inventory"))}


def test_reports_name_the_field_and_line_and_sarif_puts_the_result_there():
    where = Location("servers[booking]", 44)
    result = CheckResult([Violation("ecr-immutable", "mandatory", "urn:a::booking-repo", "mutable"),
                          Violation("one-repository", "mandatory", None, "too many")], 3, 2, 0.1)
    log = json.loads(sarif(result, SYNTHETIC, {}, "stacks/Pulumi.prod.yaml", {"urn:a::booking-repo": where}))
    located, unlocated = log["runs"][0]["results"]
    assert located["locations"] == [{
        "physicalLocation": {"artifactLocation": {"uri": "stacks/Pulumi.prod.yaml"}, "region": {"startLine": 44}},
        "logicalLocations": [{"fullyQualifiedName": "urn:a::booking-repo", "kind": "resource"},
                             {"fullyQualifiedName": "servers[booking]", "kind": "member"}]}]
    assert unlocated["locations"][0]["physicalLocation"]["region"] == {"startLine": 1}
    # The fingerprint ignores the line: moving the field keeps the alert.
    moved = json.loads(sarif(result, SYNTHETIC, {}, "stacks/Pulumi.prod.yaml",
                             {"urn:a::booking-repo": Location("servers[booking]", 90)}))
    assert moved["runs"][0]["results"][0]["partialFingerprints"] == located["partialFingerprints"]
    assert json.loads(as_json(result, {"urn:a::booking-repo": where}))["violations"][0] == {
        "policy": "ecr-immutable", "enforcement_level": "mandatory", "urn": "urn:a::booking-repo",
        "message": "mutable", "spec_field": "servers[booking]", "line": 44}
    assert "    - booking-repo (from servers[booking], line 44): mutable" in table(result, SYNTHETIC,
                                                                                 {"urn:a::booking-repo": where})


@pytest.mark.parametrize("text, fragment", [
    ("a: 1\nb: 2\na: 3\n", "key 'a' is given twice (lines 1 and 3)"),
    ("config:\n  x:\n    image: one\n    port: 1\n    image: two\n", "key 'image' is given twice (lines 3 and 5)"),
])
def test_a_key_given_twice_is_refused_naming_both_lines(text, fragment):
    with pytest.raises(Exception, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_yaml(text)


def test_a_stack_file_with_a_server_image_given_twice_exits_2_naming_the_lines(tmp_path, capsys):
    # PyYAML would keep the second image silently; a reviewer would read the first.
    text = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text()
    image_line = next(line for line in text.splitlines() if "image:" in line)
    doubled = text.replace(image_line, f"{image_line}\n{image_line.replace('001d', '002d')}")
    (tmp_path / "Pulumi.dev.yaml").write_text(doubled)
    assert main(["plan", "--stack", "dev", "--stacks-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    first = text.splitlines().index(image_line) + 1
    assert f"key 'image' is given twice (lines {first} and {first + 1})" in err


@pytest.mark.parametrize("edit, fragment", [
    # A written field: its own line.
    (("cpu: 256", "cpu: 300"), "Pulumi.dev.yaml:{cpu}: servers[booking].cpu: 300 is not a Fargate CPU size"),
    # A field left to its default is not in the file: the nearest written ancestor's line.
    (("cpu: 256", "cpu: 256\n        rollout: {strategy: FAST}"),
     "Pulumi.dev.yaml:{cpu_next}: servers[booking].rollout.strategy: Input should be"),
])
def test_spec_errors_name_the_file_line_of_the_field(tmp_path, capsys, edit, fragment):
    text = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text()
    cpu = text.splitlines().index("        cpu: 256") + 1
    (tmp_path / "Pulumi.dev.yaml").write_text(text.replace(*edit))
    assert main(["plan", "--stack", "dev", "--stacks-dir", str(tmp_path)]) == 2
    assert fragment.format(cpu=cpu, cpu_next=cpu + 1) in capsys.readouterr().err


@pytest.mark.parametrize("field, expected", [
    ("servers[booking].rollout.strategy", 5),   # not written: its nearest written ancestor
    ("servers[booking]", 5),
    ("mcp-estate:estate", 4),                    # no parent: the estate object, the line above its first key
    ("edge.health_server", 4),
])
def test_a_field_not_in_the_file_takes_its_nearest_written_ancestors_line(field, expected):
    assert closest_line(field, {"servers[booking]": 5, "owner": 9, "environment": 10}) == expected
