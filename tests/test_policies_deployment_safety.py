"""Deployment safety controls: failed releases roll back, and production has no shell into its servers."""

from __future__ import annotations

import pulumi_aws as aws
import pytest

from conftest import run_program, violations

CLUSTER = "arn:aws:ecs:eu-west-1:111122223333:cluster/mcp-estate-prod-eu-west-1"
TASK = "arn:aws:ecs:eu-west-1:111122223333:task-definition/mcp-estate-prod-booking:3"
ROLLBACK = {"enable": True, "rollback": True}


def tags(environment: str) -> dict[str, str]:
    return {"mcp-estate:environment": environment, "mcp-estate:server": "booking"}


def found(policy: str, config: dict | None = None, **service) -> list[str]:
    def program():
        aws.ecs.Service("booking-service", name="booking", cluster=CLUSTER, task_definition=TASK, desired_count=2,
                        launch_type="FARGATE", **service)
    return [v.message for v in violations(run_program(program), config, policy=policy)]


# -- services-roll-back-failed-deployments -----------------------------------------------------------

def test_a_service_with_circuit_breaker_and_rollback_passes():
    assert found("services-roll-back-failed-deployments", deployment_circuit_breaker=ROLLBACK,
                 deployment_controller={"type": "ECS"}) == []


@pytest.mark.parametrize("breaker, missing", [
    (None, "enable and rollback"),
    ({"enable": True, "rollback": False}, "rollback"),
    ({"enable": False, "rollback": True}, "enable"),
])
def test_a_service_that_would_keep_a_failed_deployment_is_reported(breaker, missing):
    assert found("services-roll-back-failed-deployments", deployment_circuit_breaker=breaker) == [
        f"ECS service booking does not roll back failed deployments (deployment circuit breaker {missing} not "
        "true): set deployment_circuit_breaker={'enable': True, 'rollback': True}"]


@pytest.mark.parametrize("controller", ["CODE_DEPLOY", "EXTERNAL"])
def test_services_deployed_by_another_controller_are_out_of_scope(controller):
    assert found("services-roll-back-failed-deployments", deployment_controller={"type": controller}) == []


# -- ecs-exec-disabled-in-prod -----------------------------------------------------------------------

def test_ecs_exec_in_a_prod_tagged_service_is_reported():
    assert found("ecs-exec-disabled-in-prod", enable_execute_command=True, tags=tags("prod")) == [
        "ECS service booking enables ECS Exec (a shell into running production tasks): "
        "set enable_execute_command=False"]


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
def test_ecs_exec_outside_prod_or_disabled_passes(config, service):
    pack = {"ecs-exec-disabled-in-prod": {"environment": config}} if config else None
    assert found("ecs-exec-disabled-in-prod", pack, **service) == []


def test_the_configured_environment_wins_and_a_disagreeing_tag_is_reported():
    # A prod service tagged dev must not dodge the control by its tag.
    assert found("ecs-exec-disabled-in-prod", {"ecs-exec-disabled-in-prod": {"environment": "prod"}},
                 enable_execute_command=True, tags=tags("dev")) == [
        "booking-service is tagged mcp-estate:environment=dev, but the pack config checks a prod stack: correct "
        "the tag, or check it with the dev pack config",
        "ECS service booking enables ECS Exec (a shell into running production tasks): "
        "set enable_execute_command=False"]
