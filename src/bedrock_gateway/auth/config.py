"""The ``[auth]`` and ``[[access]]`` sections of the configuration, and what they build."""

from __future__ import annotations

import logging
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bedrock_gateway.auth.access import AccessRule
from bedrock_gateway.auth.dispatch import Authorizer
from bedrock_gateway.operations import OPERATIONS

__all__ = ["AccessRuleConfig", "AuthSection", "build_access_rules", "build_authorizers"]

log = logging.getLogger("bedrock_gateway")

_OPERATION_NAMES = frozenset(op.name for op in OPERATIONS)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JWTSection(_Section):
    jwks_url: str | None = None
    public_key_file: str | None = None
    secret_env: str | None = None
    issuer: str | None = None
    audience: str | list[str] | None = None
    algorithms: list[str] = ["RS256"]
    subject_claim: str = "sub"
    tenant_claim: str = "tenant"
    groups_claim: str = "groups"
    scopes_claim: str = "scope"
    leeway_s: Annotated[float, Field(ge=0, le=600)] = 30
    required_claims: list[str] = ["exp", "sub"]
    jwks_ttl_s: Annotated[float, Field(gt=0, le=86400)] = 300
    jwks_timeout_s: Annotated[float, Field(gt=0, le=30)] = 2
    jwks_max_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 1024 * 1024
    jwks_max_stale_s: Annotated[float, Field(ge=0, le=7 * 86400)] = 3600
    max_token_bytes: Annotated[int, Field(ge=256, le=65536)] = 8192

    @model_validator(mode="after")
    def _one_key_source(self) -> JWTSection:
        sources = [s for s in (self.jwks_url, self.public_key_file, self.secret_env) if s]
        if len(sources) != 1:
            raise ValueError("set exactly one of jwks_url, public_key_file, secret_env")
        hmac = [a for a in self.algorithms if a.startswith("HS")]
        if any(a.lower() == "none" for a in self.algorithms):
            raise ValueError("algorithm 'none' is never allowed")
        if self.secret_env and len(hmac) != len(self.algorithms):
            raise ValueError("secret_env verifies HS256/384/512 only; list only those algorithms")
        if not self.secret_env and hmac:
            raise ValueError("HS* algorithms need secret_env (never a public key)")
        return self


class APIKeySection(_Section):
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    subject: Annotated[str, Field(min_length=1)]
    tenant: str | None = None


class AccessKeySection(_Section):
    access_key_id: Annotated[str, Field(pattern=r"^[A-Z0-9]{16,128}$")]
    secret_env: Annotated[str, Field(min_length=1)]
    subject: str = ""
    tenant: str | None = None


class AuthSection(_Section):
    anonymous: bool = False
    jwt: JWTSection | None = None
    api_keys: list[APIKeySection] = []
    access_keys: list[AccessKeySection] = []

    @property
    def configured(self) -> bool:
        return bool(self.jwt or self.api_keys or self.access_keys)


class AccessRuleConfig(_Section):
    name: Annotated[str, Field(min_length=1)]
    tenants: list[str] = []
    groups: list[str] = []
    scopes: list[str] = []
    subjects: list[str] = []
    allow_models: list[str] = []
    deny_models: list[str] = []
    allow_operations: list[str] = []
    allow_resources: list[str] = []  # knowledge-base/<id>, agent/<id>/alias/<alias id> globs
    deny_resources: list[str] = []

    @field_validator("allow_resources", "deny_resources")
    @classmethod
    def _resource_kinds(cls, value: list[str]) -> list[str]:
        from bedrock_gateway.auth.access import is_agent_resource

        odd = [v for v in value if not is_agent_resource(v)]
        if odd:
            raise ValueError(f"resources start with knowledge-base/ or agent/: {', '.join(odd)}")
        return value

    @field_validator("allow_operations")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - _OPERATION_NAMES)
        if unknown:
            raise ValueError(f"unknown operation(s): {', '.join(unknown)}")
        return value


def build_authorizers(auth: AuthSection) -> list[Authorizer]:
    from bedrock_gateway.auth.api_keys import APIKey, APIKeyAuthorizer
    from bedrock_gateway.auth.sigv4_keys import AccessKey, SigV4Authorizer

    authorizers: list[Authorizer] = []
    if auth.jwt is not None:
        from bedrock_gateway.auth.jwt import JWTAuthorizer
        from bedrock_gateway.auth.jwt_keys import HMACSecret, JWKSKeys, KeySource, PEMKey

        j = auth.jwt
        if j.audience is None:
            log.warning("SECURITY: [auth.jwt] has no audience - tokens issued for any audience"
                        " (any app of the issuer) are accepted")
        keys: KeySource
        if j.jwks_url:
            keys = JWKSKeys(j.jwks_url, ttl_s=j.jwks_ttl_s, timeout_s=j.jwks_timeout_s,
                            max_bytes=j.jwks_max_bytes, max_stale_s=j.jwks_max_stale_s)
        elif j.public_key_file:
            keys = PEMKey(j.public_key_file)
        else:
            keys = HMACSecret(str(j.secret_env))
        authorizers.append(JWTAuthorizer(
            keys, algorithms=j.algorithms, issuer=j.issuer, audience=j.audience,
            leeway_s=j.leeway_s, required_claims=j.required_claims,
            subject_claim=j.subject_claim, tenant_claim=j.tenant_claim,
            groups_claim=j.groups_claim, scopes_claim=j.scopes_claim,
            max_token_bytes=j.max_token_bytes))
    if auth.api_keys:
        authorizers.append(APIKeyAuthorizer(
            APIKey(k.sha256, k.subject, k.tenant) for k in auth.api_keys))
    if auth.access_keys:
        authorizers.append(SigV4Authorizer(
            AccessKey(k.access_key_id, subject=k.subject, tenant=k.tenant, secret_env=k.secret_env)
            for k in auth.access_keys))
    return authorizers


def build_access_rules(rules: list[AccessRuleConfig]) -> list[AccessRule] | None:
    if not rules:
        log.warning(
            "SECURITY: no [[access]] rules - every authenticated caller may use every model and"
            " operation the gateway's own AWS identity can")
        return None
    return [
        AccessRule(r.name, tuple(r.tenants), tuple(r.groups), tuple(r.scopes), tuple(r.subjects),
                   tuple(r.allow_models), tuple(r.deny_models), tuple(r.allow_operations),
                   tuple(r.allow_resources), tuple(r.deny_resources))
        for r in rules
    ]
