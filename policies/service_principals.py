"""Which AWS service principals a role's trust policy must tie to the estate, service by service.

A service that assumes a role does so for whichever customer's resource asks it to: without a condition
naming the estate (aws:SourceAccount, or aws:SourceArn of the estate's account), another account's
resource can make the service act with the estate's role (the cross-service confused deputy, IAM User
Guide, "The confused deputy problem"). AWS documents the two keys service by service, and not for
every role: for some, the documented trust carries no condition. So the pack keeps a table of the
service principals the estate's roles trust, each with the AWS page that settles it:

- SOURCE_CONDITIONS: the trust must pin aws:SourceAccount or aws:SourceArn to the estate's account;
- AS_DOCUMENTED: AWS documents the trust without a condition, and the pack takes it as documented;
- ITS_OWN_CONTROL: another control judges it (ecs-tasks.amazonaws.com: task roles must pin a source,
  execution roles need not, which only the task definitions tell: ecs-task-trust-has-source-conditions).

A service principal not in the table (s3.amazonaws.com for replication, sns.amazonaws.com, states...) is
refused in a trust policy unless the statement pins a source to the estate: the pack cannot know whether
the service puts the keys in its requests, and a trust that works without them is one any account's
resource can use. (That a role passed by iam:PassRole never crosses accounts does not settle it: the
service's own later use of the role is what the keys scope.) Pinning is the IAM User Guide's general
advice for every service principal;
where AWS documents a trust without a condition, add the service here, with the page, in a reviewed
change to the pack (not in pack config: the exemption weakens every stack the pack guards).

Resource policies (bucket, key, topic, queue, log-group policies) are stricter still: there every
service principal must be tied to the estate (resource-access-stays-in-the-estate), whatever the table
says, save the two exceptions that control documents (ALB log delivery, EventBridge on an encrypted topic).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SOURCE_CONDITIONS, AS_DOCUMENTED, ITS_OWN_CONTROL = "source conditions", "as documented", "its own control"


@dataclass(frozen=True)
class ServiceTrust:
    requirement: str
    reference: str   # the AWS page that settles it


SERVICE_TRUST = {
    "ecs-tasks.amazonaws.com": ServiceTrust(
        ITS_OWN_CONTROL, "Amazon ECS Developer Guide, task-iam-roles (task role trust with aws:SourceAccount and "
                         "aws:SourceArn); task_execution_IAM_role documents no condition"),
    "lambda.amazonaws.com": ServiceTrust(
        SOURCE_CONDITIONS, "AWS Lambda Developer Guide, permissions-managed-policies (\"you can include the "
                           "aws:SourceAccount and aws:SourceArn global condition context keys in your role trust "
                           "policy\")"),
    "events.amazonaws.com": ServiceTrust(
        SOURCE_CONDITIONS, "Amazon EventBridge User Guide, eb-use-conditions (aws:SourceArn: the rule sending the "
                           "event; aws:SourceAccount: the rule's account)"),
    "vpc-flow-logs.amazonaws.com": ServiceTrust(
        SOURCE_CONDITIONS, "Amazon VPC User Guide, flow-logs-iam-role (trust with aws:SourceAccount and "
                           "aws:SourceArn of the flow log)"),
    "logs.amazonaws.com": ServiceTrust(
        SOURCE_CONDITIONS, "Amazon CloudWatch Logs User Guide, subscription filters across accounts (the role's "
                           "trust pins aws:SourceArn to the sending account's log groups)"),
    "ecs.amazonaws.com": ServiceTrust(
        AS_DOCUMENTED, "Amazon ECS Developer Guide, infrastructure IAM role for load balancers (its trust names "
                       "ecs.amazonaws.com with no condition)"),
    "ecr.amazonaws.com": ServiceTrust(
        AS_DOCUMENTED, "Amazon ECR User Guide, repository-creation-templates-create-iam (trust of "
                       "ecr.amazonaws.com with no condition; ECR takes only a role of the registry's account)"),
}
# `logs.eu-west-1.amazonaws.com`: the regional spelling of a service principal is the same service.
_REGIONAL = re.compile(r"(?P<service>[a-z0-9-]+)\.[a-z]{2}(?:-[a-z]+)+-\d\.amazonaws\.com")


def service_trust(principal: str) -> ServiceTrust | None:
    """The table's entry for a service principal, in its global or regional spelling; None when unknown."""
    text = principal.strip().lower()
    regional = _REGIONAL.fullmatch(text)
    return SERVICE_TRUST.get(f"{regional['service']}.amazonaws.com" if regional else text)
