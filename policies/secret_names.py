"""Whether a name names a secret, word by word: one rule for the spec (a server's plain `environment`
is refused at plan time) and the pack (environments, commands, parameters, Lambda variables), so both
agree. A leaf of the pack (standard library only), published with it; the spec reads it through
mcp_estate.policies.secret_names, as it reads iam_actions.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any

# A name is split into words at separators and camelCase ("dbPassword", "DB-PASSWORD": db, password).
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# Words (or two adjacent words written together: api key) that name a secret.
SECRET_WORDS = frozenset({"token", "tokens", "secret", "secrets", "password", "passwords", "passwd", "pass", "pwd",
                          "passphrase", "credential", "credentials", "apikey", "privatekey", "signingkey",
                          "encryptionkey", "masterkey", "clientsecret"})
# A last word that makes the name about a secret rather than the secret itself: OAUTH_TOKEN_URL is where
# tokens are fetched, DB_PASSWORD_FILE where one is mounted, API_KEY_SECRET_ARN a reference to one.
ABOUT_A_SECRET = frozenset({"url", "uri", "endpoint", "host", "issuer", "audience", "scope", "scopes", "ttl",
                            "lifetime", "expiry", "expiration", "timeout", "header", "path", "file", "dir", "arn",
                            "id", "name", "type", "length", "seconds", "enabled", "version", "region"})
# A word written together with what it is for (GITHUBTOKEN, DBPASSWORD) still names a secret when it ends
# with one of the longer secret words; the short ones would match too much (bypass, cmd).
SECRET_SUFFIXES = tuple(sorted(w for w in SECRET_WORDS if len(w) >= 5))


def secret_like_name(name: Any, not_secret: frozenset[str] = frozenset()) -> bool:
    """Whether a variable, flag or parameter name names a secret (see SECRET_WORDS, ABOUT_A_SECRET);
    names in the pack config's `notSecretNames` are not, by an explicit, reviewed exemption."""
    name = str(name or "")
    if name in not_secret:
        return False
    words = [w.lower() for w in _WORD.findall(name)]
    if not words or words[-1] in ABOUT_A_SECRET:
        return False
    return any(w in SECRET_WORDS or w.endswith(SECRET_SUFFIXES) for w in words) \
        or any(a + b in SECRET_WORDS for a, b in pairwise(words))
