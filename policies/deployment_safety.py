"""Deployment safety: a bad release undoes itself, production never rests on one task, and nobody
opens a shell into production.

They apply to ECS services (`aws:ecs/service:Service`) and their autoscaling targets.
"""

from __future__ import annotations

from pulumi_policy import ResourceValidationArgs, Severity

from .control import ENVIRONMENT_CONFIG, UNKNOWN, Report, Risk, as_list, as_mapping, environment, lookup, \
    resource_policy

SERVICE = "aws:ecs/service:Service"
SCALING_TARGET = "aws:appautoscaling/target:Target"
PROD = "prod"
MIN_PROD_TASKS = 2   # one task is one crash, one AZ outage or one deploy away from serving nothing


@resource_policy(
    "services-roll-back-failed-deployments",
    "ECS services are deployed by ECS with the deployment circuit breaker on, with rollback: a release whose "
    "tasks never get healthy (a crash on start, a bad secret, a failing health check) is rolled back to the "
    "last good task definition instead of leaving the service retrying broken tasks at reduced capacity. A "
    "CODE_DEPLOY or EXTERNAL controller makes ECS ignore the circuit breaker, and nothing the pack can read "
    "shows that controller rolls back, so it is refused.",
    applies_to=[SERVICE],
    risks=[Risk.AVAILABILITY], severity=Severity.MEDIUM,
    remediation="Set deployment_controller={'type': 'ECS'} (or leave it unset) and "
                "deployment_circuit_breaker={'enable': True, 'rollback': True} on the service.")
def services_roll_back_failed_deployments(args: ResourceValidationArgs, report: Report) -> None:
    what = f"ECS service {args.props.get('name') or args.name}"
    kind = as_mapping(args.props.get("deploymentController")).get("type") or "ECS"
    if kind != "ECS":
        report(f"{what} is deployed by {kind}, which makes ECS ignore the deployment circuit breaker: nothing "
               "shows a failed release rolls back; set deployment_controller={'type': 'ECS'}")
        return
    breaker = as_mapping(args.props.get("deploymentCircuitBreaker"))
    missing = [key for key in ("enable", "rollback") if breaker.get(key) is not True]
    if missing:
        report(f"{what} does not roll back failed deployments "
               f"(deployment circuit breaker {' and '.join(missing)} not true): set "
               "deployment_circuit_breaker={'enable': True, 'rollback': True}")


@resource_policy(
    "services-roll-back-on-deployment-alarms",
    "ECS services watch deployment alarms (at least one, enabled, with rollback): a release whose tasks are "
    "healthy but serve errors (5xx, a failing canary probe) is rolled back; the circuit breaker alone only "
    "sees tasks that never start.",
    applies_to=[SERVICE],
    risks=[Risk.AVAILABILITY], severity=Severity.MEDIUM,
    remediation="Set alarms={'alarm_names': [<the service's 5xx alarm>, ...], 'enable': True, 'rollback': True} "
                "(McpService does).")
def services_roll_back_on_deployment_alarms(args: ResourceValidationArgs, report: Report) -> None:
    alarms = as_mapping(args.props.get("alarms"))
    names = lookup(alarms, "alarmNames")
    problems = [f"{key} is not true" for key in ("enable", "rollback") if alarms.get(key) is not True]
    if names is not UNKNOWN and not as_list(names):
        problems.append("no alarm is named")
    if problems:
        report(f"ECS service {args.props.get('name') or args.name} does not roll back on deployment alarms "
               f"({', '.join(problems)}): set alarms={{'alarm_names': [...], 'enable': True, 'rollback': True}}")


@resource_policy(
    "production-services-keep-two-tasks",
    "Production ECS services never rest on one task: the desired count and the autoscaling minimum are at "
    "least 2, and a deployment keeps at least half of them running (deployment_minimum_healthy_percent >= 50). "
    "Production as for ecs-exec-disabled-in-prod: the policy's `environment` config, else the tag.",
    applies_to=[SERVICE, SCALING_TARGET],
    risks=[Risk.AVAILABILITY], severity=Severity.HIGH,
    remediation="Set servers[<name>].scaling.min to 2 or more in the prod stack; keep "
                "deployment_minimum_healthy_percent at 100 (McpService's) or at least 50.",
    config=ENVIRONMENT_CONFIG)
def production_services_keep_two_tasks(args: ResourceValidationArgs, report: Report) -> None:
    props = args.props
    if args.resource_type == SERVICE and environment(args, report) == PROD:
        what = f"Production ECS service {props.get('name') or args.name}"
        count = props.get("desiredCount") or 0   # the provider's default is 0
        if count < MIN_PROD_TASKS:
            report(f"{what} runs {count:g} task(s): set desired_count (servers[<name>].scaling.min) to at least "
                   f"{MIN_PROD_TASKS}")
        healthy = props.get("deploymentMinimumHealthyPercent")
        if healthy is not None and healthy < 50:
            report(f"{what} lets a deployment drop to {healthy:g}% of its tasks: set "
                   "deployment_minimum_healthy_percent to at least 50")
    elif args.resource_type == SCALING_TARGET and props.get("serviceNamespace") == "ecs" \
            and environment(args, report) == PROD and (props.get("minCapacity") or 0) < MIN_PROD_TASKS:
        report(f"Autoscaling target {args.name} lets a production ECS service scale down to "
               f"{props.get('minCapacity') or 0:g} task(s): set min_capacity (servers[<name>].scaling.min) to at "
               f"least {MIN_PROD_TASKS}")


@resource_policy(
    "ecs-exec-disabled-in-prod",
    "Production ECS services do not enable ECS Exec. With it, anyone allowed ecs:ExecuteCommand gets an "
    "interactive shell in a running server: arbitrary commands, acting with the task role's permissions on "
    "the estate's state and secrets, outside the server's own authorisation and audit. A service is "
    "production when the policy's `environment` config is 'prod' (each stack's pack config sets it), else "
    "when its mcp-estate:environment tag is; a tag disagreeing with the config is reported.",
    applies_to=[SERVICE],
    risks=[Risk.COMMAND_EXECUTION, Risk.CONFUSED_DEPUTY], severity=Severity.HIGH,
    remediation="Set enable_execute_command=False on production services; debug in staging.",
    config=ENVIRONMENT_CONFIG)
def ecs_exec_disabled_in_prod(args: ResourceValidationArgs, report: Report) -> None:
    if environment(args, report) == PROD and args.props.get("enableExecuteCommand") is True:
        report(f"ECS service {args.props.get('name') or args.name} enables ECS Exec (a shell into running "
               "production tasks): set enable_execute_command=False")
