"""One region's deployment gate for CANARY/LINEAR services: the hook Lambda and the roles ECS uses.

Created only in regions running a server whose in-region strategy is CANARY or LINEAR:
- the hook function (`mcp_estate/runtime/deployment_hook.py` with the probe, packaged like the canary's):
  python3.12 on arm64 in the private subnets, its own security group (HTTPS to the VPC only: the
  ALB's nodes and the interface endpoints) and an ingress rule on the ALB's group admitting it;
- its log group and role: assumable by Lambda for this account only, writing its own log group,
  the VPC interface grants the canary's role has (components/canary.py explains each), and, with
  `auth` on, the canary's own credentials grants: secretsmanager:GetSecretValue on exactly the probe
  credentials secret's regional ARN, kms:Decrypt of its key only via Secrets Manager, and HTTPS
  egress to the IdP's token endpoint (`monitoring.probe_token_cidrs`). The hook asks for a token per
  server as the canary does (mcp_estate/runtime/tokens.py): one OAuth client, no token to rotate;
- the hook role ECS assumes to invoke it: lambda:InvokeFunction on exactly this function;
- the infrastructure role ECS assumes to shift traffic (swap target-group weights in the listener
  rules, register tasks in the alternate target group), with the AWS-managed
  AmazonECSInfrastructureRolePolicyForLoadBalancers, as the ECS guide prescribes. AWS edits that
  policy as ECS's controller changes (v1 to v6 in its first seven months), so a hand-written copy
  would break deployments silently; it reaches every ALB rule and target group of the account,
  which is why the pack admits it only when `allowedManagedPolicies` lists it (estate pack-config
  writes it there for an estate with a staged server). The trust is the documented one:
  ecs.amazonaws.com, with no condition (the ECS guide documents none for this role).

Requires: the region's `aws.Provider` in `opts`, the network's VPC and private subnets, the compute
front's ALB security group and arn suffix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mcp_estate.contract.iam_documents import document, service_trust
from mcp_estate.contract.names import iam_name

from .canary import INTERFACE_UPKEEP, ProbeCredentials, credentials_statements, trust_policy
from .lambda_package import lambda_archive
from .naming import child_opts, cidr_slug

HTTPS = 443
HANDLER = "mcp_estate.runtime.deployment_hook.handler"
TIMEOUT_SECONDS = 120   # two probes of PROBE_TIMEOUT_SECONDS each, with room; ECS waits for the answer
INFRASTRUCTURE_POLICY = "arn:aws:iam::aws:policy/AmazonECSInfrastructureRolePolicyForLoadBalancers"
ECS = "ecs.amazonaws.com"


@dataclass
class GatedServer:
    """What the hook checks for one server (the runtime's `Gate`)."""
    protocols: list[str]
    tools_sha256: str | None
    probe_tool: str | None
    probe_arguments: dict


@dataclass
class DeploymentGateArgs:
    region: str
    account_id: str
    name_prefix: str
    hostname: str
    servers: dict[str, GatedServer]          # staged server running in the region -> its gate
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    private_subnet_ids: list[pulumi.Input[str]]
    alb_security_group_id: pulumi.Input[str]
    alb_arn_suffix: pulumi.Input[str]
    log_key_arn: pulumi.Input[str]
    log_retention_days: int
    tags: dict[str, str]
    credentials: ProbeCredentials | None = None   # with `auth` on: the canary's client credentials


def function_name(name_prefix: str, region: str) -> str:
    return f"{name_prefix}-{region}-deploy-hook"


def gate_role_names(name_prefix: str, region: str) -> list[str]:
    """The hook's, the hook invoker's and the load-balancer infrastructure role (change detection watches them)."""
    hook = function_name(name_prefix, region)
    return [iam_name(hook), iam_name(f"{hook}-invoke"), iam_name(f"{name_prefix}-{region}-ecs-elb")]


def ecs_trust() -> dict:
    """The ECS guide's trust policy for the load-balancer infrastructure role and for hook roles."""
    return service_trust(ECS)


def invoke_policy(function_arn: pulumi.Input[str]) -> dict:
    return document([{
        "Sid": "InvokeTheHook", "Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": function_arn}])


def hook_policy(account_id: str, region: str, log_group_name: str, subnet_ids: list[pulumi.Input[str]],
                security_group_id: pulumi.Input[str], credentials: ProbeCredentials | None = None) -> dict:
    ec2 = f"arn:aws:ec2:{region}:{account_id}"
    statements = [
        {"Sid": "WriteOwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"arn:aws:logs:{region}:{account_id}:log-group:{log_group_name}:*"},
        # As the canary's role (components/canary.py): Describe* accept only "*", the function's own
        # interfaces in its subnets and group, and the upkeep Lambda checks with ids of its own.
        {"Sid": "DescribeNetwork", "Effect": "Allow",
         "Action": ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"], "Resource": "*"},
        {"Sid": "CreateOwnInterfaces", "Effect": "Allow", "Action": "ec2:CreateNetworkInterface",
         "Resource": [f"{ec2}:network-interface/*", *(pulumi.Output.concat(f"{ec2}:subnet/", s) for s in subnet_ids),
                      pulumi.Output.concat(f"{ec2}:security-group/", security_group_id)]},
        {"Sid": "ManageInterfaces", "Effect": "Allow", "Action": list(INTERFACE_UPKEEP), "Resource": f"{ec2}:*/*"},
    ]
    if credentials is not None:
        statements += credentials_statements(region, credentials)
    return document(statements)


class DeploymentGate(pulumi.ComponentResource):
    def __init__(self, name: str, args: DeploymentGateArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:deployment_gate:DeploymentGate", name, None, opts)
        self._prefix, self._args = name, args
        self.function_name = function_name(args.name_prefix, args.region)
        self.role_names = gate_role_names(args.name_prefix, args.region)

        self.ready: list[pulumi.Resource] = []   # the roles' grants: a service naming the roles waits for them
        self.security_group_id = self._network()
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", name=f"/aws/lambda/{self.function_name}", kms_key_id=args.log_key_arn,
            retention_in_days=args.log_retention_days, tags=args.tags, opts=child_opts(self))
        function = self._function(log_group)
        self.function_arn = function.arn
        self.hook_role_arn = self._role(
            "invoke", self.role_names[1], ecs_trust(), f"ECS in {args.region}: invoke the MCP deployment hook",
            inline=pulumi.Output.json_dumps(invoke_policy(function.arn)))
        self.infrastructure_role_arn = self._role(
            "ecs-elb", self.role_names[2], ecs_trust(),
            f"ECS in {args.region}: shift traffic between the target groups of CANARY/LINEAR services",
            managed=INFRASTRUCTURE_POLICY)
        self.register_outputs({"function_arn": self.function_arn, "hook_role_arn": self.hook_role_arn,
                               "infrastructure_role_arn": self.infrastructure_role_arn})

    def _network(self) -> pulumi.Output[str]:
        args, prefix = self._args, self._prefix
        group = aws.ec2.SecurityGroup(
            f"{prefix}-sg", vpc_id=args.vpc_id, tags=args.tags, opts=child_opts(self),
            description="MCP deployment hook: HTTPS to the VPC only (ALB nodes, AWS endpoints)")
        aws.vpc.SecurityGroupEgressRule(
            f"{prefix}-to-vpc", security_group_id=group.id, ip_protocol="tcp", from_port=HTTPS, to_port=HTTPS,
            cidr_ipv4=args.vpc_cidr, description="ALB nodes and AWS APIs via interface endpoints",
            tags=args.tags, opts=child_opts(self))
        for cidr in args.credentials.token_cidrs if args.credentials else ():
            aws.vpc.SecurityGroupEgressRule(
                f"{prefix}-to-token-{cidr_slug(cidr)}", security_group_id=group.id, ip_protocol="tcp",
                from_port=HTTPS, to_port=HTTPS, cidr_ipv4=cidr, tags=args.tags, opts=child_opts(self),
                # EC2 refuses an apostrophe in a rule description (tests/test_security_group_descriptions.py)
                description="the IdP token endpoint (bearer tokens of the hook)")
        aws.vpc.SecurityGroupIngressRule(
            f"{prefix}-alb-from-hook", security_group_id=args.alb_security_group_id, ip_protocol="tcp",
            from_port=HTTPS, to_port=HTTPS, referenced_security_group_id=group.id,
            description="the MCP deployment hook of the region", tags=args.tags, opts=child_opts(self))
        return group.id

    def _function(self, log_group: aws.cloudwatch.LogGroup) -> aws.lambda_.Function:
        args = self._args
        role_name, log_name = self.role_names[0], f"/aws/lambda/{self.function_name}"
        role = aws.iam.Role(f"{self._prefix}-role", name=role_name,
                            assume_role_policy=json.dumps(trust_policy(args.account_id)),
                            description=f"MCP deployment hook in {args.region}: probe new revisions, write its logs",
                            tags=args.tags, opts=child_opts(self))
        grant = aws.iam.RolePolicy(
            f"{self._prefix}-policy", role=role.id, opts=child_opts(self),
            policy=pulumi.Output.json_dumps(hook_policy(args.account_id, args.region, log_name,
                                                        args.private_subnet_ids, self.security_group_id,
                                                        args.credentials)))
        servers = pulumi.Output.json_dumps({
            server: {"protocols": sorted(g.protocols), "tools_sha256": g.tools_sha256 or "",
                     "probe_tool": g.probe_tool or "", "probe_arguments": g.probe_arguments}
            for server, g in sorted(args.servers.items())})
        credentials = {"MCP_HOOK_CREDENTIALS_ARN": args.credentials.secret_arn} if args.credentials else {}
        return aws.lambda_.Function(
            f"{self._prefix}-function", name=self.function_name, role=role.arn, runtime="python3.12",
            architectures=["arm64"], handler=HANDLER, code=lambda_archive([HANDLER.rsplit(".", 1)[0]]),
            timeout=TIMEOUT_SECONDS, memory_size=256,
            vpc_config={"subnet_ids": args.private_subnet_ids, "security_group_ids": [self.security_group_id]},
            logging_config={"log_format": "JSON", "log_group": log_name,
                            "application_log_level": "INFO", "system_log_level": "WARN"},
            environment={"variables": {
                "MCP_HOOK_HOSTNAME": args.hostname, "MCP_HOOK_REGION": args.region,
                "MCP_HOOK_ALB": pulumi.Output.concat("ELB ", args.alb_arn_suffix), "MCP_HOOK_SERVERS": servers,
                **credentials}},
            tags=args.tags,
            # As the canary's: Lambda checks the interface grants at creation; the role creates no log group.
            opts=child_opts(self, depends_on=[log_group, grant]))

    def _role(self, suffix: str, role_name: str, trust: dict, description: str, *, inline: pulumi.Input[str] = None,
              managed: str | None = None) -> pulumi.Output[str]:
        args = self._args
        role = aws.iam.Role(f"{self._prefix}-{suffix}-role", name=role_name, assume_role_policy=json.dumps(trust),
                            description=description, tags=args.tags, opts=child_opts(self))
        if inline is not None:
            self.ready.append(aws.iam.RolePolicy(f"{self._prefix}-{suffix}-policy", role=role.id, policy=inline,
                                                 opts=child_opts(self)))
        if managed is not None:
            self.ready.append(aws.iam.RolePolicyAttachment(f"{self._prefix}-{suffix}-managed", role=role.name,
                                                           policy_arn=managed, opts=child_opts(self)))
        return role.arn
