"""The forwarder of template.yaml: ``BEDROCK_GATEWAY_HANDLER=forwarder:handler``.

``bootstrap`` (the function's ``AWS_LAMBDA_EXEC_WRAPPER``) replaces the managed Python
runtime with ``bedrock_gateway.adapters.aws_lambda.runtime``, which streams answers; the
runtime imports this module and serves ``handler.respond``.

``TRUST_AUTHORIZER=true`` (the template sets it when the authorizer is enabled) lets the
gateway take the principal from the authorizer's context instead of verifying the JWT again.
That is safe here because the only way to invoke this function is the API's ``{proxy+}``
method, which the authorizer guards (the function's resource policy names that API); with
the authorizer disabled the gateway verifies every token itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from settings import config_path, load_settings

from bedrock_gateway.adapters.aws_lambda.handler import LambdaHandler
from bedrock_gateway.config import parse_config
from bedrock_gateway.pipeline import Gateway

__all__ = ["build_handler", "handler"]


def build_handler(environ: Mapping[str, str] = os.environ) -> LambdaHandler:
    """The Lambda handler for the configured gateway; a :class:`ConfigError` names every bad
    key (the function then fails its init, and the runtime reports it)."""
    config = parse_config(load_settings(environ), str(config_path(environ)))
    return LambdaHandler(Gateway.from_config(config),
                         trust_authorizer=environ.get("TRUST_AUTHORIZER") == "true")


handler = build_handler()
