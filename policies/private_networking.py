"""Private networking: the internet reaches the estate through Cloudflare, and nothing else.

The MCP tasks run in private subnets with no public IP, the ALB admits only Cloudflare's
ranges (through managed prefix lists) and the hostname is proxied, so Cloudflare's WAF and
rate limits see every request (design.md §1, command execution / exfiltration). These controls
hold that line for what the components create and for what a team is likely to add next to
them: another security group, an instance, a database, a function URL, a bucket policy, a
DNS record.

Network ACLs are deliberately not checked: allowing 0.0.0.0/0 in a public subnet's ACL is
normal (ACLs are stateless, so return traffic from anywhere must pass, and the ALB serves
Cloudflare's changing addresses); the security groups checked here decide who may connect.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

from pulumi_policy import PolicyResource, ResourceValidationArgs, Severity, StackValidationArgs

from .control import (UNKNOWN, Report, Risk, allows, as_list, as_mapping, cidr, covers_the_internet,
                      grants_everyone, broad_share, is_the_internet, lookup, pinned_conditions, resource_policy,
                      stack_policy)


SECURITY_GROUPS = {"aws:ec2/securityGroup:SecurityGroup": "security group",
                   "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": "default security group"}
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
DIRECTED_RULES = {"ingress": "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                  "egress": "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"}
PREFIX_LIST = "aws:ec2/managedPrefixList:ManagedPrefixList"
PREFIX_LIST_ENTRY = "aws:ec2/managedPrefixListEntry:ManagedPrefixListEntry"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
PREFIX_LISTS_CONFIG = {"allowedPrefixLists": {"type": "array", "items": {"type": "string"}}}


def is_world(cidr: Any) -> bool:
    """Whether `cidr` alone is the whole internet, however it is spelled ("0.0.0.0/0", "::/0",
    "0:0:0:0:0:0:0:0/0", "10.0.0.0/0", "2000::/3"...)."""
    return is_the_internet([cidr])


def is_true(value: Any) -> bool:
    """A boolean input, also when the SDK types it as a string (launch templates' "true")."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _is_false(value: Any) -> bool:
    return value is False or (isinstance(value, str) and value.lower() == "false")


def _mappings(value: Any) -> list[Mapping]:
    return [item for item in as_list(value) if isinstance(item, Mapping)]


def _arn_id(resource: PolicyResource) -> str | None:
    """The id at the end of an EC2 ARN (`...:security-group/sg-0abc`, `...:prefix-list/pl-0abc`):
    stack policies see outputs, and the id itself is not one of them."""
    arn = lookup(resource.props, "arn")
    return arn.rsplit("/", 1)[-1] if isinstance(arn, str) and "/" in arn else None


@dataclass
class Exposure:
    """Everything that opens one security group (or prefix list) in one direction."""
    what: str
    ranges: list[tuple[str, Any]] = field(default_factory=list)         # (contributing resource, CIDR)
    prefix_lists: list[tuple[str, Any]] = field(default_factory=list)   # (contributing resource, list id)


class Network:
    """The stack's security groups, rules and prefix lists, each rule attached to the group it opens:
    by its property dependency on the group (as Pulumi records it), else by the group id it names."""

    def __init__(self, resources: list[PolicyResource]):
        self.resources = resources
        self.ids = {rid: r.urn for r in resources if r.resource_type in (*SECURITY_GROUPS, PREFIX_LIST)
                    if (rid := _arn_id(r))}
        self.prefix_lists: dict[str, Exposure] = {}
        for r in resources:
            if r.resource_type == PREFIX_LIST:
                self.prefix_list(r.urn, f"managed prefix list {r.name}").ranges += [
                    (r.name, e.get("cidr")) for e in _mappings(r.props.get("entries"))]
        for r in resources:
            if r.resource_type == PREFIX_LIST_ENTRY:
                key = self.owner(r, "prefixListId")
                self.prefix_list(key, f"managed prefix list {key}").ranges.append((r.name, r.props.get("cidr")))
        self.endpoint_lists = {pl for r in resources if r.resource_type == VPC_ENDPOINT
                               if isinstance(pl := lookup(r.props, "prefixListId"), str)}

    def prefix_list(self, key: str, what: str) -> Exposure:
        return self.prefix_lists.setdefault(key, Exposure(what))

    def owner(self, resource: PolicyResource, key: str) -> str:
        """The urn of the in-stack resource `resource.props[key]` refers to, else the id it names.
        An id unknown at preview and without a recorded dependency stops the policy there (the
        analyzer reports it cannot run during preview); it runs at `pulumi up`."""
        for dependency in resource.property_dependencies.get(key) or ():
            if dependency.resource_type in (*SECURITY_GROUPS, PREFIX_LIST):
                return dependency.urn
        value = str(resource.props.get(key))
        return self.ids.get(value, value)

    def exposures(self, direction: str) -> dict[str, Exposure]:
        """Security group -> what admits (ingress) or reaches (egress) it, across every resource."""
        groups: dict[str, Exposure] = {}

        def add(key: str, what: str, source: str, cidrs: list, lists: list) -> None:
            exposure = groups.setdefault(key, Exposure(what))
            exposure.ranges += [(source, c) for c in cidrs if c not in (None, "")]
            exposure.prefix_lists += [(source, p) for p in lists if p not in (None, "")]

        for r in self.resources:
            props = r.props
            if r.resource_type in SECURITY_GROUPS:
                for block in _mappings(props.get(direction)):
                    add(r.urn, f"{SECURITY_GROUPS[r.resource_type]} {r.name}", r.name,
                        as_list(block.get("cidrBlocks")) + as_list(block.get("ipv6CidrBlocks")),
                        as_list(block.get("prefixListIds")))
            elif r.resource_type == SG_RULE and props.get("type") == direction:
                key = self.owner(r, "securityGroupId")
                add(key, self.label(key), r.name, as_list(props.get("cidrBlocks")) +
                    as_list(props.get("ipv6CidrBlocks")), as_list(props.get("prefixListIds")))
            elif r.resource_type == DIRECTED_RULES[direction]:
                key = self.owner(r, "securityGroupId")
                add(key, self.label(key), r.name, [props.get("cidrIpv4"), props.get("cidrIpv6")],
                    [props.get("prefixListId")])
        return groups

    def label(self, key: str) -> str:
        for r in self.resources:
            if r.urn == key:
                return f"{SECURITY_GROUPS[r.resource_type]} {r.name}"
        return f"security group {key}"

    def expand(self, exposure: Exposure, allowed: set[str], report: Report) -> list[tuple[str, Any]]:
        """The exposure's ranges with those of the prefix lists it references; a list the stack does
        not define (other than a VPC endpoint's, or one `allowedPrefixLists` names) is reported."""
        ranges = list(exposure.ranges)
        for source, reference in exposure.prefix_lists:
            key = self.ids.get(str(reference), str(reference))
            if key in self.prefix_lists:
                ranges += self.prefix_lists[key].ranges
            elif str(reference) not in self.endpoint_lists | allowed:
                report(f"{exposure.what}: {source} uses prefix list {reference}, which this stack does not define, "
                       "so what it opens cannot be checked: define the list in the stack, or name it in the "
                       "policy's allowedPrefixLists config")
        return ranges


def internet_ranges(what: str, ranges: list[tuple[str, Any]], report: Report) -> str | None:
    """The ranges (with the resource giving each) that cover the internet, alone or together, or None;
    a value that is no CIDR is reported as unjudgeable, never skipped."""
    networks = []
    for source, value in ranges:
        try:
            networks.append((source, value, cidr(value)))
        except ValueError:
            report(f"{what}: {source} names '{value}', which is not a CIDR, so what it opens cannot be checked: "
                   "write it as a CIDR (203.0.113.0/24)")
    share = broad_share(n for _, _, n in networks)
    if not covers_the_internet(n for _, _, n in networks) and share is None:
        return None
    networks.sort(key=lambda found: (found[2].version, found[2].network_address, found[2].prefixlen))
    alone = [f"{value} ({source})" for source, value, n in networks if covers_the_internet([n])]
    if alone:
        return f"{', '.join(alone)}, the whole internet"
    public = [f"{value} ({source})" for source, value, n in networks if not n.is_private]
    if covers_the_internet(n for _, _, n in networks):
        return f"{', '.join(public)}, together the whole internet"
    together = "together " if len(public) > 1 else ""
    return f"{', '.join(public)}, {together}{share:.1%} of the internet's addresses (more than a /8's worth)"


# -- no ingress from the internet -------------------------------------------------------------------

@stack_policy(
    "no-ingress-from-the-internet",
    "No security group admits the internet, however it is expressed: every inline ingress block, security "
    "group rule and ingress rule of a group, and the managed prefix lists they reference, are combined per "
    "group, on any port, and refused when together they cover every public IPv4 or IPv6 address "
    "(0.0.0.0/0, ::/0 or 2000::/3 in any spelling, 0.0.0.0/1 + 128.0.0.0/1 over two rules, all of IPv4 but "
    "10.0.0.0/8...); a managed prefix list listing the internet (in its entries or in entry resources) is "
    "refused too. A value that is no CIDR, or a prefix list the stack does not define (except a VPC "
    "endpoint's or one the `allowedPrefixLists` config names), is reported as unjudgeable. A stack policy: "
    "it attributes a rule to its group by Pulumi's property dependency or the group's id, and where an id "
    "is unknown at preview it runs at `pulumi up`, once the change is applied, so `estate check` in every pull "
    "request is the gate",
    risks=[Risk.COMMAND_EXECUTION, Risk.PROMPT_INJECTION], severity=Severity.CRITICAL,
    remediation="Admit a security group (the ALB's) or a managed prefix list of known ranges (Cloudflare's).",
    config=PREFIX_LISTS_CONFIG)
def no_ingress_from_the_internet(args: StackValidationArgs, report: Report) -> None:
    network = Network(args.resources)
    allowed = {str(p) for p in as_list(args.get_config().get("allowedPrefixLists"))}
    for prefix_list in network.prefix_lists.values():
        if world := internet_ranges(prefix_list.what, prefix_list.ranges, report):
            report(f"{prefix_list.what} lists {world}: list only known ranges (Cloudflare's)")
    for group in network.exposures("ingress").values():
        if world := internet_ranges(group.what, network.expand(group, allowed, report), report):
            report(f"{group.what} admits {world}, bypassing Cloudflare: admit only a security group (the "
                   "ALB's) or known ranges (Cloudflare's prefix lists)")


# -- WAF IP sets ---------------------------------------------------------------------------------------

WAF_IP_SET = "aws:wafv2/ipSet:IpSet"


@resource_policy(
    "waf-ip-sets-name-known-ranges",
    "No WAF IP set lists the internet or a large part of it, however it is split (0.0.0.0/1 + 128.0.0.0/1, "
    "::/1, all of IPv4 but 10.0.0.0/8, ranges together holding more public addresses than a /8, or than 1/256 "
    "of the public IPv6 space): "
    "a rule that allows such a set lets nearly every request skip the web ACL's managed rules and rate "
    "limit, and one that blocks it blocks nearly everyone. A value that is no CIDR is reported as unjudgeable",
    applies_to=[WAF_IP_SET],
    risks=[Risk.PROMPT_INJECTION, Risk.AVAILABILITY], severity=Severity.HIGH,
    remediation="List the known ranges the rule is for (a partner's, an office's), each as narrow as it is.")
def waf_ip_sets_name_known_ranges(args: ResourceValidationArgs, report: Report) -> None:
    what = f"WAF IP set {args.name}"
    addresses = lookup(args.props, "addresses")
    ranges = [("addresses", value) for value in as_list(addresses if addresses is not UNKNOWN else None)]
    if world := internet_ranges(what, ranges, report):
        report(f"{what} lists {world}: list only the known ranges its rule is for")


# -- no egress to the internet ------------------------------------------------------------------------

@stack_policy(
    "no-egress-to-the-internet",
    "No security group lets its members connect to the whole internet, however it is expressed: every "
    "inline egress block, security group rule and egress rule of a group, and the prefix lists they "
    "reference, are combined per group, on any port, and refused when together they cover every public "
    "IPv4 or IPv6 address (as no-ingress-from-the-internet judges them; unreadable CIDRs and prefix lists "
    "the stack does not define are reported, except VPC endpoints' and `allowedPrefixLists`). A server "
    "reaches the AWS APIs through VPC endpoints and the partners it declares by their ranges, so a "
    "compromised one cannot send data or fetch tools from anywhere else. A stack policy: where a group id "
    "is unknown at preview it runs at `pulumi up`, once the change is applied, so `estate check` in every pull "
    "request is the gate",
    risks=[Risk.COMMAND_EXECUTION, Risk.DATA_LOSS], severity=Severity.HIGH,
    remediation="Allow egress to a security group, a prefix list (VPC endpoints) or the partner ranges the "
                "server declares (servers[].egress).",
    config=PREFIX_LISTS_CONFIG)
def no_egress_to_the_internet(args: StackValidationArgs, report: Report) -> None:
    network = Network(args.resources)
    allowed = {str(p) for p in as_list(args.get_config().get("allowedPrefixLists"))}
    for group in network.exposures("egress").values():
        if world := internet_ranges(group.what, network.expand(group, allowed, report), report):
            report(f"{group.what} allows egress to {world}: allow only a security group, a prefix list or the "
                   "partner ranges the server declares (servers[].egress)")


# -- ECS tasks ------------------------------------------------------------------------------------------

ECS_NETWORKED = {"aws:ecs/service:Service": "service", "aws:ecs/taskSet:TaskSet": "task set"}


@resource_policy(
    "ecs-services-without-public-ips",
    "ECS services and task sets never give their tasks a public IP (assignPublicIp false or absent)",
    applies_to=ECS_NETWORKED,
    risks=[Risk.COMMAND_EXECUTION],
    remediation="Set network_configuration.assign_public_ip=False and run the tasks in private subnets.")
def ecs_services_without_public_ips(args: ResourceValidationArgs, report: Report) -> None:
    if is_true(as_mapping(args.props.get("networkConfiguration")).get("assignPublicIp")):
        report(f"ECS {ECS_NETWORKED[args.resource_type]} {args.name} gives its tasks public IPs: set "
               "network_configuration.assign_public_ip=False; tasks in private subnets reach AWS through "
               "VPC endpoints")


# -- databases ------------------------------------------------------------------------------------------

DATABASES = {
    "aws:rds/instance:Instance": "RDS instance",
    "aws:rds/clusterInstance:ClusterInstance": "RDS cluster instance",
    "aws:rds/cluster:Cluster": "RDS cluster",
    "aws:neptune/clusterInstance:ClusterInstance": "Neptune instance",
    "aws:redshift/cluster:Cluster": "Redshift cluster",
    "aws:redshiftserverless/workgroup:Workgroup": "Redshift Serverless workgroup",
    "aws:dms/replicationInstance:ReplicationInstance": "DMS replication instance",
}


def _public_by_default(resource_type: str, props: Any) -> bool:
    """Where AWS itself may make the resource public when publiclyAccessible is left out: DMS
    replication instances always, Multi-AZ DB clusters (those with a dbClusterInstanceClass) when
    outside a DB subnet group. Every other type here defaults to private."""
    if resource_type == "aws:dms/replicationInstance:ReplicationInstance":
        return True
    return resource_type == "aws:rds/cluster:Cluster" and bool(props.get("dbClusterInstanceClass"))


@resource_policy(
    "databases-not-publicly-accessible",
    "RDS instances and clusters, Neptune, Redshift (and Serverless) and DMS replication instances are "
    "not publicly accessible; where AWS's default is public (DMS, Multi-AZ DB clusters) it is set false",
    applies_to=DATABASES,
    risks=[Risk.DATA_LOSS, Risk.COMMAND_EXECUTION], severity=Severity.CRITICAL,
    remediation="Set publicly_accessible=False and place the database in private subnets.")
def databases_not_publicly_accessible(args: ResourceValidationArgs, report: Report) -> None:
    value = args.props.get("publiclyAccessible")
    what = f"{DATABASES[args.resource_type]} {args.name}"
    if is_true(value):
        report(f"{what} is publicly accessible: set publicly_accessible=False")
    elif value is None and _public_by_default(args.resource_type, args.props):
        report(f"{what} leaves publicly_accessible unset, and AWS then makes it public: "
               "set publicly_accessible=False")


# -- instances -------------------------------------------------------------------------------------------

def _launch_template_public(props: Any) -> bool:
    return any(is_true(nic.get("associatePublicIpAddress")) for nic in _mappings(props.get("networkInterfaces")))


def _eip_attached(props: Any) -> bool:
    # The estate's NAT gateways take their Elastic IPs by allocation id: an EIP naming an
    # instance or a network interface is a public address on a machine.
    return any(lookup(props, key) not in (None, "") for key in ("instance", "networkInterface"))


# type -> (what it is, whether it gives a public IP, the fix)
PUBLIC_IPS: dict[str, tuple[str, Callable[[Any], bool], str]] = {
    "aws:ec2/instance:Instance": (
        "EC2 instance", lambda p: is_true(p.get("associatePublicIpAddress")), "set associate_public_ip_address=False"),
    "aws:ec2/spotInstanceRequest:SpotInstanceRequest": (
        "spot instance request", lambda p: is_true(p.get("associatePublicIpAddress")),
        "set associate_public_ip_address=False"),
    "aws:ec2/launchTemplate:LaunchTemplate": (
        "launch template", _launch_template_public,
        'set network_interfaces[].associate_public_ip_address="false"'),
    "aws:ec2/launchConfiguration:LaunchConfiguration": (
        "launch configuration", lambda p: is_true(p.get("associatePublicIpAddress")),
        "set associate_public_ip_address=False"),
    # Not only the instance's own choice: a subnet that maps public IPs on launch gives one to every
    # instance launched without an explicit choice. Nothing of the estate needs it: the ALB and the
    # NAT gateways get their public addresses whatever the subnet says.
    "aws:ec2/subnet:Subnet": (
        "subnet", lambda p: is_true(p.get("mapPublicIpOnLaunch")), "set map_public_ip_on_launch=False"),
    # A VPC's default subnet maps public IPs on launch unless told otherwise (the provider's
    # DefaultSubnet: "the default value for map_public_ip_on_launch is true"): only an explicit false passes.
    "aws:ec2/defaultSubnet:DefaultSubnet": (
        "default subnet", lambda p: not _is_false(p.get("mapPublicIpOnLaunch")),
        "set map_public_ip_on_launch=False"),
    "aws:ec2/eip:Eip": (
        "Elastic IP", _eip_attached, "attach it to nothing but a NAT gateway (by allocation id)"),
    "aws:ec2/eipAssociation:EipAssociation": (
        "Elastic IP association", lambda p: True, "remove it: reach the machine through the ALB or SSM"),
}


@resource_policy(
    "instances-without-public-ips",
    "No EC2 instance, launch template or configuration gets a public IP, no subnet maps public IPs on "
    "launch (a default subnet does unless set not to), and no Elastic IP is attached to an instance or "
    "network interface",
    applies_to=PUBLIC_IPS,
    risks=[Risk.COMMAND_EXECUTION],
    remediation="Launch into private subnets without public IPs; reach instances through the ALB or SSM.")
def instances_without_public_ips(args: ResourceValidationArgs, report: Report) -> None:
    kind, public, fix = PUBLIC_IPS[args.resource_type]
    if public(args.props):
        report(f"{kind} {args.name} gives a machine a public IP address: {fix}")


# -- function URLs ----------------------------------------------------------------------------------------

FUNCTION_URL = "aws:lambda/functionUrl:FunctionUrl"


@resource_policy(
    "function-urls-require-auth",
    "Lambda function URLs require IAM authentication (authorizationType AWS_IAM, never NONE)",
    applies_to=[FUNCTION_URL],
    risks=[Risk.PROMPT_INJECTION, Risk.CONFUSED_DEPUTY],
    remediation="Set authorization_type=\"AWS_IAM\", or serve the function through the ALB behind Cloudflare.")
def function_urls_require_auth(args: ResourceValidationArgs, report: Report) -> None:
    if args.props.get("authorizationType") != "AWS_IAM":
        report(f"Lambda function URL {args.name} lets anyone on the internet invoke the function, bypassing "
               "Cloudflare: set authorization_type=\"AWS_IAM\"")


# -- resource policies -------------------------------------------------------------------------------------

# type -> what it is; each carries its resource policy in `policy` (a JSON document).
RESOURCE_POLICIES = {
    "aws:s3/bucketPolicy:BucketPolicy": "bucket policy",
    "aws:s3/bucket:Bucket": "bucket", "aws:s3/bucketV2:BucketV2": "bucket",
    "aws:secretsmanager/secretPolicy:SecretPolicy": "secret policy",
    "aws:secretsmanager/secret:Secret": "secret",
    "aws:ecr/repositoryPolicy:RepositoryPolicy": "ECR repository policy",
    "aws:kms/key:Key": "KMS key", "aws:kms/replicaKey:ReplicaKey": "KMS replica key",
    "aws:kms/keyPolicy:KeyPolicy": "KMS key policy",
    "aws:dynamodb/resourcePolicy:ResourcePolicy": "DynamoDB resource policy",
    "aws:sns/topicPolicy:TopicPolicy": "SNS topic policy", "aws:sns/topic:Topic": "SNS topic",
    "aws:sqs/queuePolicy:QueuePolicy": "SQS queue policy", "aws:sqs/queue:Queue": "SQS queue",
}
LAMBDA_PERMISSION = "aws:lambda/permission:Permission"

# The condition keys that make an "everyone" statement private, as S3 judges a policy public
# (kms:CallerAccount is KMS's own aws:PrincipalAccount).
RESTRICTING_KEYS = frozenset(key.lower() for key in (
    "aws:PrincipalAccount", "aws:PrincipalArn", "aws:PrincipalOrgID", "aws:SourceAccount", "aws:SourceArn",
    "aws:SourceIp", "aws:SourceOwner", "aws:SourceVpc", "aws:SourceVpce", "aws:userid",
    "s3:DataAccessPointAccount", "s3:DataAccessPointArn", "kms:CallerAccount"))


def restricts_who(statement: Mapping) -> bool:
    """Whether a condition pins one of the restricting keys (pinned_conditions leaves out
    patterns, policy variables and source ranges that cover the internet)."""
    return any(key in RESTRICTING_KEYS for key in pinned_conditions(statement))


@resource_policy(
    "resource-policies-not-open-to-everyone",
    "No resource policy (S3 bucket, Secrets Manager secret, ECR repository, KMS key, DynamoDB table, SNS "
    "topic, SQS queue) allows everyone (Principal \"*\", {\"AWS\": \"*\"} or a NotPrincipal) unless a condition "
    "pins who (aws:SourceArn, aws:PrincipalOrgID, aws:SourceVpce...), and no Lambda permission is granted "
    "to principal \"*\" without a source ARN, account or organization; Deny statements are fine",
    applies_to=[*RESOURCE_POLICIES, LAMBDA_PERMISSION],
    risks=[Risk.DATA_LOSS, Risk.CONFUSED_DEPUTY], severity=Severity.CRITICAL,
    remediation="Name the principals, or add a condition on aws:SourceArn / aws:PrincipalOrgID / aws:SourceVpce; "
                "give a Lambda permission a source_arn or source_account.")
def resource_policies_not_open_to_everyone(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type == LAMBDA_PERMISSION:
        props = args.props
        if props.get("principal") == "*" and not any(
                lookup(props, key) not in (None, "") for key in ("sourceArn", "sourceAccount", "principalOrgId")):
            report(f"Lambda permission {args.name} lets anyone invoke {props.get('function')}: name the "
                   "service or account as principal, and set source_arn or source_account")
        return
    for statement in allows(args.props.get("policy")):
        if grants_everyone(statement) and not restricts_who(statement):
            sid = f" (statement {statement['Sid']})" if statement.get("Sid") else ""
            report(f"{RESOURCE_POLICIES[args.resource_type]} {args.name} allows everyone "
                   f"{', '.join(map(str, as_list(statement.get('Action'))))}{sid}: name the principals, or "
                   "add a condition on aws:SourceArn, aws:PrincipalOrgID or aws:SourceVpce")


# -- Cloudflare DNS ------------------------------------------------------------------------------------------

DNS_RECORDS = ("cloudflare:index/dnsRecord:DnsRecord", "cloudflare:index/record:Record")
PROXIABLE = frozenset({"A", "AAAA", "CNAME"})


def _private_address(content: Any) -> bool:
    try:
        return ipaddress.ip_address(str(content)).is_private
    except ValueError:
        return False


def _must_stay_dns_only(record_type: Any, name: str, content: Any) -> bool:
    """The records a proxy would break, none of which exposes an origin: ACM's validation CNAMEs
    (`_<token>.<name>` -> `_<token>.<id>.acm-validations.aws`), DKIM keys (`<selector>._domainkey.`)
    and records of private addresses."""
    target = str(content or "").lower().rstrip(".")
    acm = record_type == "CNAME" and name.startswith("_") and target.endswith(".acm-validations.aws")
    return acm or "._domainkey." in f"{name.lower()}." or _private_address(content)


# Where AWS's endpoints live: a DNS-only CNAME to one of these names hands out an origin (an ALB, an API,
# an accelerator); a CNAME elsewhere (a status page, a SaaS verification) exposes no origin of the estate.
AWS_ENDPOINT_DOMAINS = (".amazonaws.com", ".on.aws", ".awsglobalaccelerator.com", ".cloudfront.net", ".aws")
DNS_ONLY_CONFIG = {"dnsOnlyRecords": {"type": "object", "additionalProperties": {"type": "string", "minLength": 1},
                                     "description": "record name -> why it may stay DNS-only"}}


def _points_into_aws(content: Any) -> bool:
    target = str(content or "").lower().rstrip(".")
    return not target or target.endswith(AWS_ENDPOINT_DOMAINS)


@resource_policy(
    "origin-dns-records-proxied",
    "Cloudflare A, AAAA and CNAME records that can reach an origin are proxied: a DNS-only record hands out "
    "the origin's address and its traffic bypasses Cloudflare's WAF and rate limits. A DNS-only A or AAAA "
    "record of a public address, and a DNS-only CNAME into AWS's endpoint domains (or of a target not known "
    "yet), are refused. Not origins, so allowed: ACM validation CNAMEs (a name starting with \"_\" pointing "
    "into acm-validations.aws), DKIM records (`._domainkey.`), records of private addresses and CNAMEs to "
    "names outside AWS (a status page, an ACME delegation). Any other DNS-only record passes only when the "
    "`dnsOnlyRecords` config names it with the reason",
    applies_to=DNS_RECORDS,
    risks=[Risk.PROMPT_INJECTION, Risk.AVAILABILITY],
    remediation="Set proxied=True on the record, or list it with its reason in the dnsOnlyRecords config.",
    config=DNS_ONLY_CONFIG)
def origin_dns_records_proxied(args: ResourceValidationArgs, report: Report) -> None:
    props = args.props
    # Read in this order: the name and content are often outputs (an ALB's DNS name, an ACM
    # record) that preview cannot know, and are only needed for a DNS-only record.
    if props.get("type") not in PROXIABLE or props.get("proxied") is True:
        return
    name = str(props.get("name") or "")
    if _must_stay_dns_only(props.get("type"), name, props.get("content")):
        return
    if props.get("type") == "CNAME" and not _points_into_aws(props.get("content")):
        return
    if as_mapping(args.get_config().get("dnsOnlyRecords")).get(name):
        return
    report(f"Cloudflare DNS record {args.name} ({props.get('type')} {name}) is DNS-only: it exposes the origin "
           "and its traffic bypasses Cloudflare's WAF; set proxied=True")
