"""Change detection in one region: changes to what the estate runs, made by anyone but its deployment.

Creates, on the region's default event bus, EventBridge rules sending to the region's alerts topic:
- `task-definitions`: a new revision of one of the estate's task definition families
  (RegisterTaskDefinition, through CloudTrail);
- `services`: a service of the estate's cluster created, updated or deleted (CreateService,
  UpdateService, DeleteService, through CloudTrail). Application Auto Scaling changes the desired
  count with UpdateService through its service-linked role: those calls are not reported;
- `image-pushes`: an image pushed to one of the estate's repositories in this region (ECR's own
  "ECR Image Action" event, which names no caller: every push is reported, the estate still
  runs only the digests its spec pins);
- `iam-changes`, in the home (primary) region only: a policy, trust policy, permissions boundary or
  the existence of one of the estate's roles changed. IAM is a global service whose CloudTrail events
  reach EventBridge in us-east-1 alone (see docs/telemetry.md), so every stack also gets, through its
  own us-east-1 provider (whether or not the estate runs there), a `forward` rule with the same pattern
  whose target is the home region's default event bus, and the role EventBridge sends with (trusted
  for that rule only, `events:PutEvents` on that bus only). The us-east-1 side holds no data: the rule
  filters at the source, so only the estate's role changes cross regions. A home region of us-east-1
  needs no forwarding.

CloudTrail events made by the deployment role (`monitoring.deployment_role_arn`: the role
`pulumi up` runs as) are excluded: `userIdentity.sessionContext.sessionIssuer.arn` is matched with
`anything-but`, and, since a pattern matches only fields an event has, a second branch reports
every caller that is not an assumed role (an IAM user, the root user). CloudTrail API events need
a trail with management events in the account (AWS Control Tower and most landing zones have one).

Also sets the alerts topic's policy (it replaces SNS's default one): the account manages the
topic, this account's CloudWatch alarms publish to it, and these rules, by ARN, publish to it.
The topic's key must let events.amazonaws.com use it (components/keys.py).

Requires: the region's `aws.Provider` in `opts`; the compute front's cluster and alerts topic; in the
home region, an `IamWatch` with the roles and a us-east-1 provider.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from mcp_estate.contract.iam_documents import document, service_trust
from mcp_estate.contract.names import iam_name

from .naming import child_opts

IAM_EVENTS_REGION = "us-east-1"
CLOUDTRAIL = "AWS API Call via CloudTrail"
ROLE_CHANGES = ("AttachRolePolicy", "DetachRolePolicy", "PutRolePolicy", "DeleteRolePolicy", "UpdateAssumeRolePolicy",
                "PutRolePermissionsBoundary", "DeleteRolePermissionsBoundary", "UpdateRole", "DeleteRole")
SERVICE_CHANGES = ("CreateService", "UpdateService", "DeleteService")
CALLER = {"who": "$.detail.userIdentity.arn", "action": "$.detail.eventName", "at": "$.time",
          "region": "$.region"}


@dataclass
class IamWatch:
    """What the home region's change detection watches in IAM, and how it reaches us-east-1."""
    role_names: list[str]                      # the estate's IAM roles, by physical name
    provider: pulumi.ProviderResource          # a provider for us-east-1, where IAM's events arrive
    tags: dict[str, str]                       # for the us-east-1 side: contract tags, no region or group


@dataclass
class ChangeDetectionArgs:
    region: str
    account_id: str
    name_prefix: str                           # the estate's physical-name prefix, e.g. mcp-estate-prod
    cluster_name: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    task_families: list[str]
    repositories: list[str]                    # ECR repository names, e.g. mcp/booking
    deployment_role_arn: str | None
    alerts_topic_arn: pulumi.Input[str]
    tags: dict[str, str]
    iam: IamWatch | None = None                # the home region only


def forwarder_role_name(name_prefix: str) -> str:
    """The role EventBridge forwards IAM events from us-east-1 with (a role the estate watches too)."""
    return iam_name(f"{name_prefix}-iam-changes-forward")


def autoscaling_role_arn(account_id: str) -> str:
    """The service-linked role Application Auto Scaling changes ECS desired counts with."""
    return (f"arn:aws:iam::{account_id}:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/"
            "AWSServiceRoleForApplicationAutoScaling_ECSService")


def not_by(excluded: list[str]) -> dict:
    """A `userIdentity` pattern matching every caller but the sessions of the `excluded` roles: callers
    that are not assumed roles have no session issuer, so they get a branch of their own."""
    if not excluded:
        return {}
    return {"userIdentity": {"$or": [
        {"type": [{"anything-but": "AssumedRole"}]},
        {"sessionContext": {"sessionIssuer": {"arn": [{"anything-but": sorted(excluded)}]}}}]}}


def api_calls(source: str, event_source: str, names: list[str], request: dict, excluded: list[str]) -> dict:
    """A CloudTrail API-call pattern: these calls, these request parameters, not by `excluded`."""
    return {"source": [source], "detail-type": [CLOUDTRAIL], "detail": {
        "eventSource": [event_source], "eventName": sorted(names), "requestParameters": request,
        **not_by(excluded)}}


def message(template: str, paths: dict[str, str]) -> dict:
    """An input transformer turning the event into one readable line (a JSON string for SNS)."""
    return {"input_paths": paths, "input_template": json.dumps(template)}


class ChangeDetection(pulumi.ComponentResource):
    def __init__(self, name: str, args: ChangeDetectionArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcp-estate:change_detection:ChangeDetection", name, None, opts)
        self._prefix, self._args = name, args
        deployer = [args.deployment_role_arn] if args.deployment_role_arn else []
        rules = {
            "task-definitions": (
                api_calls("aws.ecs", "ecs.amazonaws.com", ["RegisterTaskDefinition"],
                          {"family": sorted(args.task_families)}, deployer),
                message("<who> registered a task definition of an MCP server (<action>) in <region> at <at>", CALLER)),
            "services": (
                api_calls("aws.ecs", "ecs.amazonaws.com", list(SERVICE_CHANGES),
                          {"cluster": [args.cluster_name, args.cluster_arn]},
                          [*deployer, autoscaling_role_arn(args.account_id)]),
                message("<who> changed an MCP service (<action>) in <region> at <at>", CALLER)),
            "image-pushes": (
                {"source": ["aws.ecr"], "detail-type": ["ECR Image Action"], "detail": {
                    "action-type": ["PUSH"], "result": ["SUCCESS"], "repository-name": sorted(args.repositories)}},
                message("image <repository>@<digest> (tag <tag>) pushed in <region> at <at>", {
                    "repository": "$.detail.repository-name", "digest": "$.detail.image-digest",
                    "tag": "$.detail.image-tag", "region": "$.region", "at": "$.time"})),
        }
        if args.iam:
            iam_pattern = api_calls("aws.iam", "iam.amazonaws.com", list(ROLE_CHANGES),
                                    {"roleName": sorted(args.iam.role_names)}, deployer)
            rules["iam-changes"] = (
                iam_pattern, message("<who> changed an MCP estate role (<action>) at <at>", CALLER))
            if args.region != IAM_EVENTS_REGION:
                self._forward_iam_events(iam_pattern)
        self.rule_arns = {key: self._rule(key, pattern, transformer) for key, (pattern, transformer) in rules.items()}
        aws.sns.TopicPolicy(f"{name}-alerts-policy", arn=args.alerts_topic_arn, opts=child_opts(self),
                            policy=pulumi.Output.json_dumps(topic_policy(
                                args.alerts_topic_arn, args.account_id, args.region,
                                [self.rule_arns[key] for key in sorted(self.rule_arns)])))
        self.register_outputs({"rule_arns": self.rule_arns})

    def _rule(self, key: str, pattern: dict, transformer: dict) -> pulumi.Output[str]:
        args = self._args
        rule = aws.cloudwatch.EventRule(
            f"{self._prefix}-{key}", name=f"{args.name_prefix}-{args.region}-{key}", state="ENABLED",
            description=f"MCP estate change detection: {key}", event_pattern=pulumi.Output.json_dumps(pattern),
            tags=args.tags, opts=child_opts(self))
        aws.cloudwatch.EventTarget(f"{self._prefix}-{key}-to-alerts", rule=rule.name, arn=args.alerts_topic_arn,
                                   input_transformer=transformer, opts=child_opts(self))
        return rule.arn


    def _forward_iam_events(self, pattern: dict) -> None:
        """In us-east-1, a rule sending the estate's IAM events to the home region's default bus."""
        args, iam = self._args, self._args.iam
        opts = child_opts(self, provider=iam.provider)
        rule_name = f"{args.name_prefix}-{IAM_EVENTS_REGION}-iam-changes-forward"
        rule_arn = f"arn:aws:events:{IAM_EVENTS_REGION}:{args.account_id}:rule/{rule_name}"
        home_bus = f"arn:aws:events:{args.region}:{args.account_id}:event-bus/default"
        role = aws.iam.Role(
            f"{self._prefix}-iam-forward-role", name=forwarder_role_name(args.name_prefix), tags=iam.tags,
            assume_role_policy=json.dumps(forwarder_trust_policy(args.account_id, rule_arn)),
            description=f"EventBridge: forward the MCP estate's IAM changes from {IAM_EVENTS_REGION} "
                        f"to {args.region}", opts=opts)
        grant = aws.iam.RolePolicy(
            f"{self._prefix}-iam-forward-policy", role=role.id, opts=opts,
            policy=json.dumps(document([{
                "Sid": "PutOnHomeBus", "Effect": "Allow", "Action": "events:PutEvents",
                "Resource": home_bus}])))
        rule = aws.cloudwatch.EventRule(
            f"{self._prefix}-iam-forward", name=rule_name, state="ENABLED", tags=iam.tags,
            description=f"MCP estate change detection: IAM changes, to {args.region}",
            event_pattern=json.dumps(pattern), opts=opts)
        aws.cloudwatch.EventTarget(f"{self._prefix}-iam-forward-to-home", rule=rule.name, arn=home_bus,
                                   role_arn=role.arn, opts=child_opts(self, provider=iam.provider,
                                                                      depends_on=[grant]))


def forwarder_trust_policy(account_id: str, rule_arn: str) -> dict:
    """EventBridge may assume the forwarding role only for the forwarding rule of this account."""
    return service_trust("events.amazonaws.com", {"StringEquals": {"aws:SourceAccount": account_id},
                                                  "ArnEquals": {"aws:SourceArn": rule_arn}})


def topic_policy(topic_arn: pulumi.Input[str], account_id: str, region: str,
                 rule_arns: list[pulumi.Input[str]]) -> dict:
    """Who may use the alerts topic: the account (through IAM), its alarms, the change rules."""
    return document([
        {"Sid": "AccountManagesTopic", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
         "Action": ["sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:AddPermission", "sns:RemovePermission",
                    "sns:DeleteTopic", "sns:Subscribe", "sns:ListSubscriptionsByTopic", "sns:Publish"],
         "Resource": topic_arn},
        {"Sid": "AlarmsOfThisAccountPublish", "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": "sns:Publish", "Resource": topic_arn,
         "Condition": {"StringEquals": {"aws:SourceAccount": account_id},
                       "ArnLike": {"aws:SourceArn": f"arn:aws:cloudwatch:{region}:{account_id}:alarm:*"}}},
        {"Sid": "ChangeDetectionRulesPublish", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
         "Action": "sns:Publish", "Resource": topic_arn, "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}}},
    ])
