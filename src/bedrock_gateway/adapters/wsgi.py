"""Serve a :class:`Gateway` as a WSGI application (Flask, Django, gunicorn, wsgiref...).

Streams are returned as an iterable of frame bytes; the server's ``close()`` call (made when
the body is done or the client went away) closes the upstream stream and runs the close hooks.
The raw, still percent-encoded path comes from ``RAW_URI``/``REQUEST_URI`` when the server
provides one (gunicorn, uWSGI, werkzeug); otherwise ``PATH_INFO`` is re-encoded. Mounted under a
prefix (``SCRIPT_NAME``: werkzeug's ``DispatcherMiddleware``, a Django/uWSGI mount), the gateway
routes the path after the prefix and verifies SigV4 signatures over the whole path the client
signed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from bedrock_gateway.call import Response
from bedrock_gateway.errors import GatewayError, PayloadTooLargeError, ValidationError
from bedrock_gateway.pipeline import Gateway

__all__ = ["WSGIApp"]

StartResponse = Callable[..., Any]


class _Body:
    """The WSGI response iterable: yields the body, and ``close()`` always releases it."""

    def __init__(self, response: Response) -> None:
        self._response = response
        self._chunks = response.chunks()

    def __iter__(self) -> Iterator[bytes]:
        return self._chunks

    def close(self) -> None:
        self._chunks.close()
        self._response.close()


class WSGIApp:
    """``WSGIApp(gateway)`` is a WSGI application serving the gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            body = self._read_body(environ)
            mount, path, query = _raw_target(environ)
        except GatewayError as exc:
            response = Response.from_error(exc)
        else:
            headers = [
                (key[5:].replace("_", "-").lower(), value)
                for key, value in environ.items()
                if key.startswith("HTTP_")
            ]
            for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):  # kept out of HTTP_* by WSGI
                if environ.get(key):  # (and SigV4 may sign them)
                    headers.append((key.lower().replace("_", "-"), environ[key]))
            response = self.gateway.handle(environ["REQUEST_METHOD"], path, query, headers, body,
                                           mount=mount)
        status = f"{response.status} {_reason(response.status)}"
        header_list = [(k, v) for k, v in response.headers.items() if k != "content-length"]
        if not response.is_stream:
            header_list.append(("content-length", str(len(response.body))))
        start_response(status, header_list)
        return _Body(response)

    def _read_body(self, environ: dict[str, Any]) -> bytes:
        limit = self.gateway.max_body_bytes
        length = self.gateway.check_content_length(environ.get("CONTENT_LENGTH"))
        stream = environ["wsgi.input"]
        if length is not None:
            return bytes(stream.read(length)) if length else b""
        if environ.get("HTTP_TRANSFER_ENCODING", "").lower() != "chunked":
            return b""
        data = bytes(stream.read(limit + 1))  # servers de-chunk; read at most limit + 1
        if len(data) > limit:
            raise PayloadTooLargeError.over(limit)
        return data


_PATH_SAFE = "/-._~!$&'()*+,;=:@"


def _raw_target(environ: dict[str, Any]) -> tuple[str, str, str]:
    """``(mount, path, query)``: the still percent-encoded request path, split after the mount
    prefix (``SCRIPT_NAME``) when the application is mounted under one."""
    script = _wsgi_bytes(environ, "SCRIPT_NAME")
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        path, _, query = str(raw).partition("?")
        if "://" in path:  # absolute-form request target
            raise ValidationError("Absolute request targets are not accepted.")
        mount = _raw_prefix(path, script)
        if mount is not None:
            return mount, path[len(mount):], query
        # The raw target lacks the prefix (a proxy stripped it): route it as sent.
        return quote(script, safe=_PATH_SAFE), path, query
    path = quote(_wsgi_bytes(environ, "PATH_INFO"), safe=_PATH_SAFE)
    return quote(script, safe=_PATH_SAFE), path, environ.get("QUERY_STRING", "")


def _wsgi_bytes(environ: dict[str, Any], key: str) -> bytes:
    """PEP 3333: SCRIPT_NAME and PATH_INFO are bytes decoded as latin-1; recover the bytes."""
    try:
        return str(environ.get(key, "")).encode("latin-1")
    except UnicodeEncodeError:
        raise ValidationError("The request path is not valid.") from None


def _raw_prefix(path: str, script: bytes) -> str | None:
    """The leading segments of the raw ``path`` that decode to ``script`` (``""`` when there is
    no mount), or ``None`` when ``path`` does not start with it."""
    if not script:
        return ""
    # An encoded "/" in the prefix decodes to one of SCRIPT_NAME's slashes, so the raw prefix
    # has at most as many literal slashes: the search is bounded by SCRIPT_NAME, not the path.
    end = 0
    for _ in range(script.count(b"/")):
        end = path.find("/", end + 1)
        prefix = path if end < 0 else path[:end]
        if unquote_to_bytes(prefix) == script:
            return prefix
        if end < 0:
            break
    return None


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
