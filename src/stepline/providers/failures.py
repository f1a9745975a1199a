"""Reading a failed HTTP reply the way the SDKs do, for both providers and both paths.

A provider's ``wire.error_from_reply`` picks the error object out of the body and words the
message; what is the same for every API lives here: a redirect (followed by neither path), the
fallback wording of a body without a message, and telling a transport's failures apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from stepline.errors import ProviderRequestError


def redirect_error(api_name: str, status: int, headers: Mapping[str, str]) -> ProviderRequestError:
    """A ``3xx``: neither path follows it (the SDK clients are set not to), so say where."""
    return ProviderRequestError(
        f"{api_name} {status}: redirected to {headers.get('location', '(no location)')}; "
        "set base_url to the address it names",
        status_code=status,
    )


def error_body(status: int, body: bytes) -> tuple[Any, str]:
    """The body as JSON (None when it is not), and what to say where it holds no message:
    ``Error code: N - {...}`` for JSON, the text itself otherwise (as the SDKs say it)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return None, text or f"Error code: {status}"
    return parsed, f"Error code: {status} - {parsed}"


def transport_failure(exc: BaseException) -> str | None:
    """``"timeout"`` or ``"transport"`` when ``exc`` is a failure of the SDKs' HTTP library,
    else None. Told by the classes in its MRO from a module named ``httpx*``, so the answer
    holds for httpx and for httpx2 (which today's SDKs require) alike."""
    kinds = {cls.__name__ for cls in type(exc).__mro__ if cls.__module__.startswith("httpx")}
    if "TimeoutException" in kinds:
        return "timeout"
    return "transport" if "TransportError" in kinds else None
