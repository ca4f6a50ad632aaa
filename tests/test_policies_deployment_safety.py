"""Deployment safety controls: failed releases roll back, and production has no shell into its servers."""

from __future__ import annotations

import pulumi_aws as aws
import pytest

from corpus import attack, legitimate
from conftest import run_program, violations

CLUSTER = "arn:aws:ecs:eu-west-1:111122223333:cluster/mcp-estate-prod-eu-west-1"
TASK = "arn:aws:ecs:eu-west-1:111122223333:task-definition/mcp-estate-prod-booking:3"
ROLLBACK = {"enable": True, "rollback": True}


def tags(environment: str) -> dict[str, str]:
    return {"mcp-estate:environment": environment, "mcp-estate:server": "booking"}


def found(policy: str, config: dict | None = None, **service) -> list[str]:
    def program():
        aws.ecs.Service("booking-service", name="booking", cluster=CLUSTER, task_definition=TASK,
                        launch_type="FARGATE", **{"desired_count": 2, **service})
    return [v.message for v in violations(run_program(program), config, policy=policy)]


# -- services-roll-back-failed-deployments -----------------------------------------------------------

@legitimate("services-roll-back-failed-deployments")
def test_a_service_with_circuit_breaker_and_rollback_passes():
    assert found("services-roll-back-failed-deployments", deployment_circuit_breaker=ROLLBACK,
                 deployment_controller={"type": "ECS"}) == []


@pytest.mark.parametrize("breaker, missing", [
    (None, "enable and rollback"),
    ({"enable": True, "rollback": False}, "rollback"),
    ({"enable": False, "rollback": True}, "enable"),
])
@attack("services-roll-back-failed-deployments")
def test_a_service_that_would_keep_a_failed_deployment_is_reported(breaker, missing):
    assert found("services-roll-back-failed-deployments", deployment_circuit_breaker=breaker) == [
        f"ECS service booking does not roll back failed deployments (deployment circuit breaker {missing} not "
        "true): set deployment_circuit_breaker={'enable': True, 'rollback': True}"]


@pytest.mark.parametrize("controller", ["CODE_DEPLOY", "EXTERNAL"])
@attack("services-roll-back-failed-deployments")
def test_a_controller_that_makes_ecs_ignore_the_circuit_breaker_is_refused(controller):
    # Even with the breaker set: ECS ignores it under another controller.
    assert found("services-roll-back-failed-deployments", deployment_controller={"type": controller},
                 deployment_circuit_breaker=ROLLBACK) == [
        f"ECS service booking is deployed by {controller}, which makes ECS ignore the deployment circuit breaker: "
        "nothing shows a failed release rolls back; set deployment_controller={'type': 'ECS'}"]


@legitimate("services-roll-back-failed-deployments")
def test_an_unset_controller_is_ecs():
    assert found("services-roll-back-failed-deployments", deployment_circuit_breaker=ROLLBACK) == []


# -- services-roll-back-on-deployment-alarms --------------------------------------------------------

ALARMS = "services-roll-back-on-deployment-alarms"
WATCHED = {"alarm_names": ["mcp-estate-prod-eu-west-1-booking-5xx"], "enable": True, "rollback": True}


@legitimate("services-roll-back-on-deployment-alarms")
def test_a_service_watching_its_alarms_with_rollback_passes():
    assert found(ALARMS, alarms=WATCHED) == []
    assert found(ALARMS, alarms={**WATCHED, "alarm_names": [*WATCHED["alarm_names"], "canary-probe"]}) == []


@pytest.mark.parametrize("alarms, problems", [
    (None, "enable is not true, rollback is not true, no alarm is named"),
    ({**WATCHED, "alarm_names": []}, "no alarm is named"),
    ({**WATCHED, "rollback": False}, "rollback is not true"),
    ({**WATCHED, "enable": False}, "enable is not true"),
])
@attack("services-roll-back-on-deployment-alarms")
def test_a_service_whose_deployment_alarms_were_removed_or_defanged_is_reported(alarms, problems):
    assert found(ALARMS, alarms=alarms) == [
        f"ECS service booking does not roll back on deployment alarms ({problems}): "
        "set alarms={'alarm_names': [...], 'enable': True, 'rollback': True}"]


# -- production-services-keep-two-tasks --------------------------------------------------------------

TWO = "production-services-keep-two-tasks"
PROD_CONFIG = {TWO: {"environment": "prod"}}


def scaled(min_capacity: int, environment: str = "prod") -> list[str]:
    def program():
        aws.appautoscaling.Target("booking-scaling", min_capacity=min_capacity, max_capacity=10,
                                  resource_id="service/mcp-estate-prod-eu-west-1/booking",
                                  scalable_dimension="ecs:service:DesiredCount", service_namespace="ecs")
    return [v.message for v in violations(run_program(program), {TWO: {"environment": environment}}, policy=TWO)]


@pytest.mark.parametrize("service, message", [
    (dict(desired_count=1), "Production ECS service booking runs 1 task(s): set desired_count "
                            "(servers[<name>].scaling.min) to at least 2"),
    (dict(desired_count=0), "Production ECS service booking runs 0 task(s): set desired_count "
                            "(servers[<name>].scaling.min) to at least 2"),
    (dict(deployment_minimum_healthy_percent=0), "Production ECS service booking lets a deployment drop to 0% of "
                                                 "its tasks: set deployment_minimum_healthy_percent to at least 50"),
])
@attack("production-services-keep-two-tasks")
def test_a_production_service_resting_on_one_task_is_reported(service, message):
    assert message in found(TWO, PROD_CONFIG, **service)


@attack("production-services-keep-two-tasks")
def test_a_production_scaling_minimum_of_one_is_reported():
    assert scaled(1) == ["Autoscaling target booking-scaling lets a production ECS service scale down to 1 task(s): "
                         "set min_capacity (servers[<name>].scaling.min) to at least 2"]


@legitimate("production-services-keep-two-tasks")
def test_two_tasks_in_prod_and_one_task_in_staging_pass():
    assert found(TWO, PROD_CONFIG) == [] and scaled(2) == []   # found() runs desired_count=2
    assert found(TWO, {TWO: {"environment": "staging"}}, desired_count=1) == [] and scaled(1, "staging") == []


# -- ecs-exec-disabled-in-prod -----------------------------------------------------------------------

@attack("ecs-exec-disabled-in-prod")
def test_ecs_exec_in_a_prod_tagged_service_is_reported():
    assert found("ecs-exec-disabled-in-prod", enable_execute_command=True, tags=tags("prod")) == [
        "ECS service booking enables ECS Exec (a shell into running production tasks): "
        "set enable_execute_command=False"]


@attack("ecs-exec-disabled-in-prod")
def test_ecs_exec_is_reported_when_the_pack_config_says_prod_even_without_tags():
    config = {"ecs-exec-disabled-in-prod": {"environment": "prod"}}
    assert len(found("ecs-exec-disabled-in-prod", config, enable_execute_command=True)) == 1


@pytest.mark.parametrize("config, service", [
    ("staging", dict(enable_execute_command=True, tags=tags("staging"))),
    ("staging", dict(enable_execute_command=True)),
    ("prod", dict(enable_execute_command=False, tags=tags("prod"))),
    ("prod", dict(tags=tags("prod"))),
    (None, dict(enable_execute_command=True, tags=tags("dev"))),
])
@legitimate("ecs-exec-disabled-in-prod")
def test_ecs_exec_outside_prod_or_disabled_passes(config, service):
    pack = {"ecs-exec-disabled-in-prod": {"environment": config}} if config else None
    assert found("ecs-exec-disabled-in-prod", pack, **service) == []


@attack("ecs-exec-disabled-in-prod")
def test_the_configured_environment_wins_and_a_disagreeing_tag_is_reported():
    # A prod service tagged dev must not dodge the control by its tag.
    assert found("ecs-exec-disabled-in-prod", {"ecs-exec-disabled-in-prod": {"environment": "prod"}},
                 enable_execute_command=True, tags=tags("dev")) == [
        "booking-service is tagged mcp-estate:environment=dev, but the pack config checks a prod stack: correct "
        "the tag, or check it with the dev pack config",
        "ECS service booking enables ECS Exec (a shell into running production tasks): "
        "set enable_execute_command=False"]
