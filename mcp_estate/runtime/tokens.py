"""Bearer tokens for the probe and the canary: servers behind `auth` refuse calls without one.

The canary is an OAuth client of the travellers' authorization server like any other: it holds
client credentials in an estate secret, a JSON object `{"token_url", "client_id", "client_secret",
"scope"}`, and asks the token endpoint for a token per server with the client credentials grant
(RFC 6749 §4.4; the client authenticates with HTTP Basic, §2.3.1) and the server's URL as RFC 8707
`resource`, so the token's audience is that one server, as MCP requires. Standard library (and
boto3 for the secret) only, like the rest of the runtime.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

# RFC 6750 §2.1 b64token: what may follow "Bearer " (nothing that could end or split the header).
BEARER_TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
CREDENTIAL_KEYS = ("token_url", "client_id", "client_secret", "scope")


class TokenError(Exception):
    """No usable token: the reason names what to fix (the secret, the IdP's answer)."""


def checked_token(token: str, source: str) -> str:
    token = token.strip()
    if not BEARER_TOKEN.match(token):
        raise TokenError(f"the token from {source} is not a bearer token (RFC 6750: letters, digits and -._~+/, "
                         "then optional '='): check its value")
    return token


@dataclass(frozen=True)
class ClientCredentials:
    token_url: str
    client_id: str
    client_secret: str
    scope: str

    @classmethod
    def from_secret(cls, text: str, source: str) -> ClientCredentials:
        try:
            values = json.loads(text)
        except ValueError:
            raise TokenError(f"{source} is not JSON: store {{{', '.join(CREDENTIAL_KEYS)}}}") from None
        missing = [k for k in CREDENTIAL_KEYS if not isinstance(values, dict) or not isinstance(values.get(k), str)]
        if missing:
            raise TokenError(f"{source} lacks {', '.join(missing)}: store {{{', '.join(CREDENTIAL_KEYS)}}} as strings")
        if not values["token_url"].startswith("https://"):
            raise TokenError(f"{source}: token_url '{values['token_url']}' is not https: the client secret would "
                             "travel in clear")
        return cls(**{k: values[k] for k in CREDENTIAL_KEYS})

    def token_for(self, resource: str, timeout: float) -> str:
        """An access token for `resource` (the server's canonical URL), by the client credentials grant."""
        form = {"grant_type": "client_credentials", "resource": resource}
        if self.scope:
            form["scope"] = self.scope
        basic = base64.b64encode(f"{_form(self.client_id)}:{_form(self.client_secret)}".encode()).decode()
        request = urllib.request.Request(
            self.token_url, data=urllib.parse.urlencode(form).encode(), method="POST",
            headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded",
                     "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:   # noqa: S310 (https checked)
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise TokenError(f"the token endpoint {self.token_url} answered HTTP {error.code}: "
                             f"{error.read()[:300].decode('utf-8', 'replace')}") from None
        except (OSError, ValueError) as error:
            raise TokenError(f"no token from {self.token_url}: {error}") from None
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str):
            raise TokenError(f"the token endpoint {self.token_url} answered without an access_token")
        return checked_token(token, self.token_url)


def _form(value: str) -> str:
    """RFC 6749 §2.3.1: the id and secret are form-encoded before Basic encoding."""
    return urllib.parse.quote_plus(value)


def credentials_from_secrets_manager(client: Any, secret_id: str) -> ClientCredentials:
    text = client.get_secret_value(SecretId=secret_id)["SecretString"]
    return ClientCredentials.from_secret(text, f"secret {secret_id}")


class ServerTokens:
    """One token per server URL, asked for at most once per run, from the estate's probe credentials
    secret (`monitoring.probe_credentials_secret`): the canary and the deployment hook hold the same
    OAuth client, so a token the IdP issues for an hour never outlives a hard-coded copy of it.

    A secret that cannot be read or parsed, or a token endpoint that refuses, is a `TokenError` for
    every URL asked (the reason kept), so the caller fails its probes visibly instead of sending none.
    """

    def __init__(self, secrets: Any, secret_id: str, timeout: float):
        self._secret_id, self._timeout = secret_id, timeout
        try:
            self._credentials: ClientCredentials | None = credentials_from_secrets_manager(secrets, secret_id)
            self._unusable = ""
        except Exception as error:   # any failure to read the secret (access, JSON, keys): kept for each URL
            self._credentials, self._unusable = None, f"{type(error).__name__}: {error}"
        self._tokens: dict[str, str | TokenError] = {}

    def token_for(self, url: str) -> str:
        if url not in self._tokens:
            try:
                if self._credentials is None:
                    raise TokenError(f"cannot read {self._secret_id}: {self._unusable}")
                self._tokens[url] = self._credentials.token_for(url, self._timeout)
            except TokenError as error:
                self._tokens[url] = error
        found = self._tokens[url]
        if isinstance(found, TokenError):
            raise found
        return found
