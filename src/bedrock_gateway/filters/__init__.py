"""Content filters and guardrails: what may go into a model and what may come out.

Text filters (:class:`DenyTermsFilter`, :class:`RegexFilter`, :class:`PIIFilter`, or your own
:class:`TextFilter`) and request policies (:class:`SizeFilter`, :class:`ParameterPolicy`, or your
own :class:`RequestPolicy`) are pure objects; :class:`ContentFilter` is the middleware that runs
them, as :class:`FilterRule` objects, on requests and answers — streams included
(:class:`StreamScanner`). :class:`GuardrailInjector` and :class:`GuardrailFilter` bring in Amazon
Bedrock Guardrails. See ``docs/filters.md``.
"""

from typing import TYPE_CHECKING

from bedrock_gateway._lazy import lazy_exports

if TYPE_CHECKING:
    from bedrock_gateway.filters.base import (
        Finding,
        RequestPolicy,
        TextFilter,
        Verdict,
        redact,
        verdict,
    )
    from bedrock_gateway.filters.guardrails import Guardrail, GuardrailFilter, GuardrailInjector
    from bedrock_gateway.filters.middleware import ContentFilter, FilterRule
    from bedrock_gateway.filters.parameters import ParameterPolicy
    from bedrock_gateway.filters.pii import PIIFilter
    from bedrock_gateway.filters.regex import RegexFilter
    from bedrock_gateway.filters.size import SizeFilter
    from bedrock_gateway.filters.stream import StreamScanner
    from bedrock_gateway.filters.terms import DenyTermsFilter
    from bedrock_gateway.filters.text import (
        TextRef,
        UnknownShapeError,
        request_fields,
        request_texts,
        response_texts,
    )

# Names load on first use (PEP 562). Importing any submodule runs this file first, so eager
# imports here would make a gateway with one PII filter load every filter and the guardrail
# clients too — a measurable part of a Lambda cold start (docs/performance.md, (j)).
_WHERE = {
    **dict.fromkeys(("Finding", "RequestPolicy", "TextFilter", "Verdict", "redact", "verdict"),
                    "base"),
    "Guardrail": "guardrails", "GuardrailFilter": "guardrails", "GuardrailInjector": "guardrails",
    "ContentFilter": "middleware", "FilterRule": "middleware",
    "ParameterPolicy": "parameters", "PIIFilter": "pii", "RegexFilter": "regex",
    "SizeFilter": "size", "StreamScanner": "stream", "DenyTermsFilter": "terms",
    **dict.fromkeys(("TextRef", "UnknownShapeError", "request_fields", "request_texts",
                     "response_texts"), "text"),
}


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())


__all__ = [
    "ContentFilter",
    "DenyTermsFilter",
    "FilterRule",
    "Finding",
    "Guardrail",
    "GuardrailFilter",
    "GuardrailInjector",
    "PIIFilter",
    "ParameterPolicy",
    "RegexFilter",
    "RequestPolicy",
    "SizeFilter",
    "StreamScanner",
    "TextFilter",
    "TextRef",
    "UnknownShapeError",
    "Verdict",
    "redact",
    "request_fields",
    "request_texts",
    "response_texts",
    "verdict",
]
