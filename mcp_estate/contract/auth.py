"""Who may call what: the estate's OAuth 2.1 resource-server settings (README: Who may call what).

MCP servers are OAuth resource servers. The estate-wide `auth` block names the authorization server
(issuer, JWKS), the claim that identifies the traveller and the scopes every call needs; a server
adds its own scopes, per-tool scopes, and the upstream APIs it reaches with tokens it exchanges
at the IdP. The audience is each server's canonical URL (`https://<hostname>/<server>/mcp`),
the RFC 8707 resource indicator MCP clients ask tokens for, so it is derived, never typed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .fields import EgressCidr, HttpsUrl, Name, Scope, Strict, ToolName


class Auth(Strict):
    """Estate-wide. `disabled: true` opts a dev estate out, explicitly; prod never may."""
    disabled: bool = Field(False, description="Dev only: serve MCP without tokens (refused in prod)")
    issuer: HttpsUrl | None = Field(None, description="The authorization server's issuer (the `iss` claim)")
    jwks_url: HttpsUrl | None = Field(None, description="Where the issuer publishes its signing keys")
    authorization_servers: list[HttpsUrl] = Field(
        default_factory=list, description="Advertised in each server's Protected Resource Metadata "
                                          "(RFC 9728); default: the issuer")
    traveller_claim: str = Field("sub", pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
                                 description="The claim that identifies the traveller (per-user data keys)")
    scopes: list[Scope] = Field(default_factory=list, description="Scopes every call of every server needs")
    token_exchange_url: HttpsUrl | None = Field(
        None, description="The IdP's token endpoint for RFC 8693 token exchange (servers with backends)")
    token_exchange_cidrs: list[EgressCidr] = Field(
        default_factory=list, description="The token endpoint's address ranges: servers with backends get "
                                          "egress to them on 443 (security groups filter by address, not name)")

    @model_validator(mode="after")
    def _complete(self) -> Auth:
        settings = self.model_fields_set - {"disabled"}
        if self.disabled and settings:
            raise ValueError(f"auth is disabled but sets {', '.join(sorted(settings))}: remove them, or "
                             "remove `disabled: true`")
        if not self.disabled and (self.issuer is None or self.jwks_url is None):
            raise ValueError("auth needs `issuer` and `jwks_url` (or `disabled: true`, in dev only)")
        return self

    @property
    def advertised_servers(self) -> list[str]:
        return self.authorization_servers or ([self.issuer] if self.issuer else [])


class Backend(Strict):
    """An upstream API a server calls with a token exchanged for the traveller's, not a service account."""
    name: Name
    url: HttpsUrl = Field(description="The API's base URL; its audience in the token exchange")
    cidr: EgressCidr = Field(description="The API's address range (an egress rule, port 443)")
    client_secret: Name = Field(description="Estate secret holding the server's client credential at the IdP")


class ServerAuth(Strict):
    """Per server: what its calls need beyond the estate's scopes, and where its token is checked."""
    scopes: list[Scope] = Field(default_factory=list, description="Scopes every call of this server needs")
    tool_scopes: dict[ToolName, list[Scope]] = Field(default_factory=dict,
                                                     description="Extra scopes per tool (checked by the server)")
    token_validation: Literal["alb", "server"] = Field(
        "alb", description="`alb`: the ALB validates the JWT before any task sees the request; `server`: "
                           "the server validates it (needed for ECS canary deployments, docs/decisions/0001)")
