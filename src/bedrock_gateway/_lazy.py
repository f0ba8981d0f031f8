"""Names a package exports but loads on first use (PEP 562).

Importing any submodule runs its package's ``__init__`` first, so eager re-exports there would
make a gateway with one PII filter load every filter, and ``import bedrock_gateway`` load
botocore and pydantic: a measurable part of a Lambda cold start (docs/performance.md (j)).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, where: Mapping[str, str], namespace: dict[str, Any]
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``where`` maps each exported name to the
    submodule (relative to ``package``) that defines it; a loaded name is kept in
    ``namespace`` (the package's ``globals()``) so it resolves only once."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(namespace.get("__all__", where))

    return __getattr__, __dir__
