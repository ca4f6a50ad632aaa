"""The spec and the pack judge a secret-looking name by one rule (policies/secret_names.py): a shared
corpus of names, each refused by both (a server's plain `environment` at plan time, a task's environment
in the pack) or accepted by both."""

from __future__ import annotations

import copy

import pytest
from test_adversarial_policies import SAFE, task_found
from test_spec import VALID, server

from mcp_estate.contract.validate import SpecError, parse_spec
from mcp_estate.policies.secret_names import secret_like_name

SECRETS = ["PARTNER_API_KEY", "db_password", "dbPassword", "GITHUBTOKEN", "MYTOKEN", "clientSecret", "STRIPE_SECRET",
           "AWS_CREDENTIALS", "PRIVATE_KEY", "SIGNING_KEY", "PASSPHRASE", "API_TOKEN", "DB_PASS", "APIKEY"]
NOT_SECRETS = ["OAUTH_TOKEN_URL", "DB_PASSWORD_FILE", "API_KEY_SECRET_ARN", "TOKEN_TTL", "LOG_LEVEL",
               "BYPASS_CACHE", "KEYBOARD_LAYOUT", "TOKENIZER_MODEL", "SECRETARY_EMAIL", "PASSTHROUGH"]


def spec_refuses(name: str) -> bool:
    raw = copy.deepcopy(VALID)
    server(raw).update(environment={name: "x"})
    try:
        parse_spec(raw)
    except SpecError as error:
        problems = [str(p) for p in error.problems]
    else:
        return False
    return any(p.startswith("servers[booking].environment") and "looks like a secret" in p for p in problems)


def pack_refuses(name: str) -> bool:
    found = task_found("no-secrets-in-plain-environment", SAFE + f', "environment": [{{"name": "{name}", '
                                                                  '"value": "x"}]')
    return any(name in message for message in found)


@pytest.mark.parametrize("name", SECRETS)
def test_a_secret_name_is_refused_by_the_spec_and_the_pack(name):
    assert (secret_like_name(name), spec_refuses(name), pack_refuses(name)) == (True, True, True)


@pytest.mark.parametrize("name", NOT_SECRETS)
def test_a_name_about_a_secret_or_merely_containing_its_letters_passes_both(name):
    assert (secret_like_name(name), spec_refuses(name), pack_refuses(name)) == (False, False, False)
