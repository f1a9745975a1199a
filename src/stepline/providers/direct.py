"""Unstreamed LLM calls over stepline's own HTTP/1.1 client, failures as provider errors.

Both providers send their unstreamed calls this way (``http1`` says why) and fall back to their
SDK where this client does not go: through a proxy, or to an address that is not a plain
http(s) URL. What else the SDKs take from the environment (extra headers) is read here the
same way, and a provider's key is kept out of every error it raises, whichever path.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from stepline.errors import ProviderError, RetryableProviderError
from stepline.providers import http1
from stepline.providers.base import MAX_REPLY_BYTES

REDACTED = "[redacted]"


def direct_pool(url: str, headers: dict[str, str]) -> http1.ConnectionPool | None:
    """A connection pool for ``url``, or None where the provider should use its SDK: a proxy
    from the environment applies to ``url`` (httpx honours them; ``http1`` speaks only
    directly), or ``url`` is not a plain http(s) URL (the SDK then says so in its words)."""
    if _proxy_applies(url):
        return None
    try:
        return http1.ConnectionPool(url, headers=headers, ssl_context=_tls_context)
    except ValueError:
        return None


def sdk_custom_headers(variable: str) -> dict[str, str]:
    """The headers an SDK adds from ``variable`` (``ANTHROPIC_CUSTOM_HEADERS``, one
    ``name: value`` per line), lower-cased, to send on the direct path too (a gateway may
    need them)."""
    headers: dict[str, str] = {}
    for line in os.environ.get(variable, "").split("\n"):
        name, colon, value = line.partition(":")
        if colon and name.strip():
            headers[name.strip().lower()] = value.strip()
    return headers


@contextlib.contextmanager
def secret_kept(secret: str | None) -> Iterator[None]:
    """Provider errors raised inside, with ``secret`` taken out (see ``without_secret``)."""
    try:
        yield
    except ProviderError as exc:
        raise without_secret(exc, secret) from exc.__cause__


def without_secret(exc: ProviderError, secret: str | None) -> ProviderError:
    """``exc`` with ``secret`` taken out of its message and hint: a gateway's error page may
    echo the request's headers, and messages reach the terminal and llm-calls.jsonl. The
    cause (the SDK's exception, quoting the same body) is dropped when it held the secret."""
    if not secret or secret not in f"{exc.message}{exc.hint or ''}{exc.__cause__ or ''}":
        return exc
    exc.message = exc.message.replace(secret, REDACTED)
    exc.args = (exc.message,)
    if exc.hint is not None:
        exc.hint = exc.hint.replace(secret, REDACTED)
    exc.__cause__, exc.__suppress_context__ = None, True
    return exc


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """httpx's context (its CA bundle, ``SSL_CERT_FILE``), a copy of our own that offers only
    HTTP/1.1: the SDKs' shared one is changed by httpx as it connects."""
    import httpx2

    context = httpx2.create_ssl_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


async def post_json(
    pool: http1.ConnectionPool,
    path: str,
    payload: dict[str, Any],
    *,
    timeout: float | None,
    api_name: str,
) -> http1.Reply:
    """POST ``payload`` and return the whole reply, whatever its status; a transport failure
    is a ``RetryableProviderError`` worded as the SDK path words it."""
    body = json.dumps(payload).encode()
    try:
        return await pool.request("POST", path, body, timeout=timeout)
    except http1.TimedOut as exc:
        raise RetryableProviderError(f"{api_name}: the request timed out") from exc
    except http1.ConnectFailed as exc:
        raise RetryableProviderError(f"{api_name}: cannot connect ({exc})") from exc
    except http1.Disconnected as exc:
        raise RetryableProviderError(
            f"{api_name}: the connection broke during the reply ({exc})"
        ) from exc
    except http1.BadReply as exc:
        raise RetryableProviderError(f"{api_name}: {exc}") from exc
    except http1.ReplyTooLarge as exc:  # not retried: asking again fetches as much again
        raise ProviderError(
            f"{api_name}: {exc}, more than stepline reads of one reply",
            hint=f"replies are at most {MAX_REPLY_BYTES // (1024 * 1024)} MiB of text; a "
            "server that sends this much is probably misbehaving",
        ) from exc
    except http1.HTTPError as exc:
        raise ProviderError(f"{api_name}: {exc}") from exc


def _proxy_applies(url: str) -> bool:
    """Whether httpx would send requests for ``url`` through a proxy from the environment."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return False  # the common case, without importing urllib.request (60 ms)
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    parts = urlsplit(url)
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")  # NO_PROXY
