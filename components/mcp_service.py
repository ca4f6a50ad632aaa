"""One MCP server in one region: its Fargate service behind the region's ALB.

Creates:
- the server's log group (encrypted with the region's key);
- a task definition: the pinned image, run as a non-root user on a read-only root filesystem
  with every Linux capability dropped, secrets injected by ECS (never in the environment);
- the task security group: ingress only from the ALB on the server's port; egress only on
  443 to the VPC's interface endpoints and gateway prefix lists, plus the destinations the
  server declares; and the matching egress rule on the ALB's security group;
- a target group and a listener rule routing `/<server>/mcp` (and its health path) to it,
  with the `/<server>` prefix stripped so the container serves `/mcp` unchanged; with `auth` on,
  the rule validates the caller's JWT first where the ALB checks tokens, and open rules serve the
  server's Protected Resource Metadata and its health path (components/token_validation.py);
- the ECS service: private subnets, no public IP, circuit breaker with rollback, and deployment
  alarms with rollback: its own 5xx alarm and the alarms the caller names (the canary's probe of
  the server through the ALB), so a deploy that breaks them rolls back by itself;
- target-tracking autoscaling on CPU and on requests per task (the scaling target is tagged
  `mcp-estate:peak-tasks` with the group's declared peak for the server, when there is one);
- alarms on 5xx, p99 latency and unhealthy targets, sent to the region's alerts topic, named
  `<stack prefix>-<server>-<region>-<kind>` (`alarm_names`).

Requires: the cluster, ALB, HTTPS listener and alerts topic of `RegionCompute`, the network of
`RegionNetwork`, and the roles of the server's `ServerIdentity`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from mcp_estate.contract.image import CONTAINER_USER, SCRATCH_PATH
from mcp_estate.contract.per_user_data import PORT_ENV, STATE_TABLE_ENV
from mcp_estate.contract.resource_server import ResourceServer
from mcp_estate.contract.spec import Egress, Server

from . import staged_deployment, token_validation
from .naming import child_opts, cidr_slug
from .staged_deployment import Staged

HTTPS = 443
PEAK_TASKS_TAG = "mcp-estate:peak-tasks"


@dataclass
class McpServiceArgs:
    server: Server
    region: str
    image: str                                       # regional ECR image, pinned by digest
    cluster_arn: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    private_subnet_ids: list[pulumi.Input[str]]
    endpoint_prefix_list_ids: dict[str, pulumi.Input[str]]   # gateway service ("s3"...) -> prefix list
    alb_security_group_id: pulumi.Input[str]
    listener_arn: pulumi.Input[str]
    alb_arn_suffix: pulumi.Input[str]
    alerts_topic_arn: pulumi.Input[str]
    task_role_arn: pulumi.Input[str]
    execution_role_arn: pulumi.Input[str]
    log_group_name: str
    log_key_arn: pulumi.Input[str]
    log_retention_days: int
    secrets: dict[str, pulumi.Input[str]]            # server secret name -> its ARN in this region
    state_table: str
    tags: dict[str, str]
    alarm_prefix: str                                # PhysicalNames.server_alarm_prefix: what promote reads
    peak_tasks: int | None = None                    # the group's declared peak for the server, if any
    # Other alarms that roll a deployment back: names, computed up front (they may not exist yet).
    deployment_alarm_names: list[str] = field(default_factory=list)
    # Per-user data and backends (components/per_user_data.py): the estate's variables for the task
    # (MCP_DATA_ROLE_ARN, TOKEN_EXCHANGE_URL, BACKEND_<NAME>_URL...) and the backends' egress.
    estate_environment: dict[str, str] = field(default_factory=dict)
    backend_egress: list[Egress] = field(default_factory=list)
    # CANARY/LINEAR: ECS shifts traffic between two target groups (components/staged_deployment.py).
    staged: Staged | None = None
    tokens: ResourceServer | None = None             # the server's token settings; None: auth disabled
    # Where the server's cache and task queue are, when it declares them (MCP_CACHE_*, MCP_TASK_QUEUE_URL).
    capability_environment: dict[str, pulumi.Input[str]] = field(default_factory=dict)


class McpService(pulumi.ComponentResource):
    def __init__(self, name: str, args: McpServiceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:mcp_service:McpService", name, None, opts)
        server = args.server

        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", name=args.log_group_name, kms_key_id=args.log_key_arn,
            retention_in_days=args.log_retention_days, tags=args.tags, opts=child_opts(self))
        self.task_definition = self._task_definition(name, args)
        self.security_group = self._security_group(name, args)
        self.target_group = self._target_group(f"{name}-tg", args, target_group_name(args))
        if args.staged is None:
            self.listener_rule = aws.lb.ListenerRule(
                f"{name}-route", listener_arn=args.listener_arn, priority=server.priority,
                conditions=[{"path_pattern": {"values": token_validation.route_paths(server, args.tokens)}}],
                transforms=[strip_prefix(server)],
                actions=token_validation.route_actions(args.tokens, self.target_group.arn),
                tags=args.tags, opts=child_opts(self))
        else:
            self._staged_routes(name, args)
        # Open beside the route: the server's token metadata and, when the route checks tokens, its health path.
        self.auth_rules = [] if args.tokens is None else token_validation.companion_rules(
            self, name, server, args.tokens, args.listener_arn, self.target_group.arn, strip_prefix(server), args.tags)
        self.alarm_names = {key: alarm_name(args, key) for key in ALARMS}
        if args.staged is not None:
            self.alarm_names.update({f"{key}-{ALTERNATE}": alarm_name(args, f"{key}-{ALTERNATE}")
                                     for key in DEPLOYMENT_ALARMS})
        self.service = self._service(name, args)
        self.scaling_target, self.scaling_policies = self._autoscaling(name, args)
        self.alarms = self._alarms(name, args)

        self.service_name = self.service.name
        self.service_arn = self.service.arn
        self.target_group_arn = self.target_group.arn
        self.security_group_id = self.security_group.id
        self.task_definition_arn = self.task_definition.arn
        self.log_group_arn = self.log_group.arn
        self.register_outputs({"service_arn": self.service_arn, "target_group_arn": self.target_group_arn,
                               "security_group_id": self.security_group_id,
                               "task_definition_arn": self.task_definition_arn})

    # -- routes --------------------------------------------------------------------------------

    def _target_group(self, resource_name: str, args: McpServiceArgs, group_name: str) -> aws.lb.TargetGroup:
        server = args.server
        return aws.lb.TargetGroup(
            resource_name, name=group_name, port=server.port, protocol="HTTP",
            target_type="ip",   # awsvpc tasks register by IP
            vpc_id=args.vpc_id, deregistration_delay=30, tags=args.tags, opts=child_opts(self),
            health_check={"path": server.health_check_path, "matcher": "200", "interval": 15, "timeout": 5,
                          "healthy_threshold": 2, "unhealthy_threshold": 3})

    def _staged_routes(self, name: str, args: McpServiceArgs) -> None:
        """CANARY/LINEAR: a second target group, the production rule ECS owns and the test rule."""
        server = args.server
        self.alternate_target_group = self._target_group(f"{name}-tg-{ALTERNATE}", args,
                                                         target_group_name(args, ALTERNATE))
        blue, green = self.target_group.arn, self.alternate_target_group.arn
        self.listener_rule = staged_deployment.production_rule(
            f"{name}-route", args.listener_arn, server.priority, token_validation.route_paths(server, args.tokens),
            strip_prefix(server),
            blue, green, args.tags, child_opts(self))
        self.test_listener_rule = staged_deployment.test_rule(
            f"{name}-test-route", args.listener_arn, server.priority, server.mcp_path, strip_prefix(server),
            args.vpc_cidr, blue, green, args.tags, child_opts(self))

    # -- task ----------------------------------------------------------------------------------

    def _task_definition(self, name: str, args: McpServiceArgs) -> aws.ecs.TaskDefinition:
        server = args.server
        return aws.ecs.TaskDefinition(
            f"{name}-task", family=task_family(args.log_group_name), network_mode="awsvpc",
            requires_compatibilities=["FARGATE"], cpu=str(server.cpu), memory=str(server.memory),
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": server.architecture},
            task_role_arn=args.task_role_arn, execution_role_arn=args.execution_role_arn,
            volumes=[{"name": "tmp"}],   # the only writable path, with a read-only root filesystem
            container_definitions=pulumi.Output.json_dumps([container_definition(args)]),
            # awslogs fails a task whose log group does not exist yet
            tags=args.tags, opts=child_opts(self, depends_on=[self.log_group]))

    # -- network -------------------------------------------------------------------------------

    def _security_group(self, name: str, args: McpServiceArgs) -> aws.ec2.SecurityGroup:
        server, port = args.server, args.server.port
        group = aws.ec2.SecurityGroup(
            f"{name}-task-sg", vpc_id=args.vpc_id, tags=args.tags, opts=child_opts(self),
            description=f"MCP server {server.name} tasks: ingress from the ALB only")

        def rule(kind: type, suffix: str, sg_id: pulumi.Input[str], rule_port: int, description: str,
                 **peer: pulumi.Input[str]) -> None:
            kind(f"{name}-{suffix}", security_group_id=sg_id, ip_protocol="tcp", from_port=rule_port,
                 to_port=rule_port, description=description, tags=args.tags, opts=child_opts(self), **peer)

        ingress, egress = aws.vpc.SecurityGroupIngressRule, aws.vpc.SecurityGroupEgressRule
        rule(ingress, "from-alb", group.id, port, "MCP traffic from the ALB",
             referenced_security_group_id=args.alb_security_group_id)
        rule(egress, "alb-to-task", args.alb_security_group_id, port, f"ALB to MCP server {server.name}",
             referenced_security_group_id=group.id)
        # Interface endpoints (ECR, logs, Secrets Manager, STS...) live in the VPC's CIDR.
        rule(egress, "to-endpoints", group.id, HTTPS, "AWS APIs via interface endpoints",
             cidr_ipv4=args.vpc_cidr)
        for service, prefix_list_id in sorted(args.endpoint_prefix_list_ids.items()):
            rule(egress, f"to-{service}", group.id, HTTPS, f"{service} via its gateway endpoint",
                 prefix_list_id=prefix_list_id)
        # IPv4 only: the spec rejects IPv6 (the VPCs have none)
        for destination in [*server.egress, *args.backend_egress]:
            rule(egress, f"to-{cidr_slug(destination.cidr)}-{destination.port}", group.id, destination.port,
                 destination.description, cidr_ipv4=destination.cidr)
        return group

    # -- service -------------------------------------------------------------------------------

    def _service(self, name: str, args: McpServiceArgs) -> aws.ecs.Service:
        server = args.server
        load_balancer = {"target_group_arn": self.target_group.arn, "container_name": server.name,
                         "container_port": server.port}
        alarm_names, staged, ready = [self.alarm_names["5xx"]], {}, [self.listener_rule]
        if args.staged is not None:
            load_balancer["advanced_configuration"] = staged_deployment.advanced_configuration(
                args.staged, self.alternate_target_group.arn, self.listener_rule, self.test_listener_rule)
            staged = {"deployment_configuration": staged_deployment.deployment_configuration(args.staged)}
            # Both target groups take turns serving the new revision: watch both during the bake.
            alarm_names = [self.alarm_names[k] for key in DEPLOYMENT_ALARMS for k in (key, f"{key}-{ALTERNATE}")]
            ready += [self.test_listener_rule, *args.staged.ready]
        return aws.ecs.Service(
            f"{name}-service", cluster=args.cluster_arn, task_definition=self.task_definition.arn,
            desired_count=server.scaling.min, launch_type="FARGATE", platform_version="LATEST",
            network_configuration={"subnets": args.private_subnet_ids,
                                   "security_groups": [self.security_group.id], "assign_public_ip": False},
            # A deploy whose tasks never get healthy rolls back to the last good task definition.
            deployment_circuit_breaker={"enable": True, "rollback": True},
            # ECS watches the alarms by name during a deployment: they need not exist before the service.
            alarms={"alarm_names": [*alarm_names, *args.deployment_alarm_names],
                    "enable": True, "rollback": True},
            deployment_minimum_healthy_percent=100, deployment_maximum_percent=200,
            load_balancers=[load_balancer], **staged,
            health_check_grace_period_seconds=60, propagate_tags="SERVICE", enable_ecs_managed_tags=True,
            enable_execute_command=False,   # no shell into a running server
            # `pulumi up` fails, instead of reporting success, when a deploy never gets healthy
            # (and the circuit breaker or a deployment alarm rolls it back).
            wait_for_steady_state=True,
            tags=args.tags,
            # Autoscaling owns the count after creation; ECS needs the target group attached to
            # the ALB (through the rule) before the service can register into it.
            opts=child_opts(self, ignore_changes=["desired_count"], depends_on=ready))

    def _autoscaling(self, name: str, args: McpServiceArgs) -> tuple[aws.appautoscaling.Target,
                                                                       dict[str, aws.appautoscaling.Policy]]:
        scaling = args.server.scaling
        # The peak rides on the target, next to max_capacity, for the region-loss stack policy.
        tags = args.tags if args.peak_tasks is None else {**args.tags, PEAK_TASKS_TAG: str(args.peak_tasks)}
        target = aws.appautoscaling.Target(
            f"{name}-scaling", min_capacity=scaling.min, max_capacity=scaling.max,
            resource_id=pulumi.Output.concat("service/", args.cluster_name, "/", self.service.name),
            scalable_dimension="ecs:service:DesiredCount", service_namespace="ecs", tags=tags,
            opts=child_opts(self))
        metrics = {
            "cpu": (scaling.target_cpu_percent, {"predefined_metric_type": "ECSServiceAverageCPUUtilization"}),
            "requests": (scaling.target_requests_per_task, {
                "predefined_metric_type": "ALBRequestCountPerTarget",
                "resource_label": pulumi.Output.concat(args.alb_arn_suffix, "/", self.target_group.arn_suffix)}),
        }
        policies = {key: aws.appautoscaling.Policy(
            f"{name}-scale-on-{key}", policy_type="TargetTrackingScaling",
            resource_id=target.resource_id, scalable_dimension=target.scalable_dimension,
            service_namespace=target.service_namespace, opts=child_opts(self),
            target_tracking_scaling_policy_configuration={
                "target_value": value, "predefined_metric_specification": metric,
                # out fast (absorb a failed region's traffic), in slowly (no flapping)
                "scale_out_cooldown": 60, "scale_in_cooldown": 300})
            for key, (value, metric) in metrics.items()}
        return target, policies

    # -- alarms --------------------------------------------------------------------------------

    def _alarms(self, name: str, args: McpServiceArgs) -> dict[str, aws.cloudwatch.MetricAlarm]:
        server, alarms = args.server, args.server.alarms
        where = f"MCP server {server.name} in {args.region}"
        specs = {
            "5xx": dict(metric_name="HTTPCode_Target_5XX_Count", statistic="Sum",
                        threshold=alarms.max_5xx_per_minute, comparison_operator="GreaterThanThreshold",
                        evaluation_periods=5, datapoints_to_alarm=3,
                        alarm_description=f"{where}: more than {alarms.max_5xx_per_minute} 5xx per minute"),
            "latency": dict(metric_name="TargetResponseTime", extended_statistic="p99",
                            threshold=alarms.max_p99_latency_seconds, comparison_operator="GreaterThanThreshold",
                            evaluation_periods=5, datapoints_to_alarm=3,
                            alarm_description=f"{where}: p99 latency above {alarms.max_p99_latency_seconds} s"),
            "unhealthy": dict(metric_name="UnHealthyHostCount", statistic="Maximum", threshold=1,
                              comparison_operator="GreaterThanOrEqualToThreshold",
                              evaluation_periods=3, datapoints_to_alarm=3,
                              alarm_description=f"{where}: a task fails its health check"),
        }
        groups = [("", self.target_group)]
        if args.staged is not None:
            groups.append((f"-{ALTERNATE}", self.alternate_target_group))
        return {f"{key}{suffix}": aws.cloudwatch.MetricAlarm(
            f"{name}-{key}{suffix}-alarm", name=self.alarm_names[f"{key}{suffix}"], namespace="AWS/ApplicationELB",
            dimensions={"LoadBalancer": args.alb_arn_suffix, "TargetGroup": group.arn_suffix},
            period=60, treat_missing_data="notBreaching",
            alarm_actions=[args.alerts_topic_arn], ok_actions=[args.alerts_topic_arn], tags=args.tags,
            opts=child_opts(self), **{**spec, "alarm_description": spec["alarm_description"] + (
                " (alternate target group)" if suffix else "")})
            for suffix, group in groups for key, spec in specs.items() if not suffix or key in DEPLOYMENT_ALARMS}


# -- plain data, known at plan time ----------------------------------------------------------------

ALARMS = ("5xx", "latency", "unhealthy")
DEPLOYMENT_ALARMS = ("5xx", "latency")   # CANARY/LINEAR: on each target group, rolling a deployment back
ALTERNATE = "alternate"


def alarm_name(args: McpServiceArgs, key: str) -> str:
    """`mcp-estate-prod-booking-eu-west-1-5xx`: unique per stack, server, region and kind."""
    return f"{args.alarm_prefix}{key}"


def task_family(log_group_name: str) -> str:
    """`/mcp-estate-prod/booking` -> `mcp-estate-prod-booking`: unique per stack and server."""
    return log_group_name.strip("/").replace("/", "-")


def target_group_name(args: McpServiceArgs, role: str = "") -> str:
    """Target group names have 32 characters at most, too few for Pulumi's auto-name of
    `<server>-<region>-tg`. The hash keeps it unique per stack (the log group name holds the
    stack) and changes with the port, which forces a replacement: the new group never
    collides with the old one while both exist."""
    key = f"{args.log_group_name}:{args.server.port}" + (f":{role}" if role else "")
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"{args.server.name[:23]}-{digest}"


def strip_prefix(server: Server) -> dict:
    """`/booking/mcp` reaches the container as `/mcp`: the server needs no knowledge of its route."""
    return {"type": "url-rewrite",
            "url_rewrite_config": {"rewrite": {"regex": f"^/{server.name}(/.*)$", "replace": "$1"}}}


def env_name(secret: str) -> str:
    """`booking-api-key` -> `BOOKING_API_KEY`."""
    return secret.upper().replace("-", "_")


def container_definition(args: McpServiceArgs) -> dict:
    """The server's container, in the ECS API's names (the task definition takes this JSON)."""
    server = args.server
    # The spec rejects these names in a server's environment: they are the estate's.
    environment = {**server.environment, **args.estate_environment, **args.capability_environment,
                   STATE_TABLE_ENV: args.state_table, PORT_ENV: str(server.port)}
    return {
        "name": server.name,
        "image": args.image,
        "essential": True,
        "user": CONTAINER_USER,
        "readonlyRootFilesystem": True,
        "privileged": False,
        "linuxParameters": {"initProcessEnabled": True, "capabilities": {"drop": ["ALL"]}},
        "portMappings": [{"containerPort": server.port, "protocol": "tcp", "name": "mcp", "appProtocol": "http"}],
        "mountPoints": [{"sourceVolume": "tmp", "containerPath": SCRATCH_PATH, "readOnly": False}],
        "environment": [{"name": key, "value": value} for key, value in sorted(environment.items())],
        # ECS reads each secret with the execution role at start: the value never appears in
        # the task definition. An ARN is required (a bare name is read as an SSM parameter).
        "secrets": [{"name": env_name(secret), "valueFrom": arn} for secret, arn in sorted(args.secrets.items())],
        "healthCheck": {"command": ["CMD-SHELL", f"wget -q -O /dev/null "
                                                 f"http://127.0.0.1:{server.port}{server.health_check_path} || exit 1"],
                        "interval": 15, "timeout": 5, "retries": 3, "startPeriod": 20},
        "stopTimeout": 30,
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": args.log_group_name, "awslogs-region": args.region,
            "awslogs-stream-prefix": server.name,
            # A slow CloudWatch must not block the server's stdout (and so its requests).
            "mode": "non-blocking", "max-buffer-size": "25m"}},
    }
