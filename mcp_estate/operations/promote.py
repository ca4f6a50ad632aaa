"""`estate promote`: move a server's candidate image one wave on, once the waves it reached are healthy.

A candidate (`servers[x].candidate`) runs in the regions of the waves it has reached (`rollout.waves`);
`pulumi up` deploys it there. Promotion reads the live estate (read-only clients, as `estate verify`)
and refuses, naming the region and the reason, unless in every reached region:
- the server's ECS service runs the candidate in a completed deployment, no deployment of it failed or
  rolled back (`describe_services`; for ECS-native CANARY/LINEAR/BLUE_GREEN services also the service
  deployments, `list_service_deployments`);
- none of the server's alarms in the region (5xx, latency, unhealthy targets, the canary's probes and
  any other tagged with the stack, the region and the server) is in ALARM or went to ALARM since the deployment
  started (`describe_alarm_history`);
- the canary probed the server through the region's ALB since the deployment finished and every probe
  succeeded (its `Success` metric);
- `rollout.wave_bake_minutes` have passed since the deployment finished.
Then it edits the stack file (one value, or the candidate's lines: comments and the rest stay byte for
byte) so the promotion is a reviewed pull request: `waves_reached` + 1, or, on reaching the last wave,
the candidate becomes the released `image` and `candidate` goes. `--abort` removes the candidate (every
region returns to the released image); `--start` starts one at wave 1, with the digest released in the
previous environment (dev -> staging -> prod), or, in dev, a digest given with `--image`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from mcp_estate.contract.fields import DIGEST_IMAGE
from mcp_estate.contract.names import CANARY_NAMESPACE, CANARY_SUCCESS_METRIC, REGION_TAG, SERVER_TAG, STACK_TAG
from mcp_estate.contract.spec import EstateSpec, Server
from mcp_estate.contract.stackfile import load_spec, stack_path
from mcp_estate.contract.validate import SpecError

from .lock import LockError, present_everywhere
from .stack_edit import (
    StackEditError,
    check_edit,
    child,
    insert_line_after,
    key_node,
    one_line_scalar,
    remove_key,
    replace_scalar,
    server_node,
    write_atomically,
)
from .verify import Live, VerifyError, check_account, chunks, explain, services_by_server

PREVIOUS_ENVIRONMENT = {"staging": "dev", "prod": "staging"}
NATIVE_STRATEGIES = frozenset({"CANARY", "LINEAR", "BLUE_GREEN"})
ROLLED_BACK = frozenset({"ROLLBACK_REQUESTED", "ROLLBACK_IN_PROGRESS", "ROLLBACK_SUCCESSFUL", "ROLLBACK_FAILED",
                         "STOPPED", "STOP_REQUESTED"})
# The alarms the estate always gives a server in a region (components: mcp_service, canary): missing, the
# region is not watched as the promotion assumes (tests/test_promote.py binds them to the plan).
REQUIRED_ALARMS = ("5xx", "latency", "probe-alb")
CANARY_PATH = "alb"   # the region's own servers: through the edge, a probe may reach another region


class PromoteError(StackEditError):
    """A refusal, nothing written: one line per blocking reason."""


@dataclass(frozen=True)
class Promoted:
    path: Path
    server: str
    action: str          # "advanced", "released", "aborted", "started"
    image: str
    waves_reached: int   # after the edit (0 once released or aborted)
    regions: list[str]   # the regions that now (after `pulumi up`) run the candidate


# -- the commands ----------------------------------------------------------------------------------------

def promote(stack: str, server_name: str, stacks_dir: Path, clients: Callable[[str, str], Any],
            now: datetime) -> Promoted:
    """One wave on when the reached waves are healthy; raises PromoteError, writing nothing, otherwise."""
    spec, server = _load(stack, server_name, stacks_dir)
    if server.candidate is None:
        raise PromoteError([f"servers[{server.name}] has no candidate: start one with `estate promote --start`"])
    blocking = list(health_blockers(Live(spec, stack, clients), server, now))
    if blocking:
        raise PromoteError(blocking, 1)
    reached = server.candidate.waves_reached + 1
    if reached >= len(spec.waves):
        return _edit(stack, stacks_dir, server, "released", server.candidate.image, 0)
    return _edit(stack, stacks_dir, server, "advanced", server.candidate.image, reached)


def abort(stack: str, server_name: str, stacks_dir: Path) -> Promoted:
    spec, server = _load(stack, server_name, stacks_dir)
    if server.candidate is None:
        raise PromoteError([f"servers[{server.name}] has no candidate to abort"])
    return _edit(stack, stacks_dir, server, "aborted", server.image, 0)


def start(stack: str, server_name: str, stacks_dir: Path, source: str | None, image: str | None,
          clients: Callable[[str, str], Any]) -> Promoted:
    """A candidate at wave 1: the digest released in the previous environment's stack (`source`, by
    default the stack named after that environment); only dev, the first, takes a digest by hand. The
    digest must already be in the stack's registry in every region the waves will take it to."""
    spec, server = _load(stack, server_name, stacks_dir)
    if server.candidate is not None:
        raise PromoteError([f"servers[{server.name}] already has a candidate "
                            f"(...@{_digest(server.candidate.image)[:19]}..., wave {server.candidate.waves_reached}): "
                            "promote or abort it first"])
    previous = PREVIOUS_ENVIRONMENT.get(spec.environment)
    if previous is None:
        if image is None:
            raise PromoteError(["dev is the first environment: give the digest with --image sha256:<64 hex>"])
        digest = image.rsplit("@", 1)[-1]
        if not DIGEST_IMAGE.match(f"{server.repository}@{digest}"):
            raise PromoteError([f"--image {image}: not a digest; give sha256:<64 lowercase hex> (or repo@sha256:...)"])
    else:
        if image is not None:
            raise PromoteError([f"a {spec.environment} candidate comes from {previous}, not by hand: drop --image; "
                                f"its digest is the image released in {previous}"])
        digest = released_in(source or previous, previous, server.name, stacks_dir)
    if digest == server.digest:
        raise PromoteError([f"servers[{server.name}] already runs {digest} as its released image"])
    replicated(Live(spec, stack, clients), server, digest)
    candidate = f"{server.registry_host}/{server.repository}@{digest}"
    return _edit(stack, stacks_dir, server, "started", candidate, 1)


def replicated(live: Live, server: Server, digest: str) -> None:
    """Refuse, naming each region, a digest missing from the regional replica of the stack's registry in
    any region of the server's waves: its tasks there could never pull it, and the promotion would stall
    on a failed deployment (or, in another account, on a digest only the previous environment holds)."""
    registry = server.registry_host.split(".", 1)[0]
    with _reading_aws():
        check_account(live)
        try:
            present_everywhere(lambda region: live.clients("ecr", region), registry, server.repository, digest,
                               live.spec.server_regions(server))
        except LockError as error:
            raise PromoteError(error.problems, error.code) from None


def released_in(stack: str, environment: str, server: str, stacks_dir: Path) -> str:
    """The digest `server` has released (not a candidate) in `stack`, which must be of `environment`."""
    try:
        spec, found = _load(stack, server, stacks_dir)
    except PromoteError as error:
        raise PromoteError([f"the {environment} stack '{stack}' decides what may enter: {p}"
                            for p in error.problems]) from None
    if spec.environment != environment:
        raise PromoteError([f"stack '{stack}' is {spec.environment}, not {environment}: name the {environment} "
                            "stack with --from"])
    return found.digest


# -- health of the reached waves ---------------------------------------------------------------------------

def health_blockers(live: Live, server: Server, now: datetime) -> Iterator[str]:
    """Every reason the regions running the candidate are not (yet) healthy, by region."""
    with _reading_aws():
        check_account(live)
        for region in live.spec.candidate_regions(server):
            yield from region_blockers(live, server, region, now)


@contextmanager
def _reading_aws() -> Iterator[None]:
    """AWS's errors as refusals for people (exit 2): nothing is written."""
    try:
        yield
    except NoCredentialsError:
        raise PromoteError(["no AWS credentials found: set AWS_PROFILE for the stack's account"]) from None
    except ClientError as error:
        raise PromoteError([explain(error)]) from None
    except BotoCoreError as error:
        raise PromoteError([str(error)]) from None
    except VerifyError as error:   # another account's credentials
        raise PromoteError([str(error)]) from None


def region_blockers(live: Live, server: Server, region: str, now: datetime) -> Iterator[str]:
    services = services_by_server(live, region).get(server.name, [])
    if len(services) != 1:
        yield f"{region}: {len(services)} ECS services of {server.name} found by the stack's tags, expected one"
        return
    service = services[0]
    deployment, problems = candidate_deployment(live, region, service, live.spec.image_for(server, region))
    yield from problems
    if deployment is None:
        return
    started, finished = deployment["createdAt"], deployment["updatedAt"]
    yield from alarm_blockers(live, server, region, service, started)
    yield from canary_blockers(live, server, region, finished, now)
    ready = finished + timedelta(minutes=live.spec.rollout.wave_bake_minutes)
    if now < ready:
        left = int((ready - now).total_seconds() // 60) + 1
        yield (f"{region}: baking until {ready:%Y-%m-%d %H:%M} UTC ({left} min left of "
               f"rollout.wave_bake_minutes {live.spec.rollout.wave_bake_minutes})")


def candidate_deployment(live: Live, region: str, service: dict, image: str) -> tuple[dict | None, list[str]]:
    """The service's completed deployment running `image`, and what is wrong with its deployments."""
    name = f"{region}: service {service['serviceName']}"
    problems = [f"{name}: deployment {d['id']} {d['rolloutState']} ({d.get('rolloutStateReason', 'no reason')})"
                for d in service.get("deployments", []) if d.get("rolloutState") == "FAILED"]
    problems += native_deployment_problems(live, region, service)
    primary = next((d for d in service.get("deployments", []) if d.get("status") == "PRIMARY"), None)
    if primary is None:
        return None, [*problems, f"{name} has no primary deployment"]
    running = definition_images(live, region, primary["taskDefinition"])
    if image not in running:
        return None, [*problems, f"{name} runs {', '.join(running) or 'no image'}, not the candidate {image}: run "
                                 "`pulumi up`, or the deployment rolled back (see the service's events)"]
    if primary.get("rolloutState") != "COMPLETED":
        return None, [*problems, f"{name}: deployment {primary['id']} is {primary.get('rolloutState')}, "
                                 "not COMPLETED: wait for it"]
    return (None if problems else primary), problems


def native_deployment_problems(live: Live, region: str, service: dict) -> list[str]:
    """ECS-native strategies record each deployment and its rollback as a service deployment."""
    strategy = service.get("deploymentConfiguration", {}).get("strategy", "ROLLING")
    if strategy not in NATIVE_STRATEGIES:
        return []
    ecs = live.clients("ecs", region)
    found = ecs.list_service_deployments(cluster=service["clusterArn"], service=service["serviceName"],
                                         maxResults=1)["serviceDeployments"]
    return [f"{region}: service {service['serviceName']}: {strategy} deployment {d['serviceDeploymentArn']} "
            f"{d['status']} ({d.get('statusReason', 'no reason')})" for d in found if d["status"] in ROLLED_BACK]


def definition_images(live: Live, region: str, arn: str) -> list[str]:
    definition = live.clients("ecs", region).describe_task_definition(taskDefinition=arn)["taskDefinition"]
    return sorted(c.get("image", "") for c in definition["containerDefinitions"])


def alarm_names(live: Live, server: Server, region: str, service: dict) -> list[str]:
    """The server's alarms in the region, found by their contract tags (the service's and the canary's:
    stack, region and server), and every deployment alarm the live service rolls back on."""
    tags = alarm_tags(live, server, region)
    pages = live.clients("resourcegroupstaggingapi", region).get_paginator("get_resources").paginate(
        TagFilters=[{"Key": key, "Values": [value]} for key, value in tags.items()],
        ResourceTypeFilters=["cloudwatch:alarm"])
    # An alarm's ARN: arn:aws:cloudwatch:<region>:<account>:alarm:<name> (the name may hold colons).
    names = {r["ResourceARN"].split(":alarm:", 1)[1] for page in pages for r in page["ResourceTagMappingList"]}
    names |= set(service.get("deploymentConfiguration", {}).get("alarms", {}).get("alarmNames", []))
    return sorted(names)


def alarm_tags(live: Live, server: Server, region: str) -> dict[str, str]:
    return {STACK_TAG: live.stack, REGION_TAG: region, SERVER_TAG: server.name}


def missing_alarms(live: Live, server: Server, region: str, names: list[str]) -> Iterator[str]:
    """Each alarm the estate always gives a server in a region (`<...>-<server>-<region>-<kind>`, whatever
    the estate's name) that is not among `names`."""
    tags = ", ".join(f"{key}={value}" for key, value in alarm_tags(live, server, region).items())
    for kind in REQUIRED_ALARMS:
        if not any(name.endswith(f"-{server.name}-{region}-{kind}") for name in names):
            yield f"{region}: no {kind} alarm tagged {tags}: nothing would see the candidate fail there"


def alarm_blockers(live: Live, server: Server, region: str, service: dict, since: datetime) -> Iterator[str]:
    cloudwatch = live.clients("cloudwatch", region)
    names = alarm_names(live, server, region, service)
    yield from missing_alarms(live, server, region, names)
    states = {a["AlarmName"]: a["StateValue"] for kind in ("MetricAlarms", "CompositeAlarms")
              for chunk in chunks(names, 100)   # DescribeAlarms takes 100 names at most
              for a in cloudwatch.describe_alarms(AlarmNames=chunk, AlarmTypes=["MetricAlarm", "CompositeAlarm"])[kind]}
    for name in names:
        if name not in states:
            yield f"{region}: alarm {name} does not exist: nothing would see the candidate fail there"
        elif states[name] == "ALARM":
            yield f"{region}: alarm {name} is in ALARM"
        else:
            fired = alarm_fired_since(cloudwatch, name, since)
            if fired:
                yield f"{region}: alarm {name} went to ALARM at {fired:%Y-%m-%d %H:%M} UTC, since the deployment"


def alarm_fired_since(cloudwatch: Any, name: str, since: datetime) -> datetime | None:
    pages = cloudwatch.get_paginator("describe_alarm_history").paginate(
        AlarmName=name, HistoryItemType="StateUpdate", StartDate=since, ScanBy="TimestampAscending")
    for item in (i for page in pages for i in page["AlarmHistoryItems"]):
        if json.loads(item.get("HistoryData", "{}")).get("newState", {}).get("stateValue") == "ALARM":
            return item["Timestamp"]
    return None


def canary_blockers(live: Live, server: Server, region: str, since: datetime, now: datetime) -> Iterator[str]:
    points = live.clients("cloudwatch", region).get_metric_statistics(
        Namespace=CANARY_NAMESPACE, MetricName=CANARY_SUCCESS_METRIC, StartTime=since, EndTime=now, Period=60,
        Statistics=["Minimum", "SampleCount"],
        Dimensions=[{"Name": "Server", "Value": server.name}, {"Name": "Region", "Value": region},
                    {"Name": "Path", "Value": CANARY_PATH}])["Datapoints"]
    if not points:
        yield f"{region}: no canary probe of {server.name} since the deployment finished at {since:%H:%M} UTC"
    elif min(p["Minimum"] for p in points) < 1:
        failed = min(p["Timestamp"] for p in points if p["Minimum"] < 1)
        yield f"{region}: a canary probe of {server.name} through the ALB failed at {failed:%Y-%m-%d %H:%M} UTC"


# -- the stack file ----------------------------------------------------------------------------------------

def _load(stack: str, server_name: str, stacks_dir: Path) -> tuple[EstateSpec, Server]:
    try:
        _, spec = load_spec(stack, stacks_dir)
    except SpecError as error:
        raise PromoteError([f"{p.path}: {p.message}" for p in error.problems]) from None
    for server in spec.servers:
        if server.name == server_name:
            return spec, server
    raise PromoteError([f"no server '{server_name}' in stack '{stack}' "
                        f"(servers: {', '.join(s.name for s in spec.servers)})"])


def _edit(stack: str, stacks_dir: Path, server: Server, action: str, image: str, reached: int) -> Promoted:
    path = stack_path(stack, stacks_dir)
    text = path.read_bytes().decode("utf-8")
    new_text = edited(text, server.name, action, image, reached)
    try:
        write_atomically(path, new_text)
    except OSError as error:
        raise PromoteError([f"cannot write {path}: {error.strerror}"]) from None
    _, spec = load_spec(stack, stacks_dir)
    after = next(s for s in spec.servers if s.name == server.name)
    return Promoted(path, server.name, action, image, reached, spec.candidate_regions(after))


def edited(text: str, server: str, action: str, image: str, reached: int) -> str:
    """The stack file's text after `action`, proved by re-parsing: only the server's candidate (and, on
    release, its image) changed."""
    try:
        new_text, change, by_hand = EDITS[action](text, server, image, reached)
        check_edit(text, new_text, server, change, by_hand)
    except StackEditError as error:
        raise PromoteError(error.problems, error.code) from None
    return new_text


def _start(text: str, server: str, image: str, _: int) -> tuple[str, Callable[[dict], Any], str]:
    node, line = server_node(text, server), f"candidate: {{image: {image}, waves_reached: 1}}"
    return (insert_line_after(text, key_node(node, "image"), child(node, "image"), line),
            lambda item: item.update(candidate={"image": image, "waves_reached": 1}), f"add `{line}` by hand")


def _advance(text: str, server: str, _: str, reached: int) -> tuple[str, Callable[[dict], Any], str]:
    value = one_line_scalar(child(child(server_node(text, server), "candidate"), "waves_reached"),
                            f"servers[{server}].candidate.waves_reached")
    return (replace_scalar(text, value, str(reached)), lambda item: item["candidate"].update(waves_reached=reached),
            f"set candidate.waves_reached to {reached} by hand")


def _release(text: str, server: str, image: str, _: int) -> tuple[str, Callable[[dict], Any], str]:
    released = one_line_scalar(child(server_node(text, server), "image"), f"servers[{server}].image")
    pinned = replace_scalar(text, released, image)
    return (remove_key(pinned, server_node(pinned, server), "candidate"),
            lambda item: (item.update(image=image), item.pop("candidate")),
            f"set image to {image} and remove candidate by hand")


def _abort(text: str, server: str, _: str, __: int) -> tuple[str, Callable[[dict], Any], str]:
    return (remove_key(text, server_node(text, server), "candidate"), lambda item: item.pop("candidate"),
            "remove candidate by hand")


EDITS = {"started": _start, "advanced": _advance, "released": _release, "aborted": _abort}


def _digest(image: str) -> str:
    return image.rsplit("@", 1)[1]
