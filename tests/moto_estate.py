"""Deploy a plan's resources into moto, as `pulumi up` would create them, for `estate verify` to read.

Only the resources verify reads are created, each from its planned inputs: names, tags, settings
and references come from what the components built, never from a copy in the tests, so a naming
or tagging change in a component that verify does not follow fails verify's tests. References
between resources (a subnet's VPC, a service's task definition) are the mocks' ids in the plan;
each is swapped for the id moto gave the resource it names.

What moto cannot emulate is emulated here and said so: ECR replication (the replication rule's
destinations get the repositories a push would create there), and a service's tasks (moto's ECS
starts none, so each service runs one task of its definition).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from mcp_estate.offline.runner import Registered

Client = Callable[[str, str], Any]   # (service, region) -> boto3 client


@dataclass
class Deployed:
    """What moto holds for each planned resource, by resource name, and the mock -> moto id map."""
    ids: dict[str, str] = field(default_factory=dict)          # resource name -> moto id (or ARN)
    regions: dict[str, str] = field(default_factory=dict)      # resource name -> its region
    inputs: dict[str, dict] = field(default_factory=dict)      # resource name -> inputs, moto ids swapped in
    swaps: dict[str, str] = field(default_factory=dict)        # mock id/ARN -> moto id/ARN


def deploy(resources: list[Registered], client: Client) -> Deployed:
    """Create, in moto, every resource verify reads, in the plan's dependency order."""
    deployed = Deployed()
    regions = {r.urn: r.inputs["region"] for r in resources if r.type == "pulumi:providers:aws"}
    for resource in resources:
        create = CREATORS.get(resource.type)
        if create is None:
            continue
        region = regions[resource.provider.rsplit("::", 1)[0]]
        inputs = _swapped(resource.inputs, deployed.swaps)
        live = create(client, region, resource, inputs, deployed)
        deployed.ids[resource.name], deployed.regions[resource.name] = live, region
        deployed.inputs[resource.name] = inputs
        deployed.swaps[resource.id] = live
        if "arn" in resource.outputs and resource.outputs["arn"] != resource.id:
            deployed.swaps[resource.outputs["arn"]] = _arn_of(client, region, resource.type, live)
    return deployed


def _swapped(value: Any, swaps: dict[str, str]) -> Any:
    if isinstance(value, str):
        return swaps.get(value, value)
    if isinstance(value, list):
        return [_swapped(v, swaps) for v in value]
    if isinstance(value, dict):
        return {k: _swapped(v, swaps) for k, v in value.items()}
    return value


def _tags(inputs: dict) -> dict[str, str]:
    tags = inputs.get("tags") or {}
    return json.loads(tags) if isinstance(tags, str) else tags


def _key_values(tags: dict[str, str], key: str = "Key", value: str = "Value") -> list[dict]:
    return [{key: k, value: v} for k, v in tags.items()]


def _physical_name(resource: Registered, inputs: dict) -> str:
    """The name input, else the autoname the mocks gave (as Pulumi's autonaming would)."""
    return inputs.get("name") or resource.outputs.get("name") or resource.id


def _arn_of(client: Client, region: str, token: str, live: str) -> str:
    if token == "aws:ec2/securityGroup:SecurityGroup":
        return f"arn:aws:ec2:{region}:{client('sts', region).get_caller_identity()['Account']}:security-group/{live}"
    return live


# -- one creator per resource type verify reads ----------------------------------------------------

def _vpc(client, region, resource, inputs, deployed):
    ec2 = client("ec2", region)
    vpc = ec2.create_vpc(CidrBlock=inputs["cidrBlock"], TagSpecifications=[
        {"ResourceType": "vpc", "Tags": _key_values(_tags(inputs))}])["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": bool(inputs.get("enableDnsHostnames"))})
    return vpc


def _subnet(client, region, resource, inputs, deployed):
    zone = {"AvailabilityZoneId": inputs["availabilityZoneId"]} if "availabilityZoneId" in inputs else \
        {"AvailabilityZone": inputs["availabilityZone"]}
    return client("ec2", region).create_subnet(
        VpcId=inputs["vpcId"], CidrBlock=inputs["cidrBlock"], **zone,
        TagSpecifications=[{"ResourceType": "subnet", "Tags": _key_values(_tags(inputs))}])["Subnet"]["SubnetId"]


def _security_group(client, region, resource, inputs, deployed):
    return client("ec2", region).create_security_group(
        GroupName=_physical_name(resource, inputs), Description=inputs.get("description", "Managed by Pulumi"),
        VpcId=inputs["vpcId"],
        TagSpecifications=[{"ResourceType": "security-group", "Tags": _key_values(_tags(inputs))}])["GroupId"]


def _permission(inputs: dict) -> dict:
    permission: dict[str, Any] = {"IpProtocol": inputs["ipProtocol"]}
    if inputs["ipProtocol"] != "-1":
        permission.update(FromPort=int(inputs["fromPort"]), ToPort=int(inputs["toPort"]))
    if "cidrIpv4" in inputs:
        permission["IpRanges"] = [{"CidrIp": inputs["cidrIpv4"]}]
    if "cidrIpv6" in inputs:
        permission["Ipv6Ranges"] = [{"CidrIpv6": inputs["cidrIpv6"]}]
    if "referencedSecurityGroupId" in inputs:
        permission["UserIdGroupPairs"] = [{"GroupId": inputs["referencedSecurityGroupId"]}]
    if "prefixListId" in inputs:
        permission["PrefixListIds"] = [{"PrefixListId": inputs["prefixListId"]}]
    return permission


def _ingress(client, region, resource, inputs, deployed):
    answer = client("ec2", region).authorize_security_group_ingress(
        GroupId=inputs["securityGroupId"], IpPermissions=[_permission(inputs)])
    return answer["SecurityGroupRules"][0]["SecurityGroupRuleId"]


def _egress(client, region, resource, inputs, deployed):
    answer = client("ec2", region).authorize_security_group_egress(
        GroupId=inputs["securityGroupId"], IpPermissions=[_permission(inputs)])
    return answer["SecurityGroupRules"][0]["SecurityGroupRuleId"]


def _prefix_list(client, region, resource, inputs, deployed):
    return client("ec2", region).create_managed_prefix_list(
        PrefixListName=inputs["name"], AddressFamily=inputs["addressFamily"], MaxEntries=int(inputs["maxEntries"]),
        Entries=[{"Cidr": e["cidr"]} for e in inputs.get("entries", [])])["PrefixList"]["PrefixListId"]


def _load_balancer(client, region, resource, inputs, deployed):
    name = inputs.get("name") or resource.id.split("/")[2]   # the mocks' autoname, in the ALB's ARN
    return client("elbv2", region).create_load_balancer(
        Name=name, Subnets=inputs["subnets"],
        SecurityGroups=inputs["securityGroups"], Scheme="internal" if inputs.get("internal") else "internet-facing",
        Type=inputs.get("loadBalancerType", "application"),
        Tags=_key_values(_tags(inputs)))["LoadBalancers"][0]["LoadBalancerArn"]


def _web_acl(client, region, resource, inputs, deployed):
    visibility = inputs["visibilityConfig"]
    return client("wafv2", region).create_web_acl(
        Name=inputs["name"], Scope=inputs["scope"], DefaultAction={"Allow": {}},
        VisibilityConfig={"SampledRequestsEnabled": visibility["sampledRequestsEnabled"],
                          "CloudWatchMetricsEnabled": visibility["cloudwatchMetricsEnabled"],
                          "MetricName": visibility["metricName"]},
        Tags=_key_values(_tags(inputs)))["Summary"]["ARN"]


def _web_acl_association(client, region, resource, inputs, deployed):
    client("wafv2", region).associate_web_acl(WebACLArn=inputs["webAclArn"], ResourceArn=inputs["resourceArn"])
    return inputs["resourceArn"]


def _cluster(client, region, resource, inputs, deployed):
    return client("ecs", region).create_cluster(
        clusterName=inputs["name"], tags=_key_values(_tags(inputs), "key", "value"))["cluster"]["clusterArn"]


def _task_definition(client, region, resource, inputs, deployed):
    containers = json.loads(inputs["containerDefinitions"])
    for container in containers:   # moto's run_task needs a container memory; Fargate needs none
        container.setdefault("memoryReservation", 512)
    return client("ecs", region).register_task_definition(
        family=inputs["family"], networkMode=inputs["networkMode"],
        requiresCompatibilities=inputs["requiresCompatibilities"], cpu=inputs["cpu"], memory=inputs["memory"],
        containerDefinitions=containers,
        tags=_key_values(_tags(inputs), "key", "value"))["taskDefinition"]["taskDefinitionArn"]


def _service(client, region, resource, inputs, deployed):
    ecs, network = client("ecs", region), inputs["networkConfiguration"]
    awsvpc = {"subnets": network["subnets"], "securityGroups": network["securityGroups"],
              "assignPublicIp": "ENABLED" if network.get("assignPublicIp") else "DISABLED"}
    name = _physical_name(resource, inputs)
    service = ecs.create_service(
        cluster=inputs["cluster"], serviceName=name, taskDefinition=inputs["taskDefinition"],
        desiredCount=int(inputs["desiredCount"]), launchType=inputs["launchType"],
        networkConfiguration={"awsvpcConfiguration": awsvpc}, propagateTags=inputs["propagateTags"],
        enableECSManagedTags=inputs["enableEcsManagedTags"],
        tags=_key_values(_tags(inputs), "key", "value"))["service"]
    # moto reports a service's tasks as running only after an update, and starts none by itself.
    ecs.update_service(cluster=inputs["cluster"], service=name, desiredCount=int(inputs["desiredCount"]))
    ecs.run_task(cluster=inputs["cluster"], taskDefinition=inputs["taskDefinition"], launchType="FARGATE",
                 group=f"service:{name}", networkConfiguration={"awsvpcConfiguration": awsvpc})
    return service["serviceArn"]


def _repository(client, region, resource, inputs, deployed):
    return client("ecr", region).create_repository(
        repositoryName=inputs["name"], imageTagMutability=inputs["imageTagMutability"],
        tags=_key_values(_tags(inputs)))["repository"]["repositoryArn"]


def _replication(client, region, resource, inputs, deployed):
    """ECR copies a pushed image's repository to each destination; moto does not: copy them here."""
    names = [deployed.inputs[name]["name"] for name, live in deployed.ids.items() if ":repository/" in live]
    for rule in inputs["replicationConfiguration"]["rules"]:
        prefixes = [f["filter"] for f in rule.get("repositoryFilters", [])]
        for destination in rule["destinations"]:
            for name in names:
                if not prefixes or any(name.startswith(p) for p in prefixes):
                    client("ecr", destination["region"]).create_repository(repositoryName=name,
                                                                           imageTagMutability="IMMUTABLE")
    return f"replication-{region}"


def _table(client, region, resource, inputs, deployed):
    dynamodb, name = client("dynamodb", region), inputs["name"]
    keys = [("HASH", inputs["hashKey"])] + ([("RANGE", inputs["rangeKey"])] if inputs.get("rangeKey") else [])
    dynamodb.create_table(
        TableName=name, BillingMode=inputs["billingMode"],
        KeySchema=[{"AttributeName": key, "KeyType": kind} for kind, key in keys],
        AttributeDefinitions=[{"AttributeName": a["name"], "AttributeType": a["type"]} for a in inputs["attributes"]],
        Tags=_key_values(_tags(inputs)))
    recovery = inputs.get("pointInTimeRecovery", {}).get("enabled", False)
    dynamodb.update_continuous_backups(TableName=name,
                                       PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": recovery})
    return f"arn:aws:dynamodb:{region}:{client('sts', region).get_caller_identity()['Account']}:table/{name}"


def _secret(client, region, resource, inputs, deployed):
    return client("secretsmanager", region).create_secret(
        Name=inputs["name"], Tags=_key_values(_tags(inputs)),
        AddReplicaRegions=[{"Region": r["region"]} for r in inputs.get("replicas", [])])["ARN"]


CREATORS: dict[str, Callable[..., str]] = {
    "aws:ec2/vpc:Vpc": _vpc,
    "aws:ec2/subnet:Subnet": _subnet,
    "aws:ec2/securityGroup:SecurityGroup": _security_group,
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule": _ingress,
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule": _egress,
    "aws:ec2/managedPrefixList:ManagedPrefixList": _prefix_list,
    "aws:lb/loadBalancer:LoadBalancer": _load_balancer,
    "aws:wafv2/webAcl:WebAcl": _web_acl,
    "aws:wafv2/webAclAssociation:WebAclAssociation": _web_acl_association,
    "aws:ecs/cluster:Cluster": _cluster,
    "aws:ecs/taskDefinition:TaskDefinition": _task_definition,
    "aws:ecs/service:Service": _service,
    "aws:ecr/repository:Repository": _repository,
    "aws:ecr/replicationConfiguration:ReplicationConfiguration": _replication,
    "aws:dynamodb/table:Table": _table,
    "aws:secretsmanager/secret:Secret": _secret,
}
