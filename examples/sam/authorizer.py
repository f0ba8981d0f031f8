"""The API Gateway REST REQUEST authorizer of template.yaml (``Handler: authorizer.handler``).

It verifies the caller's JWT with the gateway's own :class:`JWTAuthorizer` and answers with
``LambdaAuthorizer.rest_request``: an ``Allow`` on the whole stage
(``arn:aws:execute-api:{region}:{account}:{api}/{stage}/*/*``), never on the one method ARN
of the request. API Gateway caches the answer per identity source (the ``Authorization``
header) for ``AuthorizerCacheTtlSeconds``; an Allow naming only the first request's path would
be replayed to the same token's call to *another* model and refused with a 403. Model rules
therefore stay with the gateway behind it (it still runs the ``[[access]]`` rules); here they
only add an early explicit ``Deny`` for a request's own method ARN when they refuse its model.

Only the ``[auth]`` and ``[[access]]`` sections are loaded (not the whole gateway), so this
function's cold start pays for PyJWT and the rules, not for quotas, filters or botocore.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from settings import load_settings

from bedrock_gateway.adapters.aws_lambda.authorizer import LambdaAuthorizer
from bedrock_gateway.auth.config import (
    AccessRuleConfig,
    AuthSection,
    build_access_rules,
    build_authorizers,
)

__all__ = ["build_authorizer", "handler"]

_authorizer: LambdaAuthorizer | None = None


def build_authorizer(environ: Mapping[str, str] = os.environ) -> LambdaAuthorizer:
    """The authorizer the configuration (with the deployment's environment) describes."""
    settings = load_settings(environ)
    auth = AuthSection.model_validate(settings.get("auth", {}))
    rules = [AccessRuleConfig.model_validate(rule) for rule in settings.get("access", [])]
    return LambdaAuthorizer(build_authorizers(auth), build_access_rules(rules))


def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point: a REST REQUEST authorizer's policy, or ``Unauthorized``."""
    global _authorizer
    if _authorizer is None:
        _authorizer = build_authorizer()
    return _authorizer.rest_request(event, context)


if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):  # in Lambda: build during init, not on a request
    _authorizer = build_authorizer()
