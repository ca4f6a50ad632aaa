"""The inventory controls: only reviewed types in production, and no way in beside the edge."""

from __future__ import annotations

import json

import pulumi_aws as aws
import pulumi_cloudflare as cloudflare
import pytest

from mcp_estate.policies.resource_inventory import KNOWN_TYPES
from corpus import attack, legitimate
from conftest import run_program, violations

TYPES = "production-resource-types-reviewed"
WAYS_IN = "no-unauthenticated-endpoints-beside-the-edge"
HOST = {WAYS_IN: {"hostname": "mcp.example.travel"}}
ZONE, ACCOUNT_CF = "0" * 32, "f" * 32
SUBNETS = ["subnet-0a1b2c3d4e5f60718", "subnet-0b1c2d3e4f5a60718"]


def found(program, policy: str, config: dict | None = None) -> list[str]:
    return sorted(v.message for v in violations(run_program(program), config, policy=policy))


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_the_known_types_are_exactly_what_the_shipped_stacks_build(stack, tmp_path):
    from mcp_estate.cli import main
    out = tmp_path / f"{stack}.json"
    assert main(["plan", "--stack", stack, "--out", str(out)]) == 0
    built = {r["type"] for r in json.loads(out.read_text())["deployment"]["resources"]
             if not r["type"].startswith(("mcp-estate:", "pulumi:"))}
    assert built <= KNOWN_TYPES
    capabilities = {"aws:elasticache/serverlessCache:ServerlessCache", "aws:elasticache/user:User",
                    "aws:elasticache/userGroup:UserGroup", "aws:sqs/queue:Queue"}
    if stack == "staging":   # its booking declares cache and async
        assert capabilities <= built
    if stack == "prod":   # prod builds every type the others do, but the staged-deployment and capability ones
        assert built == KNOWN_TYPES - {"aws:iam/rolePolicyAttachment:RolePolicyAttachment"} - capabilities


def unreviewed():
    aws.apprunner.Service("api", service_name="api", source_configuration={
        "image_repository": {"image_identifier": "public.ecr.aws/nginx/nginx:latest", "image_repository_type":
                             "ECR_PUBLIC"}}, tags={"mcp-estate:environment": "prod"})
    aws.batch.JobQueue("jobs", name="jobs", state="ENABLED", priority=1)
    aws.opensearch.Domain("search", domain_name="search")


@attack("production-resource-types-reviewed")
def test_an_unreviewed_type_is_refused_in_prod_whatever_its_tag_says():
    config = {TYPES: {"environment": "prod"}}
    assert [m.split(" is a ")[0] for m in found(unreviewed, TYPES, config)] == ["api", "jobs", "search"]
    assert found(unreviewed, TYPES, None) == [   # no config: the prod tag alone
        "api is a aws:apprunner/service:Service, a type the estate does not build and no platform team has "
        "reviewed for production: remove it, or review it and add it to allowedTypes in the prod pack config"]


def test_a_reviewed_type_in_prod_and_any_type_in_staging_pass():
    allowed = {TYPES: {"environment": "prod", "allowedTypes": ["aws:apprunner/service:Service",
                                                               "aws:batch/jobQueue:JobQueue",
                                                               "aws:opensearch/domain:Domain"]}}
    assert found(unreviewed, TYPES, allowed) == []
    assert found(unreviewed, TYPES, {TYPES: {"environment": "staging"}}) == [
        "api is tagged mcp-estate:environment=prod, but the pack config checks a staging stack: correct the tag, "
        "or check it with the prod pack config"]


def ways_in():
    aws.lb.LoadBalancer("nlb", load_balancer_type="network", subnets=SUBNETS)
    api = aws.apigatewayv2.Api("http", protocol_type="HTTP")
    aws.apigatewayv2.Route("open-route", api_id=api.id, route_key="POST /mcp")
    aws.apprunner.Service("runner", service_name="runner", source_configuration={
        "image_repository": {"image_identifier": "public.ecr.aws/nginx/nginx:latest",
                             "image_repository_type": "ECR_PUBLIC"}})
    aws.mq.Broker("broker", broker_name="broker", engine_type="RabbitMQ", engine_version="3.13",
                  host_instance_type="mq.t3.micro", publicly_accessible=True,
                  users=[{"username": "app", "password": "correct-horse-battery"}])
    aws.opensearch.Domain("search", domain_name="search")
    user = aws.iam.User("ci", name="ci")
    aws.iam.AccessKey("ci-key", user=user.name)
    cloudflare.WorkersRoute("worker", zone_id=ZONE, pattern="*example.travel/*", script="shim")


@attack("no-unauthenticated-endpoints-beside-the-edge")
def test_every_other_way_in_is_refused():
    assert [m.split(" (")[0] for m in found(ways_in, WAYS_IN, HOST)] == [
        "broker", "ci", "ci-key", "nlb", "open-route", "runner", "search", "worker"]


def test_each_way_in_is_named_with_what_opens_it_and_the_setting_that_closes_it():
    assert found(ways_in, WAYS_IN, HOST) == [
        "broker (Broker) accepts connections from outside its VPC: set publicly_accessible=False",
        "ci (User) is a long-lived IAM credential: use an IAM role (ECS task role, OIDC for CI) instead",
        "ci-key (AccessKey) is a long-lived IAM credential: use an IAM role (ECS task role, OIDC for CI) instead",
        "nlb (LoadBalancer) is an internet-facing network load balancer, where no WAF can sit: make it internal",
        "open-route (Route) takes requests without authorization (authorization_type NONE): set JWT, AWS_IAM or "
        "CUSTOM",
        "runner (Service) is publicly accessible: set "
        "network_configuration.ingress_configuration.is_publicly_accessible=False",
        "search (Domain) has a public endpoint (no vpc_options): place it in the estate's private subnets",
        "worker (WorkersRoute) puts a Worker on mcp.example.travel (pattern '*example.travel/*'), in front of the "
        "load balancer: remove it"]


def safe_neighbours():
    aws.lb.LoadBalancer("internal-nlb", load_balancer_type="network", internal=True, subnets=SUBNETS)
    api = aws.apigatewayv2.Api("http", protocol_type="HTTP")
    aws.apigatewayv2.Route("jwt-route", api_id=api.id, route_key="POST /mcp", authorization_type="JWT",
                           authorizer_id="abc123")
    aws.apigatewayv2.Route("preflight", api_id=api.id, route_key="OPTIONS /mcp")
    aws.apprunner.Service("private-runner", service_name="runner", source_configuration={
        "image_repository": {"image_identifier": "public.ecr.aws/nginx/nginx:latest",
                             "image_repository_type": "ECR_PUBLIC"}},
        network_configuration={"ingress_configuration": {"is_publicly_accessible": False}})
    cloudflare.WorkersRoute("status-worker", zone_id=ZONE, pattern="status.example.travel/*", script="status")


@legitimate("no-unauthenticated-endpoints-beside-the-edge")
def test_private_or_authenticated_neighbours_and_workers_elsewhere_pass():
    assert found(safe_neighbours, WAYS_IN, HOST) == []


@attack("no-unauthenticated-endpoints-beside-the-edge")
def test_a_worker_route_cannot_be_judged_without_the_hostname():
    assert found(safe_neighbours, WAYS_IN, None) == [
        "status-worker (WorkersRoute) is a Worker route, and the pack config gives no hostname to tell whether it "
        "covers the MCP hostname: pass the config `estate pack-config` generates"]
