"""Composable by platform teams: the stack outputs other stacks read through `StackReference`, the
component outputs in `estate plan --out`, and the engine's refusal of two resources with one URN."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pytest
from conftest import ACCOUNT, Plan, run_program, shipped_plan, stack_config
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await
from test_estate import SMALL
from test_first_deploy import foundation_of

from mcp_estate.cli import main
from mcp_estate.components import estate as estate_module
from mcp_estate.components.estate import Estate, estate_stack
from mcp_estate.contract.validate import parse_spec
from mcp_estate.offline.runner import DuplicateUrnError, run_offline

DEV_KEY = "arn:aws:kms:eu-west-1:111122223333:key/mrk-8932d826881c81401c05b91b1fe7d369"
DEV_ALB = "mcp-estate-dev-eu-west-1"   # named from the stack and region
DEV_OUTPUTS = {
    "hostname": "mcp.dev.example.travel",
    "regions": {"eu-west-1": {
        "residency_group": "dev",
        "alb_dns_name": f"{DEV_ALB}-4050420063.eu-west-1.elb.amazonaws.com",
        "alb_arn": f"arn:aws:elasticloadbalancing:eu-west-1:{ACCOUNT}:loadbalancer/app/{DEV_ALB}/f16c815f6e1619d1",
        "cluster_name": "mcp-estate-dev-eu-west-1",
        "service_names": {"booking": "mcp-estate-eu-west-1-booking-service-da1dfc1"}}},
    "residency_groups": {"dev": {
        "primary_region": "eu-west-1", "regions": ["eu-west-1"], "key_arns": {"eu-west-1": DEV_KEY},
        "state_table_name": "mcp-estate-dev-dev-state"}},
    "repository_urls": {"booking": f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/mcp/booking"},
    "secret_arns": {},
}


def dev_spec():
    return parse_spec(stack_config("dev")["mcp-estate:estate"])


@pytest.fixture(scope="module")
def dev() -> Plan:
    return shipped_plan("dev")


# -- stack outputs ---------------------------------------------------------------------------------

def test_the_dev_stack_exports_hostname_regions_groups_and_repositories(dev):
    assert dev.one("pulumi:pulumi:Stack").outputs == DEV_OUTPUTS


def test_the_estate_component_registers_the_same_outputs_with_real_values(dev):
    assert dev.one("mcp-estate:index:Estate").outputs == DEV_OUTPUTS


def test_every_output_names_a_resource_of_the_plan(dev):
    region = DEV_OUTPUTS["regions"]["eu-west-1"]
    alb = dev.one("aws:lb/loadBalancer:LoadBalancer")
    assert (alb.outputs["dnsName"], alb.outputs["arn"]) == (region["alb_dns_name"], region["alb_arn"])
    assert dev.one("aws:ecs/cluster:Cluster").outputs["name"] == region["cluster_name"]
    assert dev.one("aws:ecs/service:Service").outputs["name"] == region["service_names"]["booking"]
    assert dev.one("aws:dynamodb/table:Table").outputs["name"] == "mcp-estate-dev-dev-state"
    assert dev.named("mcp-estate-estate-wide-dev-keys-eu-west-1-key").outputs["arn"] == DEV_KEY


def test_component_outputs_are_what_they_register_not_a_made_up_id(dev):
    """In `pulumi stack export` a component has no id: its outputs are its `register_outputs`."""
    assert dev.named("mcp-estate-estate-wide-dev-state").outputs == {
        "table_name": "mcp-estate-dev-dev-state",
        "table_arn": f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/mcp-estate-dev-dev-state"}
    assert dev.named("mcp-estate-dashboards").outputs == {}
    assert all("id" not in r.export() for r in dev.resources if not r.custom)


def test_every_region_and_group_of_a_multi_region_estate_is_exported():
    spec = parse_spec(SMALL)
    outputs = run_program(lambda: estate_stack(spec)).one("pulumi:pulumi:Stack").outputs
    assert {r: o["residency_group"] for r, o in outputs["regions"].items()} == {
        "us-east-1": "americas", "eu-west-1": "eu", "eu-central-1": "eu"}
    assert {r: sorted(o["service_names"]) for r, o in outputs["regions"].items()} == {
        r: ["booking", "loyalty"] for r in ("us-east-1", "eu-west-1", "eu-central-1")}
    eu = outputs["residency_groups"]["eu"]
    assert (eu["primary_region"], eu["regions"], sorted(eu["key_arns"]), eu["state_table_name"]) == (
        "eu-west-1", ["eu-central-1", "eu-west-1"], ["eu-central-1", "eu-west-1"], "mcp-estate-test-eu-state")
    assert outputs["secret_arns"]["booking-api-key"].startswith(
        f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:mcp-estate-test/booking-api-key-")


def test_a_foundation_stage_exports_keys_and_repositories_but_no_regions_or_tables_yet():
    spec = parse_spec(foundation_of(SMALL))
    outputs = run_program(lambda: estate_stack(spec)).one("pulumi:pulumi:Stack").outputs
    assert sorted(outputs) == ["hostname", "repository_urls", "residency_groups", "secret_arns"]
    assert sorted(outputs["residency_groups"]["eu"]) == ["key_arns", "primary_region", "regions"]
    assert sorted(outputs["repository_urls"]) == ["booking", "loyalty"]


class ExportedStack(pulumi_mocks.Mocks):
    """The engine's answer to a `StackReference`: the referenced stack's outputs (from its export)."""

    def __init__(self, outputs: dict):
        self.outputs, self.created = outputs, {}

    def new_resource(self, args):
        if args.typ == "pulumi:pulumi:StackReference":
            return args.resource_id, {"name": args.inputs["name"], "outputs": self.outputs,
                                      "secretOutputNames": []}
        self.created[args.name] = args.inputs
        return f"{args.name}-id", args.inputs

    def call(self, args):
        return {}


def test_a_consuming_stack_reads_the_regions_through_a_stack_reference(dev):
    mocks = ExportedStack(dev.one("pulumi:pulumi:Stack").outputs)

    def consumer():
        regions = pulumi.StackReference("acme/mcp-estate/dev").get_output("regions")
        eu = regions.apply(lambda r: r["eu-west-1"])
        aws.route53.Record("origin", zone_id="Z0123456789", name="mcp-origin.internal.example", type="CNAME",
                           ttl=60, records=[eu.apply(lambda r: r["alb_dns_name"])])
        aws.cloudwatch.MetricAlarm("cpu", namespace="AWS/ECS", metric_name="CPUUtilization",
                                   comparison_operator="GreaterThanThreshold", threshold=80, period=60,
                                   evaluation_periods=5, statistic="Average",
                                   dimensions={"ClusterName": eu.apply(lambda r: r["cluster_name"])})

    settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project="consumer", stack="dev", preview=False)
    _sync_await(run_pulumi_func(consumer))
    assert mocks.created["origin"]["records"] == [DEV_OUTPUTS["regions"]["eu-west-1"]["alb_dns_name"]]
    assert mocks.created["cpu"]["dimensions"] == {"ClusterName": "mcp-estate-dev-eu-west-1"}


# -- duplicate URNs ------------------------------------------------------------------------------

class Box(pulumi.ComponentResource):
    def __init__(self, name: str, children: list[tuple[type, str]], opts: pulumi.ResourceOptions | None = None):
        super().__init__("test:index:Box", name, None, opts)
        for kind, child in children:
            kind(child, opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({})


def plan_raw(program) -> list:
    return run_offline(program, stack="test", config={}, account_id=ACCOUNT)


class Crate(pulumi.ComponentResource):
    """A component of another type holding a `Box`: its children's URNs carry both types."""

    def __init__(self, name: str, box: str, children: list[tuple[type, str]]):
        super().__init__("test:index:Crate", name)
        Box(box, children, opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({})


def test_two_resources_with_one_name_and_type_under_one_parent_are_refused_naming_each():
    with pytest.raises(DuplicateUrnError) as error:
        plan_raw(lambda: Box("box", [(aws.sqs.Queue, "jobs"), (aws.sqs.Queue, "jobs"),
                                     (aws.sns.Topic, "alerts"), (aws.sns.Topic, "alerts"),
                                     (aws.sns.Topic, "jobs")]))
    queue = "urn:pulumi:test::mcp-estate::test:index:Box$aws:sqs/queue:Queue::jobs"
    topic = "urn:pulumi:test::mcp-estate::test:index:Box$aws:sns/topic:Topic::alerts"
    box = "urn:pulumi:test::mcp-estate::test:index:Box::box"
    assert str(error.value).splitlines() == [
        f"Duplicate resource URN '{urn}'; try giving it a unique name (registered 2 times, under '{box}', '{box}')"
        for urn in sorted([queue, topic])]


def test_children_of_two_components_of_one_type_collide_as_the_urn_holds_types_not_parent_names():
    with pytest.raises(DuplicateUrnError) as error:
        plan_raw(lambda: [Box("a", [(aws.sqs.Queue, "jobs")]), Box("b", [(aws.sqs.Queue, "jobs")])])
    assert str(error.value) == (
        "Duplicate resource URN 'urn:pulumi:test::mcp-estate::test:index:Box$aws:sqs/queue:Queue::jobs'; "
        "try giving it a unique name (registered 2 times, under "
        "'urn:pulumi:test::mcp-estate::test:index:Box::a', 'urn:pulumi:test::mcp-estate::test:index:Box::b')")


def test_the_urn_holds_every_ancestor_type_as_the_engine_builds_it():
    """The SDK's mocks qualify a type by its parent's type alone; the engine by the whole chain
    (resource.NewURN): a Box in a Crate and a Box at the root hold different URNs, with the
    root stack's type left out."""
    resources = plan_raw(lambda: [Crate("x", "a", [(aws.sqs.Queue, "jobs")]), Box("b", [(aws.sqs.Queue, "jobs")])])
    assert sorted(r.urn for r in resources if r.name == "jobs") == [
        "urn:pulumi:test::mcp-estate::test:index:Box$aws:sqs/queue:Queue::jobs",
        "urn:pulumi:test::mcp-estate::test:index:Crate$test:index:Box$aws:sqs/queue:Queue::jobs"]


def test_children_under_parents_of_one_type_chain_collide_whatever_the_parents_names():
    with pytest.raises(DuplicateUrnError) as error:
        plan_raw(lambda: [Crate("x", "a", [(aws.sqs.Queue, "jobs")]), Crate("y", "b", [(aws.sqs.Queue, "jobs")])])
    assert str(error.value).splitlines()[0].startswith(
        "Duplicate resource URN "
        "'urn:pulumi:test::mcp-estate::test:index:Crate$test:index:Box$aws:sqs/queue:Queue::jobs'")
    assert len(str(error.value).splitlines()) == 1   # the boxes are named apart: only the queues collide


def test_one_name_for_different_types_or_under_different_parent_types_is_no_collision():
    resources = plan_raw(lambda: [Box("a", [(aws.sqs.Queue, "jobs"), (aws.sns.Topic, "jobs")]),
                                  aws.sqs.Queue("jobs")])
    assert len([r for r in resources if r.name == "jobs"]) == 3


def test_two_named_estates_plan_in_one_program_without_collision():
    spec = dev_spec()
    one = plan_raw(lambda: Estate("a", spec))
    both = plan_raw(lambda: [Estate("a", spec), Estate("b", spec)])
    estate_urns = sorted(r.urn for r in both if r.type != "pulumi:pulumi:Stack")
    assert len(estate_urns) == len(set(estate_urns)) == 2 * (len(one) - 1)
    assert {r.name.split("-", 1)[0] for r in both if r.type != "pulumi:pulumi:Stack"} == {"a", "b"}
    tables = sorted(r.inputs["name"] for r in both if r.type == "aws:dynamodb/table:Table")
    assert tables == ["a-test-dev-state", "b-test-dev-state"]   # physical names apart too


def test_estate_plan_exits_1_listing_every_collision(monkeypatch, capsys):
    """Two estates of one name in one program: every child collides, and each collision is named."""
    monkeypatch.setattr(estate_module, "estate_stack", lambda spec: [Estate("mcp-estate", spec) for _ in "ab"])
    assert main(["plan", "--stack", "dev"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("estate plan: the engine would refuse the program: resources share a URN")
    assert "Duplicate resource URN 'urn:pulumi:dev::mcp-estate::mcp-estate:index:Estate$" \
           "mcp-estate:index:EstateWide$mcp-estate:registry:Registry::mcp-estate-estate-wide-registry'" in err
    assert err.count("Duplicate resource URN") == len(shipped_plan("dev").resources) - 1   # all but the stack
