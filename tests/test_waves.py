"""Across regions: `rollout.waves` and a server's `candidate`, from the spec to the task definitions.

A candidate runs in exactly the regions of the waves it has reached, the released image everywhere else;
the spec refuses waves that do not partition the estate's regions and a candidate that is not a new
digest of the server's own repository.
"""

from __future__ import annotations

import copy
import json

import pytest
from conftest import ACCOUNT, Plan
from hypothesis import given, settings
from hypothesis import strategies as st

from mcp_estate.components.estate import Estate
from mcp_estate.contract.validate import SpecError, parse_spec
from mcp_estate.offline.fidelity import inspect_resource
from mcp_estate.offline.runner import run_offline

RELEASED = "sha256:" + "cd" * 32
CANDIDATE = "sha256:" + "ef" * 32
REGISTRY = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"
REGIONS = ["eu-central-1", "eu-west-1", "us-east-1", "us-west-2"]
WAVES = [["us-west-2"], ["eu-central-1", "us-east-1"], ["eu-west-1"]]

THREE_WAVES = {
    "environment": "prod", "owner": "travel-platform", "aws_account_id": ACCOUNT,
    "auth": {"issuer": "https://login.example.travel/", "jwks_url": "https://login.example.travel/jwks.json"},
    "primary_region": "us-east-1",
    "domain": {"hostname": "mcp.example.travel", "zone_id": "0" * 32, "cloudflare_account_id": "f" * 32},
    "residency_groups": [
        {"name": "americas", "primary_region": "us-east-1", "countries": ["US"],
         "regions": [{"name": "us-east-1", "cidr": "10.20.0.0/16"}, {"name": "us-west-2", "cidr": "10.21.0.0/16"}]},
        {"name": "eu", "primary_region": "eu-west-1", "strict": True, "countries": ["DE"],
         "regions": [{"name": "eu-west-1", "cidr": "10.30.0.0/16"}, {"name": "eu-central-1", "cidr": "10.31.0.0/16"}]},
    ],
    "servers": [
        {"name": "booking", "image": f"{REGISTRY}/mcp/booking@{RELEASED}",
         "candidate": {"image": f"{REGISTRY}/mcp/booking@{CANDIDATE}", "waves_reached": 2}},
        {"name": "loyalty", "image": f"{REGISTRY}/mcp/loyalty@{RELEASED}"},
    ],
    "rollout": {"waves": WAVES},
    "edge": {"health_server": "booking"},
    "monitoring": {"probe_credentials_secret": "canary-oauth-client", "probe_token_cidrs": ["203.0.113.0/24"]},
}


def with_(mutate) -> dict:
    raw = copy.deepcopy(THREE_WAVES)
    mutate(raw)
    return raw


def problems_of(mutate) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(with_(mutate))
    return [str(p) for p in caught.value.problems]


def booking(raw: dict) -> dict:
    return raw["servers"][0]


def images_by_region(plan: Plan, server: str) -> dict[str, str]:
    found = {}
    for definition in plan.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        [container] = json.loads(definition.inputs["containerDefinitions"])
        if container["name"] == server:
            found[definition.inputs["tags"]["mcp-estate:region"]] = container["image"]
    return found


@pytest.fixture(scope="module")
def three_waves() -> Plan:
    spec = parse_spec(THREE_WAVES)
    return Plan(run_offline(lambda: Estate("mcp-estate", spec), stack="prod", account_id=ACCOUNT,
                            config={"mcp-estate:estate": THREE_WAVES}, inspect=inspect_resource))


# -- the program: the candidate exactly where its waves reached ------------------------------------------

def test_a_candidate_at_wave_2_of_3_runs_in_the_first_two_waves_and_nowhere_else(three_waves):
    assert images_by_region(three_waves, "booking") == {
        "us-west-2": f"{ACCOUNT}.dkr.ecr.us-west-2.amazonaws.com/mcp/booking@{CANDIDATE}",
        "eu-central-1": f"{ACCOUNT}.dkr.ecr.eu-central-1.amazonaws.com/mcp/booking@{CANDIDATE}",
        "us-east-1": f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/mcp/booking@{CANDIDATE}",
        "eu-west-1": f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/mcp/booking@{RELEASED}",
    }


def test_a_server_without_a_candidate_runs_its_released_image_everywhere(three_waves):
    assert images_by_region(three_waves, "loyalty") == {
        region: f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/mcp/loyalty@{RELEASED}" for region in REGIONS}


@settings(max_examples=40, deadline=None)
@given(order=st.permutations(REGIONS), cuts=st.sets(st.integers(1, 3)), data=st.data())
def test_any_partition_into_waves_puts_the_candidate_in_exactly_the_reached_waves(order, cuts, data):
    bounds = [0, *sorted(cuts), len(order)]
    waves = [order[a:b] for a, b in zip(bounds, bounds[1:])]
    reached = data.draw(st.integers(1, len(waves)))
    spec = parse_spec(with_(lambda raw: (raw["rollout"].update(waves=waves),
                                         booking(raw)["candidate"].update(waves_reached=reached))))
    server = spec.servers[0]
    expected = {r for wave in waves[:reached] for r in wave}
    assert set(spec.candidate_regions(server)) == expected
    for region in REGIONS:
        assert spec.image_for(server, region).endswith(CANDIDATE if region in expected else RELEASED)
        assert spec.image_for(server, region).startswith(f"{ACCOUNT}.dkr.ecr.{region}.amazonaws.com/mcp/booking@")


def test_without_declared_waves_the_estate_is_one_wave_of_every_region():
    spec = parse_spec(with_(lambda raw: (raw.pop("rollout"), booking(raw)["candidate"].update(waves_reached=1))))
    assert spec.waves == [REGIONS]
    assert spec.candidate_regions(spec.servers[0]) == REGIONS


# -- the spec: waves partition the regions ---------------------------------------------------------------

def test_a_region_in_no_wave_is_refused_naming_it():
    assert problems_of(lambda raw: raw["rollout"].update(waves=WAVES[:2])) == [
        "rollout.waves: eu-west-1 in no wave: a candidate would skip them until its release; add them to a wave"]


def test_a_region_in_two_waves_is_refused_naming_both_waves():
    assert problems_of(lambda raw: raw["rollout"]["waves"][2].append("us-west-2")) == [
        "rollout.waves[2]: 'us-west-2' is also in wave 1: a region is in exactly one wave"]


def test_a_region_twice_in_one_wave_is_refused():
    assert problems_of(lambda raw: raw["rollout"]["waves"][0].append("us-west-2")) == [
        "rollout.waves[0]: 'us-west-2' is also in wave 1: a region is in exactly one wave"]


def test_an_empty_wave_is_refused():
    assert problems_of(lambda raw: raw["rollout"]["waves"].insert(1, [])) == [
        "rollout.waves[1]: wave 2 is empty: list its regions or remove it"]


def test_a_wave_naming_a_region_outside_the_estate_is_refused():
    problems = problems_of(lambda raw: raw["rollout"]["waves"][0].append("ap-southeast-2"))
    assert problems == ["rollout.waves[0]: 'ap-southeast-2' is not a region of the estate "
                        "(eu-central-1, eu-west-1, us-east-1, us-west-2)"]


# -- the spec: a candidate is a new digest of the same repository ---------------------------------------

def test_a_candidate_from_another_repository_is_refused():
    problems = problems_of(lambda raw: booking(raw)["candidate"].update(image=f"{REGISTRY}/mcp/loyalty@{CANDIDATE}"))
    assert problems == [f"servers[booking].candidate.image: '{REGISTRY}/mcp/loyalty' is not the repository of the "
                        f"released image ({REGISTRY}/mcp/booking): a candidate is a new digest of the same repository"]


@pytest.mark.parametrize("registry", ["999988887777.dkr.ecr.us-east-1.amazonaws.com",
                                      f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com", "docker.io"])
def test_a_candidate_from_another_registry_is_refused(registry):
    [problem] = problems_of(lambda raw: booking(raw)["candidate"].update(image=f"{registry}/mcp/booking@{CANDIDATE}"))
    assert problem.startswith("servers[booking].candidate.image: ") and "not the repository" in problem


def test_a_tagged_candidate_of_the_same_repository_is_accepted():
    parse_spec(with_(lambda raw: booking(raw)["candidate"].update(image=f"{REGISTRY}/mcp/booking:2.0@{CANDIDATE}")))


def test_a_candidate_equal_to_the_released_image_is_refused():
    assert problems_of(lambda raw: booking(raw)["candidate"].update(image=booking(raw)["image"])) == [
        f"servers[booking].candidate.image: {RELEASED} is already the released image: remove the candidate "
        "(`estate promote --abort`)"]


def test_a_candidate_beyond_the_last_wave_is_refused():
    assert problems_of(lambda raw: booking(raw)["candidate"].update(waves_reached=4)) == [
        "servers[booking].candidate.waves_reached: 4 is more than the 3 wave(s) of rollout.waves"]


@pytest.mark.parametrize("image", [f"{REGISTRY}/mcp/booking:2.0", f"{REGISTRY}/mcp/booking@sha256:abc"])
def test_a_candidate_not_pinned_by_digest_is_refused(image):
    [problem] = problems_of(lambda raw: booking(raw)["candidate"].update(image=image))
    assert problem.startswith("servers[booking].candidate.image: ") and "not pinned by digest" in problem
