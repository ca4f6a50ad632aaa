"""`estate verify` follows the estate's tags and outputs, not its names (issue 11: "renaming the `Estate`
breaks `estate verify`"). The estate here is the components' plan with the `Estate` component named
`travel-mcp` instead of `mcp-estate`, deployed into moto as in test_verify.py: every physical name starts
with `travel-mcp-<stack>`, and verify still finds (and checks) the state tables and the secrets."""

from __future__ import annotations

import itertools
import json

import pytest
from test_verify import (  # noqa: F401 (moto_backend: a fixture)
    ACCOUNT,
    EU,
    US,
    VERIFY_CLIENTS,
    build_estate,
    client,
    estate_config,
    moto_backend,
    write_stack,
)

from mcp_estate.cli import main
from mcp_estate.operations.locate import ByOutputs, LocateError, read_outputs
from mcp_estate.operations.verify import Finding, VerifyError, verify

RENAMED = "travel-mcp"
STACKS = (f"r{n:02}" for n in itertools.count(1))
SECRET = "booking-api-key"


@pytest.fixture
def renamed(moto_backend):  # noqa: F811
    return build_estate(next(STACKS), component_name=RENAMED)


def table(stack: str, group: str) -> str:
    """The name the components gave the group's table: read from moto, to show it is not the default one."""
    [name] = [t for t in client("dynamodb", EU if group == "eu" else US).list_tables()["TableNames"]
              if t.startswith(f"{RENAMED}-{stack}-") and t.endswith(f"-{group}-state")]
    return name


def secret_arn(stack: str) -> str:
    [found] = [s for s in client("secretsmanager", EU).list_secrets()["SecretList"]
               if s["Name"] == f"{RENAMED}-{stack}/{SECRET}"]
    return found["ARN"]


def verify_with(estate, given: ByOutputs) -> list[Finding]:
    return verify(estate.spec, estate.stack, VERIFY_CLIENTS, given)


def outputs(stack: str) -> dict:
    """What `pulumi stack output --json` prints for the estate's named resources."""
    return {"residency_groups": {"eu": {"state_table_name": table(stack, "eu")},
                                 "us": {"state_table_name": table(stack, "us")}},
            "secret_arns": {SECRET: secret_arn(stack)}}


class TestRenamedEstate:
    def test_a_renamed_estate_has_no_findings(self, renamed):
        assert table(renamed.stack, "eu") == f"{RENAMED}-{renamed.stack}-eu-state"   # not mcp-estate-...
        assert renamed.verify() == []

    def test_tampering_with_a_renamed_estates_table_is_still_found(self, renamed):
        name = table(renamed.stack, "us")
        client("dynamodb", US).update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False})
        assert renamed.findings() == [("state-table-pitr-off", US, name)]

    def test_tampering_with_a_renamed_estates_secret_is_still_found(self, renamed):
        arn = secret_arn(renamed.stack)
        client("secretsmanager", EU).remove_regions_from_replication(SecretId=arn, RemoveReplicaRegions=[US])
        assert renamed.findings() == [("secret-replica-missing", US, f"{RENAMED}-{renamed.stack}/{SECRET}")]

    def test_a_deleted_table_is_reported_with_the_tags_and_region_verify_looked_for(self, renamed):
        client("dynamodb", EU).delete_table(TableName=table(renamed.stack, "eu"))
        [finding] = renamed.verify()
        assert (finding.kind, finding.region, finding.resource) == ("resource-missing", EU, "state/eu")
        assert finding.message == ("the state table of group 'eu' does not exist: no DynamoDB table tagged "
                                   f"mcp-estate:stack={renamed.stack}, mcp-estate:residency-group=eu in {EU}")

    def test_a_secret_stripped_of_its_tag_is_reported_missing_naming_the_tags(self, renamed):
        client("secretsmanager", EU).untag_resource(SecretId=secret_arn(renamed.stack), TagKeys=["mcp-estate:secret"])
        [finding] = renamed.verify()
        assert (finding.kind, finding.region, finding.resource) == ("resource-missing", EU, f"secret/{SECRET}")
        assert finding.message == ("the secret does not exist: no secret tagged "
                                   f"mcp-estate:stack={renamed.stack}, mcp-estate:secret={SECRET} in {EU}")

    def test_a_second_table_with_the_same_tags_is_an_error_not_a_guess(self, renamed):
        stack, dynamodb = renamed.stack, client("dynamodb", EU)
        dynamodb.create_table(   # a decoy with PITR off, tagged as the state table: must not hide the real one
            TableName=f"decoy-{stack}", BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            Tags=[{"Key": "mcp-estate:stack", "Value": stack}, {"Key": "mcp-estate:residency-group", "Value": "eu"}])
        with pytest.raises(VerifyError) as raised:
            renamed.verify()
        arn = f"arn:aws:dynamodb:{EU}:{ACCOUNT}:table"
        assert str(raised.value) == (
            f"{EU}: 2 resources of type dynamodb:table are tagged mcp-estate:stack={stack}, "
            f"mcp-estate:residency-group=eu ({arn}/decoy-{stack}, {arn}/{table(stack, 'eu')}): cannot tell "
            "which is the estate's; remove the tags from the others, or pass the stack's outputs with --outputs")

    def test_the_stacks_outputs_say_which_table_when_the_tags_cannot(self, renamed):
        self.test_a_second_table_with_the_same_tags_is_an_error_not_a_guess(renamed)
        given = ByOutputs(outputs(renamed.stack), "outputs.json")
        assert verify_with(renamed, given) == []

    def test_a_table_named_in_the_outputs_that_is_gone_is_reported(self, renamed):
        given = ByOutputs(outputs(renamed.stack), "outputs.json")
        client("dynamodb", EU).delete_table(TableName=table(renamed.stack, "eu"))
        assert [(f.kind, f.region, f.resource) for f in verify_with(renamed, given)] == [
            ("resource-missing", EU, f"{RENAMED}-{renamed.stack}-eu-state")]

    def test_outputs_without_the_state_tables_are_refused_naming_the_key(self, renamed):
        given = ByOutputs({"secret_arns": {SECRET: secret_arn(renamed.stack)}}, "outputs.json")
        with pytest.raises(VerifyError, match=r"^outputs.json: the stack outputs have no `residency_groups`: "
                                              r"pass the outputs of this stack"):
            verify_with(renamed, given)

    def test_the_cli_reads_outputs_from_pulumi_stack_output_json(self, renamed, tmp_path, capsys):
        stack = renamed.stack
        stacks = write_stack(tmp_path / "stacks", stack, estate_config(stack))
        (tmp_path / "outputs.json").write_text(json.dumps(outputs(stack)))
        client("dynamodb", US).update_continuous_backups(
            TableName=table(stack, "us"), PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False})
        code = main(["verify", "--stack", stack, "--stacks-dir", str(stacks), "--format", "json",
                     "--outputs", str(tmp_path / "outputs.json")])
        assert code == 1
        [finding] = json.loads(capsys.readouterr().out)["findings"]
        assert (finding["kind"], finding["resource"]) == ("state-table-pitr-off", table(stack, "us"))

    def test_the_cli_refuses_an_outputs_file_it_cannot_read_with_exit_2(self, renamed, tmp_path, capsys):
        stacks = write_stack(tmp_path / "stacks", renamed.stack, estate_config(renamed.stack))
        (tmp_path / "outputs.json").write_text("[secret]")
        assert main(["verify", "--stack", renamed.stack, "--stacks-dir", str(stacks),
                     "--outputs", str(tmp_path / "outputs.json")]) == 2
        assert capsys.readouterr().err.startswith(f"estate verify: --outputs {tmp_path / 'outputs.json'}: not JSON")


# -- reading the outputs file ------------------------------------------------------------------------------

def test_a_stack_export_gives_the_root_stacks_outputs(tmp_path):
    export = {"version": 3, "deployment": {"resources": [
        {"type": "pulumi:providers:aws", "outputs": {"region": EU}},
        {"type": "pulumi:pulumi:Stack", "outputs": {"secret_arns": {SECRET: "arn:aws:secretsmanager:x"}}}]}}
    (tmp_path / "export.json").write_text(json.dumps(export))
    assert read_outputs(tmp_path / "export.json").secret(SECRET, EU) == "arn:aws:secretsmanager:x"


@pytest.mark.parametrize("outputs, problem", [
    ({"secret_arns": {}}, "the stack outputs have no `secret_arns.booking-api-key`"),
    ({"secret_arns": {SECRET: None}}, "`secret_arns.booking-api-key` is null, not a name or ARN"),
    ({"secret_arns": [SECRET]}, "the stack outputs have no `secret_arns.booking-api-key`")])
def test_outputs_lacking_a_resource_name_it_and_what_to_pass(outputs, problem):
    with pytest.raises(LocateError) as raised:
        ByOutputs(outputs, "out.json").secret(SECRET, EU)
    assert str(raised.value).startswith(f"out.json: {problem}")


def test_a_missing_outputs_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(LocateError, match=r"^--outputs .*nowhere.json: No such file or directory$"):
        read_outputs(tmp_path / "nowhere.json")
