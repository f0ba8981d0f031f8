"""Authentication (who is calling) and authorization (what they may use).

Authorizers turn one kind of credential into a :class:`~bedrock_gateway.Principal`:
:class:`JWTAuthorizer` (with :class:`JWKSKeys`, :class:`PEMKey` or :class:`HMACSecret`),
:class:`APIKeyAuthorizer` and :class:`SigV4Authorizer`. :class:`AccessRule` objects decide
what a principal may use. Pass both to :class:`~bedrock_gateway.Gateway`
(``authorizers=[...]``, ``access_rules=[...]``). :class:`TenantRoleCredentials` signs each
tenant's upstream calls with its own IAM role.
"""

from bedrock_gateway.auth.access import AccessPolicy, AccessRule, Decision, Rule
from bedrock_gateway.auth.api_keys import APIKey, APIKeyAuthorizer, generate_api_key
from bedrock_gateway.auth.dispatch import AuthMiddleware, Authorizer, Credential
from bedrock_gateway.auth.jwt import JWTAuthorizer
from bedrock_gateway.auth.jwt_keys import HMACSecret, JWKSKeys, PEMKey
from bedrock_gateway.auth.sigv4_keys import AccessKey, SigV4Authorizer
from bedrock_gateway.auth.tenant_roles import TenantRoleCredentials

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
