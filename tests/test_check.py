"""`estate check` and `estate controls`: the runner's contract (README: Policy as code).

Synthetic controls (real `pulumi_policy` objects, as the decorators build them) make the runner's
behaviour deterministic; the real pack is used where the promise is about the pack itself.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jsonschema
import pulumi_aws as aws
import pytest
from conftest import ROOT, run_program
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, Severity, StackValidationPolicy
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from mcp_estate.checking import check
from mcp_estate.checking.check import CONFIG_DIR, CheckResult, Violation, evaluate, read_pack_config, run_check
from mcp_estate.checking.reports import artifact_uri, controls_matrix, sarif, table
from mcp_estate.cli import main
from mcp_estate.offline import plan as plan_module
from mcp_estate.policies.catalogue import CONTROLS, Control, Risk

ECR = "aws:ecr/repository:Repository"
SECRET_SIG = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}


# -- synthetic controls ---------------------------------------------------------------------------

def immutable_tags(args, report):
    if args.resource_type == ECR and args.props.get("imageTagMutability") != "IMMUTABLE":
        report(f"ECR repository {args.name} has mutable tags: set image_tag_mutability=IMMUTABLE")


def scan_on_push(args, report):
    if args.resource_type == ECR and not (args.props.get("imageScanningConfiguration") or {}).get("scanOnPush"):
        report(f"ECR repository {args.name} does not scan on push")


def at_most_one_repository(args, report):
    if len([r for r in args.resources if r.resource_type == ECR]) > 1:
        report("the stack holds more than one ECR repository")


def resource_control(name: str, validate, *, severity=Severity.HIGH, risks=(Risk.CODE_INTEGRITY,),
                     level=EnforcementLevel.MANDATORY) -> Control:
    return Control(ResourceValidationPolicy(name=name, description=f"{name} (description).", validate=validate,
                                            enforcement_level=level, severity=severity,
                                            tags=[r.value for r in risks], remediation_steps=f"fix {name}"),
                   tuple(risks))


def stack_control(name: str, validate) -> Control:
    return Control(StackValidationPolicy(name=name, description=f"{name} (description).", validate=validate,
                                         enforcement_level=EnforcementLevel.MANDATORY, severity=Severity.LOW,
                                         tags=[Risk.AVAILABILITY.value]), (Risk.AVAILABILITY,))


SYNTHETIC = [resource_control("ecr-immutable", immutable_tags),
             resource_control("ecr-scanned", scan_on_push, severity=Severity.CRITICAL, risks=(Risk.TOOL_INJECTION,)),
             stack_control("one-repository", at_most_one_repository)]


@pytest.fixture
def synthetic(monkeypatch) -> list[Control]:
    """The CLI evaluates these instead of the pack."""
    monkeypatch.setattr(check, "CONTROLS", SYNTHETIC)
    return SYNTHETIC


# -- exports --------------------------------------------------------------------------------------

def repositories(*mutabilities: str, environment: str | None = None) -> list[dict]:
    """Export entries of real aws.ecr.Repository resources, one per mutability (untagged: no
    environment, so no default pack config applies)."""
    def program():
        for index, mutability in enumerate(mutabilities):
            aws.ecr.Repository(f"repo-{mutability.lower()}-{index}", image_tag_mutability=mutability,
                               image_scanning_configuration={"scan_on_push": True},
                               tags={"mcp-estate:environment": environment} if environment else None)
    return [r.export() for r in run_program(program).resources]


def write_export(tmp_path, resources: list[dict], name: str = "export.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"version": 3, "deployment": {"manifest": {}, "resources": resources}}))
    return path


def check_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["check", *argv, "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def urn_of(resources: list[dict], name: str) -> str:
    return next(r["urn"] for r in resources if r["urn"].endswith(f"::{name}"))


# -- JSON and exit codes --------------------------------------------------------------------------

def test_json_lists_each_violation_with_policy_level_urn_and_message(synthetic, tmp_path, capsys):
    resources = repositories("MUTABLE", "IMMUTABLE")
    code, report = check_json(capsys, "--export", str(write_export(tmp_path, resources)))
    assert code == 1
    assert list(report) == ["violations"]
    assert report["violations"] == [
        {"policy": "ecr-immutable", "enforcement_level": "mandatory", "urn": urn_of(resources, "repo-mutable-0"),
         "message": "ECR repository repo-mutable-0 has mutable tags: set image_tag_mutability=IMMUTABLE"},
        {"policy": "one-repository", "enforcement_level": "mandatory", "urn": None,
         "message": "the stack holds more than one ECR repository"}]


def test_a_compliant_export_exits_0(synthetic, tmp_path, capsys):
    code, report = check_json(capsys, "--export", str(write_export(tmp_path, repositories("IMMUTABLE"))))
    assert (code, report) == (0, {"violations": []})


@pytest.mark.parametrize("content, fragment", [
    (None, "cannot read the export"),
    ("{not json", "not JSON"),
    ('{"version": 3}', "no `deployment` object"),
    ('{"deployment": {"resources": {"urn": "x"}}}', "`deployment.resources` must be a list"),
    ('{"deployment": {"resources": [{"type": "aws:s3/bucket:Bucket"}]}}', "`deployment.resources[0]` needs a `urn`"),
])
def test_an_unreadable_or_ill_shaped_export_exits_2(synthetic, tmp_path, capsys, content, fragment):
    path = tmp_path / "export.json"
    if content is not None:
        path.write_text(content)
    assert main(["check", "--export", str(path)]) == 2
    error = capsys.readouterr().err
    assert f"estate check: {path}: {fragment}" in error and "Traceback" not in error


def test_a_real_stack_exports_extra_fields_are_tolerated(synthetic, tmp_path, capsys):
    """`pulumi stack export` adds fields, pending deletions and secrets in its own encodings."""
    resources = repositories("IMMUTABLE")
    repo = next(r for r in resources if r["type"] == ECR)
    repo.update(created="2026-01-01T00:00:00Z", modified="2026-01-01T00:00:00Z", sourcePosition="project:///x.py",
                propertyDependencies={"tags": []})
    old = {**repo, "urn": repo["urn"] + "-old", "delete": True,
           "inputs": {**repo["inputs"], "imageTagMutability": "MUTABLE"}}
    document = {"version": 3, "checkpoint": {}, "deployment": {
        "manifest": {"time": "2026-01-01T00:00:00Z", "magic": "m", "version": "v3.272.0"},
        "secrets_providers": {"type": "passphrase"}, "pending_operations": [], "resources": resources + [old]}}
    path = tmp_path / "real.json"
    path.write_text(json.dumps(document))
    assert check_json(capsys, "--export", str(path)) == (0, {"violations": []})


def test_an_export_of_a_stack_never_deployed_has_nothing_to_check(synthetic, tmp_path, capsys):
    path = tmp_path / "empty.json"
    path.write_text('{"version": 3, "deployment": {"manifest": {}}}')
    assert check_json(capsys, "--export", str(path)) == (0, {"violations": []})


def test_a_bad_stack_spec_exits_2_naming_the_field(synthetic, tmp_path, capsys):
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.bad.yaml").write_text("config:\n  mcp-estate:estate: 42\n")
    assert main(["check", "--stack", "bad", "--stacks-dir", str(stacks)]) == 2
    error = capsys.readouterr().err
    assert "estate check: invalid stack 'bad':" in error and "must be a mapping" in error


# -- enforcement from the pack config -------------------------------------------------------------

def write_config(tmp_path, config: dict):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_advisory_violations_are_reported_without_failing(synthetic, tmp_path, capsys):
    export = write_export(tmp_path, repositories("MUTABLE"))
    config = write_config(tmp_path, {"ecr-immutable": "advisory"})
    code, report = check_json(capsys, "--export", str(export), "--config", str(config))
    assert code == 0
    assert [(v["policy"], v["enforcement_level"]) for v in report["violations"]] == [("ecr-immutable", "advisory")]


def test_a_disabled_policy_is_not_run(synthetic, tmp_path, capsys):
    export = write_export(tmp_path, repositories("MUTABLE", "MUTABLE"))
    config = write_config(tmp_path, {"ecr-immutable": {"enforcementLevel": "disabled"}, "one-repository": "disabled"})
    assert check_json(capsys, "--export", str(export), "--config", str(config)) == (0, {"violations": []})


def test_all_sets_every_level_and_a_policys_own_entry_wins():
    resources = repositories("MUTABLE", "MUTABLE")
    found = evaluate(resources, {"all": "advisory", "one-repository": {"enforcementLevel": "mandatory"}}, SYNTHETIC)
    assert sorted({(v.policy, v.enforcement_level) for v in found}) == [
        ("ecr-immutable", "advisory"), ("one-repository", "mandatory")]


def test_a_policys_own_default_level_applies_without_config():
    advisory = resource_control("ecr-immutable", immutable_tags, level=EnforcementLevel.ADVISORY)
    assert {v.enforcement_level for v in evaluate(repositories("MUTABLE"), None, [advisory])} == {"advisory"}


def test_a_policy_reads_its_parameters_from_the_pack_config():
    seen = []
    control = resource_control("ecr-immutable", lambda args, report: seen.append(dict(args.get_config())))
    evaluate(repositories("IMMUTABLE"), {"ecr-immutable": {"enforcementLevel": "advisory", "environment": "prod"}},
             [control])
    assert seen and all(config == {"environment": "prod"} for config in seen)


@pytest.mark.parametrize("config, fragment", [
    ({"ecr-immutible": "advisory"}, "'ecr-immutible' is not a policy of the pack"),
    ({"ecr-immutable": "warn"}, "'ecr-immutable': the enforcement level must be one of"),
    ({"ecr-immutable": {"enforcementLevel": "off"}}, "the enforcement level must be one of"),
    (["ecr-immutable"], "must be an object"),
])
def test_a_pack_config_with_a_typo_exits_2(synthetic, tmp_path, capsys, config, fragment):
    export = write_export(tmp_path, repositories("IMMUTABLE"))
    assert main(["check", "--export", str(export), "--config", str(write_config(tmp_path, config))]) == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize("config, fragment", [
    ({"images-from-allowed-registries": {"allowedRegistries": "ghcr.io"}},
     "'images-from-allowed-registries'.allowedRegistries: 'ghcr.io' is not of type 'array'"),
    ({"images-from-allowed-registries": {"enforcementLevel": "advisory", "allowedRegistries": [443]}},
     "'images-from-allowed-registries'.allowedRegistries[0]: 443 is not of type 'string'"),
    ({"dynamodb-tables-protected": {"environment": "production"}},
     "'dynamodb-tables-protected'.environment: 'production' is not one of ['dev', 'staging', 'prod']"),
])
def test_a_policy_parameter_that_does_not_match_its_schema_exits_2(tmp_path, capsys, config, fragment):
    export = write_export(tmp_path, repositories("IMMUTABLE"))
    assert main(["check", "--export", str(export), "--config", str(write_config(tmp_path, config))]) == 2
    error = capsys.readouterr().err
    assert fragment in error and "Traceback" not in error


def test_an_export_gets_the_config_of_the_environment_its_resources_are_tagged_with(monkeypatch, tmp_path, capsys):
    """dev.json relaxes some policies; the same violation is mandatory under an explicit prod.json."""
    relaxed = [name for name, entry in json.loads((CONFIG_DIR / "dev.json").read_text()).items()
               if (entry.get("enforcementLevel") if isinstance(entry, dict) else entry) == "advisory"]
    assert relaxed, "dev.json relaxes nothing: this test needs one advisory entry"
    others = json.loads((CONFIG_DIR / "dev.json").read_text()).keys() - set(relaxed)   # parameters only
    monkeypatch.setattr(check, "CONTROLS", [resource_control(name, immutable_tags) for name in relaxed]
                        + [resource_control(name, lambda args, report: None) for name in sorted(others)])
    export = str(write_export(tmp_path, repositories("MUTABLE", environment="dev")))
    code, dev = check_json(capsys, "--export", export)
    assert code == 0 and {v["enforcement_level"] for v in dev["violations"]} == {"advisory"}
    code, prod = check_json(capsys, "--export", export, "--config", str(CONFIG_DIR / "prod.json"))
    assert code == 1 and {v["enforcement_level"] for v in prod["violations"]} == {"mandatory"}


def two_environments(tmp_path):
    """One export holding a dev and a prod repository (say, two stacks' exports concatenated)."""
    return write_export(tmp_path, repositories("MUTABLE", environment="dev")
                        + repositories("IMMUTABLE", environment="prod"))


@pytest.mark.parametrize("level, code", [("advisory", 0), ("mandatory", 1)])
def test_an_export_tagged_with_several_environments_is_checked_with_the_config_given(synthetic, tmp_path, capsys,
                                                                                      level, code):
    config = write_config(tmp_path, {"ecr-immutable": level, "one-repository": "disabled"})
    found, report = check_json(capsys, "--export", str(two_environments(tmp_path)), "--config", str(config))
    assert found == code
    assert [(v["policy"], v["enforcement_level"]) for v in report["violations"]] == [("ecr-immutable", level)]


def test_an_export_tagged_with_several_environments_and_no_config_exits_2_asking_for_one(synthetic, tmp_path,
                                                                                          capsys):
    assert main(["check", "--export", str(two_environments(tmp_path))]) == 2
    assert capsys.readouterr().err == (
        "estate check: the resources are tagged with several environments (dev, prod), so no one pack config "
        "applies: pass the one to enforce with --config policies/config/<environment>.json\n")


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_every_shipped_pack_config_names_only_policies_of_the_pack(environment):
    config = read_pack_config(CONFIG_DIR / f"{environment}.json", CONTROLS)
    levels = {e.get("enforcementLevel") if isinstance(e, dict) else e for e in config.values()}
    assert levels <= {"advisory", "mandatory", None}, "a shipped config never disables a control"
    if environment != "dev":
        assert levels <= {"mandatory", None}, f"{environment} enforces every control"


# -- how policies are run -------------------------------------------------------------------------

def test_a_value_unknown_during_preview_yields_an_advisory_cant_run_entry_not_a_crash():
    resources = repositories("IMMUTABLE")
    repo = next(r for r in resources if r["type"] == ECR)
    repo["inputs"]["imageTagMutability"] = UNKNOWN_STRING_VALUE
    repo["outputs"]["imageTagMutability"] = UNKNOWN_STRING_VALUE

    def count_mutable(args, report):
        if any(r.props.get("imageTagMutability") == "MUTABLE" for r in args.resources):
            report("mutable")

    found = evaluate(resources, None, [resource_control("ecr-immutable", immutable_tags),
                                       stack_control("no-mutable", count_mutable)])
    assert found == [
        Violation("ecr-immutable", "advisory", repo["urn"], "can't run policy 'ecr-immutable' during preview: "
                  "string value at .imageTagMutability can't be known during preview"),
        Violation("no-mutable", "advisory", None, "can't run policy 'no-mutable' during preview: "
                  "string value at .imageTagMutability can't be known during preview")]
    assert run_check(resources, None, [resource_control("ecr-immutable", immutable_tags)]).passed


def test_a_policy_may_declare_itself_not_applicable():
    control = resource_control("ecr-immutable", lambda args, report: args.not_applicable("not an ECR repository"))
    assert evaluate(repositories("MUTABLE"), None, [control]) == []


def test_a_policy_that_raises_fails_the_check_closed_without_hiding_the_others():
    def broken(args, report):
        raise KeyError("imageTagMutability")

    resources = repositories("MUTABLE")
    found = evaluate(resources, {"broken": "advisory"},
                     [resource_control("broken", broken), resource_control("ecr-immutable", immutable_tags)])
    assert {(v.policy, v.enforcement_level) for v in found} == {("broken", "mandatory"), ("ecr-immutable", "mandatory")}
    assert "policy 'broken' failed: KeyError: 'imageTagMutability'" in found[0].message


def test_async_policies_are_awaited():
    async def later(args, report):
        immutable_tags(args, report)

    assert [v.policy for v in evaluate(repositories("MUTABLE"), None, [resource_control("async", later)])] == ["async"]


def test_exported_secrets_are_read_in_plaintext():
    resources = repositories("IMMUTABLE")
    repo = next(r for r in resources if r["type"] == ECR)
    repo["inputs"]["imageTagMutability"] = {**SECRET_SIG, "plaintext": '"MUTABLE"'}
    found = evaluate(resources, None, [resource_control("ecr-immutable", immutable_tags)])
    assert [(v.urn, v.enforcement_level) for v in found] == [(repo["urn"], "mandatory")]


def test_an_export_with_encrypted_secrets_exits_2_asking_for_show_secrets(synthetic, tmp_path, capsys):
    resources = repositories("IMMUTABLE")
    repo = next(r for r in resources if r["type"] == ECR)
    repo["inputs"]["imageTagMutability"] = {**SECRET_SIG, "ciphertext": "v1:abc"}
    assert main(["check", "--export", str(write_export(tmp_path, resources))]) == 2
    error = capsys.readouterr().err
    assert f"{repo['urn']}: the export holds encrypted secrets (`ciphertext`)" in error
    assert "`pulumi stack export --show-secrets`" in error and "Traceback" not in error


RESOURCE_SIG = {"4dabf18193072939515e22adb298388d": "5cf8f73096256a8f31e491e813e4eb8e"}


def test_resource_references_reach_policies_as_the_referenced_resources_id_or_urn():
    resources = repositories("IMMUTABLE")
    repo = next(r for r in resources if r["type"] == ECR)
    key_urn = "urn:pulumi:test::mcp-estate::aws:kms/key:Key::estate"
    component_urn = "urn:pulumi:test::mcp-estate::mcp-estate:keys:EstateKeys::keys"
    repo["inputs"]["encryptionConfigurations"] = [{"kmsKey": {**RESOURCE_SIG, "urn": key_urn, "id": "k-1",
                                                              "packageVersion": "7.51.1"}}]
    repo["inputs"]["forceDelete"] = {**RESOURCE_SIG, "urn": component_urn}
    seen = []
    control = resource_control("peek", lambda args, report: seen.append(
        (args.props["encryptionConfigurations"][0]["kmsKey"], args.props["forceDelete"]))
        if args.resource_type == ECR else None)
    assert evaluate(resources, None, [control]) == [] and seen == [("k-1", component_urn)]


@pytest.mark.parametrize("value, fragment", [
    ({**RESOURCE_SIG, "id": "k-1"}, "a resource reference without a `urn` cannot be decoded"),
    ({"4dabf18193072939515e22adb298388d": "not-a-signature"}, "unknown value signature 'not-a-signature'"),
    ({**SECRET_SIG}, "a secret without `plaintext` or `ciphertext` cannot be decoded"),
    ({**SECRET_SIG, "plaintext": "{not json"}, "a secret's `plaintext` is not JSON"),
])
def test_a_malformed_encoding_exits_2_naming_the_resource(synthetic, tmp_path, capsys, value, fragment):
    resources = repositories("IMMUTABLE")
    repo = next(r for r in resources if r["type"] == ECR)
    repo["outputs"]["imageTagMutability"] = value
    assert main(["check", "--export", str(write_export(tmp_path, resources))]) == 2
    error = capsys.readouterr().err
    assert f"{repo['urn']}: {fragment}" in error and "Traceback" not in error


def test_resources_read_with_get_are_seen_by_stack_policies_only():
    resources = repositories("MUTABLE", "IMMUTABLE")
    read = next(r for r in resources if r["type"] == ECR and r["inputs"]["imageTagMutability"] == "MUTABLE")
    read["external"] = True
    stack_view = []
    found = evaluate(resources, None, [resource_control("ecr-immutable", immutable_tags), stack_control(
        "count", lambda args, report: stack_view.extend(r.urn for r in args.resources if r.resource_type == ECR))])
    assert found == [] and read["urn"] in stack_view and len(stack_view) == 2


def test_stack_policies_see_outputs_with_parents_and_dependencies_linked():
    seen = {}

    def record(args, report):
        seen.update({r.name: r for r in args.resources})

    def program():
        repo = aws.ecr.Repository("repo", image_tag_mutability="IMMUTABLE")
        aws.ecr.LifecyclePolicy("repo-lifecycle", repository=repo.name, policy="{}")

    resources = [r.export() for r in run_program(program).resources]
    lifecycle = next(r for r in resources if r["type"] == "aws:ecr/lifecyclePolicy:LifecyclePolicy")
    lifecycle["dependencies"] = [urn_of(resources, "repo")]
    evaluate(resources, None, [stack_control("record", record)])
    assert set(seen) == {"repo", "repo-lifecycle"}, "custom resources only: no stack, component or provider"
    assert seen["repo"].props["repositoryUrl"].startswith("111122223333.dkr.ecr.")   # an output, not an input
    assert seen["repo-lifecycle"].dependencies == [seen["repo"]]


# -- the table ------------------------------------------------------------------------------------

def test_the_table_puts_mandatory_first_grouped_by_policy_in_severity_order():
    result = CheckResult([Violation("ecr-immutable", "advisory", "urn:a::x::repo-a", "A mutable"),
                          Violation("ecr-immutable", "mandatory", "urn:a::x::repo-b", "B mutable"),
                          Violation("ecr-immutable", "mandatory", "urn:a::x::repo-c", "C mutable"),
                          Violation("ecr-scanned", "mandatory", "urn:a::x::repo-b", "B unscanned"),
                          Violation("one-repository", "mandatory", None, "too many")], 3, 671, 0.42)
    assert table(result, SYNTHETIC).splitlines() == [
        "MANDATORY (4 violations)",
        "  ecr-scanned  [critical] x1  (tool injection)",
        "    - repo-b: B unscanned",
        "  ecr-immutable  [high] x2  (code integrity)",
        "    - repo-b: B mutable",
        "    - repo-c: C mutable",
        "  one-repository  [low] x1  (availability)",
        "    - (stack): too many",
        "",
        "ADVISORY (1 violation)",
        "  ecr-immutable  [high] x1  (code integrity)",
        "    - repo-a: A mutable",
        "",
        "4 mandatory, 1 advisory violations (3 policies, 671 resources, 0.4 s)"]


def test_the_table_says_so_when_nothing_is_found(synthetic, tmp_path, capsys):
    assert main(["check", "--export", str(write_export(tmp_path, repositories("IMMUTABLE")))]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "no violations"


# -- SARIF ----------------------------------------------------------------------------------------

@pytest.fixture
def sarif_log(synthetic, tmp_path, capsys, monkeypatch) -> tuple[dict, list[dict]]:
    monkeypatch.chdir(tmp_path)
    resources = repositories("MUTABLE", "MUTABLE")
    write_export(tmp_path, resources, "prod-export.json")
    config = write_config(tmp_path, {"ecr-scanned": "advisory", "one-repository": "disabled"})
    assert main(["check", "--export", "prod-export.json", "--config", str(config), "--format", "sarif"]) == 1
    return json.loads(capsys.readouterr().out), resources


def test_sarif_describes_every_control_as_a_rule(sarif_log):
    log, _ = sarif_log
    assert log["$schema"].endswith("/sarif-schema-2.1.0.json") and log["version"] == "2.1.0"
    [run] = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "mcp-estate" and driver["version"]
    assert [r["id"] for r in driver["rules"]] == ["ecr-immutable", "ecr-scanned", "one-repository"]
    immutable, scanned, one = driver["rules"]
    assert immutable["shortDescription"] == {"text": "ecr-immutable (description)"}
    assert immutable["fullDescription"] == {"text": "ecr-immutable (description)."}
    assert immutable["help"] == {"text": "fix ecr-immutable"}
    assert immutable["properties"] == {"tags": ["code integrity"], "security-severity": "8.0"}
    assert scanned["properties"]["security-severity"] == "9.5"
    assert [r["defaultConfiguration"] for r in driver["rules"]] == [
        {"level": "error"}, {"level": "warning"}, {"level": "none", "enabled": False}]


def test_sarif_results_point_at_the_rule_the_file_and_the_resource(sarif_log):
    log, resources = sarif_log
    results = log["runs"][0]["results"]
    assert [(r["ruleId"], r["ruleIndex"], r["level"]) for r in results] == [
        ("ecr-immutable", 0, "error"), ("ecr-immutable", 0, "error")]
    [first] = [r for r in results if "repo-mutable-0" in r["message"]["text"]]
    assert first["message"]["text"] == \
        "ECR repository repo-mutable-0 has mutable tags: set image_tag_mutability=IMMUTABLE"
    [location] = first["locations"]
    assert location["physicalLocation"] == {"artifactLocation": {"uri": "prod-export.json"}, "region": {"startLine": 1}}
    assert location["logicalLocations"] == [{"fullyQualifiedName": urn_of(resources, "repo-mutable-0"),
                                             "kind": "resource"}]
    fingerprints = [r["partialFingerprints"]["primaryLocationLineHash"] for r in results]
    assert len(set(fingerprints)) == 2, "two violations on the same line of one file are two alerts"


def test_sarif_fingerprints_are_stable_across_runs(synthetic, tmp_path, capsys):
    export = str(write_export(tmp_path, repositories("MUTABLE")))
    runs = []
    for _ in range(2):
        main(["check", "--export", export, "--format", "sarif"])
        runs.append([r["partialFingerprints"] for r in json.loads(capsys.readouterr().out)["runs"][0]["results"]])
    assert runs[0] == runs[1] and runs[0]


def test_sarif_is_valid_against_the_official_sarif_2_1_0_schema(sarif_log):
    # OASIS's schema (errata01), vendored: tests/data/sarif-schema-2.1.0.json
    schema = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())
    assert schema["id"].endswith("/sarif-schema-2.1.0.json")
    log, _ = sarif_log
    jsonschema.Draft4Validator(schema).validate(log)
    stack_level = {**log, "runs": [{**log["runs"][0], "results": [
        {**log["runs"][0]["results"][0], "locations": [{"physicalLocation": {
            "artifactLocation": {"uri": "stacks/Pulumi.prod.yaml"}, "region": {"startLine": 1}}}]}]}]}
    jsonschema.Draft4Validator(schema).validate(stack_level)


def test_sarif_for_a_stack_points_at_its_stack_file_relative_to_the_repository(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = CheckResult([Violation("one-repository", "mandatory", None, "too many")], 3, 1, 0.1)
    log = json.loads(sarif(result, SYNTHETIC, {}, artifact_uri(ROOT / "stacks" / "Pulumi.prod.yaml")))
    [location] = log["runs"][0]["results"][0]["locations"]
    assert location == {"physicalLocation": {"artifactLocation": {"uri": "stacks/Pulumi.prod.yaml"},
                                             "region": {"startLine": 1}}}


# -- a stack, and its export ----------------------------------------------------------------------

def test_checking_the_export_of_a_plan_finds_what_checking_the_stack_finds(monkeypatch, tmp_path, capsys):
    """Over the real pack (the shipped dev stack passes it) and over a control that flags every
    service (so the comparison is not of two empty lists). The stack is planned once: what differs
    is only the path through the export file."""
    def every_service(args, report):
        if args.resource_type == "aws:ecs/service:Service":
            report(f"service {args.name} seen")

    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(plan_module, "plan_stack", functools.cache(plan_module.plan_stack))
    out = tmp_path / "dev.json"
    assert main(["plan", "--stack", "dev", "--out", str(out)]) == 0
    capsys.readouterr()
    no_config = ["--config", str(write_config(tmp_path, {}))]   # dev.json names the pack's policies
    found = []
    for controls, config in ((CONTROLS, []), ([resource_control("every-service", every_service)], no_config)):
        monkeypatch.setattr(check, "CONTROLS", controls)
        found.append(check_json(capsys, "--stack", "dev", *config))
        assert unlocated(found[-1]) == check_json(capsys, "--export", str(out), *config)
    assert found[0] == (0, {"violations": []}), "the shipped dev stack passes the pack"
    assert found[1][0] == 1 and found[1][1]["violations"], "the synthetic control flags every service"
    # Checked from the stack, each finding names the spec field behind it and that field's line.
    dev = (ROOT / "stacks" / "Pulumi.dev.yaml").read_text().splitlines()
    booking_line = dev.index("      - name: booking") + 1
    assert {(v["spec_field"], v["line"]) for v in found[1][1]["violations"]} == {("servers[booking]", booking_line)}


def unlocated(found: tuple[int, dict]) -> tuple[int, dict]:
    code, report = found
    drop = ("spec_field", "line")
    return code, {"violations": [{k: v for k, v in f.items() if k not in drop} for f in report["violations"]]}


# -- the risk-to-control matrix -------------------------------------------------------------------

def test_every_risk_is_mitigated_and_every_control_mitigates_a_risk():
    assert CONTROLS, "the pack has no controls"
    unmitigated = [risk.value for risk in Risk if not any(risk in c.risks for c in CONTROLS)]
    assert unmitigated == []
    assert [c.name for c in CONTROLS if not c.risks] == []
    assert all(c.policy.tags == [r.value for r in c.risks] for c in CONTROLS), "the risks travel as tags"
    assert len({c.name for c in CONTROLS}) == len(CONTROLS), "policy names are unique"


def test_estate_controls_prints_the_matrix_in_markdown(capsys):
    assert main(["controls"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["| Risk | Controls | Count |", "| --- | --- | ---: |"]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:2 + len(Risk)]}
    assert list(rows) == [r.value for r in Risk]
    for risk in Risk:
        mitigating = [c.name for c in CONTROLS if risk in c.risks]
        assert rows[risk.value].endswith(f"| {len(mitigating)} |")
        assert all(f"`{name}`" in rows[risk.value] for name in mitigating)
    assert f"{len(CONTROLS)} controls:" in lines


def test_the_matrix_names_a_risk_no_control_mitigates():
    text = controls_matrix(SYNTHETIC)
    assert "| confused deputy | **none** | 0 |" in text
    assert "| code integrity | `ecr-immutable` | 1 |" in text


def test_the_readme_shows_the_current_risk_to_control_matrix():
    matrix = controls_matrix(CONTROLS).split("\n\n")[0]
    assert matrix in (ROOT / "README.md").read_text(), "README.md: paste `estate controls`' first table"
