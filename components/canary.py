"""One region's synthetic MCP client: a scheduled Lambda probing every server of the region, and its alarms.

Creates, per region:
- the function's security group: egress on 443 only, to the VPC (the ALB's nodes and the interface
  endpoints) and to Cloudflare's IPv4 ranges (the global hostname); and an ingress rule on the
  ALB's security group admitting it on 443;
- interface endpoints for CloudWatch metrics (`monitoring`) and EC2 (`ec2`), so the function calls
  AWS without leaving the VPC;
- its log group (the region's key, the estate's retention) and its role: assumable by Lambda for
  this account only, writing its own log group, `cloudwatch:PutMetricData` only into
  `MCPEstate/Canary`, and the network-interface permissions of a VPC function (the two Describe
  actions, which AWS cannot scope, also let it find the ALB's nodes); with `auth` on, reading
  exactly its client-credentials secret (and HTTPS egress to the IdP's token endpoint), so it
  presents a token per server (mcp_estate/runtime/tokens.py);
- the function: python3.12 on arm64 in the private subnets, 60 s, no reserved concurrency (see
  `_function`), no function URL, no retry of a failed run (the next scheduled run is the retry); its code is
  `mcp_estate/runtime/canary_handler.py` and `mcp_estate/runtime/probe.py`, packaged from the source at plan time
  (`components/lambda_package.py`);
- an EventBridge schedule (`monitoring.probe_every_minutes`) and the permission for that rule,
  and no other, to invoke the function;
- per server, alarms to the region's alerts topic: the probe through the ALB fails (also a
  deployment alarm of the server's ECS service, so a deploy that breaks it rolls back: see
  `probe_alarm_name`), the probe through the edge fails, the tool manifest differs from the
  approved `tools_sha256` (a rug pull or tool injection), the probe is slow; and for the region,
  the canary itself errors or stops running.

How the canary reaches the servers from private subnets (see `mcp_estate/runtime/canary_handler.py`):
- through the ALB: the ALB is internet-facing and admits only Cloudflare; its DNS name resolves
  to public addresses, reachable from a private subnet only through NAT, from the NAT's address,
  which the ALB rejects. Its nodes also have private addresses in the VPC's public subnets: the
  function connects to one of them directly (local route, security group to security group),
  with the estate hostname as SNI and Host, verifying the hostname's certificate, which the ALB
  serves. It finds them with ec2:DescribeNetworkInterfaces (ELB describes them `ELB <arn suffix>`).
- through the edge: the hostname is Cloudflare's anycast address, outside AWS: only NAT reaches
  it, so a region with monitoring gets NAT gateways (estate.py); tasks gain nothing from them,
  their own security groups still admit only their endpoints and declared destinations.

Alarms only alert on (and roll back for) what the canary measured: a canary that does not run
leaves them without data, which they treat as not breaching; the region's `canary-silent`
alarm reports it instead, so a broken canary never rolls a healthy deployment back. That alarm
alerts when it *enters* INSUFFICIENT_DATA (see `_silent`): a new alarm starts there, so a first
deploy, before the canary's first run, alerts no one.

Requires: the region's `aws.Provider` in `opts`, the network's VPC, private subnets and endpoint
security group, the compute front's ALB and alerts topic (whose key lets CloudWatch publish).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mcp_estate.contract.iam_documents import document, service_trust
from mcp_estate.contract.names import CANARY_NAMESPACE as NAMESPACE
from mcp_estate.contract.names import CANARY_SUCCESS_METRIC, SERVER_TAG, PhysicalNames, iam_name
from mcp_estate.contract.spec import Monitoring

from .lambda_package import lambda_archive
from .naming import child_opts, cidr_slug

HTTPS = 443
HANDLER = "mcp_estate.runtime.canary_handler.handler"
TIMEOUT_SECONDS = 60
ENDPOINTS = ("monitoring", "ec2")
# What Lambda does to a VPC function's interfaces once created (configuration-vpc, "Required IAM permissions").
INTERFACE_UPKEEP = ("ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses",
                    "ec2:UnassignPrivateIpAddresses")


@dataclass
class CanaryArgs:
    region: str
    account_id: str
    name_prefix: str                         # the estate's physical-name prefix, e.g. mcp-estate-prod
    hostname: str
    servers: dict[str, str | None]           # server running in the region -> approved tools sha256
    monitoring: Monitoring
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    private_subnet_ids: list[pulumi.Input[str]]
    endpoint_security_group_id: pulumi.Input[str]
    alb_security_group_id: pulumi.Input[str]
    alb_arn_suffix: pulumi.Input[str]
    cloudflare_ipv4_cidrs: list[str]
    alerts_topic_arn: pulumi.Input[str]
    log_key_arn: pulumi.Input[str]
    log_retention_days: int
    tags: dict[str, str]
    # With `auth` on: the canary's client credentials (the secret's ARN in this region, and the key
    # encrypting it), and where it reaches the IdP's token endpoint.
    credentials: ProbeCredentials | None = None


@dataclass
class ProbeCredentials:
    secret_arn: pulumi.Input[str]
    key_arn: pulumi.Input[str]
    token_cidrs: list[str]


def probe_alarm_name(name_prefix: str, server: str, region: str, path: str = "alb") -> str:
    """The alarm that fires when probes of `server` in `region` through `path` fail. Plain data,
    so each ECS service can name it as a deployment alarm before the canary exists."""
    return server_alarm_name(name_prefix, server, region, f"probe-{path}")


def server_alarm_name(name_prefix: str, server: str, region: str, kind: str) -> str:
    """A canary alarm about one server: under the contract's prefix, where `estate promote` looks."""
    return PhysicalNames(name_prefix).server_alarm_prefix(server, region) + kind


def function_name(name_prefix: str, region: str) -> str:
    return f"{name_prefix}-{region}-canary"


def canary_role_name(name_prefix: str, region: str) -> str:
    """The canary's role, known at plan time: change detection watches it."""
    return iam_name(function_name(name_prefix, region))


def trust_policy(account_id: str) -> dict:
    """Lambda may assume the role for this account's functions only."""
    return service_trust("lambda.amazonaws.com", {"StringEquals": {"aws:SourceAccount": account_id}})


def credentials_statements(region: str, credentials: ProbeCredentials) -> list[dict]:
    """Read exactly the canary's credentials secret; decrypt only on Secrets Manager's behalf."""
    return [{"Sid": "ReadProbeCredentials", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
             "Resource": credentials.secret_arn},
            {"Sid": "DecryptProbeCredentials", "Effect": "Allow", "Action": "kms:Decrypt",
             "Resource": credentials.key_arn,
             "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}}}]


def canary_policy(account_id: str, region: str, log_group_name: str, subnet_ids: list[pulumi.Input[str]],
                  security_group_id: pulumi.Input[str], credentials: ProbeCredentials | None = None) -> dict:
    ec2 = f"arn:aws:ec2:{region}:{account_id}"
    extra = credentials_statements(region, credentials) if credentials else []
    return document([*extra,
        {"Sid": "WriteOwnLogs", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": f"arn:aws:logs:{region}:{account_id}:log-group:{log_group_name}:*"},
        # PutMetricData has no resource-level permission: the namespace condition is its scope.
        {"Sid": "PublishCanaryMetrics", "Effect": "Allow", "Action": "cloudwatch:PutMetricData", "Resource": "*",
         "Condition": {"StringEquals": {"cloudwatch:namespace": NAMESPACE}}},
        # Describe* cannot be scoped (AWS accepts only "*"); Lambda needs them for the function's
        # interfaces, and the handler to find the ALB's.
        {"Sid": "DescribeNetwork", "Effect": "Allow",
         "Action": ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"], "Resource": "*"},
        # Lambda creates the function's interfaces with this role, only in its subnets and with its
        # group. An interface being created has no id yet: its ARN in the request is
        # `network-interface/*`, which is why that resource is a wildcard (AWS documents it so).
        {"Sid": "CreateOwnInterfaces", "Effect": "Allow", "Action": "ec2:CreateNetworkInterface",
         "Resource": [f"{ec2}:network-interface/*", *(pulumi.Output.concat(f"{ec2}:subnet/", s) for s in subnet_ids),
                      pulumi.Output.concat(f"{ec2}:security-group/", security_group_id)]},
        # ... and removes or re-addresses them. Lambda checks these at CreateFunction with ids of its own,
        # which a scoped or conditioned grant fails ("The provided execution role does not have permissions
        # to call DeleteNetworkInterface on EC2"): AWS documents every resource id of the account in the
        # region (`arn:aws:ec2:<region>:<account>:*/*`) as the form that works, and no narrower one.
        {"Sid": "ManageInterfaces", "Effect": "Allow", "Action": list(INTERFACE_UPKEEP),
         "Resource": f"{ec2}:*/*"},
    ])


def rate(minutes: int) -> str:
    """An EventBridge rate expression: the unit is singular for 1."""
    return f"rate({minutes} minute{'' if minutes == 1 else 's'})"


class Canary(pulumi.ComponentResource):
    def __init__(self, name: str, args: CanaryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:canary:Canary", name, None, opts)
        self._prefix, self._args = name, args
        self.function_name = function_name(args.name_prefix, args.region)
        self.role_name = canary_role_name(args.name_prefix, args.region)

        self.security_group_id = self._network()
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", name=f"/aws/lambda/{self.function_name}", kms_key_id=args.log_key_arn,
            retention_in_days=args.log_retention_days, tags=args.tags, opts=child_opts(self))
        role, grant = self._role(log_group)
        function = self._function(role, [log_group, grant])
        self._schedule(function)
        self.alarm_names = self._alarms()

        self.function_arn = function.arn
        self.register_outputs({"function_arn": self.function_arn, "security_group_id": self.security_group_id,
                               "alarm_names": self.alarm_names})

    # -- network -------------------------------------------------------------------------------

    def _network(self) -> pulumi.Output[str]:
        args, prefix = self._args, self._prefix
        group = aws.ec2.SecurityGroup(
            f"{prefix}-sg", vpc_id=args.vpc_id, tags=args.tags, opts=child_opts(self),
            description="MCP canary: HTTPS to the VPC (ALB nodes, AWS endpoints) and to Cloudflare only")

        def egress(suffix: str, description: str, cidr: str) -> None:
            aws.vpc.SecurityGroupEgressRule(
                f"{prefix}-to-{suffix}", security_group_id=group.id, ip_protocol="tcp", from_port=HTTPS,
                to_port=HTTPS, cidr_ipv4=cidr, description=description, tags=args.tags, opts=child_opts(self))

        egress("vpc", "ALB nodes and AWS APIs via interface endpoints", args.vpc_cidr)
        for cidr in args.credentials.token_cidrs if args.credentials else ():
            egress(f"token-{cidr_slug(cidr)}", "the IdP token endpoint (bearer tokens of the canary)", cidr)
        for cidr in args.cloudflare_ipv4_cidrs:
            egress(f"cloudflare-{cidr_slug(cidr)}", "the estate hostname, via Cloudflare", cidr)
        aws.vpc.SecurityGroupIngressRule(
            f"{prefix}-alb-from-canary", security_group_id=args.alb_security_group_id, ip_protocol="tcp",
            from_port=HTTPS, to_port=HTTPS, referenced_security_group_id=group.id,
            description="the MCP canary of the region", tags=args.tags, opts=child_opts(self))
        for service in ENDPOINTS:
            aws.ec2.VpcEndpoint(
                f"{prefix}-endpoint-{service}", vpc_id=args.vpc_id,
                service_name=f"com.amazonaws.{args.region}.{service}", vpc_endpoint_type="Interface",
                private_dns_enabled=True, subnet_ids=args.private_subnet_ids,
                security_group_ids=[args.endpoint_security_group_id], tags=args.tags, opts=child_opts(self))
        return group.id

    # -- function ------------------------------------------------------------------------------

    def _role(self, log_group: aws.cloudwatch.LogGroup) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        args = self._args
        role = aws.iam.Role(f"{self._prefix}-role", name=self.role_name,
                            assume_role_policy=json.dumps(trust_policy(args.account_id)),
                            description=f"MCP canary in {args.region}: probe, publish its metrics, write its logs",
                            tags=args.tags, opts=child_opts(self))
        grant = aws.iam.RolePolicy(
            f"{self._prefix}-policy", role=role.id, opts=child_opts(self),
            policy=pulumi.Output.json_dumps(canary_policy(
                args.account_id, args.region, f"/aws/lambda/{self.function_name}", args.private_subnet_ids,
                self.security_group_id, args.credentials)))
        return role, grant

    def _function(self, role: aws.iam.Role, ready: list[pulumi.Resource]) -> aws.lambda_.Function:
        args = self._args
        servers = {server: digest or "" for server, digest in sorted(args.servers.items())}
        function = aws.lambda_.Function(
            f"{self._prefix}-function", name=self.function_name, role=role.arn, runtime="python3.12",
            architectures=["arm64"], handler=HANDLER, code=lambda_archive([HANDLER.rsplit(".", 1)[0]]),
            # No reserved concurrency: Lambda keeps a minimum of the account's concurrency unreserved
            # (100 at the default quota of 1,000; new accounts may have a quota of 10), so reserving
            # even 1 fails the deploy on such accounts. Runs cannot pile up without it: only the
            # schedule may invoke the function, a run lasts at most TIMEOUT_SECONDS (no longer than
            # the shortest schedule period, one minute), a failed run is not retried and an event
            # Lambda had to delay is dropped after one period; two read-only probes overlapping is harmless.
            timeout=TIMEOUT_SECONDS, memory_size=256,
            vpc_config={"subnet_ids": args.private_subnet_ids, "security_group_ids": [self.security_group_id]},
            logging_config={"log_format": "JSON", "log_group": f"/aws/lambda/{self.function_name}",
                            "application_log_level": "INFO", "system_log_level": "WARN"},
            environment={"variables": {
                "MCP_CANARY_HOSTNAME": args.hostname, "MCP_CANARY_REGION": args.region,
                "MCP_CANARY_ALB": pulumi.Output.concat("ELB ", args.alb_arn_suffix),
                "MCP_CANARY_SERVERS": json.dumps(servers, sort_keys=True, separators=(",", ":")),
                **({"MCP_CANARY_CREDENTIALS_ARN": args.credentials.secret_arn} if args.credentials else {})}},
            tags=args.tags,
            # Lambda checks the role may create network interfaces when it creates the function, and
            # the log group must exist: the role grants no logs:CreateLogGroup.
            opts=child_opts(self, depends_on=ready))
        aws.lambda_.FunctionEventInvokeConfig(
            f"{self._prefix}-no-retries", function_name=function.name, maximum_retry_attempts=0,
            maximum_event_age_in_seconds=60 * args.monitoring.probe_every_minutes, opts=child_opts(self))
        return function

    def _schedule(self, function: aws.lambda_.Function) -> None:
        args, prefix = self._args, self._prefix
        rule = aws.cloudwatch.EventRule(
            f"{prefix}-schedule", name=f"{self.function_name}-schedule", state="ENABLED",
            schedule_expression=rate(args.monitoring.probe_every_minutes),
            description=f"Run the MCP canary in {args.region}", tags=args.tags, opts=child_opts(self))
        aws.lambda_.Permission(f"{prefix}-invoke", action="lambda:InvokeFunction", function=function.name,
                               principal="events.amazonaws.com", source_arn=rule.arn, opts=child_opts(self))
        aws.cloudwatch.EventTarget(f"{prefix}-target", rule=rule.name, arn=function.arn, opts=child_opts(self))

    # -- alarms --------------------------------------------------------------------------------

    def _alarms(self) -> dict[str, str]:
        """Alarm key (`<server>-probe-alb`, `canary-silent`...) -> alarm name."""
        args, monitoring = self._args, self._args.monitoring
        period, periods = 60 * monitoring.probe_every_minutes, monitoring.failed_probes_to_alarm
        names = {}
        for server, approved in sorted(args.servers.items()):
            where = f"MCP server {server} in {args.region}"
            dims = {"Server": server, "Region": args.region}
            for path, via in (("alb", "the region's ALB"), ("edge", "the estate hostname")):
                names[f"{server}-probe-{path}"] = self._alarm(
                    f"{server}-probe-{path}", probe_alarm_name(args.name_prefix, server, args.region, path),
                    f"{where}: {periods} probes in a row through {via} failed", server=server,
                    namespace=NAMESPACE, metric_name=CANARY_SUCCESS_METRIC, dimensions={**dims, "Path": path},
                    statistic="Minimum", period=period, evaluation_periods=periods, datapoints_to_alarm=periods,
                    threshold=1, comparison_operator="LessThanThreshold", treat_missing_data="notBreaching")
            names[f"{server}-probe-latency"] = self._alarm(
                f"{server}-probe-latency",
                server_alarm_name(args.name_prefix, server, args.region, "probe-latency"),
                f"{where}: {periods} probes in a row through the ALB took over {monitoring.max_probe_latency_ms} ms",
                server=server,
                namespace=NAMESPACE, metric_name="Latency", dimensions={**dims, "Path": "alb", "Step": "total"},
                statistic="Maximum", period=period, evaluation_periods=periods, datapoints_to_alarm=periods,
                threshold=monitoring.max_probe_latency_ms, comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching")
            if approved:
                names[f"{server}-tools-changed"] = self._tools_changed(server, period, periods)
        names["canary-errors"] = self._alarm(
            "canary-errors", f"{args.name_prefix}-{args.region}-canary-errors",
            f"The MCP canary in {args.region} fails to run",
            namespace="AWS/Lambda", metric_name="Errors", dimensions={"FunctionName": self.function_name},
            statistic="Sum", period=period, evaluation_periods=1, threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold", treat_missing_data="notBreaching")
        names["canary-silent"] = self._silent(period)
        return names

    def _silent(self, period: int) -> str:
        """The canary stopped running. Lambda publishes `Invocations` only for periods with a run, so
        silence is missing data. With `missing`, CloudWatch moves the alarm to INSUFFICIENT_DATA once
        every point of its evaluation range (two schedule periods) is missing, and
        `insufficient_data_actions` alert on entering that state from OK or ALARM. A new alarm starts
        in INSUFFICIENT_DATA: before the first run there is no transition, so no alert (`breaching`
        alerted on every first deploy, and on every new region, before the canary ever ran)."""
        args = self._args
        return self._alarm(
            "canary-silent", f"{args.name_prefix}-{args.region}-canary-silent",
            f"The MCP canary in {args.region} has not run for two schedule periods: no probe results, so no "
            "probe alarm can fire (the alarm reports this as INSUFFICIENT_DATA)",
            namespace="AWS/Lambda", metric_name="Invocations", dimensions={"FunctionName": self.function_name},
            statistic="Sum", period=period, evaluation_periods=2, datapoints_to_alarm=2, threshold=1,
            comparison_operator="LessThanThreshold", treat_missing_data="missing",
            insufficient_data_actions=[args.alerts_topic_arn])

    def _tools_changed(self, server: str, period: int, periods: int) -> str:
        """Either path serving another manifest than the approved one: the tools an agent sees changed."""
        args = self._args
        queries = [{"id": f"m_{path}", "return_data": False, "metric": {
            "namespace": NAMESPACE, "metric_name": "ToolsManifestMismatch", "period": period, "stat": "Maximum",
            "dimensions": {"Server": server, "Region": args.region, "Path": path}}} for path in ("alb", "edge")]
        queries.append({"id": "changed", "expression": "MAX([m_alb, m_edge])", "return_data": True,
                        "label": "tool manifest differs from the approved tools_sha256"})
        return self._alarm(
            f"{server}-tools-changed",
            server_alarm_name(args.name_prefix, server, args.region, "tools-changed"),
            f"MCP server {server} in {args.region} serves a tool manifest other than the approved tools_sha256 "
            "(a tool was added, removed or its description or schema changed): check for a rug pull or "
            "tool injection before approving the new hash", server=server,
            metric_queries=queries, evaluation_periods=periods, datapoints_to_alarm=periods, threshold=1,
            comparison_operator="GreaterThanOrEqualToThreshold", treat_missing_data="notBreaching")

    def _alarm(self, key: str, alarm_name: str, description: str, server: str | None = None, **spec) -> str:
        """A server's alarms also carry its tag: `estate promote` finds them by it."""
        args = self._args
        aws.cloudwatch.MetricAlarm(
            f"{self._prefix}-{key}", name=alarm_name,
            alarm_description=description, alarm_actions=[args.alerts_topic_arn], ok_actions=[args.alerts_topic_arn],
            tags=args.tags if server is None else {**args.tags, SERVER_TAG: server}, opts=child_opts(self), **spec)
        return alarm_name
