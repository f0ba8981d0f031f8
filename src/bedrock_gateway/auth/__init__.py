"""Authentication (who is calling) and authorization (what they may use).

Authorizers turn one kind of credential into a :class:`~bedrock_gateway.Principal`:
:class:`JWTAuthorizer` (with :class:`JWKSKeys`, :class:`PEMKey` or :class:`HMACSecret`),
:class:`APIKeyAuthorizer` and :class:`SigV4Authorizer`. :class:`AccessRule` objects decide
what a principal may use. Pass both to :class:`~bedrock_gateway.Gateway`
(``authorizers=[...]``, ``access_rules=[...]``). :class:`TenantRoleCredentials` signs each
tenant's upstream calls with its own IAM role.
"""

from typing import TYPE_CHECKING

from bedrock_gateway._lazy import lazy_exports

if TYPE_CHECKING:
    from bedrock_gateway.auth.access import AccessPolicy, AccessRule, Decision, Rule
    from bedrock_gateway.auth.api_keys import APIKey, APIKeyAuthorizer, generate_api_key
    from bedrock_gateway.auth.dispatch import AuthMiddleware, Authorizer, Credential
    from bedrock_gateway.auth.jwt import JWTAuthorizer
    from bedrock_gateway.auth.jwt_keys import HMACSecret, JWKSKeys, PEMKey
    from bedrock_gateway.auth.sigv4_keys import AccessKey, SigV4Authorizer
    from bedrock_gateway.auth.tenant_roles import TenantRoleCredentials

# Loaded on first use: access rules are needed by quotas and filters, which must not pay for
# PyJWT and botocore at import time (Lambda cold starts).
_WHERE = {
    "AccessPolicy": "access", "AccessRule": "access", "Decision": "access", "Rule": "access",
    "APIKey": "api_keys", "APIKeyAuthorizer": "api_keys", "generate_api_key": "api_keys",
    "AuthMiddleware": "dispatch", "Authorizer": "dispatch", "Credential": "dispatch",
    "JWTAuthorizer": "jwt", "HMACSecret": "jwt_keys", "JWKSKeys": "jwt_keys", "PEMKey": "jwt_keys",
    "AccessKey": "sigv4_keys", "SigV4Authorizer": "sigv4_keys",
    "TenantRoleCredentials": "tenant_roles",
}


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())


__all__ = [
    "APIKey",
    "APIKeyAuthorizer",
    "AccessKey",
    "AccessPolicy",
    "AccessRule",
    "AuthMiddleware",
    "Authorizer",
    "Credential",
    "Decision",
    "HMACSecret",
    "JWKSKeys",
    "JWTAuthorizer",
    "PEMKey",
    "Rule",
    "SigV4Authorizer",
    "TenantRoleCredentials",
    "generate_api_key",
]
