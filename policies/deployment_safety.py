"""Deployment safety: a bad release undoes itself, and nobody opens a shell into production.

Both apply to ECS services (`aws:ecs/service:Service`).
"""

from __future__ import annotations

from pulumi_policy import ResourceValidationArgs, Severity

from .control import ENVIRONMENT_CONFIG, Report, Risk, as_mapping, environment, resource_policy

SERVICE = "aws:ecs/service:Service"
PROD = "prod"


@resource_policy(
    "services-roll-back-failed-deployments",
    "ECS services deployed by ECS have the deployment circuit breaker on, with rollback: a release whose tasks "
    "never get healthy (a crash on start, a bad secret, a failing health check) is rolled back to the last "
    "good task definition instead of leaving the service retrying broken tasks at reduced capacity. Services "
    "deployed by CodeDeploy or an external controller are out of scope: that controller owns rollback.",
    risks=[Risk.AVAILABILITY], severity=Severity.MEDIUM,
    remediation="Set deployment_circuit_breaker={'enable': True, 'rollback': True} on the service.")
def services_roll_back_failed_deployments(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type != SERVICE:
        return
    kind = as_mapping(args.props.get("deploymentController")).get("type") or "ECS"
    if kind != "ECS":
        return   # CODE_DEPLOY / EXTERNAL: ECS ignores the circuit breaker; the controller owns rollback
    breaker = as_mapping(args.props.get("deploymentCircuitBreaker"))
    missing = [key for key in ("enable", "rollback") if breaker.get(key) is not True]
    if missing:
        report(f"ECS service {args.props.get('name') or args.name} does not roll back failed deployments "
               f"(deployment circuit breaker {' and '.join(missing)} not true): set "
               "deployment_circuit_breaker={'enable': True, 'rollback': True}")


@resource_policy(
    "ecs-exec-disabled-in-prod",
    "Production ECS services do not enable ECS Exec. With it, anyone allowed ecs:ExecuteCommand gets an "
    "interactive shell in a running server: arbitrary commands, acting with the task role's permissions on "
    "the estate's state and secrets, outside the server's own authorisation and audit. A service is "
    "production when the policy's `environment` config is 'prod' (each stack's pack config sets it), else "
    "when its mcp-estate:environment tag is; a tag disagreeing with the config is reported.",
    risks=[Risk.COMMAND_EXECUTION, Risk.CONFUSED_DEPUTY], severity=Severity.HIGH,
    remediation="Set enable_execute_command=False on production services; debug in staging.",
    config=ENVIRONMENT_CONFIG)
def ecs_exec_disabled_in_prod(args: ResourceValidationArgs, report: Report) -> None:
    if args.resource_type != SERVICE:
        return
    if environment(args, report) == PROD and args.props.get("enableExecuteCommand") is True:
        report(f"ECS service {args.props.get('name') or args.name} enables ECS Exec (a shell into running "
               "production tasks): set enable_execute_command=False")
