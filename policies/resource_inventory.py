"""The estate's inventory: in production only resource types the estate knows (a new type is reviewed
before it ships), and nowhere a resource type that reaches the servers' risks another way: an endpoint
without authentication or WAF, long-lived IAM user keys, a Worker answering on the estate's hostname.

The other controls judge the resource types the estate builds; these two close the gap around them
(issue 12, class 7): the same exposure expressed with a type no other control reads.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from pulumi_policy import ResourceValidationArgs, Severity

from .control import (ENVIRONMENT_CONFIG, EVERY_TYPE, Report, Risk, as_list, as_mapping, environment,
                      resource_policy)

PROD = "prod"
# Every type the shipped stacks build (tests/test_policies_resource_inventory.py holds this list
# equal to the union of the dev, staging and prod plans). A platform team adds reviewed types
# with the policy's `allowedTypes` config.
KNOWN_TYPES = frozenset({
    "aws:acm/certificate:Certificate", "aws:acm/certificateValidation:CertificateValidation",
    "aws:appautoscaling/policy:Policy", "aws:appautoscaling/target:Target",
    "aws:cloudwatch/dashboard:Dashboard", "aws:cloudwatch/eventRule:EventRule",
    "aws:cloudwatch/eventTarget:EventTarget", "aws:cloudwatch/logGroup:LogGroup",
    "aws:cloudwatch/logMetricFilter:LogMetricFilter", "aws:cloudwatch/metricAlarm:MetricAlarm",
    "aws:dynamodb/table:Table",
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "aws:ec2/eip:Eip", "aws:ec2/flowLog:FlowLog",
    "aws:ec2/internetGateway:InternetGateway", "aws:ec2/managedPrefixList:ManagedPrefixList",
    "aws:ec2/natGateway:NatGateway", "aws:ec2/route:Route", "aws:ec2/routeTable:RouteTable",
    "aws:ec2/routeTableAssociation:RouteTableAssociation", "aws:ec2/securityGroup:SecurityGroup",
    "aws:ec2/subnet:Subnet", "aws:ec2/vpc:Vpc", "aws:ec2/vpcEndpoint:VpcEndpoint",
    "aws:ecr/lifecyclePolicy:LifecyclePolicy", "aws:ecr/replicationConfiguration:ReplicationConfiguration",
    "aws:ecr/repository:Repository", "aws:ecr/repositoryCreationTemplate:RepositoryCreationTemplate",
    "aws:ecs/cluster:Cluster", "aws:ecs/service:Service", "aws:ecs/taskDefinition:TaskDefinition",
    # A server's cache and async work (capabilities.py judges them), shipped by staging's booking.
    "aws:elasticache/serverlessCache:ServerlessCache", "aws:elasticache/user:User",
    "aws:elasticache/userGroup:UserGroup", "aws:sqs/queue:Queue",
    "aws:iam/role:Role", "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",   # ECS's ELB role, with a CANARY/LINEAR server
    "aws:kms/alias:Alias", "aws:kms/key:Key", "aws:kms/replicaKey:ReplicaKey",
    "aws:lambda/function:Function", "aws:lambda/functionEventInvokeConfig:FunctionEventInvokeConfig",
    "aws:lambda/permission:Permission",
    "aws:lb/listener:Listener", "aws:lb/listenerRule:ListenerRule", "aws:lb/loadBalancer:LoadBalancer",
    "aws:lb/targetGroup:TargetGroup",
    "aws:s3/bucket:Bucket", "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls", "aws:s3/bucketPolicy:BucketPolicy",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:secretsmanager/secret:Secret",
    "aws:sns/topic:Topic", "aws:sns/topicPolicy:TopicPolicy", "aws:sns/topicSubscription:TopicSubscription",
    "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
    "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    "aws:wafv2/webAcl:WebAcl", "aws:wafv2/webAclAssociation:WebAclAssociation",
    "cloudflare:index/dnsRecord:DnsRecord", "cloudflare:index/loadBalancer:LoadBalancer",
    "cloudflare:index/loadBalancerMonitor:LoadBalancerMonitor",
    "cloudflare:index/loadBalancerPool:LoadBalancerPool", "cloudflare:index/ruleset:Ruleset",
    "cloudflare:index/zoneSetting:ZoneSetting",
})
# Components and the engine's own resources hold no configuration of their own.
UNJUDGED_PREFIXES = ("mcp-estate:", "pulumi:")

INVENTORY_CONFIG = {**ENVIRONMENT_CONFIG, "allowedTypes": {
    "type": "array", "items": {"type": "string", "pattern": "^[a-z0-9-]+:[^:]+:[^:]+$"},
    "description": "Reviewed resource types to admit in production beyond the estate's own"}}


@resource_policy(
    "production-resource-types-reviewed",
    "Production holds only resource types the estate knows (those it builds, plus the pack config's "
    "allowedTypes): a type no control reads (an API gateway, an App Runner service, a Batch job queue, a "
    "search domain, a message broker...) is refused until a platform team reviews it and lists it. Production "
    "as for ecs-exec-disabled-in-prod: the policy's `environment` config, else the tag.",
    applies_to=EVERY_TYPE,
    risks=[Risk.PROMPT_INJECTION, Risk.CONFUSED_DEPUTY, Risk.DATA_LOSS], severity=Severity.HIGH,
    remediation="Review the type's risks, make sure the pack's controls judge it, then add it to "
                "allowedTypes in policies/config/prod.json.",
    config=INVENTORY_CONFIG)
def production_resource_types_reviewed(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type.startswith(UNJUDGED_PREFIXES) or args.resource_type in KNOWN_TYPES:
        return
    if args.resource_type in as_list(args.get_config().get("allowedTypes")):
        return
    if environment(args, report) == PROD:
        report(f"{args.name} is a {args.resource_type}, a type the estate does not build and no platform team has "
               "reviewed for production: remove it, or review it and add it to allowedTypes in the prod pack config")


NLB_TYPES = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")
API_ROUTE, API_METHOD = "aws:apigatewayv2/route:Route", "aws:apigateway/method:Method"
APP_RUNNER, MQ_BROKER = "aws:apprunner/service:Service", "aws:mq/broker:Broker"
SEARCH_DOMAINS = ("aws:opensearch/domain:Domain", "aws:elasticsearch/domain:Domain")
IAM_CREDENTIALS = ("aws:iam/user:User", "aws:iam/accessKey:AccessKey",
                   "aws:iam/userLoginProfile:UserLoginProfile")
WORKER_ROUTE = "cloudflare:index/workersRoute:WorkersRoute"
# The provider's older name, WorkerDomain, is still served.
WORKER_DOMAINS = ("cloudflare:index/workersCustomDomain:WorkersCustomDomain",
                  "cloudflare:index/workerDomain:WorkerDomain")
EXPOSURES = (*NLB_TYPES, API_ROUTE, API_METHOD, APP_RUNNER, MQ_BROKER, *SEARCH_DOMAINS, *IAM_CREDENTIALS,
             WORKER_ROUTE, *WORKER_DOMAINS)
HOSTNAME_CONFIG = {"hostname": {"type": "string", "description": "domain.hostname (generated by `estate "
                                                                  "pack-config`)"}}


@resource_policy(
    "no-unauthenticated-endpoints-beside-the-edge",
    "No resource opens another way in beside Cloudflare and the ALBs: no internet-facing network load "
    "balancer (no WAF can sit on it), no API Gateway route or method without authorization (CORS preflight "
    "OPTIONS excepted), no publicly accessible App Runner service, MQ broker or OpenSearch domain outside a "
    "VPC, no IAM user, access key or console password (long-lived credentials), and no Cloudflare Worker "
    "route or custom domain on the estate's hostname (a Worker answers before the load balancer: no origin "
    "WAF, no residency routing)",
    applies_to=EXPOSURES,
    risks=[Risk.PROMPT_INJECTION, Risk.CONFUSED_DEPUTY, Risk.DATA_LOSS], severity=Severity.HIGH,
    remediation="Serve through the Edge and an ALB with its WAF; require authorization on API routes; keep "
                "App Runner, MQ and OpenSearch private (in a VPC); use IAM roles instead of users; keep Workers "
                "off the MCP hostname.",
    config=HOSTNAME_CONFIG)
def no_unauthenticated_endpoints_beside_the_edge(args: ResourceValidationArgs, report: Report) -> None:
    problem = _exposure(args.resource_type, args.props, args.get_config().get("hostname"))
    if problem:
        report(f"{args.name} ({args.resource_type.split(':')[-1]}) {problem}")


def _exposure(kind: str, props: Any, hostname: str | None) -> str | None:
    """What makes the resource a way in, or None."""
    if kind in NLB_TYPES:
        if props.get("loadBalancerType") == "network" and props.get("internal") is not True:
            return "is an internet-facing network load balancer, where no WAF can sit: make it internal"
    elif kind == API_ROUTE:
        preflight = str(props.get("routeKey")).startswith("OPTIONS ")
        if (props.get("authorizationType") or "NONE") == "NONE" and not preflight:
            return "takes requests without authorization (authorization_type NONE): set JWT, AWS_IAM or CUSTOM"
    elif kind == API_METHOD:
        if props.get("authorization") == "NONE" and props.get("httpMethod") != "OPTIONS":
            return ("takes requests without authorization (authorization NONE): set AWS_IAM, CUSTOM or "
                    "COGNITO_USER_POOLS")
    elif kind == APP_RUNNER:
        ingress = as_mapping(as_mapping(props.get("networkConfiguration")).get("ingressConfiguration"))
        if ingress.get("isPubliclyAccessible") is not False:   # App Runner's default is public
            return ("is publicly accessible: set "
                    "network_configuration.ingress_configuration.is_publicly_accessible=False")
    elif kind == MQ_BROKER:
        if props.get("publiclyAccessible") is True:
            return "accepts connections from outside its VPC: set publicly_accessible=False"
    elif kind in SEARCH_DOMAINS:
        if not as_list(as_mapping(props.get("vpcOptions")).get("subnetIds")):
            return "has a public endpoint (no vpc_options): place it in the estate's private subnets"
    elif kind in IAM_CREDENTIALS:
        return "is a long-lived IAM credential: use an IAM role (ECS task role, OIDC for CI) instead"
    elif kind == WORKER_ROUTE:
        return _worker_on_hostname(str(props.get("pattern") or ""), hostname)
    elif kind in WORKER_DOMAINS:
        return _worker_on_hostname(f"{props.get('hostname')}/*", hostname)
    return None


def _worker_on_hostname(pattern: str, hostname: str | None) -> str | None:
    """Cloudflare route patterns are `<host>/<path>` with `*` wildcards (workers/configuration/routing)."""
    if not hostname:
        return ("is a Worker route, and the pack config gives no hostname to tell whether it covers the MCP "
                "hostname: pass the config `estate pack-config` generates")
    host = pattern.split("://")[-1].split("/")[0].lower()
    if fnmatchcase(hostname.lower(), host or "*"):
        return f"puts a Worker on {hostname} (pattern {pattern!r}), in front of the load balancer: remove it"
    return None
