"""A server's asynchronous work in one region: its task queue and the worker service consuming it.

Creates, per server declaring `async` and per region:
- a dead-letter queue and the task queue, both encrypted with the region's key of the residency
  group (SSE-KMS, a customer key: never `alias/aws/sqs`), the task queue redriving to the DLQ after
  `max_receive_count` receives and the DLQ accepting redrives from that queue only; each queue's
  policy refuses every caller outside the estate's account and every request without TLS, and the
  task queue's also refuses sending to every principal but the server's task role, and consuming
  (receive, delete, change visibility) to every principal but its worker's role: a message is
  only ever written by the role that validated the traveller's token, which is why the worker may
  act as the traveller it names (components/worker_identity.py);
- the worker: a Fargate service running the server's pinned image with the worker's command, the
  same hardening as the server's container (non-root, read-only root filesystem, no capabilities),
  in private subnets with no public IP and no load balancer; its security group has no ingress
  rule at all, and egress only to the VPC's interface endpoints, the gateway prefix lists and the
  server's declared destinations;
- target tracking on the backlog per task (the queue's visible messages divided by the worker's
  running tasks, metric math over Container Insights), between the declared bounds;
- alarms, to the region's alerts topic, named `<prefix>-<server>-<region>-<kind>`: the age of the
  oldest message (`oldest-task`), any message in the dead-letter queue (`dead-letters`), a message
  newly dead-lettered (`new-dead-letters`: the DLQ's visible messages grew within a minute, metric
  math DIFF) and failed tasks above `max_failed_tasks_per_minute` (`worker-errors`, from the
  worker's `mcp.task` lines, components/telemetry.py). The last two are the worker service's
  deployment alarms, with rollback: a release whose worker fails its tasks is rolled back, as the
  circuit breaker rolls back one whose tasks never start. `dead-letters` is not wired in: letters
  left from before a deployment would roll back every release, the fix included.

Requires: the cluster (Container Insights on) and alerts topic of `RegionCompute`, the network of
`RegionNetwork` with an SQS interface endpoint (`QueueEndpoint`), the server's container definition
and execution role (`McpService`, `ServerIdentity`), and the worker's role (`WorkerIdentity`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mcp_estate.contract.capabilities import CACHE_ENV, AsyncWork
from mcp_estate.contract.iam_documents import document
from mcp_estate.contract.per_user_data import PORT_ENV

from .naming import child_opts, cidr_slug
from .telemetry import NAMESPACE as TELEMETRY
from .telemetry import WORKER_ERRORS

HTTPS = 443
DLQ_RETENTION_SECONDS = 14 * 24 * 3600   # the SQS maximum (the spec keeps the task queue's below it)
ALARMS = ("oldest-task", "dead-letters", "new-dead-letters", "worker-errors")
DEPLOYMENT_ALARMS = ("new-dead-letters", "worker-errors")   # the worker service rolls back on them
SEND_ACTIONS = ["sqs:SendMessage"]
CONSUME_ACTIONS = ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage"]


@dataclass
class AsyncWorkerArgs:
    server: str
    region: str
    account_id: str
    work: AsyncWork
    queue_name: str
    dead_letter_queue_name: str
    key_arn: pulumi.Input[str]
    sender_role_arn: str                      # the server's task role in the region's group
    worker_role_name: str                     # the worker's role there (plan-time ARN in the queue policy)
    worker_role_arn: pulumi.Input[str]        # ... resolved once its policy exists
    execution_role_arn: pulumi.Input[str]
    task_family: str                          # the server's task family; the worker's adds `-worker`
    architecture: str
    server_container: dict                    # the server's container definition (McpService)
    egress: list                              # the server's declared destinations (spec Egress)
    cluster_arn: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    private_subnet_ids: list[pulumi.Input[str]]
    endpoint_prefix_list_ids: dict[str, pulumi.Input[str]]
    alerts_topic_arn: pulumi.Input[str]
    tags: dict[str, str]


def queue_arn(account_id: str, region: str, name: str) -> str:
    return f"arn:aws:sqs:{region}:{account_id}:{name}"


def queue_url(account_id: str, region: str, name: str) -> str:
    return f"https://sqs.{region}.amazonaws.com/{account_id}/{name}"


def worker_service_name(server: str) -> str:
    return f"{server}-worker"


def queue_policy(arn: str, account_id: str, roles: tuple[str, str] | None = None) -> dict:
    """Nobody outside the account, nothing without TLS; with `roles` (sender, consumer role ARNs),
    only the sender may send and only the consumer may consume."""
    statements = [
        {"Sid": "EstateAccountOnly", "Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": arn,
         "Condition": {"StringNotEquals": {"aws:PrincipalAccount": account_id}}},
        {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "sqs:*", "Resource": arn,
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]
    if roles:
        # Deny only: what each role may do is its identity policy's (server_identity, worker_identity).
        for sid, actions, role in (("ServerSendsOnly", SEND_ACTIONS, roles[0]),
                                   ("WorkerConsumesOnly", CONSUME_ACTIONS, roles[1])):
            statements.append({"Sid": sid, "Effect": "Deny", "Principal": "*", "Action": actions, "Resource": arn,
                               "Condition": {"StringNotEquals": {"aws:PrincipalArn": role}}})
    return document(statements)


def worker_alarm_name(task_family: str, region: str, key: str) -> str:
    """`mcp-estate-prod-booking-eu-west-1-worker-errors`: the service's alarms' pattern (McpService)."""
    return f"{task_family}-{region}-{key}"


WORKER_WITHOUT = CACHE_ENV | {PORT_ENV}


def worker_container(server_container: dict, server: str, command: list[str]) -> dict:
    """The server's container as a worker: its image, hardening, environment and secrets, its own
    command, and nothing a request path needs (no port, no HTTP health check)."""
    container = {key: value for key, value in server_container.items() if key not in ("portMappings", "healthCheck")}
    # Nor the cache: the worker's role may not connect to it and its security group is not admitted.
    container["environment"] = [v for v in server_container.get("environment", [])
                                if v["name"] not in WORKER_WITHOUT]
    logs = server_container["logConfiguration"]
    return {**container, "name": worker_service_name(server), "command": list(command),
            "logConfiguration": {**logs, "options": {**logs["options"],
                                                     "awslogs-stream-prefix": worker_service_name(server)}}}


def backlog_per_task(queue_name: str, cluster_name: pulumi.Input[str], service_name: str) -> dict:
    """Visible messages / running worker tasks (Application Auto Scaling, metric math)."""
    return {"metrics": [
        {"id": "m1", "return_data": False, "metric_stat": {"stat": "Sum", "metric": {
            "namespace": "AWS/SQS", "metric_name": "ApproximateNumberOfMessagesVisible",
            "dimensions": [{"name": "QueueName", "value": queue_name}]}}},
        {"id": "m2", "return_data": False, "metric_stat": {"stat": "Average", "metric": {
            "namespace": "ECS/ContainerInsights", "metric_name": "RunningTaskCount",
            "dimensions": [{"name": "ClusterName", "value": cluster_name},
                           {"name": "ServiceName", "value": service_name}]}}},
        {"id": "e1", "expression": "m1 / m2", "label": "Backlog per task", "return_data": True}]}


class AsyncWorker(pulumi.ComponentResource):
    def __init__(self, name: str, args: AsyncWorkerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:async_worker:AsyncWorker", name, None, opts)
        self.queue_arn = queue_arn(args.account_id, args.region, args.queue_name)
        self.dead_letter_queue_arn = queue_arn(args.account_id, args.region, args.dead_letter_queue_name)
        self.queue_url = queue_url(args.account_id, args.region, args.queue_name)
        self.alarm_names = {key: worker_alarm_name(args.task_family, args.region, key) for key in ALARMS}
        self.dead_letter_queue, self.queue = self._queues(name, args)
        self.security_group = self._security_group(name, args)
        self.alarms = self._alarms(name, args)   # before the service, which names them
        self.service = self._service(name, args)
        self.scaling_target, self.scaling_policy = self._autoscaling(name, args)
        self.register_outputs({"queue_url": self.queue_url, "service_name": self.service.name})

    def _queues(self, name: str, args: AsyncWorkerArgs) -> tuple[aws.sqs.Queue, aws.sqs.Queue]:
        work = args.work
        dead_letters = aws.sqs.Queue(
            f"{name}-dlq", name=args.dead_letter_queue_name, kms_master_key_id=args.key_arn,
            message_retention_seconds=DLQ_RETENTION_SECONDS, tags=args.tags, opts=child_opts(self),
            redrive_allow_policy=json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [self.queue_arn]}),
            policy=json.dumps(queue_policy(self.dead_letter_queue_arn, args.account_id)))
        roles = (args.sender_role_arn, f"arn:aws:iam::{args.account_id}:role/{args.worker_role_name}")
        queue = aws.sqs.Queue(
            f"{name}-queue", name=args.queue_name, kms_master_key_id=args.key_arn,
            visibility_timeout_seconds=work.visibility_timeout_seconds,
            message_retention_seconds=work.retention_days * 24 * 3600,
            receive_wait_time_seconds=20,   # long polling: fewer empty receives
            redrive_policy=json.dumps({"deadLetterTargetArn": self.dead_letter_queue_arn,
                                       "maxReceiveCount": work.max_receive_count}),
            policy=json.dumps(queue_policy(self.queue_arn, args.account_id, roles)),
            tags=args.tags, opts=child_opts(self, depends_on=[dead_letters]))
        return dead_letters, queue

    def _security_group(self, name: str, args: AsyncWorkerArgs) -> aws.ec2.SecurityGroup:
        group = aws.ec2.SecurityGroup(
            f"{name}-sg", vpc_id=args.vpc_id, tags=args.tags, opts=child_opts(self),
            description=f"MCP server {args.server} worker: no ingress; AWS APIs and declared egress")
        destinations = [("to-endpoints", HTTPS, "AWS APIs via interface endpoints", {"cidr_ipv4": args.vpc_cidr})]
        destinations += [(f"to-{service}", HTTPS, f"{service} via its gateway endpoint", {"prefix_list_id": pl})
                         for service, pl in sorted(args.endpoint_prefix_list_ids.items())]
        destinations += [(f"to-{cidr_slug(e.cidr)}-{e.port}", e.port, e.description, {"cidr_ipv4": e.cidr})
                         for e in args.egress]
        for suffix, port, description, peer in destinations:
            aws.vpc.SecurityGroupEgressRule(f"{name}-{suffix}", security_group_id=group.id, ip_protocol="tcp",
                                            from_port=port, to_port=port, description=description,
                                            tags=args.tags, opts=child_opts(self), **peer)
        return group

    def _service(self, name: str, args: AsyncWorkerArgs) -> aws.ecs.Service:
        work = args.work
        task = aws.ecs.TaskDefinition(
            f"{name}-task", family=f"{args.task_family}-worker", network_mode="awsvpc",
            requires_compatibilities=["FARGATE"], cpu=str(work.cpu), memory=str(work.memory),
            runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": args.architecture},
            task_role_arn=args.worker_role_arn, execution_role_arn=args.execution_role_arn,
            volumes=[{"name": "tmp"}],
            container_definitions=pulumi.Output.json_dumps(
                [worker_container(args.server_container, args.server, work.command)]),
            tags=args.tags, opts=child_opts(self))
        return aws.ecs.Service(
            f"{name}-service", name=worker_service_name(args.server), cluster=args.cluster_arn,
            task_definition=task.arn, desired_count=work.scaling.min, launch_type="FARGATE",
            platform_version="LATEST",
            network_configuration={"subnets": args.private_subnet_ids,
                                   "security_groups": [self.security_group.id], "assign_public_ip": False},
            deployment_circuit_breaker={"enable": True, "rollback": True},
            # ECS watches the alarms by name during a deployment; they exist first all the same (the
            # docs do not say whether CreateService accepts names of alarms that do not exist yet).
            alarms={"alarm_names": [self.alarm_names[k] for k in DEPLOYMENT_ALARMS], "enable": True,
                    "rollback": True},
            deployment_minimum_healthy_percent=100, deployment_maximum_percent=200,
            propagate_tags="SERVICE", enable_ecs_managed_tags=True, enable_execute_command=False,
            tags=args.tags, opts=child_opts(self, ignore_changes=["desired_count"],
                                            depends_on=[self.alarms[k] for k in DEPLOYMENT_ALARMS]))

    def _autoscaling(self, name: str, args: AsyncWorkerArgs) -> tuple[aws.appautoscaling.Target,
                                                                       aws.appautoscaling.Policy]:
        scaling = args.work.scaling
        target = aws.appautoscaling.Target(
            f"{name}-scaling", min_capacity=scaling.min, max_capacity=scaling.max,
            resource_id=pulumi.Output.concat("service/", args.cluster_name, "/", self.service.name),
            scalable_dimension="ecs:service:DesiredCount", service_namespace="ecs", tags=args.tags,
            opts=child_opts(self))
        policy = aws.appautoscaling.Policy(
            f"{name}-scale-on-backlog", policy_type="TargetTrackingScaling", resource_id=target.resource_id,
            scalable_dimension=target.scalable_dimension, service_namespace=target.service_namespace,
            opts=child_opts(self), target_tracking_scaling_policy_configuration={
                "target_value": scaling.backlog_per_task,
                "customized_metric_specification": backlog_per_task(
                    args.queue_name, args.cluster_name, worker_service_name(args.server)),
                "scale_out_cooldown": 60, "scale_in_cooldown": 300})
        return target, policy

    def _alarms(self, name: str, args: AsyncWorkerArgs) -> dict[str, aws.cloudwatch.MetricAlarm]:
        where, work = f"MCP server {args.server}'s tasks in {args.region}", args.work
        dead_letters = {"QueueName": args.dead_letter_queue_name}
        specs = {
            "oldest-task": dict(
                namespace="AWS/SQS", metric_name="ApproximateAgeOfOldestMessage", statistic="Maximum", period=60,
                dimensions={"QueueName": args.queue_name}, threshold=work.max_age_alarm_minutes * 60,
                evaluation_periods=3, datapoints_to_alarm=3,
                alarm_description=f"{where}: a task has waited more than {work.max_age_alarm_minutes} minutes"),
            "dead-letters": dict(
                namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible", statistic="Maximum",
                period=60, dimensions=dead_letters, threshold=0, evaluation_periods=1, datapoints_to_alarm=1,
                alarm_description=f"{where}: a task failed {work.max_receive_count} times (dead-letter queue)"),
            "new-dead-letters": dict(
                metric_queries=[
                    {"id": "m", "return_data": False, "metric": {
                        "namespace": "AWS/SQS", "metric_name": "ApproximateNumberOfMessagesVisible",
                        "period": 60, "stat": "Maximum", "dimensions": dead_letters}},
                    {"id": "added", "expression": "DIFF(m)", "label": "Messages dead-lettered", "return_data": True}],
                # DIFF has no value for the first point it sees: two periods give it one.
                threshold=0, evaluation_periods=2, datapoints_to_alarm=1,
                alarm_description=f"{where}: a task was just dead-lettered (rolls a worker deployment back)"),
            "worker-errors": dict(
                namespace=TELEMETRY, metric_name=WORKER_ERRORS, statistic="Sum", period=60,
                dimensions={"Server": args.server}, threshold=work.max_failed_tasks_per_minute,
                evaluation_periods=5, datapoints_to_alarm=3,
                alarm_description=f"{where}: more than {work.max_failed_tasks_per_minute} failed tasks per minute "
                                  "(rolls a worker deployment back)"),
        }
        return {key: aws.cloudwatch.MetricAlarm(
            f"{name}-{key}-alarm", name=self.alarm_names[key], comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching", alarm_actions=[args.alerts_topic_arn],
            ok_actions=[args.alerts_topic_arn], tags=args.tags, opts=child_opts(self), **spec)
            for key, spec in specs.items()}
