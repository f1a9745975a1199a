"""Unstreamed LLM calls over stepline's own HTTP/1.1 client, failures as provider errors.

Both providers send their unstreamed calls this way (``http1`` says why) and fall back to their
SDK where this client does not go: through a proxy, or to an address that is not a plain
http(s) URL.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlsplit

from stepline.errors import ProviderError, RetryableProviderError
from stepline.providers import http1
from stepline.providers.shards import shared_ssl_context


def direct_pool(url: str, headers: dict[str, str]) -> http1.ConnectionPool | None:
    """A connection pool for ``url``, or None where the provider should use its SDK: a proxy
    from the environment applies to ``url`` (httpx honours them; ``http1`` speaks only
    directly), or ``url`` is not a plain http(s) URL (the SDK then says so in its words)."""
    if _proxy_applies(url):
        return None
    try:
        return http1.ConnectionPool(url, headers=headers, ssl_context=shared_ssl_context)
    except ValueError:
        return None


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
