"""IAM policy documents as the estate writes them: the policy language version and the trust of an
AWS service, in one place (components build identity, trust and resource policies with them; the
pack and the fidelity checks parse what they build).
"""

from __future__ import annotations

from typing import Any, Iterable

# The current version of the IAM policy language (IAM JSON policy elements: Version); without it,
# policy variables such as ${aws:PrincipalTag/...} are read as literal text.
VERSION = "2012-10-17"


def document(statements: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A policy document of `statements`, in order."""
    return {"Version": VERSION, "Statement": list(statements)}


def service_trust(service: str, condition: dict[str, Any] | None = None) -> dict[str, Any]:
    """A trust policy letting the AWS service `service` (e.g. `ecs-tasks.amazonaws.com`) assume the
    role, under `condition` where the service sets the confused-deputy keys (`aws:SourceAccount`,
    `aws:SourceArn`) when it assumes a role."""
    statement = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    return document([statement | ({"Condition": condition} if condition else {})])
