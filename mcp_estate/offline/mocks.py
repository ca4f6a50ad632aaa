"""Pulumi mocks that answer like AWS and Cloudflare would, with no cloud and no CLI.

Every resource gets the id and outputs its provider would return (ARNs in their real
formats, ALB DNS names, ACM validation records, KMS multi-region ids...), derived from its
name so a plan is byte-for-byte reproducible. Every invoke the program may make has a
realistic answer; any other invoke is an error, not a silent `{}` (which would turn into
`None`s far from the cause).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any, Callable

import pulumi

from mcp_estate.contract.geography import AWS_REGIONS

# Cloudflare's published ranges (https://www.cloudflare.com/ips/), as `get_ip_ranges` returns them.
CLOUDFLARE_IPV4 = ["173.245.48.0/20", "103.21.244.0/22", "103.22.200.0/22", "103.31.4.0/22",
                   "141.101.64.0/18", "108.162.192.0/18", "190.93.240.0/20", "188.114.96.0/20",
                   "197.234.240.0/22", "198.41.128.0/17", "162.158.0.0/15", "104.16.0.0/13",
                   "104.24.0.0/14", "172.64.0.0/13", "131.0.72.0/22"]
CLOUDFLARE_IPV6 = ["2400:cb00::/32", "2606:4700::/32", "2803:f800::/32", "2405:b500::/32",
                   "2405:8100::/32", "2a06:98c0::/29", "2c0f:f248::/32"]

# AWS's Elastic Load Balancing log-delivery accounts (public, documented per region).
ELB_ACCOUNTS = {"us-east-1": "127311923021", "us-east-2": "033677994240", "us-west-1": "027434742980",
                "us-west-2": "797873946194", "ca-central-1": "985666609251", "sa-east-1": "507241528517",
                "eu-west-1": "156460612806", "eu-west-2": "652711504416", "eu-west-3": "009996457667",
                "eu-central-1": "054676820928", "eu-north-1": "897822967062",
                "ap-northeast-1": "582318560864", "ap-northeast-2": "600734575887",
                "ap-northeast-3": "383597477331", "ap-southeast-1": "114774131450",
                "ap-southeast-2": "783225319266", "ap-south-1": "718504428378"}


def _hex(seed: str, length: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:length]


def _uuid(seed: str) -> str:
    return str(uuid.UUID(_hex(seed, 32)))


class EstateMocks(pulumi.runtime.Mocks):
    """Answers for one AWS account; the region of a resource is its provider's region."""

    def __init__(self, account_id: str, stack: str, default_region: str = "us-east-1"):
        self.account_id, self.stack = account_id, stack
        self.default_region = default_region
        self.provider_regions: dict[str, str] = {}   # provider id -> region
        self.stack_outputs: dict[str, dict] = {}     # stack name -> its outputs, for `StackReference`s

    # -- resources ----------------------------------------------------------------------------

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        inputs = dict(args.inputs)
        if args.typ == "pulumi:providers:aws":
            provider_id = _uuid(f"provider/{args.name}")
            self.provider_regions[provider_id] = inputs.get("region", self.default_region)
            return provider_id, inputs
        if args.typ.startswith("pulumi:providers:"):
            return _uuid(f"provider/{args.name}"), inputs
        if args.typ == "pulumi:pulumi:StackReference":
            return self._stack_reference(args.resource_id or inputs["name"])
        region = inputs.get("region") or self._region_of(args.provider)
        # Autonames differ per stack, as Pulumi's random suffixes do: two stacks in one account never collide.
        physical = inputs.get("name") if isinstance(inputs.get("name"), str) else \
            f"{args.name}-{_hex(f'{self.stack}/{args.name}', 7)}"
        answer = _ANSWERS.get(args.typ)
        if answer is not None:
            resource_id, outputs = answer(_Ctx(self.account_id, region, args.name, physical, inputs))
        elif args.typ.startswith("cloudflare:"):
            resource_id, outputs = _hex(args.name, 32), {}
        else:
            resource_id, outputs = f"{physical}", {"arn": self._generic_arn(args.typ, region, physical)}
        return resource_id, {**inputs, "id": resource_id, **outputs}

    def _stack_reference(self, qualified: str) -> tuple[str, dict]:
        """A stack's outputs, as `organization/project/stack` reads them (pulumi/stack_reference.py)."""
        stack = qualified.rsplit("/", 1)[-1]
        if stack not in self.stack_outputs:
            raise LookupError(f"StackReference {qualified}: no stack {stack} was planned before this one "
                              f"(planned: {', '.join(sorted(self.stack_outputs)) or 'none'})")
        return qualified, {"name": qualified, "outputs": self.stack_outputs[stack], "secretOutputNames": []}

    def _region_of(self, provider_ref: str | None) -> str:
        if provider_ref:
            return self.provider_regions.get(provider_ref.rsplit("::", 1)[-1], self.default_region)
        return self.default_region

    def _generic_arn(self, typ: str, region: str, physical: str) -> str:
        service = typ.split(":")[1].split("/")[0]
        kind = typ.rsplit(":", 1)[-1].lower()
        return f"arn:aws:{service}:{region}:{self.account_id}:{kind}/{physical}"

    # -- invokes ------------------------------------------------------------------------------

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        region = args.args.get("region") or self._region_of(args.provider)
        answer = _CALLS.get(args.token)
        if answer is None:
            raise NotImplementedError(f"the offline mocks have no answer for invoke {args.token}: "
                                      "add one to mcp_estate/offline/mocks.py")
        return answer(self.account_id, region, args.args)


class _Ctx:
    def __init__(self, account: str, region: str, name: str, physical: str, inputs: dict):
        self.account, self.region, self.name, self.physical, self.inputs = account, region, name, physical, inputs

    def arn(self, service: str, resource: str, region: str | None = None, account: str | None = None) -> str:
        return f"arn:aws:{service}:{self.region if region is None else region}:" \
               f"{self.account if account is None else account}:{resource}"


def _security_group(c: _Ctx) -> tuple[str, dict]:
    """A security group also has the name it was given or autonamed (the provider's `name` output)."""
    rid, outputs = _vpc_resource("sg", "security-group")(c)
    return rid, {**outputs, "name": c.physical}


def _vpc_resource(prefix: str, kind: str) -> Callable[[_Ctx], tuple[str, dict]]:
    def answer(c: _Ctx) -> tuple[str, dict]:
        rid = f"{prefix}-{_hex(c.name, 17)}"
        return rid, {"arn": c.arn("ec2", f"{kind}/{rid}"), "ownerId": c.account}
    return answer


def _vpc(c: _Ctx):
    rid = f"vpc-{_hex(c.name, 17)}"
    return rid, {"arn": c.arn("ec2", f"vpc/{rid}"), "defaultSecurityGroupId": f"sg-{_hex(c.name + 'd', 17)}",
                 "mainRouteTableId": f"rtb-{_hex(c.name + 'm', 17)}", "ownerId": c.account}


def _vpc_endpoint(c: _Ctx):
    rid = f"vpce-{_hex(c.name, 17)}"
    outputs = {"arn": c.arn("ec2", f"vpc-endpoint/{rid}")}
    if c.inputs.get("vpcEndpointType") == "Gateway":
        outputs["prefixListId"] = f"pl-{_hex(c.name, 8)}"
    else:
        outputs["dnsEntries"] = [{"dnsName": f"{rid}.{c.inputs.get('serviceName', '')}",
                                  "hostedZoneId": "Z7HUB22UULQXV"}]
    return rid, outputs


def _load_balancer(c: _Ctx):
    name = c.physical[:32]
    suffix = f"app/{name}/{_hex(c.name, 16)}"
    arn = c.arn("elasticloadbalancing", f"loadbalancer/{suffix}")
    scheme = "internal-" if c.inputs.get("internal") else ""
    return arn, {"arn": arn, "arnSuffix": suffix, "zoneId": "Z35SXDOTRQ7X7K",
                 "dnsName": f"{scheme}{name}-{int(_hex(c.name, 8), 16) % 10**10}.{c.region}.elb.amazonaws.com"}


def _target_group(c: _Ctx):
    name = c.physical[:32]
    suffix = f"targetgroup/{name}/{_hex(c.name, 16)}"
    arn = c.arn("elasticloadbalancing", suffix)
    return arn, {"arn": arn, "arnSuffix": suffix, "name": name}


def _listener(c: _Ctx):
    arn = c.arn("elasticloadbalancing", f"listener/app/{c.name[:32]}/{_hex(c.name, 16)}/{_hex(c.name + 'l', 16)}")
    return arn, {"arn": arn}


def _listener_rule(c: _Ctx):
    arn = c.arn("elasticloadbalancing", f"listener-rule/app/{c.name[:32]}/{_hex(c.name, 16)}/{_hex(c.name + 'r', 16)}")
    return arn, {"arn": arn}


def _role(c: _Ctx):
    name = c.physical[:64]
    return name, {"arn": f"arn:aws:iam::{c.account}:role/{name}", "name": name,
                  "uniqueId": f"AROA{_hex(c.name, 17).upper()}"}


def _iam_named(kind: str):
    """IAM ARNs are global: no region (arn:aws:iam::<account>:policy/<path><name>)."""
    def answer(c: _Ctx):
        name = c.physical
        return name, {"arn": f"arn:aws:iam::{c.account}:{kind}{c.inputs.get('path') or '/'}{name}", "name": name}
    return answer


def _role_policy(c: _Ctx):
    role = c.inputs.get("role", "role")
    return f"{role}:{c.physical}", {"name": c.physical}


def _kms_key(c: _Ctx):
    key_id = ("mrk-" + _hex(c.name, 32)) if c.inputs.get("multiRegion") else _uuid(c.name)
    return key_id, {"keyId": key_id, "arn": c.arn("kms", f"key/{key_id}")}


def _kms_replica(c: _Ctx):
    primary = str(c.inputs.get("primaryKeyArn", ""))
    key_id = primary.rsplit("/", 1)[-1] or "mrk-" + _hex(c.name, 32)
    return key_id, {"keyId": key_id, "arn": c.arn("kms", f"key/{key_id}")}


def _kms_alias(c: _Ctx):
    name = c.inputs.get("name", f"alias/{c.physical}")
    return name, {"arn": c.arn("kms", name), "targetKeyArn": c.arn("kms", f"key/{c.inputs.get('targetKeyId', '')}")}


def _serverless_cache(c: _Ctx):
    """ElastiCache Serverless: the endpoint is AWS's (a name and a suffix), port 6379; readers on 6380."""
    host = f"{c.physical}-{_hex(c.name, 6)}.serverless.{c.region}.cache.amazonaws.com"
    return c.physical, {"arn": c.arn("elasticache", f"serverlesscache:{c.physical}"),
                        "endpoints": [{"address": host, "port": 6379}],
                        "readerEndpoints": [{"address": host, "port": 6380}]}


def _queue(c: _Ctx):
    url = f"https://sqs.{c.region}.amazonaws.com/{c.account}/{c.physical}"
    return url, {"arn": c.arn("sqs", c.physical), "url": url}


def _table(c: _Ctx):
    arn = c.arn("dynamodb", f"table/{c.physical}")
    return c.physical, {"arn": arn, "name": c.physical,
                        "streamArn": f"{arn}/stream/2026-01-01T00:00:00.000",
                        "streamLabel": "2026-01-01T00:00:00.000"}


def _secret(c: _Ctx):
    suffix = "".join(ch for ch in _hex(c.name, 12) if ch.isalpha())[:3] + _hex(c.name, 3)
    arn = c.arn("secretsmanager", f"secret:{c.physical}-{suffix[:6]}")
    return arn, {"arn": arn, "name": c.physical}


def _repository(c: _Ctx):
    return c.physical, {"arn": c.arn("ecr", f"repository/{c.physical}"), "name": c.physical,
                        "registryId": c.account,
                        "repositoryUrl": f"{c.account}.dkr.ecr.{c.region}.amazonaws.com/{c.physical}"}


def _log_group(c: _Ctx):
    return c.physical, {"arn": c.arn("logs", f"log-group:{c.physical}"), "name": c.physical}


def _topic(c: _Ctx):
    arn = c.arn("sns", c.physical)
    return arn, {"arn": arn, "name": c.physical}


def _cluster(c: _Ctx):
    arn = c.arn("ecs", f"cluster/{c.physical}")
    return arn, {"arn": arn, "name": c.physical}


def _service(c: _Ctx):
    cluster = str(c.inputs.get("cluster", "cluster")).rsplit("/", 1)[-1]
    arn = c.arn("ecs", f"service/{cluster}/{c.physical}")
    return arn, {"arn": arn, "name": c.physical}


def _task_definition(c: _Ctx):
    family = c.inputs.get("family", c.physical)
    arn = c.arn("ecs", f"task-definition/{family}:1")
    return arn, {"arn": arn, "arnWithoutRevision": c.arn("ecs", f"task-definition/{family}"), "revision": 1}


def _certificate(c: _Ctx):
    arn = c.arn("acm", f"certificate/{_uuid(c.name)}")
    domains = [c.inputs.get("domainName", ""), *c.inputs.get("subjectAlternativeNames", [])]
    # ACM's validation record depends on the domain and the account, not the region.
    options = [{"domainName": d, "resourceRecordType": "CNAME",
                "resourceRecordName": f"_{_hex(c.account + d, 32)}.{d}.",
                "resourceRecordValue": f"_{_hex(d + c.account, 32)}.{_hex(d, 10)}.acm-validations.aws."}
               for d in dict.fromkeys(domains) if d]
    return arn, {"arn": arn, "domainValidationOptions": options, "status": "ISSUED"}


def _certificate_validation(c: _Ctx):
    arn = c.inputs.get("certificateArn", "")
    return f"{arn}-validation", {"certificateArn": arn}


def _web_acl(c: _Ctx):
    rid = _uuid(c.name)
    scope = "regional" if c.inputs.get("scope") == "REGIONAL" else "global"
    return rid, {"arn": c.arn("wafv2", f"{scope}/webacl/{c.physical}/{rid}"), "capacity": 1000}


def _bucket(c: _Ctx):
    bucket = c.inputs.get("bucket") or c.physical.lower()[:63]
    return bucket, {"arn": f"arn:aws:s3:::{bucket}", "bucket": bucket,
                    "bucketDomainName": f"{bucket}.s3.amazonaws.com",
                    "bucketRegionalDomainName": f"{bucket}.s3.{c.region}.amazonaws.com"}


def _scaling_target(c: _Ctx):
    rid = str(c.inputs.get("resourceId", c.physical))
    return rid, {"arn": c.arn("application-autoscaling", f"scalable-target/{_hex(c.name, 20)}")}


def _alarm(c: _Ctx):
    return c.physical, {"arn": c.arn("cloudwatch", f"alarm:{c.physical}")}


def _function(c: _Ctx):
    name = c.physical[:64]
    arn = c.arn("lambda", f"function:{name}")
    return name, {"arn": arn, "name": name, "qualifiedArn": f"{arn}:$LATEST", "version": "$LATEST",
                  "invokeArn": f"arn:aws:apigateway:{c.region}:lambda:path/2015-03-31/functions/{arn}/invocations"}


def _event_rule(c: _Ctx):
    name = c.physical[:64]
    return name, {"arn": c.arn("events", f"rule/{name}"), "name": name}


_ANSWERS: dict[str, Callable[[_Ctx], tuple[str, dict]]] = {
    "aws:ec2/vpc:Vpc": _vpc,
    "aws:ec2/subnet:Subnet": _vpc_resource("subnet", "subnet"),
    "aws:ec2/securityGroup:SecurityGroup": _security_group,
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": _vpc_resource("sgr", "security-group-rule"),
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": _vpc_resource("sgr", "security-group-rule"),
    "aws:ec2/routeTable:RouteTable": _vpc_resource("rtb", "route-table"),
    "aws:ec2/internetGateway:InternetGateway": _vpc_resource("igw", "internet-gateway"),
    "aws:ec2/natGateway:NatGateway": _vpc_resource("nat", "natgateway"),
    "aws:ec2/eip:Eip": _vpc_resource("eipalloc", "elastic-ip"),
    "aws:ec2/flowLog:FlowLog": _vpc_resource("fl", "vpc-flow-log"),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": _vpc_resource("rtbassoc", "route-table-association"),
    "aws:ec2/route:Route": _vpc_resource("r", "route"),
    "aws:ec2/vpcEndpoint:VpcEndpoint": _vpc_endpoint,
    "aws:ec2/managedPrefixList:ManagedPrefixList": _vpc_resource("pl", "prefix-list"),
    "aws:lb/loadBalancer:LoadBalancer": _load_balancer,
    "aws:lb/targetGroup:TargetGroup": _target_group,
    "aws:lb/listener:Listener": _listener,
    "aws:lb/listenerRule:ListenerRule": _listener_rule,
    "aws:iam/role:Role": _role,
    "aws:iam/rolePolicy:RolePolicy": _role_policy,
    "aws:iam/policy:Policy": _iam_named("policy"), "aws:iam/user:User": _iam_named("user"),
    "aws:iam/group:Group": _iam_named("group"),
    "aws:kms/key:Key": _kms_key,
    "aws:kms/replicaKey:ReplicaKey": _kms_replica,
    "aws:kms/alias:Alias": _kms_alias,
    "aws:dynamodb/table:Table": _table,
    "aws:secretsmanager/secret:Secret": _secret,
    "aws:ecr/repository:Repository": _repository,
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:cloudwatch/metricAlarm:MetricAlarm": _alarm,
    "aws:lambda/function:Function": _function,
    "aws:cloudwatch/eventRule:EventRule": _event_rule,
    "aws:sns/topic:Topic": _topic,
    "aws:ecs/cluster:Cluster": _cluster,
    "aws:ecs/service:Service": _service,
    "aws:ecs/taskDefinition:TaskDefinition": _task_definition,
    "aws:acm/certificate:Certificate": _certificate,
    "aws:acm/certificateValidation:CertificateValidation": _certificate_validation,
    "aws:wafv2/webAcl:WebAcl": _web_acl,
    "aws:s3/bucket:Bucket": _bucket,
    "aws:appautoscaling/target:Target": _scaling_target,
    "aws:elasticache/serverlessCache:ServerlessCache": _serverless_cache,
    "aws:sqs/queue:Queue": _queue,
}


# -- invokes ------------------------------------------------------------------------------------

def _caller_identity(account: str, region: str, args: dict) -> dict:
    return {"accountId": account, "id": account, "arn": f"arn:aws:iam::{account}:user/estate-plan",
            "userId": "AIDAESTATEPLANOFFLINE"}


def _region(account: str, region: str, args: dict) -> dict:
    return {"region": region, "name": region, "id": region,
            "description": region, "endpoint": f"ec2.{region}.amazonaws.com"}


# The standard zones an account sees per region, (name, AZ ID), as DescribeAvailabilityZones lists
# them (by name). In the regions older than 2012 AWS maps names to zones per account: these are one
# account's mapping, deliberately not "a" = "az1", and without the zones AWS no longer offers to new
# accounts (usw1-az2, apne1-az3), as in a new account.
AVAILABILITY_ZONES: dict[str, list[tuple[str, str]]] = {
    "us-east-1": [("a", "use1-az4"), ("b", "use1-az6"), ("c", "use1-az1"), ("d", "use1-az2"),
                  ("e", "use1-az3"), ("f", "use1-az5")],
    "us-east-2": [("a", "use2-az1"), ("b", "use2-az2"), ("c", "use2-az3")],
    "us-west-1": [("a", "usw1-az3"), ("c", "usw1-az1")],
    "us-west-2": [("a", "usw2-az2"), ("b", "usw2-az1"), ("c", "usw2-az3"), ("d", "usw2-az4")],
    "ca-central-1": [("a", "cac1-az1"), ("b", "cac1-az2"), ("d", "cac1-az4")],
    "sa-east-1": [("a", "sae1-az1"), ("b", "sae1-az2"), ("c", "sae1-az3")],
    "eu-west-1": [("a", "euw1-az3"), ("b", "euw1-az1"), ("c", "euw1-az2")],
    "eu-west-2": [("a", "euw2-az2"), ("b", "euw2-az3"), ("c", "euw2-az1")],
    "eu-west-3": [("a", "euw3-az1"), ("b", "euw3-az2"), ("c", "euw3-az3")],
    "eu-central-1": [("a", "euc1-az2"), ("b", "euc1-az3"), ("c", "euc1-az1")],
    "eu-north-1": [("a", "eun1-az1"), ("b", "eun1-az2"), ("c", "eun1-az3")],
    "ap-northeast-1": [("a", "apne1-az4"), ("c", "apne1-az1"), ("d", "apne1-az2")],
    "ap-northeast-2": [("a", "apne2-az1"), ("b", "apne2-az2"), ("c", "apne2-az3"), ("d", "apne2-az4")],
    "ap-northeast-3": [("a", "apne3-az3"), ("b", "apne3-az1"), ("c", "apne3-az2")],
    "ap-southeast-1": [("a", "apse1-az2"), ("b", "apse1-az1"), ("c", "apse1-az3")],
    "ap-southeast-2": [("a", "apse2-az3"), ("b", "apse2-az1"), ("c", "apse2-az2")],
    "ap-south-1": [("a", "aps1-az1"), ("b", "aps1-az3"), ("c", "aps1-az2")],
}


def _availability_zones(account: str, region: str, args: dict) -> dict:
    if args.get("filters") or args.get("excludeNames") or args.get("excludeZoneIds") or args.get("state"):
        raise NotImplementedError("the offline mocks answer getAvailabilityZones without filters, "
                                  f"exclusions or state only; got {sorted(args)}: extend mcp_estate/offline/mocks.py")
    zones = AVAILABILITY_ZONES[region]
    return {"id": region, "names": [f"{region}{letter}" for letter, _ in zones],
            "zoneIds": [zone_id for _, zone_id in zones], "groupNames": [region] * len(zones)}


def _elb_service_account(account: str, region: str, args: dict) -> dict:
    elb = ELB_ACCOUNTS[region]
    return {"id": elb, "arn": f"arn:aws:iam::{elb}:root", "region": region}


def _ip_ranges(account: str, region: str, args: dict) -> dict:
    return {"ipv4Cidrs": CLOUDFLARE_IPV4, "ipv6Cidrs": CLOUDFLARE_IPV6, "etag": _hex("cf-ips", 32),
            "jdcloudCidrs": []}


_CALLS: dict[str, Callable[[str, str, dict], dict[str, Any]]] = {
    "aws:index/getCallerIdentity:getCallerIdentity": _caller_identity,
    "aws:index/getRegion:getRegion": _region,
    "aws:index/getAvailabilityZones:getAvailabilityZones": _availability_zones,
    "aws:elb/getServiceAccount:getServiceAccount": _elb_service_account,
    "cloudflare:index/getIpRanges:getIpRanges": _ip_ranges,
}

assert set(ELB_ACCOUNTS) == set(AWS_REGIONS), "every supported region needs its ELB log account"
assert set(AVAILABILITY_ZONES) == set(AWS_REGIONS), "every supported region needs its zones"
