"""Cloudflare Rules-language expressions, checked for fields their rule can actually read.

The provider sends an expression as an opaque string, and Cloudflare's API is the first to
read it: a field the phase does not have fails `pulumi up`, or worse, a load-balancing rule
condition on an undocumented field never matches. Each expression is tokenized (fields,
functions, operators, strings, numbers, IP literals, `{...}` sets, `[...]` indexes) and every
field and function is looked up in the tables below, for the ruleset's phase or for
load-balancing rules (proxied or DNS-only).

Sources (cloudflare/cloudflare-docs):
- fields: `src/content/fields/index.yaml` (developers.cloudflare.com/ruleset-engine/rules-language/
  fields/reference/): categories Request and Response, and the "only available in" notes;
- functions: `ruleset-engine/rules-language/functions.mdx`, with the products each is limited to;
- phases: `ruleset-engine/reference/phases-list`;
- load-balancing rules: `load-balancing/additional-options/load-balancing-rules/reference.mdx`.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Callable

from pulumi.runtime import rpc

_GEO = ("lat lon city postal_code metro_code region region_code asnum continent country "
        "subdivision_1_iso_code subdivision_2_iso_code is_in_european_union").split()
_TLS_CLIENT_AUTH = (
    "cert_revoked cert_verified cert_presented cert_issuer_dn cert_subject_dn cert_issuer_dn_rfc2253 "
    "cert_subject_dn_rfc2253 cert_issuer_dn_legacy cert_subject_dn_legacy cert_serial cert_issuer_serial "
    "cert_fingerprint_sha256 cert_fingerprint_sha1 cert_not_before cert_not_after cert_ski cert_issuer_ski "
    "cert_rfc9440 cert_rfc9440_too_large cert_chain_rfc9440 cert_chain_rfc9440_too_large").split()
_JWT_CLAIMS = [f"http.request.jwt.claims.{claim}{part}" for claim in ("aud", "iat.sec", "iss", "jti", "nbf.sec", "sub")
               for part in ("", ".names", ".values")]
_BODY = ("raw truncated size form form.names form.values mime multipart multipart.names multipart.values "
         "multipart.content_types multipart.content_dispositions multipart.content_transfer_encodings "
         "multipart.filenames").split()

# Category "Request" of the fields reference, for filter expressions of every request phase.
REQUEST_FIELDS = frozenset([
    "http.cookie", "http.host", "http.referer", "http.request.full_uri", "http.request.method",
    "http.request.cookies", "http.request.timestamp.sec", "http.request.timestamp.msec", "http.request.uri",
    "http.request.uri.path", "http.request.uri.path.extension", "http.request.uri.query", "http.user_agent",
    "http.request.version", "http.x_forwarded_for", "ip.src", "ssl",
    # ip.geoip.*: the deprecated aliases of the ip.src.* geolocation fields, still accepted.
    *(f"ip.src.{f}" for f in _GEO), *(f"ip.geoip.{f}" for f in _GEO[7:]),
    "raw.http.request.full_uri", "raw.http.request.uri", "raw.http.request.uri.path",
    "raw.http.request.uri.path.extension", "raw.http.request.uri.query", "raw.http.request.uri.args",
    "raw.http.request.uri.args.names", "raw.http.request.uri.args.values",
    "http.request.uri.args", "http.request.uri.args.names", "http.request.uri.args.values",
    "http.request.headers", "http.request.headers.names", "http.request.headers.values",
    "http.request.headers.truncated", *(f"http.request.body.{f}" for f in _BODY), *_JWT_CLAIMS,
    "cf.api_gateway.auth_id_present", "cf.api_gateway.request_violates_schema",
    "cf.api_gateway.fallthrough_detected", "cf.schema_validation.learned.violated",
    "cf.schema_validation.uploaded.violated", "cf.bot_management.verified_bot", "cf.verified_bot_category",
    "cf.bot_management.score", "cf.bot_management.static_resource", "cf.bot_management.ja3_hash",
    "cf.bot_management.ja4", "cf.bot_management.js_detection.passed", "cf.bot_management.detection_ids",
    "cf.bot_management.corporate_proxy", "cf.bot_management.signed_agent", "cf.client.bot",
    "cf.edge.server_ip", "cf.edge.server_port", "cf.edge.client_tcp", "cf.edge.l4.delivery_rate",
    "cf.hostname.metadata", "cf.random_seed", "cf.ray_id", "cf.threat_score", "cf.worker.upstream_zone",
    "cf.tls_cipher", "cf.tls_version", "cf.tls_client_extensions_sha1", "cf.tls_client_extensions_sha1_le",
    "cf.tls_ciphers_sha1", "cf.tls_client_hello_length", "cf.tls_client_random",
    *(f"cf.tls_client_auth.{f}" for f in _TLS_CLIENT_AUTH),
    *(f"cf.timings.{f}" for f in ("client_tcp_rtt_msec", "client_quic_rtt_msec", "edge_msec",
                                  "origin_ttfb_msec", "worker_msec")),
    *(f"cf.waf.content_scan.{f}" for f in ("has_obj", "has_malicious_obj", "num_malicious_obj", "has_failed",
                                           "num_obj", "obj_sizes", "obj_types", "obj_results")),
    "cf.waf.score", "cf.waf.score.sqli", "cf.waf.score.xss", "cf.waf.score.rce", "cf.waf.score.class",
    "cf.waf.auth_detected", *(f"cf.waf.credential_check.{f}" for f in (
        "password_leaked", "username_leaked", "username_and_password_leaked", "username_password_similar")),
    *(f"cf.llm.prompt.{f}" for f in ("detected", "pii_detected", "pii_categories", "unsafe_topic_detected",
                                     "unsafe_topic_categories", "injection_score", "token_count",
                                     "custom_topic_categories")),
])
# Category "Response": only once there is a response.
RESPONSE_FIELDS = frozenset([
    "http.response.code", "http.response.headers", "http.response.headers.names",
    "http.response.headers.values",
    "http.response.content_type.media_type", "raw.http.response.headers", "raw.http.response.headers.names",
    "raw.http.response.headers.values"])
# "only available in Transform Rules" / "only in Response Header Transform Rules and Custom Errors".
TRANSFORM_FIELDS = frozenset(["http.request.accepted_languages"])
ERROR_RESPONSE_FIELDS = frozenset(["cf.response.1xxx_code", "cf.response.error_type"])

REQUEST_PHASES = frozenset([
    "http_request_dynamic_redirect", "http_request_transform", "http_config_settings", "http_request_origin",
    "http_request_firewall_custom", "http_ratelimit", "http_request_firewall_managed", "http_request_sbfm",
    "http_request_cache_settings", "http_request_late_transform", "http_request_redirect"])
RESPONSE_PHASES = frozenset([
    "http_response_headers_transform", "http_custom_errors", "http_response_cache_settings",
    "http_response_compression", "http_response_firewall_managed", "http_log_custom_fields"])
TRANSFORM_PHASES = frozenset(["http_request_transform", "http_request_late_transform",
                              "http_response_headers_transform"])
ERROR_RESPONSE_PHASES = frozenset(["http_response_headers_transform", "http_custom_errors"])

# Function -> the phases it is limited to (None: every HTTP phase). Functions the docs allow only
# in rewrite or target-URL expressions (regex_replace, remove_query_args, to_string, uuidv4,
# wildcard_replace) are not here: a rule's filter expression cannot use them.
FUNCTIONS: dict[str, frozenset[str] | None] = {
    **dict.fromkeys(["any", "all", "concat", "ends_with", "len", "lookup_json_integer", "lookup_json_string",
                     "lower", "remove_bytes", "starts_with", "substring", "upper", "url_decode",
                     "is_timed_hmac_valid_v0", "is_jwt_valid"]),
    "cidr": frozenset(["http_request_firewall_custom", "http_ratelimit"]),
    "cidr6": frozenset(["http_request_firewall_custom", "http_ratelimit"]),
    "decode_base64": TRANSFORM_PHASES | {"http_request_firewall_custom", "http_ratelimit"},
    "join": TRANSFORM_PHASES | {"http_request_firewall_custom", "http_custom_errors"},
    "split": ERROR_RESPONSE_PHASES,
}

# Load-balancing rules: the fields of every load balancer, of proxied ones, of DNS-only ones.
LB_FIELDS = frozenset(["cf.load_balancer.name", "cf.load_balancer.region", "ip.src"])
LB_PROXIED_FIELDS = frozenset([
    "http.cookie", "http.host", "http.referer", "http.request.headers", "http.request.method",
    "http.request.timestamp.sec", "http.request.uri", "http.request.uri.args", "http.request.uri.args.names",
    "http.request.uri.args.values", "http.request.uri.path", "http.request.uri.query",
    "http.request.version"])
LB_DNS_ONLY_FIELDS = frozenset(["dns.qry.name", "dns.qry.name.len", "dns.qry.qu", "dns.qry.type",
                                "dns.rr.opt.client", "dns.rr.opt.client.addr"])

KEYWORDS = frozenset("and or not xor eq ne lt le gt ge contains matches in wildcard strict true false"
                     .split())

_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<raw>r(?P<hashes>\#*)"[\s\S]*?"(?P=hashes))        # r"..." and r#"..."#
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<list>\$[A-Za-z0-9_]+)                              # a named list: $office_ips
  | (?P<number>[0-9][0-9A-Fa-f.:/]*)                        # 42, 192.0.2.0/24, 2001:db8::/32, 80..443
  | (?P<name>[A-Za-z_][A-Za-z0-9_.]*(?P<ipv6>:[0-9A-Fa-f:./]*)?)
  | (?P<symbol>==|!=|<=|>=|&&|\|\||\^\^|[<>!~(){}\[\],*])
""", re.VERBOSE)


def tokens(expression: str) -> list[tuple[str, str]]:
    """(kind, text) of each token: `field`, `function`, `keyword`, `literal` or `symbol`.
    Raises ValueError at the first character that starts no token."""
    found: list[tuple[str, str]] = []
    at = 0
    while at < len(expression):
        match = _TOKEN.match(expression, at)
        if not match:
            raise ValueError(f"cannot read {expression[at:at + 20]!r} (character {at})")
        at, kind, text = match.end(), match.lastgroup, match.group()
        if kind == "name":
            kind = _name_kind(text, match.group("ipv6"), expression, at)
        if kind in ("raw", "string", "list", "number"):
            kind = "literal"
        if kind != "space":
            found.append((kind, text))
    return found


def _name_kind(name: str, ipv6: str | None, expression: str, end: int) -> str:
    if ipv6:
        return "literal"   # fe80::/10
    if name in KEYWORDS:
        return "keyword"
    return "function" if expression[end:].lstrip().startswith("(") else "field"


def expression_problems(expression: Any, path: str, fields: frozenset[str], where: str,
                        allowed_function: Callable[[str], bool]) -> list[str]:
    """Problems of one expression whose fields must come from `fields` (`where` names the place)."""
    if not isinstance(expression, str) or expression == rpc.UNKNOWN:
        return []
    try:
        found = tokens(expression)
    except ValueError as error:
        return [f"{path}: {error}"]
    problems = []
    for kind, text in dict.fromkeys(found):
        if kind == "field" and text not in fields:
            problems.append(f"{path}: field '{text}' is not available in {where}{_suggestion(text, fields)}")
        elif kind == "function" and not allowed_function(text):
            problems.append(f"{path}: function '{text}()' is not available in {where}")
    return problems


def _suggestion(field: str, fields: frozenset[str]) -> str:
    close = difflib.get_close_matches(field, fields, n=2, cutoff=0.8)
    return f" (did you mean: {', '.join(close)})" if close else ""


def phase_fields(phase: str) -> frozenset[str] | None:
    """The fields a filter expression may read in `phase`; None for a phase without a table."""
    if phase not in REQUEST_PHASES | RESPONSE_PHASES:
        return None
    fields = REQUEST_FIELDS | (RESPONSE_FIELDS if phase in RESPONSE_PHASES else frozenset())
    fields |= TRANSFORM_FIELDS if phase in TRANSFORM_PHASES else frozenset()
    return fields | (ERROR_RESPONSE_FIELDS if phase in ERROR_RESPONSE_PHASES else frozenset())


def ruleset_problems(inputs: dict) -> list[str]:
    """Every rule's `expression` (and rate-limit `countingExpression`) against the ruleset's phase."""
    phase = inputs.get("phase")
    fields = phase_fields(phase) if isinstance(phase, str) else None
    if fields is None:
        return []

    def allowed(function: str) -> bool:
        return function in FUNCTIONS and (FUNCTIONS[function] is None or phase in FUNCTIONS[function])

    problems = []
    for i, rule in enumerate(inputs.get("rules") or []):
        if not isinstance(rule, dict):
            continue
        label = f"rules[{rule.get('ref', i)}]"
        where = f"phase {phase}"
        problems += expression_problems(rule.get("expression"), f"{label}.expression", fields, where, allowed)
        ratelimit = rule.get("ratelimit")
        if isinstance(ratelimit, dict):
            problems += expression_problems(ratelimit.get("countingExpression"),
                                            f"{label}.ratelimit.countingExpression", fields, where, allowed)
    return problems


def load_balancer_problems(inputs: dict) -> list[str]:
    """Every load-balancing rule's `condition` against the fields of a proxied or DNS-only load
    balancer (the reference documents fields and operators only, no functions)."""
    proxied = inputs.get("proxied") is True
    fields = LB_FIELDS | (LB_PROXIED_FIELDS if proxied else LB_DNS_ONLY_FIELDS)
    where = f"load-balancing rules of a {'proxied' if proxied else 'DNS-only'} load balancer"
    problems = []
    for i, rule in enumerate(inputs.get("rules") or []):
        if isinstance(rule, dict):
            label = f"rules[{rule.get('name', i)}].condition"
            problems += expression_problems(rule.get("condition"), label, fields, where, lambda _: False)
    return problems


EXPRESSION_INPUTS: dict[str, Callable[[dict], list[str]]] = {
    "cloudflare:index/ruleset:Ruleset": ruleset_problems,
    "cloudflare:index/loadBalancer:LoadBalancer": load_balancer_problems,
}


# -- evaluation of the subset the edge writes ----------------------------------------------------
# Grammar: or/and/not, parentheses, `field`, `field["key"]`, `[*]`, functions any/all/starts_with/lower,
# comparisons eq ne gt ge lt le in matches. A `[*]` value is a list; a comparison on a list gives a
# list of booleans (what `any()` and `all()` take). Enough to run the generated rules against
# sample requests in tests; anything else raises ValueError.

def evaluate(expression: str, request: dict) -> bool:
    """`request`: method, host, path, headers (name as the client sent it -> list of values), body_size;
    for response phases, status and response_headers.
    The headers map is keyed by lowercase name; `http.request.headers.names` keeps the sent case."""
    parser = _Parser([t for t in tokens(expression)], _fields(request))
    value = parser.expression()
    if parser.at < len(parser.items):
        raise ValueError(f"unexpected {parser.items[parser.at][1]!r}")
    return bool(value)


def _fields(request: dict) -> dict:
    sent = request.get("headers", {})
    headers = _by_lowercase_name(sent)
    return {"http.host": request.get("host", ""), "http.request.method": request.get("method", "POST"),
            "http.request.uri.path": request.get("path", "/"), "http.request.headers": headers,
            "http.request.headers.names": list(sent), "http.request.body.size": request.get("body_size", 0),
            "ip.src": request.get("ip", "192.0.2.1"), "http.response.code": request.get("status", 200),
            "http.response.headers": _by_lowercase_name(request.get("response_headers", {}))}


def _by_lowercase_name(headers: dict) -> dict[str, list[str]]:
    """A headers map as Cloudflare keys it: by lowercase name (fields reference)."""
    return {name.lower(): list(values) for name, values in headers.items()}


_COMPARE = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
            "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b,
            "in": lambda a, b: a in b, "matches": lambda a, b: re.search(b, a) is not None,
            "contains": lambda a, b: b in a}


class _Parser:
    def __init__(self, items: list[tuple[str, str]], fields: dict):
        self.items, self.fields, self.at = items, fields, 0

    def _peek(self) -> str | None:
        return self.items[self.at][1] if self.at < len(self.items) else None

    def _take(self, text: str | None = None) -> tuple[str, str]:
        if self.at >= len(self.items) or (text is not None and self.items[self.at][1] != text):
            raise ValueError(f"expected {text!r} at token {self.at}")
        self.at += 1
        return self.items[self.at - 1]

    def expression(self):
        value = self._and()
        while self._peek() in ("or", "||"):
            self._take()
            right = self._and()
            value = bool(value) or bool(right)
        return value

    def _and(self):
        value = self._not()
        while self._peek() in ("and", "&&"):
            self._take()
            right = self._not()
            value = bool(value) and bool(right)
        return value

    def _not(self):
        if self._peek() in ("not", "!"):
            self._take()
            return not self._not()
        return self._comparison()

    def _comparison(self):
        left = self._value()
        if self._peek() not in _COMPARE:
            return left
        compare = _COMPARE[self._take()[1]]
        right = self._set() if self._peek() == "{" else self._value()
        if isinstance(left, list):
            return [compare(item, right) for item in left]
        return compare(left, right)

    def _set(self) -> set:
        self._take("{")
        values = set()
        while self._peek() != "}":
            values.add(self._literal(self._take()))
        self._take("}")
        return values

    @staticmethod
    def _literal(item: tuple[str, str]):
        kind, text = item
        if kind != "literal":
            raise ValueError(f"not a literal: {text!r}")
        if text.startswith('"'):
            return re.sub(r"\\(.)", r"\1", text[1:-1])
        return int(text)

    def _value(self):
        kind, text = self.items[self.at] if self.at < len(self.items) else ("", "")
        if text == "(":
            self._take("(")
            value = self.expression()
            self._take(")")
            return value
        if kind == "literal":
            return self._literal(self._take())
        if kind == "keyword" and text in ("true", "false"):
            self._take()
            return text == "true"
        if kind == "function":
            return self._call(self._take()[1])
        if kind == "field":
            return self._index(self.fields[self._take()[1]])
        raise ValueError(f"unexpected {text!r}")

    def _index(self, value):
        while self._peek() == "[":
            self._take("[")
            if self._peek() == "*":
                self._take("*")
                value = list(value)
            else:
                key = self._literal(self._take())
                value = value.get(key, []) if isinstance(value, dict) else value[key]
            self._take("]")
        return value

    def _call(self, name: str):
        self._take("(")
        args = [self.expression()]
        while self._peek() == ",":
            self._take(",")
            args.append(self.expression())
        self._take(")")
        if name == "any":
            return any(args[0])
        if name == "all":
            return all(args[0])
        if name == "starts_with":
            return args[0].startswith(args[1])
        if name == "lower":   # of a string, or of each string of an array (then indexed by `[*]`)
            lowered = [v.lower() for v in args[0]] if isinstance(args[0], list) else args[0].lower()
            return self._index(lowered)
        raise ValueError(f"function {name}() is not in the evaluated subset")
