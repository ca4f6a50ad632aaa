"""Per-user data and backends: the contract between the estate's IAM and a server's code
(README: Who may call what, "Per-user data").

With `auth` on, a server never reads the state table with its own rights. Its task role may only
assume the server's *data role* in its residency group, and only with one session tag,
`mcp-estate-traveller`, which the server sets from the caller's validated token. The data role
reaches only the state items whose partition key is `<server>#<traveller key>`, where the traveller
key is the tag's value (IAM's `dynamodb:LeadingKeys` compared with `${aws:PrincipalTag/...}`).

The traveller key is the lowercase hex SHA-256 of the traveller claim's value (`traveller_key`):
a claim may hold characters a session tag refuses (`auth0|123`), and an e-mail address as `sub`
would otherwise sit in every CloudTrail AssumeRole event and every partition key.

Standard library only: server code and the runtime may import it.
"""

from __future__ import annotations

import hashlib

# The session tag carrying the traveller. No colon in the key: it is read back through a policy
# variable (`${aws:PrincipalTag/<key>}`), and AWS documents such variables with plain keys only.
TRAVELLER_TAG = "mcp-estate-traveller"

# What the estate tells every task (spec.RESERVED_ENV refuses them in a server's `environment`).
PORT_ENV = "PORT"                            # the port the server listens on
STATE_TABLE_ENV = "MCP_STATE_TABLE"          # the residency group's session-state table
DATA_ROLE_ENV = "MCP_DATA_ROLE_ARN"          # the role to assume, tagged, for state access
TRAVELLER_TAG_ENV = "MCP_TRAVELLER_TAG"      # the session tag key it must set
TOKEN_EXCHANGE_ENV = "TOKEN_EXCHANGE_URL"    # the IdP's RFC 8693 token endpoint (servers with backends)
BACKEND_ENV_PREFIX = "BACKEND_"              # BACKEND_<NAME>_URL, one per declared backend
ESTATE_ENV = frozenset({DATA_ROLE_ENV, TRAVELLER_TAG_ENV, TOKEN_EXCHANGE_ENV})

# The item actions whose request always names the partition keys it touches, so that
# `dynamodb:LeadingKeys` limits them (AWS Service Authorization Reference, DynamoDB: these list
# the key). Scan names none, and PartiQLSelect may scan the whole table (dynamodb:FullTableScan):
# a ForAllValues condition on a key absent from the request is true, so they would read everything.
SCOPED_ITEM_ACTIONS = ("dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem",
                       "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query",
                       "dynamodb:UpdateItem")


def traveller_key(claim_value: str) -> str:
    """The session tag value, and the traveller part of a partition key, for a traveller claim."""
    return hashlib.sha256(claim_value.encode()).hexdigest()


def partition_key(server: str, traveller: str) -> str:
    """The `pk` of every item a server keeps for a traveller (`traveller` is `traveller_key(...)`)."""
    return f"{server}#{traveller}"


def leading_key_condition(server: str) -> str:
    """The partition key a data role session may touch, as an IAM policy value."""
    return partition_key(server, "${aws:PrincipalTag/" + TRAVELLER_TAG + "}")


def backend_url_env(backend: str) -> str:
    """`partner-api` -> `BACKEND_PARTNER_API_URL`."""
    return f"{BACKEND_ENV_PREFIX}{backend.upper().replace('-', '_')}_URL"
