"""`estate verify`: does the live estate still match its stack's spec?

Reads every region of the spec, finding the live resources by the contract tags (mcp_estate/contract/
names.py), never by a physical name (the `Estate` component's name starts them all and is the program's
choice): the stack's state tables and secrets through `locate.py`, by their tags or from the stack's
outputs (`--outputs`), and the servers' ECR repositories by the spec's images. It reports each
difference as a finding of a stable kind (`KINDS`). Typical causes: an out-of-band deploy or a
tampered task definition, a console edit opening a security group, a replica removed by hand.

It only reads: every client refuses any API call but Describe*/List*/Get*/BatchGet* (and never
reads a secret's value), so a run cannot change the estate even with credentials that could.
A run that cannot read everything (no credentials, another account, access denied, throttled
after boto3's standard retries) raises `VerifyError`: a partial read never passes for a clean report.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import cached_property
from itertools import groupby
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from mcp_estate.contract.names import SERVER_TAG, STACK_TAG
from mcp_estate.contract.spec import SECRET_PREFIX, STATE, EstateSpec, ResidencyGroup, Server

from .locate import ByTags, LocateError, Locator

KINDS: dict[str, str] = {
    "image-drift": "runs an image other than the spec's pinned digest",
    "server-missing": "a server does not run in a region that should run it",
    "public-ip": "a task has (or would get) a public IP address",
    "open-security-group": "a security group of the stack admits the whole internet",
    "state-table-replica-missing": "the group's state table lacks a replica in one of its regions",
    "state-table-pitr-off": "the group's state table has point-in-time recovery off",
    "secret-replica-missing": "a secret lacks a replica where a server reads it",
    "alb-without-waf": "the region's ALB has no web ACL",
    "mutable-repository": "an image repository allows overwriting tags",
    "resource-missing": "a resource the estate needs to be checked does not exist",
}

READ_PREFIXES = ("Describe", "List", "Get", "BatchGet")
SECRET_READS = frozenset({"GetSecretValue", "BatchGetSecretValue"})   # reads, but of secret values
RETRIES = Config(retries={"mode": "standard"})   # throttling is retried with backoff before we give up
THROTTLED = frozenset({"Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
                       "RequestLimitExceeded", "RequestThrottled", "RequestThrottledException"})
DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException",
                    "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException", "AuthFailure"})
HEALTHY_TABLE_REPLICA = frozenset({"ACTIVE", "CREATING", "UPDATING"})
HEALTHY_SECRET_REPLICA = frozenset({"InSync", "InProgress"})


@dataclass(frozen=True, order=True)
class Finding:
    kind: str        # one of KINDS
    region: str
    resource: str    # as the region's console names it: cluster/service, sg-..., table, secret...
    message: str


class VerifyError(Exception):
    """The estate could not be read completely: exit 2, never a partial report."""


class ReadOnlyViolation(RuntimeError):
    """An API call that could change the estate, or read a secret's value: refused before it is sent."""


def refuse_writes(model, **_) -> None:
    """botocore `before-call` handler: only reads leave the process."""
    if not model.name.startswith(READ_PREFIXES) or model.name in SECRET_READS:
        raise ReadOnlyViolation(f"estate verify only reads: {model.service_model.service_name} "
                                f"{model.name} refused")


class Clients:
    """Read-only boto3 clients, one per service and region, with boto3's standard retries.

    The session's defaults apply (AWS_PROFILE, AWS_ENDPOINT_URL...); the guard is registered on
    the session before any client exists, so every client inherits it.
    """

    def __init__(self, session: boto3.Session):
        session.events.register("before-call", refuse_writes, unique_id="mcp-estate-read-only")
        self._session, self._clients = session, {}

    @classmethod
    def from_environment(cls) -> Clients:
        try:
            return cls(boto3.Session())
        except BotoCoreError as error:   # e.g. AWS_PROFILE names no profile
            raise VerifyError(f"{error}: check AWS_PROFILE and the AWS config file") from None

    def __call__(self, service: str, region: str) -> Any:
        if (service, region) not in self._clients:
            self._clients[service, region] = self._session.client(service, region_name=region, config=RETRIES)
        return self._clients[service, region]


@dataclass(frozen=True)
class Live:
    """The stack's live estate as verify sees it: the spec, the stack name, the clients and where its
    named resources are (by default, found by their tags)."""
    spec: EstateSpec
    stack: str
    clients: Callable[[str, str], Any]
    given: Locator | None = None   # the stack's outputs (--outputs), when given

    @cached_property
    def locate(self) -> Locator:
        return self.given or ByTags(self.stack, self.clients)

    def expected_image(self, server: Server, region: str) -> str:
        """The regional replica of the image the region runs (the candidate where its waves reached)."""
        return self.spec.image_for(server, region)


# -- the run ---------------------------------------------------------------------------------------

def verify(spec: EstateSpec, stack: str, clients: Callable[[str, str], Any],
           outputs: Locator | None = None) -> list[Finding]:
    """Every finding in every region of the spec, sorted by kind, region and resource."""
    live = Live(spec, stack, clients, outputs)
    check_account(live)
    findings: list[Finding] = []
    for region in sorted(spec.regions):
        with reading(region):
            for check in REGIONAL_CHECKS:
                findings += check(live, region)
    return sorted(findings)


def check_account(live: Live) -> None:
    """A wrong profile must fail, not report the other account's (empty) estate as clean."""
    with reading(live.spec.primary_region):
        account = live.clients("sts", live.spec.primary_region).get_caller_identity()["Account"]
    if account != live.spec.aws_account_id:
        raise VerifyError(f"the credentials are for account {account}, but stack '{live.stack}' lives in "
                          f"account {live.spec.aws_account_id}: select that account's profile (AWS_PROFILE)")


@contextmanager
def reading(region: str) -> Iterator[None]:
    """AWS errors as one line for people, naming the region and what to do."""
    try:
        yield
    except LocateError as error:
        raise VerifyError(str(error)) from None
    except NoCredentialsError:
        raise VerifyError("no AWS credentials found: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY) for the stack's account") from None
    except ClientError as error:
        raise VerifyError(f"{region}: {explain(error)}") from None
    except BotoCoreError as error:
        raise VerifyError(f"{region}: {error}") from None


def explain(error: ClientError) -> str:
    code, message = error.response["Error"].get("Code", ""), error.response["Error"].get("Message", "")
    hint = ""
    if code in THROTTLED:
        hint = ": still throttled after retries, run again later"
    elif code in DENIED:
        hint = ": verify needs read access (Describe/List/Get) to ECS, EC2, ELB, WAF, DynamoDB, " \
               "Secrets Manager, ECR and the tagging API in the stack's account"
    return f"{error.operation_name} failed ({code}: {message}){hint}"


# -- services: images, presence, public IPs --------------------------------------------------------

def service_findings(live: Live, region: str) -> Iterator[Finding]:
    services = services_by_server(live, region)
    for server in live.spec.servers_in(region):
        found = services.get(server.name, [])
        if not found:
            yield Finding("server-missing", region, server.name, f"no active ECS service tagged "
                          f"{SERVER_TAG}={server.name} in the stack's clusters")
        for service in found:
            yield from one_service_findings(live, region, server, service)


def services_by_server(live: Live, region: str) -> dict[str, list[dict]]:
    """The stack's active services in the region's tagged clusters, by their server tag."""
    ecs, found = live.clients("ecs", region), {}
    for cluster in tagged_arns(live, region, "ecs:cluster"):
        arns = [arn for page in ecs.get_paginator("list_services").paginate(cluster=cluster)
                for arn in page["serviceArns"]]
        for chunk in chunks(arns, 10):   # DescribeServices takes 10 services at most
            for service in ecs.describe_services(cluster=cluster, services=chunk, include=["TAGS"])["services"]:
                tags = {t["key"]: t["value"] for t in service.get("tags", [])}
                if service["status"] == "ACTIVE" and tags.get(STACK_TAG) == live.stack and SERVER_TAG in tags:
                    found.setdefault(tags[SERVER_TAG], []).append(service)
    return found


def one_service_findings(live: Live, region: str, server: Server, service: dict) -> Iterator[Finding]:
    name = service_name(service)
    if service.get("runningCount", 0) == 0:
        yield Finding("server-missing", region, name, f"the service runs no task "
                      f"(desired {service.get('desiredCount', 0)})")
    network = service.get("networkConfiguration", {}).get("awsvpcConfiguration", {})
    if network.get("assignPublicIp") == "ENABLED":
        yield Finding("public-ip", region, name, "the service gives its tasks public IPs "
                      "(assignPublicIp ENABLED): tasks belong in private subnets behind the ALB")
    tasks = running_tasks(live, region, service)
    definitions = {service["taskDefinition"]} | {d["taskDefinition"] for d in service.get("deployments", [])}
    definitions |= {t["taskDefinitionArn"] for t in tasks}
    ecs, expected = live.clients("ecs", region), live.expected_image(server, region)
    for arn in sorted(definitions):
        definition = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]
        yield from definition_findings(region, name, server, expected, definition)
    for task in tasks:
        yield from task_digest_findings(region, expected.rsplit("@", 1)[1], task)
    yield from task_ip_findings(live, region, tasks)


def running_tasks(live: Live, region: str, service: dict) -> list[dict]:
    ecs, cluster = live.clients("ecs", region), service["clusterArn"]
    arns = [arn for page in ecs.get_paginator("list_tasks").paginate(
        cluster=cluster, serviceName=service["serviceName"], desiredStatus="RUNNING") for arn in page["taskArns"]]
    tasks = [task for chunk in chunks(arns, 100)   # DescribeTasks takes 100 tasks at most
             for task in ecs.describe_tasks(cluster=cluster, tasks=chunk)["tasks"]]
    # A service's tasks are in its group: keeps the check exact should the filter be ignored.
    return [t for t in tasks if t.get("group") == f"service:{service['serviceName']}"]


def definition_findings(region: str, service: str, server: Server, expected: str,
                        definition: dict) -> Iterator[Finding]:
    revision = f"{definition['family']}:{definition['revision']}"
    for container in definition["containerDefinitions"]:
        if container["name"] != server.name:
            yield Finding("image-drift", region, service, f"task definition {revision} has a container "
                          f"'{container['name']}' ({container.get('image')}) the spec does not declare")
        elif container.get("image") != expected:
            yield Finding("image-drift", region, service, f"task definition {revision} runs "
                          f"{container.get('image')}; the spec pins {expected}")


def task_digest_findings(region: str, pinned: str, task: dict) -> Iterator[Finding]:
    """The digest ECS actually pulled, which a task definition naming a tag would hide."""
    for container in task.get("containers", []):
        digest = container.get("imageDigest")
        if digest and digest != pinned:
            yield Finding("image-drift", region, task_name(task), f"container '{container['name']}' runs "
                          f"image digest {digest}; the spec pins {pinned}")


def task_ip_findings(live: Live, region: str, tasks: list[dict]) -> Iterator[Finding]:
    owners = {detail["value"]: task for task in tasks for attachment in task.get("attachments", [])
              if attachment["type"] == "ElasticNetworkInterface"
              for detail in attachment["details"] if detail["name"] == "networkInterfaceId"}
    ec2 = live.clients("ec2", region)
    for chunk in chunks(sorted(owners), 200):   # a filter takes 200 values at most
        # A filter, not NetworkInterfaceIds: a task stopping meanwhile must not fail the run.
        pages = ec2.get_paginator("describe_network_interfaces").paginate(
            Filters=[{"Name": "network-interface-id", "Values": chunk}])
        for interface in (i for page in pages for i in page["NetworkInterfaces"]):
            public_ip = interface.get("Association", {}).get("PublicIp")
            if public_ip:
                yield Finding("public-ip", region, task_name(owners[interface["NetworkInterfaceId"]]),
                              f"the task's interface {interface['NetworkInterfaceId']} has public IP {public_ip}")


# -- network edge: security groups, WAF -------------------------------------------------------------

def security_group_findings(live: Live, region: str) -> Iterator[Finding]:
    pages = live.clients("ec2", region).get_paginator("describe_security_groups").paginate(
        Filters=[{"Name": f"tag:{STACK_TAG}", "Values": [live.stack]}])
    for group in (g for page in pages for g in page["SecurityGroups"]):
        for rule in group.get("IpPermissions", []):
            opened = [r["CidrIp"] for r in rule.get("IpRanges", []) if r.get("CidrIp") == "0.0.0.0/0"]
            opened += [r["CidrIpv6"] for r in rule.get("Ipv6Ranges", []) if r.get("CidrIpv6") == "::/0"]
            for cidr in opened:
                yield Finding("open-security-group", region, f"{group['GroupId']} ({group['GroupName']})",
                              f"ingress {ports(rule)} from {cidr}")


def ports(rule: dict) -> str:
    if rule.get("IpProtocol") == "-1":
        return "on every protocol and port"
    low, high = rule.get("FromPort"), rule.get("ToPort")
    return f"{rule['IpProtocol']} {low}" if low == high else f"{rule['IpProtocol']} {low}-{high}"


def alb_findings(live: Live, region: str) -> Iterator[Finding]:
    albs = [arn for arn in tagged_arns(live, region, "elasticloadbalancing:loadbalancer")
            if ":loadbalancer/app/" in arn]
    if not albs:
        yield Finding("resource-missing", region, "alb", f"no application load balancer tagged "
                      f"{STACK_TAG}={live.stack}")
    waf = live.clients("wafv2", region)
    for arn in albs:
        if "WebACL" not in waf.get_web_acl_for_resource(ResourceArn=arn):
            yield Finding("alb-without-waf", region, arn.split("/")[-2], "no web ACL is associated: "
                          "requests reach the servers without the origin's rate limit and rule sets")


# -- data: state tables, secrets, repositories ------------------------------------------------------

def state_table_findings(live: Live, region: str) -> Iterator[Finding]:
    """In the group's primary region its replicas; in every region the copy's PITR."""
    group = live.spec.group_of[region]
    table = live.locate.state_table(group.name, group.primary_region)
    if table is None:   # found by its tags in the group's primary region: there only, reported once
        if region == group.primary_region:
            yield Finding("resource-missing", region, f"{STATE}/{group.name}", f"the state table of group "
                          f"'{group.name}' does not exist: {live.locate.where('state_table', group.name, region)}")
        return
    dynamodb = live.clients("dynamodb", region)
    if region == group.primary_region:
        try:
            description = dynamodb.describe_table(TableName=table)["Table"]
        except dynamodb.exceptions.ResourceNotFoundException:
            yield Finding("resource-missing", region, table, f"the state table of group '{group.name}' "
                          "does not exist")
            return
        yield from replica_findings(group, table, description)
    try:
        backups = dynamodb.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
    except dynamodb.exceptions.TableNotFoundException:
        return   # a missing replica: reported from the primary region
    status = backups.get("PointInTimeRecoveryDescription", {}).get("PointInTimeRecoveryStatus", "DISABLED")
    if status != "ENABLED":
        yield Finding("state-table-pitr-off", region, table, f"point-in-time recovery is {status}: a bad "
                      "write or a deletion could not be rolled back")


def replica_findings(group: ResidencyGroup, table: str, description: dict) -> Iterator[Finding]:
    replicas = {r["RegionName"]: r.get("ReplicaStatus", "ACTIVE") for r in description.get("Replicas", [])}
    for region in sorted({r.name for r in group.regions} - {group.primary_region}):
        status = replicas.get(region)
        if status not in HEALTHY_TABLE_REPLICA:
            state = "no replica" if status is None else f"its replica is {status}"
            yield Finding("state-table-replica-missing", region, table, f"{state}: sessions of group "
                          f"'{group.name}' do not survive the loss of {group.primary_region}")


def secret_findings(live: Live, region: str) -> Iterator[Finding]:
    """Each secret whose home is this region has a healthy replica where a server reads it."""
    manager = live.clients("secretsmanager", region)
    for secret in (s for s in live.spec.secret_names() if live.spec.secret_home(s) == region):
        found = live.locate.secret(secret, region)
        if found is None:
            yield Finding("resource-missing", region, SECRET_PREFIX + secret, f"the secret does not exist: "
                          f"{live.locate.where('secret', secret, region)}")
            continue
        try:
            described = manager.describe_secret(SecretId=found)
        except manager.exceptions.ResourceNotFoundException:
            yield Finding("resource-missing", region, found, f"the secret does not exist: "
                          f"{live.locate.where('secret', secret, region)}")
            continue
        name = described["Name"]
        if "DeletedDate" in described:
            yield Finding("resource-missing", region, name, "the secret is scheduled for deletion")
        replicas = {r["Region"]: r for r in described.get("ReplicationStatus", [])}
        for replica_region in (r for r in live.spec.secret_regions(secret) if r != region):
            replica = replicas.get(replica_region)
            if replica is None or replica.get("Status") not in HEALTHY_SECRET_REPLICA:
                state = "no replica" if replica is None else \
                    f"its replica is {replica.get('Status')} ({replica.get('StatusMessage', '')})"
                yield Finding("secret-replica-missing", replica_region, name, f"{state}: servers here "
                              "cannot start if its home region is down")


def repository_findings(live: Live, region: str) -> Iterator[Finding]:
    """The registry's repositories where they must exist (the source region, and where a server
    pulls from), and every replica present elsewhere: tags must be immutable."""
    ecr = live.clients("ecr", region)
    running = {s.name for s in live.spec.servers_in(region)}
    for server in sorted(live.spec.servers, key=lambda s: s.name):
        try:
            repository = ecr.describe_repositories(repositoryNames=[server.repository])["repositories"][0]
        except ecr.exceptions.RepositoryNotFoundException:
            if region == live.spec.primary_region or server.name in running:
                yield Finding("resource-missing", region, server.repository, f"the image repository of "
                              f"'{server.name}' does not exist")
            continue
        mutability = repository.get("imageTagMutability", "MUTABLE")
        if mutability != "IMMUTABLE":   # *_WITH_EXCLUSION: some tags are mutable
            yield Finding("mutable-repository", region, server.repository, f"tags are {mutability}, not "
                          "IMMUTABLE: a pushed tag can be overwritten with another image")


REGIONAL_CHECKS: tuple[Callable[[Live, str], Iterable[Finding]], ...] = (
    service_findings, security_group_findings, alb_findings, state_table_findings, secret_findings,
    repository_findings)


# -- small helpers ----------------------------------------------------------------------------------

def tagged_arns(live: Live, region: str, resource_type: str) -> list[str]:
    pages = live.clients("resourcegroupstaggingapi", region).get_paginator("get_resources").paginate(
        TagFilters=[{"Key": STACK_TAG, "Values": [live.stack]}], ResourceTypeFilters=[resource_type])
    return sorted(r["ResourceARN"] for page in pages for r in page["ResourceTagMappingList"])


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def service_name(service: dict) -> str:
    return f"{service['clusterArn'].rsplit('/', 1)[-1]}/{service['serviceName']}"


def task_name(task: dict) -> str:
    return f"{task['clusterArn'].rsplit('/', 1)[-1]}/task/{task['taskArn'].rsplit('/', 1)[-1]}"


# -- reports ------------------------------------------------------------------------

def as_json(findings: list[Finding]) -> str:
    return json.dumps({"findings": [asdict(f) for f in findings]}, indent=1)


def as_text(findings: list[Finding], stack: str, spec: EstateSpec) -> str:
    regions = ", ".join(sorted(spec.regions))
    if not findings:
        return f"stack {stack}: no findings in {regions}: the live estate matches the spec"
    lines = [f"stack {stack}: {len(findings)} finding{'s' * (len(findings) != 1)} in {regions}"]
    for kind, group in groupby(findings, key=lambda f: f.kind):
        rows = list(group)
        width = max(len(f.resource) for f in rows)
        lines += ["", f"{kind} ({len(rows)}): {KINDS[kind]}"]
        lines += [f"  {f.region:<15} {f.resource:<{width}}  {f.message}" for f in rows]
    return "\n".join(lines)
