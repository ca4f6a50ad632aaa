"""`estate diff OLD.json NEW.json`: what a change does, read before `pulumi up` (README: Review what a change does)."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

from mcp_estate.cli import main
from mcp_estate.offline.diff import diff_exports, forcing_inputs

IMAGE = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/mcp/booking@sha256:"
OLD_DIGEST = "001d057c49888db925f47ba4f0cbb75edf527893381dc5a27d7a965c766508c4"
NEW_DIGEST = "991d057c49888db925f47ba4f0cbb75edf527893381dc5a27d7a965c766508c4"
SEARCH = f"""      - name: search
        image: {IMAGE.replace("booking", "search")}aa{OLD_DIGEST[2:]}
        cpu: 256
        memory: 512
        scaling: {{min: 1, max: 2}}
    edge:
"""


def _plan(tmp_path_factory, name: str, text: str):
    stacks = tmp_path_factory.mktemp(name)
    (stacks / "Pulumi.dev.yaml").write_text(text)
    out = stacks / "plan.json"
    assert main(["plan", "--stack", "dev", "--stacks-dir", str(stacks), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """The shipped dev stack with its data protected, and the same stack after a change that adds a
    server, moves the region's CIDR, pins a new booking image and renames the residency group (which
    renames, so deletes, the group's protected table and key)."""
    base = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text().replace(
        "    log_retention_days: 14", "    log_retention_days: 14\n    deletion_protection: true")
    changed = (base.replace("cidr: 10.50.0.0/20", "cidr: 10.60.0.0/20").replace(OLD_DIGEST, NEW_DIGEST)
               .replace("      - name: dev\n", "      - name: devgroup\n").replace("    edge:\n", SEARCH))
    assert changed.count("devgroup") == 1 and NEW_DIGEST in changed and "10.60.0.0/20" in changed
    return _plan(tmp_path_factory, "old", base), _plan(tmp_path_factory, "new", changed)


def _diff(capsys, *argv) -> tuple[int, str]:
    code = main(["diff", *map(str, argv)])
    return code, capsys.readouterr().out


def _block(text: str, header: str) -> list[str]:
    """The header line of one resource and its indented property lines."""
    lines = text.splitlines()
    start = lines.index(header)
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("    ")), len(lines))
    return lines[start:end]


def test_a_subnet_whose_cidr_moves_is_replaced(plans, capsys):
    _, text = _diff(capsys, *plans)
    assert _block(text, "+- aws:ec2/subnet:Subnet mcp-estate-eu-west-1-net-private-euw1-az1: (replace)") == [
        "+- aws:ec2/subnet:Subnet mcp-estate-eu-west-1-net-private-euw1-az1: (replace)",
        '    ~ cidrBlock: "10.50.0.0/22" => "10.60.0.0/22" (forces replacement)',
        '    ~ tags.mcp-estate:residency-group: "dev" => "devgroup"',
    ]


def test_a_new_image_replaces_the_task_definition_naming_the_container_field(plans, capsys):
    _, text = _diff(capsys, *plans)
    block = _block(text, "+- aws:ecs/taskDefinition:TaskDefinition mcp-estate-eu-west-1-booking-task: (replace)")
    assert (f'    ~ containerDefinitions<json>[0].image: "{IMAGE}{OLD_DIGEST}" => "{IMAGE}{NEW_DIGEST}" '
            "(forces replacement)") in block
    assert '    ~ tags.mcp-estate:residency-group: "dev" => "devgroup"' in block   # tags: in place


def test_an_update_not_known_to_be_in_place_says_it_may_replace(plans, capsys):
    _, text = _diff(capsys, *plans)
    assert _block(text, "~ aws:ec2/vpc:Vpc mcp-estate-eu-west-1-net-vpc: (update, may replace)") == [
        "~ aws:ec2/vpc:Vpc mcp-estate-eu-west-1-net-vpc: (update, may replace)",
        '    ~ cidrBlock: "10.50.0.0/20" => "10.60.0.0/20"',
        '    ~ tags.mcp-estate:residency-group: "dev" => "devgroup"',
    ]
    # A change of tags only is a sure in-place update.
    assert _block(text, "~ aws:ecs/service:Service mcp-estate-eu-west-1-booking-service: (update)") == [
        "~ aws:ecs/service:Service mcp-estate-eu-west-1-booking-service: (update)",
        '    ~ tags.mcp-estate:residency-group: "dev" => "devgroup"',
    ]


def test_a_new_server_is_created_and_the_renamed_groups_protected_table_is_flagged(plans, capsys):
    code, text = _diff(capsys, *plans)
    assert code == 0   # a report, like `git diff`; --exit-code makes a change exit 1
    assert "+ aws:ecs/service:Service mcp-estate-eu-west-1-search-service: (create)" in text.splitlines()
    assert _block(text, "- aws:dynamodb/table:Table mcp-estate-estate-wide-dev-state-table: (delete)") == [
        "- aws:dynamodb/table:Table mcp-estate-estate-wide-dev-state-table: (delete)",
        "    !! PROTECTED: `pulumi up` refuses to delete it; unprotect it first (protect: false) if this is intended",
    ]
    # 21: among them the web ACL (the new server's 401 challenge and MCP surface rules) and the edge's
    # challenge transform ruleset (its 401 header rule): in-place updates offline cannot rule on
    assert text.splitlines()[-9:] == [
        "", "Resources:", "    + 47 to create", "    ~ 91 to update", "    +- 5 to replace", "    - 10 to delete",
        "    63 unchanged",
        "21 update(s) may replace: offline, replacement is known only from the SDK's docs; "
        "`pulumi preview --diff` decides",
        "!! 2 protected resource(s) would be deleted or replaced: "
        "mcp-estate-estate-wide-dev-keys-eu-west-1-key, mcp-estate-estate-wide-dev-state-table",
    ]


def test_the_json_report_gives_counts_refusals_and_each_changed_path(plans, capsys):
    code, text = _diff(capsys, *plans, "--format", "json")
    report = json.loads(text)
    assert code == 0
    assert report["summary"] == {"create": 47, "update": 91, "replace": 5, "delete": 10, "unchanged": 63}
    assert [urn.rsplit("::", 1)[1] for urn in report["refused"]] == [
        "mcp-estate-estate-wide-dev-keys-eu-west-1-key", "mcp-estate-estate-wide-dev-state-table"]
    subnet = next(c for c in report["changes"] if c["name"] == "mcp-estate-eu-west-1-net-public-euw1-az2")
    assert subnet == {
        "urn": "urn:pulumi:dev::mcp-estate::mcp-estate:index:Estate$mcp-estate:index:Region"
               "$mcp-estate:region_network:RegionNetwork$aws:ec2/subnet:Subnet::mcp-estate-eu-west-1-net-public-euw1-az2",
        "type": "aws:ec2/subnet:Subnet", "name": "mcp-estate-eu-west-1-net-public-euw1-az2", "op": "replace",
        "mayReplace": False, "protected": False, "refused": False,
        "properties": [
            {"path": "cidrBlock", "op": "update", "old": "10.50.13.0/24", "new": "10.60.13.0/24",
             "forcesReplacement": True},
            {"path": "tags.mcp-estate:residency-group", "op": "update", "old": "dev", "new": "devgroup",
             "forcesReplacement": False}]}


def test_the_same_plan_twice_changes_nothing_and_exit_code_is_opt_in(plans, capsys):
    old, new = plans
    # 169 resources in dev, components included (the estate-wide part and the region are two of them).
    assert _diff(capsys, old, old) == (0, "\nResources:\n    169 unchanged\n")
    assert main(["diff", "--exit-code", str(old), str(old)]) == 0
    assert main(["diff", "--exit-code", str(old), str(new)]) == 1


@pytest.mark.parametrize("content, message", [
    ("not json", "not JSON"),
    ('{"resources": []}', "no `deployment` object"),
    ('{"deployment": {"resources": [{"type": "x"}]}}', "needs a `urn` and a `type`"),
])
def test_a_file_that_is_not_an_export_exits_2_naming_it(plans, tmp_path, capsys, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert main(["diff", str(plans[0]), str(bad)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"estate diff: {bad}: ") and message in error


# -- the pure functions, on small exports ----------------------------------------------------

def _resource(name: str, type_: str, inputs: dict, protect: bool = False) -> dict:
    return {"urn": f"urn:pulumi:dev::p::{type_}::{name}", "type": type_, "custom": True,
            "inputs": inputs, "protect": protect}


def test_a_policy_change_names_the_statement_path_inside_the_json_string():
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject"]}]}
    wider = json.loads(json.dumps(policy))
    wider["Statement"][0]["Action"].append("s3:PutObject")
    role = "aws:iam/rolePolicy:RolePolicy"
    diff = diff_exports([_resource("p", role, {"policy": json.dumps(policy)})],
                        [_resource("p", role, {"policy": json.dumps(wider)})])
    [change] = diff.changes
    assert [(p.path, p.old, p.new) for p in change.properties] == [
        ("policy<json>.Statement[0].Action[1]", None, '"s3:PutObject"')]


def test_a_secret_is_compared_but_never_shown():
    def secret(value: str) -> dict:
        return {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "plaintext": value}
    token = "aws:lambda/function:Function"
    diff = diff_exports([_resource("f", token, {"environment": secret('"s3cr3t-1"')})],
                        [_resource("f", token, {"environment": secret('"s3cr3t-2"')})])
    from mcp_estate.offline.diff import as_json, as_text
    assert "s3cr3t" not in as_text(diff) + as_json(diff)
    assert "    ~ environment: [secret] => [secret]" in as_text(diff).splitlines()


def test_a_protected_resource_replaced_is_refused_and_one_unprotected_is_not():
    subnet = "aws:ec2/subnet:Subnet"
    old = [_resource("a", subnet, {"cidrBlock": "10.0.0.0/24"}, protect=True),
           _resource("b", subnet, {"cidrBlock": "10.0.1.0/24"})]
    new = [_resource("a", subnet, {"cidrBlock": "10.0.2.0/24"}, protect=True),
           _resource("b", subnet, {"cidrBlock": "10.0.3.0/24"})]
    assert [(c.name, c.op, c.refused) for c in diff_exports(old, new).changes] == [
        ("a", "replace", True), ("b", "replace", False)]


def test_replacing_inputs_come_from_the_docstrings_and_the_names_chosen_at_creation():
    endpoint, complete = forcing_inputs("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert "privateDnsEnabled" in endpoint and not complete   # "Changing this value forces a new resource"
    topic, _ = forcing_inputs("aws:sns/topic:Topic")
    assert {"name", "namePrefix", "region"} <= topic and "kmsMasterKeyId" not in topic
    role, _ = forcing_inputs("aws:iam/role:Role")   # global: no region
    assert role == {"name", "namePrefix"}
    task, complete = forcing_inputs("aws:ecs/taskDefinition:TaskDefinition")
    assert complete and {"containerDefinitions", "cpu", "family"} <= task and "tags" not in task
