"""Several SDK clients behind one provider, so no connection pool serves too many requests.

httpx's connection pool scans all of its connections for every request it assigns, so its
cost per request grows with the number in flight: at a fan-out concurrency of a few hundred,
one client spends more CPU choosing connections than sending requests. Giving each client at
most ``per_client`` requests in flight, and opening another client when all are that busy,
keeps every pool small. Each client keeps its connections warm between requests. The clients
share one TLS context, so opening another costs well under a millisecond (building a context
loads the CA bundle: about 40 ms).
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, Protocol, TypeVar


class Closable(Protocol):
    async def close(self) -> None: ...


Client = TypeVar("Client", bound=Closable)

REQUESTS_PER_CLIENT = 8


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """The TLS context of every SDK client (httpx's own, so SSL_CERT_FILE still applies)."""
    import httpx2

    return httpx2.create_ssl_context()


class ClientShards(Generic[Client]):
    """Hands out the least busy client, opening a new one when all are full."""

    def __init__(
        self, open_client: Callable[[], Client], *, per_client: int = REQUESTS_PER_CLIENT
    ) -> None:
        self._open_client = open_client
        self._per_client = per_client
        # The first client opens now, with the provider: the first one builds the TLS context
        # (tens of ms), which would otherwise land on the first request, after any rate limit.
        self._clients: list[Client] = [open_client()]
        self._in_flight: list[int] = [0]

    @contextmanager
    def lease(self) -> Iterator[Client]:
        """A client for one request; it counts as busy until the ``with`` block ends."""
        index = self._least_busy()
        self._in_flight[index] += 1
        try:
            yield self._clients[index]
        finally:
            self._in_flight[index] -= 1

    @property
    def clients(self) -> list[Client]:
        return list(self._clients)

    async def aclose(self) -> None:
        """Close every client (and its connections)."""
        for client in self._clients:
            await client.close()

    def _least_busy(self) -> int:
        index = min(range(len(self._clients)), key=self._in_flight.__getitem__)
        if self._in_flight[index] < self._per_client:
            return index
        self._clients.append(self._open_client())
        self._in_flight.append(0)
        return len(self._clients) - 1
