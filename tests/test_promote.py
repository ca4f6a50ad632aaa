"""`estate promote`: a candidate moves one wave on only when the regions it runs in are healthy.

Each test writes a three-wave prod stack file (with comments) to a temporary stacks directory and, in moto,
the live side of the regions the candidate reached: a cluster and service tagged as the components tag
them, its task definition, the server's alarms named as the components name them, and the canary's
`Success` metric. moto does not emulate `DescribeAlarmHistory` nor `ListServiceDeployments`: botocore's
Stubber answers those (checking our parameters and its answers against the service models), moto the rest.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.stub import Stubber
from conftest import ACCOUNT as PLAN_ACCOUNT
from conftest import run_program
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from mcp_estate.cli import main
from mcp_estate.components.estate import Estate
from mcp_estate.contract.names import CANARY_NAMESPACE, PhysicalNames
from mcp_estate.contract.validate import parse_spec
from mcp_estate.operations.promote import (
    PromoteError,
    abort,
    alarm_blockers,
    candidate_deployment,
    edited,
    missing_alarms,
    native_deployment_problems,
    promote,
    start,
)
from mcp_estate.operations.stack_edit import StackEditError, server_node
from mcp_estate.operations.verify import Live

ACCOUNT = "123456789012"   # moto's
RELEASED = "sha256:" + "cd" * 32
CANDIDATE = "sha256:" + "ef" * 32
REGISTRY = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
STACK = "prod"
PREFIX = "mcp-estate-prod"

STACK_FILE = f"""\
# Production. Keep this comment.
config:
  aws:region: us-east-1
  mcp-estate:estate:
    environment: prod   # where travellers are
    owner: travel-platform
    aws_account_id: "{ACCOUNT}"
    primary_region: us-east-1
    auth: {{issuer: "https://login.example.travel/", jwks_url: "https://login.example.travel/jwks.json"}}
    domain: {{hostname: mcp.example.travel, zone_id: "{"0" * 32}", cloudflare_account_id: "{"f" * 32}"}}
    residency_groups:
      - name: americas
        primary_region: us-east-1
        countries: [US]
        regions:
          - {{name: us-east-1, cidr: 10.20.0.0/16}}
          - {{name: us-west-2, cidr: 10.21.0.0/16}}
      - name: eu
        primary_region: eu-west-1
        strict: true
        countries: [DE]
        regions:
          - {{name: eu-west-1, cidr: 10.30.0.0/16}}
    rollout:
      # the smallest region first
      waves: [[us-west-2], [us-east-1], [eu-west-1]]
      wave_bake_minutes: 60
    servers:
      - name: booking
        image: '{REGISTRY}/mcp/booking@{RELEASED}'   # released
        # the candidate, on its way
        candidate:
          image: {REGISTRY}/mcp/booking@{CANDIDATE}
          waves_reached: 1   # wave count
        port: 8080
      - name: loyalty
        image: {REGISTRY}/mcp/loyalty@{RELEASED}
    edge: {{health_server: booking}}
    monitoring: {{probe_credentials_secret: canary-oauth-client, probe_token_cidrs: [203.0.113.0/24]}}
"""


@pytest.fixture
def stacks(tmp_path: Path) -> Path:
    (tmp_path / f"Pulumi.{STACK}.yaml").write_text(STACK_FILE)
    os.chmod(tmp_path / f"Pulumi.{STACK}.yaml", 0o640)
    return tmp_path


def stack_text(stacks: Path, stack: str = STACK) -> str:
    return (stacks / f"Pulumi.{stack}.yaml").read_text()


def estate_of(text: str) -> dict:
    return yaml.safe_load(text)["config"]["mcp-estate:estate"]


def booking_of(text: str) -> dict:
    return next(s for s in estate_of(text)["servers"] if s["name"] == "booking")


# -- the live side, in moto ---------------------------------------------------------------------------------

class Cloud:
    """moto's clients, with DescribeAlarmHistory answered by a Stubber per region."""

    def __init__(self):
        self.session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x")
        self.session.events.register("provide-client-params", _enum_values_only)
        self._moto, self.history = {}, {}

    def moto(self, service: str, region: str):
        if (service, region) not in self._moto:
            self._moto[service, region] = self.session.client(service, region_name=region)
        return self._moto[service, region]

    def __call__(self, service: str, region: str):
        client = self.moto(service, region)
        return _WithHistory(client, self._history(region)) if service == "cloudwatch" else client

    def _history(self, region: str):
        if region not in self.history:
            client = self.session.client("cloudwatch", region_name=region)
            self.history[region] = (client, Stubber(client), [])
            self.history[region][1].activate()
        return self.history[region]


def _enum_values_only(params, model, **_) -> None:
    """moto takes any string where AWS takes only the values its API model lists (a statistic, an alarm
    type...): every request promote and the tests make is held to the model, as AWS would hold it."""
    problems = list(_off_enum(model.input_shape, params, model.name))
    assert not problems, problems


def _off_enum(shape, value, path: str):
    if shape is None:
        return
    if shape.type_name == "structure" and isinstance(value, dict):
        for key, item in value.items():
            yield from _off_enum(shape.members.get(key), item, f"{path}.{key}")
    elif shape.type_name == "list" and isinstance(value, list):
        for index, item in enumerate(value):
            yield from _off_enum(shape.member, item, f"{path}[{index}]")
    elif getattr(shape, "enum", None) and value not in shape.enum:
        yield f"{path}: {value!r} is not one of {shape.enum}"


class _WithHistory:
    """A moto CloudWatch client whose alarm history comes from the test (Stubber-checked)."""

    def __init__(self, client, history):
        self._client, self._history = client, history

    def __getattr__(self, name):
        return getattr(self._client, name)

    def get_paginator(self, operation: str):
        if operation != "describe_alarm_history":
            return self._client.get_paginator(operation)
        client, stubber, items = self._history
        stubber.add_response("describe_alarm_history", {"AlarmHistoryItems": items})
        return client.get_paginator(operation)


@pytest.fixture
def cloud(monkeypatch):
    monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", "1")   # else moto's deployments stay IN_PROGRESS
    with mock_aws():
        yield Cloud()


def deploy(cloud: Cloud, region: str, image_digest: str, alarms=("5xx", "latency", "probe-alb"),
           deployment_alarms=("5xx", "probe-alb")) -> dict:
    """The booking service of the stack in `region`, running `image_digest`, as the components tag it."""
    ecs = cloud.moto("ecs", region)
    tags = [{"key": "mcp-estate:stack", "value": STACK}, {"key": "mcp-estate:server", "value": "booking"}]
    cluster = ecs.create_cluster(clusterName=f"{PREFIX}-{region}", tags=tags[:1])["cluster"]["clusterArn"]
    image = f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/mcp/booking@{image_digest}"
    definition = ecs.register_task_definition(
        family=f"{PREFIX}-booking", containerDefinitions=[{"name": "booking", "image": image, "memory": 512}],
    )["taskDefinition"]["taskDefinitionArn"]
    prefix = PhysicalNames(PREFIX).server_alarm_prefix("booking", region)
    ecs.create_service(cluster=cluster, serviceName=f"booking-{region}", taskDefinition=definition, desiredCount=1,
                       tags=tags, deploymentConfiguration={"alarms": {
                           "alarmNames": [prefix + a for a in deployment_alarms], "enable": True, "rollback": True}})
    ecs.update_service(cluster=cluster, service=f"booking-{region}", desiredCount=1)
    cloudwatch = cloud.moto("cloudwatch", region)
    for alarm in alarms:
        cloudwatch.put_metric_alarm(AlarmName=prefix + alarm, MetricName="m", Namespace="n", Statistic="Sum", Period=60,
                                    EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold",
                                    Tags=alarm_tags(region))
    return ecs.describe_services(cluster=cluster, services=[f"booking-{region}"])["services"][0]


def alarm_tags(region: str) -> list[dict]:
    """The contract tags the components give a server's alarms (promote finds them by these)."""
    return [{"Key": "mcp-estate:stack", "Value": STACK}, {"Key": "mcp-estate:region", "Value": region},
            {"Key": "mcp-estate:server", "Value": "booking"}]


def probe(cloud: Cloud, region: str, success: float, at: datetime | None = None) -> None:
    cloud.moto("cloudwatch", region).put_metric_data(Namespace=CANARY_NAMESPACE, MetricData=[{
        "MetricName": "Success", "Value": success, "Unit": "Count",
        "Timestamp": at or datetime.now(timezone.utc),
        "Dimensions": [{"Name": "Server", "Value": "booking"}, {"Name": "Region", "Value": region},
                       {"Name": "Path", "Value": "alb"}]}])


def later(minutes: int = 61) -> datetime:
    return datetime.now(timezone.utc) + timedelta(minutes=minutes)


def healthy_wave_1(cloud: Cloud) -> None:
    deploy(cloud, "us-west-2", CANDIDATE)
    probe(cloud, "us-west-2", 1.0)


def blockers(stacks: Path, cloud: Cloud, now: datetime | None = None) -> list[str]:
    before = stack_text(stacks)
    with pytest.raises(PromoteError) as refused:
        promote(STACK, "booking", stacks, cloud, now or later())
    assert stack_text(stacks) == before   # a refusal writes nothing
    assert refused.value.code == 1
    return refused.value.problems


# -- healthy regions advance ----------------------------------------------------------------------------------

def test_a_healthy_first_wave_advances_the_candidate_to_wave_2_changing_only_that_value(stacks, cloud):
    healthy_wave_1(cloud)
    done = promote(STACK, "booking", stacks, cloud, later())
    assert (done.action, done.waves_reached, done.regions) == ("advanced", 2, ["us-east-1", "us-west-2"])
    assert stack_text(stacks) == STACK_FILE.replace("waves_reached: 1   # wave", "waves_reached: 2   # wave")
    assert (stacks / f"Pulumi.{STACK}.yaml").stat().st_mode & 0o777 == 0o640


def test_reaching_the_last_wave_releases_the_candidate_and_removes_it(stacks, cloud):
    (stacks / f"Pulumi.{STACK}.yaml").write_text(STACK_FILE.replace("waves_reached: 1", "waves_reached: 2"))
    for region in ("us-west-2", "us-east-1"):
        deploy(cloud, region, CANDIDATE)
        probe(cloud, region, 1.0)
    done = promote(STACK, "booking", stacks, cloud, later())
    assert (done.action, done.regions) == ("released", [])
    expected = STACK_FILE.replace(f"'{REGISTRY}/mcp/booking@{RELEASED}'", f"'{REGISTRY}/mcp/booking@{CANDIDATE}'")
    expected = expected.replace(f"""        candidate:
          image: {REGISTRY}/mcp/booking@{CANDIDATE}
          waves_reached: 1   # wave count
""", "")
    assert stack_text(stacks) == expected   # the comment above the candidate stays: it is the user's
    assert "candidate" not in booking_of(stack_text(stacks))


def test_blocks_until_the_wave_bake_time_has_passed(stacks, cloud):
    healthy_wave_1(cloud)
    [problem] = blockers(stacks, cloud, now=later(30))
    assert problem.startswith("us-west-2: baking until ") and "of rollout.wave_bake_minutes 60)" in problem


# -- what blocks, naming why ----------------------------------------------------------------------------------

def test_an_alarm_in_alarm_blocks_naming_region_and_alarm(stacks, cloud):
    healthy_wave_1(cloud)
    cloud.moto("cloudwatch", "us-west-2").set_alarm_state(
        AlarmName=f"{PREFIX}-booking-us-west-2-latency", StateValue="ALARM", StateReason="test")
    assert blockers(stacks, cloud) == [f"us-west-2: alarm {PREFIX}-booking-us-west-2-latency is in ALARM"]


def test_an_alarm_that_fired_during_the_bake_window_blocks_though_it_is_ok_again(stacks, cloud):
    healthy_wave_1(cloud)
    fired = datetime.now(timezone.utc).replace(microsecond=0)
    cloud._history("us-west-2")[2].append({
        "AlarmName": f"{PREFIX}-booking-us-west-2-probe-alb", "Timestamp": fired, "HistoryItemType": "StateUpdate",
        "HistorySummary": "Alarm updated from OK to ALARM",
        "HistoryData": json.dumps({"oldState": {"stateValue": "OK"}, "newState": {"stateValue": "ALARM"}})})
    problems = blockers(stacks, cloud)
    assert f"us-west-2: alarm {PREFIX}-booking-us-west-2-probe-alb went to ALARM at {fired:%Y-%m-%d %H:%M} UTC, " \
           "since the deployment" in problems


def test_a_deployment_alarm_that_does_not_exist_blocks(stacks, cloud):
    deploy(cloud, "us-west-2", CANDIDATE, alarms=("latency",))
    probe(cloud, "us-west-2", 1.0)
    tags = f"mcp-estate:stack={STACK}, mcp-estate:region=us-west-2, mcp-estate:server=booking"
    assert blockers(stacks, cloud) == [
        f"us-west-2: no 5xx alarm tagged {tags}: nothing would see the candidate fail there",
        f"us-west-2: no probe-alb alarm tagged {tags}: nothing would see the candidate fail there"]


def test_a_deployment_alarm_outside_the_contracts_names_blocks_when_in_alarm(cloud):
    # Found by the mutation run: the alarms a service rolls back on are read from the service itself, so
    # one added by hand (another team's name) counts as much as the components' own. moto's DescribeServices
    # leaves deploymentConfiguration out: the service is given as ECS returns it.
    service = deploy(cloud, "us-west-2", CANDIDATE)
    cloudwatch = cloud.moto("cloudwatch", "us-west-2")
    cloudwatch.put_metric_alarm(AlarmName="payments-oncall-errors", MetricName="m", Namespace="n", Statistic="Sum",
                                Period=60, EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
    cloudwatch.set_alarm_state(AlarmName="payments-oncall-errors", StateValue="ALARM", StateReason="test")
    service["deploymentConfiguration"] = {"alarms": {"alarmNames": ["payments-oncall-errors"], "enable": True,
                                                     "rollback": True}}
    spec = parse_spec(estate_of(STACK_FILE))
    booking = next(s for s in spec.servers if s.name == "booking")
    since = datetime.now(timezone.utc) - timedelta(minutes=5)
    assert list(alarm_blockers(Live(spec, STACK, cloud), booking, "us-west-2", service, since)) == [
        "us-west-2: alarm payments-oncall-errors is in ALARM"]


def test_a_region_still_running_the_released_image_blocks_as_rolled_back_or_not_deployed(stacks, cloud):
    deploy(cloud, "us-west-2", RELEASED)
    [problem] = blockers(stacks, cloud)
    assert problem.startswith(f"us-west-2: service booking-us-west-2 runs {ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com/"
                              f"mcp/booking@{RELEASED}, not the candidate ")
    assert problem.endswith("run `pulumi up`, or the deployment rolled back (see the service's events)")


def test_a_failed_rolling_deployment_blocks_naming_it(cloud):
    service = deploy(cloud, "us-west-2", CANDIDATE)
    service["deployments"].append({"id": "ecs-svc/1", "status": "ACTIVE", "rolloutState": "FAILED",
                                   "rolloutStateReason": "ECS deployment circuit breaker: tasks failed to start."})
    live = Live(parse_spec(estate_of(STACK_FILE)), STACK, cloud)
    image = f"{ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com/mcp/booking@{CANDIDATE}"
    deployment, problems = candidate_deployment(live, "us-west-2", service, image)
    assert deployment is None
    assert problems == ["us-west-2: service booking-us-west-2: deployment ecs-svc/1 FAILED (ECS deployment circuit "
                        "breaker: tasks failed to start.)"]


def test_a_native_canary_deployment_that_rolled_back_blocks_naming_it():
    ecs = boto3.client("ecs", region_name="us-west-2", aws_access_key_id="x", aws_secret_access_key="x")
    service = {"serviceName": "booking-us-west-2", "clusterArn": f"arn:aws:ecs:us-west-2:{ACCOUNT}:cluster/c",
               "deploymentConfiguration": {"strategy": "CANARY"}}
    arn = f"arn:aws:ecs:us-west-2:{ACCOUNT}:service-deployment/c/booking-us-west-2/abc"
    with Stubber(ecs) as stubber:
        stubber.add_response("list_service_deployments", {"serviceDeployments": [{
            "serviceDeploymentArn": arn, "status": "ROLLBACK_SUCCESSFUL", "statusReason": "alarm 5xx"}]},
            {"cluster": service["clusterArn"], "service": "booking-us-west-2", "maxResults": 1})
        live = Live(parse_spec(estate_of(STACK_FILE)), STACK, lambda *_: ecs)
        assert native_deployment_problems(live, "us-west-2", service) == [
            f"us-west-2: service booking-us-west-2: CANARY deployment {arn} ROLLBACK_SUCCESSFUL (alarm 5xx)"]


def test_a_rolling_service_does_not_need_service_deployments():
    live = Live(parse_spec(estate_of(STACK_FILE)), STACK, lambda *_: pytest.fail("no call expected"))
    assert native_deployment_problems(live, "us-west-2", {"deploymentConfiguration": {"strategy": "ROLLING"}}) == []


def test_no_canary_probe_since_the_deployment_blocks(stacks, cloud):
    deploy(cloud, "us-west-2", CANDIDATE)
    [problem] = blockers(stacks, cloud)
    assert problem.startswith("us-west-2: no canary probe of booking since the deployment finished at ")


def test_a_failed_canary_probe_since_the_deployment_blocks(stacks, cloud):
    healthy_wave_1(cloud)
    probe(cloud, "us-west-2", 0.0)
    [problem] = blockers(stacks, cloud)
    assert problem.startswith("us-west-2: a canary probe of booking through the ALB failed at ")


def test_a_region_without_the_service_blocks(stacks, cloud):
    assert blockers(stacks, cloud) == ["us-west-2: 0 ECS services of booking found by the stack's tags, expected one"]


def test_credentials_of_another_account_are_refused_before_any_region_is_read(stacks, cloud):
    (stacks / f"Pulumi.{STACK}.yaml").write_text(STACK_FILE.replace(ACCOUNT, "999988887777"))
    with pytest.raises(PromoteError) as refused:
        promote(STACK, "booking", stacks, cloud, later())
    assert refused.value.problems == [f"the credentials are for account {ACCOUNT}, but stack 'prod' lives in account "
                                      "999988887777: select that account's profile (AWS_PROFILE)"]
    assert refused.value.code == 2


# -- abort, start, environments ---------------------------------------------------------------------------------

def test_abort_removes_the_candidate_and_nothing_else(stacks):
    done = abort(STACK, "booking", stacks)
    assert (done.action, done.regions) == ("aborted", [])
    assert stack_text(stacks) == STACK_FILE.replace(f"""        candidate:
          image: {REGISTRY}/mcp/booking@{CANDIDATE}
          waves_reached: 1   # wave count
""", "")
    spec = parse_spec(estate_of(stack_text(stacks)))
    assert {spec.image_for(spec.servers[0], r).rsplit("@", 1)[1] for r in spec.regions} == {RELEASED}


WITHOUT_CANDIDATE = STACK_FILE.replace(f"""        candidate:
          image: {REGISTRY}/mcp/booking@{CANDIDATE}
          waves_reached: 1   # wave count
""", "")
WAVE_REGIONS = ("us-west-2", "us-east-1", "eu-west-1")


def no_aws(service: str, region: str):
    pytest.fail(f"AWS read ({service} in {region}) for a start refused on its input alone")


def staging_releasing(stacks: Path, digest: str) -> None:
    """The staging stack file, releasing `digest` for booking; prod has no candidate yet."""
    (stacks / f"Pulumi.{STACK}.yaml").write_text(WITHOUT_CANDIDATE)
    staging = WITHOUT_CANDIDATE.replace("environment: prod", "environment: staging").replace(RELEASED, digest, 1)
    (stacks / "Pulumi.staging.yaml").write_text(staging)


def replicate(cloud: Cloud, digest: str, regions=WAVE_REGIONS, repository: str = "mcp/booking") -> None:
    """The digest in the stack's registry, in `regions` (moto's ECR has no replication: put per region)."""
    config = {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2, "digest": "sha256:" + "0" * 64}
    for region in regions:
        ecr = cloud.moto("ecr", region)
        if not ecr.describe_repositories()["repositories"]:
            ecr.create_repository(repositoryName=repository)
        ecr.put_image(repositoryName=repository, imageDigest=digest, imageTag=digest[7:17], imageManifest=json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": config, "layers": [], "annotations": {"digest": digest}}))


def start_refused(stacks: Path, clients, source=None, image=None) -> PromoteError:
    before = stack_text(stacks)
    with pytest.raises(PromoteError) as refused:
        start(STACK, "booking", stacks, source, image, clients)
    assert stack_text(stacks) == before   # a refusal writes nothing
    return refused.value


def test_start_takes_the_digest_released_in_the_previous_environment(stacks, cloud):
    staging_releasing(stacks, CANDIDATE)
    replicate(cloud, CANDIDATE)
    done = start(STACK, "booking", stacks, None, None, cloud)
    assert (done.action, done.regions) == ("started", ["us-west-2"])
    assert booking_of(stack_text(stacks))["candidate"] == {"image": f"{REGISTRY}/mcp/booking@{CANDIDATE}",
                                                            "waves_reached": 1}
    assert stack_text(stacks).startswith("# Production. Keep this comment.\n")


@pytest.mark.parametrize("missing", WAVE_REGIONS)
def test_start_refuses_a_digest_missing_from_any_region_of_the_waves_naming_it(stacks, cloud, missing):
    """The first wave's region alone is not enough: the candidate would stall at a later wave."""
    staging_releasing(stacks, CANDIDATE)
    replicate(cloud, CANDIDATE, [r for r in WAVE_REGIONS if r != missing])
    refused = start_refused(stacks, cloud)
    assert refused.code == 2
    assert refused.problems == ["not yet replicated to every region running the server (replication may lag: "
                                "rerun in a few minutes)", f"{missing}: no repository mcp/booking@{CANDIDATE[:19]}..."]


def test_start_refuses_a_region_holding_only_older_images(stacks, cloud):
    staging_releasing(stacks, CANDIDATE)
    replicate(cloud, CANDIDATE, ["us-west-2", "us-east-1"])
    replicate(cloud, RELEASED, ["eu-west-1"])
    assert start_refused(stacks, cloud).problems[1:] == [f"eu-west-1: no image mcp/booking@{CANDIDATE[:19]}..."]


def test_start_checks_the_stacks_own_account_before_reading_its_registry(stacks, cloud):
    staging_releasing(stacks, CANDIDATE)
    (stacks / f"Pulumi.{STACK}.yaml").write_text(WITHOUT_CANDIDATE.replace(ACCOUNT, "999988887777"))
    replicate(cloud, CANDIDATE)
    assert start_refused(stacks, cloud).problems == [
        f"the credentials are for account {ACCOUNT}, but stack 'prod' lives in account 999988887777: select that "
        "account's profile (AWS_PROFILE)"]


def test_start_in_dev_checks_replication_of_the_digest_given_by_hand(stacks, cloud):
    (stacks / f"Pulumi.{STACK}.yaml").write_text(WITHOUT_CANDIDATE.replace("environment: prod", "environment: dev"))
    replicate(cloud, CANDIDATE, ["us-west-2"])
    assert start_refused(stacks, cloud, image=CANDIDATE).problems[1:] == [
        f"{region}: no repository mcp/booking@{CANDIDATE[:19]}..." for region in ("eu-west-1", "us-east-1")]
    assert start_refused(stacks, no_aws, image="sha256:abc").problems == [
        "--image sha256:abc: not a digest; give sha256:<64 lowercase hex> (or repo@sha256:...)"]


def test_start_refuses_a_digest_not_released_in_the_previous_environment(stacks):
    staging_releasing(stacks, RELEASED)   # staging releases what prod already runs
    assert start_refused(stacks, no_aws).problems == [f"servers[booking] already runs {RELEASED} as its released image"]


def test_start_in_prod_refuses_a_digest_given_by_hand(stacks):
    abort(STACK, "booking", stacks)
    assert start_refused(stacks, no_aws, image=CANDIDATE).problems == [
        "a prod candidate comes from staging, not by hand: drop --image; its digest is the image released in staging"]


def test_start_in_prod_refuses_without_a_staging_stack(stacks):
    abort(STACK, "booking", stacks)
    [problem] = start_refused(stacks, no_aws).problems
    assert problem.startswith("the staging stack 'staging' decides what may enter: ")
    assert "no such stack file" in problem


def test_start_refuses_a_from_stack_of_the_wrong_environment(stacks):
    abort(STACK, "booking", stacks)
    (stacks / "Pulumi.other.yaml").write_text(STACK_FILE.replace("environment: prod", "environment: dev"))
    assert start_refused(stacks, no_aws, source="other").problems == [
        "stack 'other' is dev, not staging: name the staging stack with --from"]


def test_start_refuses_while_a_candidate_is_in_flight(stacks):
    assert "already has a candidate" in start_refused(stacks, no_aws).problems[0]


# -- error paths -------------------------------------------------------------------------------------------------

def test_an_unknown_server_is_refused_naming_the_known_ones(stacks, cloud):
    with pytest.raises(PromoteError) as refused:
        promote(STACK, "hotel", stacks, cloud, later())
    assert refused.value.problems == ["no server 'hotel' in stack 'prod' (servers: booking, loyalty)"]
    assert refused.value.code == 2


def test_a_server_without_candidate_cannot_be_promoted_or_aborted(stacks, cloud):
    with pytest.raises(PromoteError, match="has no candidate"):
        promote(STACK, "loyalty", stacks, cloud, later())
    with pytest.raises(PromoteError, match="has no candidate to abort"):
        abort(STACK, "loyalty", stacks)


def test_a_flow_style_server_is_refused_rather_than_edited_unsafely():
    block = f"""      - name: loyalty\n        image: {REGISTRY}/mcp/loyalty@{RELEASED}"""
    text = STACK_FILE.replace(block, f"      - {{name: loyalty, image: {REGISTRY}/mcp/loyalty@{RELEASED}}}")
    assert text != STACK_FILE
    with pytest.raises(PromoteError, match="cannot change safely"):
        edited(text, "loyalty", "started", f"{REGISTRY}/mcp/loyalty@{CANDIDATE}", 1)


def test_the_cli_exits_1_naming_what_blocks_and_2_on_bad_input(stacks, capsys, monkeypatch):
    monkeypatch.setattr("mcp_estate.operations.verify.Clients.from_environment", lambda: None)
    monkeypatch.setattr("mcp_estate.operations.promote.health_blockers", lambda *_: iter(["us-west-2: alarm x"]))
    assert main(["promote", "--stack", STACK, "--server", "booking", "--stacks-dir", str(stacks)]) == 1
    assert capsys.readouterr().err == ("estate promote: servers[booking] not promoted, nothing written:\n"
                                       "  us-west-2: alarm x\n")
    assert main(["promote", "--stack", STACK, "--server", "booking", "--image", CANDIDATE,
                 "--stacks-dir", str(stacks)]) == 2
    assert main(["promote", "--stack", STACK, "--server", "booking", "--abort", "--stacks-dir", str(stacks)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{stacks / f'Pulumi.{STACK}.yaml'}: servers[booking]: ")   # the file it wrote
    assert "candidate removed: every region returns to" in out


# -- any partition: the edit moves the candidate to exactly the next wave ------------------------------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(["us-east-1", "us-west-2", "eu-west-1"]), cut=st.sets(st.integers(1, 2)),
       data=st.data())
def test_any_waves_partition_advances_to_exactly_the_next_waves_regions(order, cut, data):
    bounds = [0, *sorted(cut), 3]
    waves = [order[a:b] for a, b in zip(bounds, bounds[1:])]
    reached = data.draw(st.integers(1, len(waves)))
    text = STACK_FILE.replace("waves: [[us-west-2], [us-east-1], [eu-west-1]]", f"waves: {json.dumps(waves)}")
    text = text.replace("waves_reached: 1", f"waves_reached: {reached}")
    nxt = reached + 1
    action = "released" if nxt >= len(waves) else "advanced"
    after = parse_spec(estate_of(edited(text, "booking", action, f"{REGISTRY}/mcp/booking@{CANDIDATE}", nxt)))
    booking = after.servers[0]
    if action == "advanced":
        assert set(after.candidate_regions(booking)) == {r for w in waves[:nxt] for r in w}
    else:
        assert booking.candidate is None and booking.digest == CANDIDATE


# -- the contract: promote finds every alarm of a server in a region by its tags, whatever the estate's name --

@pytest.mark.parametrize("estate_name", ["mcp-estate", "travel-mcp"])
def test_every_planned_alarm_of_a_server_carries_the_tags_promote_reads(estate_name):
    spec = parse_spec(estate_of(STACK_FILE.replace(ACCOUNT, PLAN_ACCOUNT)))
    plan = run_program(lambda: Estate(estate_name, spec), stack=STACK)
    alarms = [r for r in plan.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") if "-booking-" in r.inputs["name"]]
    assert alarms
    for alarm in alarms:
        region = alarm.inputs["tags"]["mcp-estate:region"]
        assert alarm.inputs["name"].startswith(f"{estate_name}-{STACK}-booking-{region}-"), alarm.inputs["name"]
        assert {k: alarm.inputs["tags"].get(k) for k in ("mcp-estate:stack", "mcp-estate:server")} == {
            "mcp-estate:stack": STACK, "mcp-estate:server": "booking"}, alarm.inputs["name"]
    services = plan.of_type("aws:ecs/service:Service")
    for service in (s for s in services if s.inputs["tags"]["mcp-estate:server"] == "booking"):
        region = service.inputs["tags"]["mcp-estate:region"]
        tagged = sorted(a.inputs["name"] for a in alarms if a.inputs["tags"]["mcp-estate:region"] == region)
        assert set(service.inputs["alarms"]["alarmNames"]) <= set(tagged)
        booking = next(s for s in spec.servers if s.name == "booking")
        assert list(missing_alarms(Live(spec, STACK, None), booking, region, tagged)) == []


def test_a_server_named_only_through_a_yaml_merge_key_is_refused_rather_than_edited_elsewhere():
    # Found by the mutation run: the edit finds the server's item by its own `name:` line; one that takes its
    # name from a merge key (`<<: *anchor`) has none, and the refusal says which item it looked for.
    text = ("config:\n  mcp-estate:estate:\n    base: &booking\n      name: booking\n"
            "    servers:\n      - <<: *booking\n        image: x\n")
    with pytest.raises(StackEditError) as refused:
        server_node(text, "booking")
    assert refused.value.problems == ["no `- name: booking` item under `mcp-estate:estate.servers`"]
