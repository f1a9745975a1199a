"""A small HTTP/1.1 client over asyncio streams: one request, one whole reply, kept-alive sockets.

Unstreamed LLM calls are the bulk of a wide fan-out, and through the SDK each one costs about
1.5-2 ms of CPU in httpx, httpcore and anyio on a 2-core machine: at a few hundred calls a second
that CPU, not the network, sets the pace. Here a call is one ``write`` and a few buffered reads
(a few tenths of a millisecond), and only the standard library is imported (importing the
Anthropic SDK takes 1.5-2.5 s, which a resumed run would pay before its first request; the
caller supplies the TLS context).

Deliberately small: no proxies (providers use their SDK where a proxy applies), no HTTP/2, no
redirects, no streamed replies, no HEAD. What it must get right it does: ``Content-Length``
and chunked bodies, gzip and deflate, keep-alive with an idle expiry, connections the server
closed or wrote to while idle, TCP keepalive (a reply can take minutes to start), a cap on a
reply's size, and a timeout on every wait. Errors are this module's own small hierarchy; a
provider turns them into its provider errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

CONNECT_TIMEOUT_S = 5.0
"""How long opening a connection may take when the caller gives no timeout (as the SDKs do)."""

DEFAULT_TIMEOUT_S = 600.0
"""How long each wait for the reply may take when the caller gives no timeout (the SDKs' 10
minutes)."""

KEEPALIVE_S = 5.0
"""How long an idle connection is kept (httpx's default; servers such as uvicorn drop theirs
after 5 s too). One the server closed or answered while idle is never reused."""

TCP_KEEPALIVE = {"TCP_KEEPIDLE": 60, "TCP_KEEPINTVL": 60, "TCP_KEEPCNT": 5}
"""Probes on a silent connection, as the Anthropic SDK's client sets them: an unstreamed reply
can take ten minutes to start, and NATs and load balancers drop connections idle for four."""

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
"""The largest reply body read, decompressed; far above what any LLM reply is (stepline
refuses reply text over 10 MiB further up), so only a broken or hostile server reaches it."""


class HTTPError(Exception):
    """The request got no usable reply; the message says why, without the request's content."""


class ConnectFailed(HTTPError):
    """No connection: refused, unreachable, a name that does not resolve, a TLS failure."""


class TimedOut(HTTPError):
    """A wait (for the connection, or for a piece of the reply) took longer than allowed."""


class Disconnected(HTTPError):
    """The connection broke after the request was sent, before the whole reply arrived."""


class BadReply(HTTPError):
    """What came back is not an HTTP/1.x reply this client reads."""


class ReplyTooLarge(HTTPError):
    """The reply is over ``MAX_BODY_BYTES``: asking again would only fetch as much again."""


@dataclass(frozen=True)
class Reply:
    """A whole reply: status, headers (lower-case names; the last of repeated ones), body."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Origin:
    """Where requests go: scheme, host, port, and the path every request path is under."""

    scheme: str
    host: str
    port: int
    base_path: str

    @classmethod
    def parse(cls, url: str) -> Origin:
        """The origin of a plain http(s) URL; a ``ValueError`` for anything this client would
        not send as the caller meant (credentials, a query or a fragment in the URL)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        if parts.username is not None or parts.query or parts.fragment:
            raise ValueError("a URL with credentials, a query or a fragment")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


class _Connection:
    __slots__ = ("reader", "writer", "idle_since")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def usable(self, now: float) -> bool:
        """Still open on both sides, silent, and not idle for too long. A server that closes
        an idle connection may say so first (a ``408``): unread bytes mean it is done."""
        return (
            now - self.idle_since < KEEPALIVE_S
            and not _unread(self.reader)
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        self.writer.close()


class ConnectionPool:
    """Kept-alive connections to one origin, most recently used first; no limit on their
    number (the caller bounds its requests in flight, and so the connections)."""

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str],
        ssl_context: Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        self.origin = Origin.parse(url)
        fixed = {"host": self.origin.host_header, "accept-encoding": "gzip, deflate", **headers}
        if any(c in text for item in fixed.items() for text in item for c in "\r\n\0"):
            raise ValueError("a header name or value holds a line break")
        self._head_fields = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._ssl_context = ssl_context
        self._idle: deque[_Connection] = deque()
        self._closed = False

    async def request(
        self, method: str, path: str, body: bytes = b"", *, timeout: float | None = None
    ) -> Reply:
        """Send one request and read its whole reply.

        ``timeout`` bounds each wait (the connection, the reply's head, its body), not the
        request as a whole; ``None`` allows the SDKs' defaults (5 s to connect, 10 minutes
        for each wait). Cancelling the call closes its connection: a reply read halfway
        cannot be resumed.
        """
        if self._closed:
            raise HTTPError("the connection pool is closed")
        head = (
            f"{method} {self.origin.base_path}{path} HTTP/1.1\r\n{self._head_fields}"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        wait_s = DEFAULT_TIMEOUT_S if timeout is None else timeout
        loop = asyncio.get_running_loop()
        connection = self._kept_connection()
        try:
            async with asyncio.timeout(None) as deadline:
                if connection is None:
                    connect_s = CONNECT_TIMEOUT_S if timeout is None else timeout
                    deadline.reschedule(loop.time() + connect_s)
                    connection = await self._connect()
                deadline.reschedule(loop.time() + wait_s)
                connection.writer.write(head + body)
                await connection.writer.drain()
                deadline.reschedule(loop.time() + wait_s)
                reply, keep = await _read_reply(connection.reader, deadline, wait_s)
        except BaseException as exc:
            if connection is not None:
                connection.close()
            error = _as_http_error(exc, sent=connection is not None)
            if error is exc:  # cancellation, or already one of ours
                raise
            raise error from exc
        if keep and not self._closed and not _unread(connection.reader):
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()
        return reply

    async def aclose(self) -> None:
        """Close every kept connection; requests still running close theirs when they end."""
        self._closed = True
        while self._idle:
            connection = self._idle.pop()
            connection.close()
            # An error here means the other side went first; the socket is closed either way.
            with contextlib.suppress(OSError, ssl.SSLError):
                await connection.writer.wait_closed()

    def _kept_connection(self) -> _Connection | None:
        """The most recently used good connection; expired ones (the oldest, at the left)
        are closed on the way, so a burst's leftovers do not linger."""
        now = time.monotonic()
        while self._idle and not self._idle[0].usable(now):
            self._idle.popleft().close()
        while self._idle:
            connection = self._idle.pop()
            if connection.usable(now):
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        origin = self.origin
        context = None
        if origin.scheme == "https":
            context = self._ssl_context() if self._ssl_context else ssl.create_default_context()
        try:
            reader, writer = await asyncio.open_connection(
                origin.host,
                origin.port,
                ssl=context,
                server_hostname=origin.host if context else None,
                limit=MAX_HEAD_BYTES,
            )
        except OSError as exc:  # ssl.SSLError is one too
            raise ConnectFailed(f"{origin.host_header}: {_reason(exc)}") from exc
        _keep_probing(writer)
        return _Connection(reader, writer)


def _reason(exc: OSError) -> str:
    """The system's words for an OS error ("Connection refused", "Name or service not
    known"), else the exception's own."""
    if isinstance(exc, socket.gaierror) and exc.strerror:
        return exc.strerror  # its codes are not errno values
    if exc.errno is not None and exc.errno > 0 and not isinstance(exc, ssl.SSLError):
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


def _keep_probing(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in TCP_KEEPALIVE.items():
            if hasattr(socket, name):  # Linux names; other systems keep their defaults
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def _unread(reader: asyncio.StreamReader) -> bool:
    """Whether bytes are waiting that no reply accounts for. StreamReader has no public way
    to ask; its buffer has been ``_buffer`` since asyncio began."""
    return bool(getattr(reader, "_buffer", b""))


def _as_http_error(exc: BaseException, *, sent: bool) -> BaseException:
    """The failure as this module's error; cancellation and our own errors pass unchanged."""
    if isinstance(exc, HTTPError | asyncio.CancelledError) or not isinstance(exc, Exception):
        return exc
    if isinstance(exc, TimeoutError):
        return TimedOut("no reply within the timeout" if sent else "cannot connect in time")
    if isinstance(exc, asyncio.IncompleteReadError):
        if exc.expected is None and not exc.partial:
            return Disconnected("the server closed the connection without replying")
        return Disconnected("cut off in the middle of the reply")
    if isinstance(exc, OSError):
        return Disconnected(_reason(exc))
    if isinstance(exc, asyncio.LimitOverrunError | ValueError):
        return BadReply(f"the reply is not HTTP/1.x this client reads ({exc})")
    return exc


async def _read_reply(
    reader: asyncio.StreamReader, deadline: asyncio.Timeout, wait_s: float
) -> tuple[Reply, bool]:
    """The next reply on ``reader`` and whether its connection may be kept."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        status, version, headers = _parse_head(head)
        if status >= 200:
            break  # 1xx (103 Early Hints...) come before the real reply: skip them
    keep = _keeps_alive(version, headers.get("connection", ""))
    coding = headers.get("transfer-encoding", "").lower().rsplit(",", 1)[-1].strip()
    if "transfer-encoding" in headers and "content-length" in headers:
        keep = False  # RFC 9112: the framing is suspect, so the connection is not reused
    if status in (204, 304):
        body = b""
    elif coding == "chunked":
        body = await _read_chunked(reader, deadline, wait_s)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if length < 0:
            raise BadReply(f"the reply says it is {length} bytes long")
        if length > MAX_BODY_BYTES:
            raise ReplyTooLarge(f"the reply says it is {length:,} bytes, over {MAX_BODY_BYTES:,}")
        body = await _read_bytes(reader, length, deadline, wait_s)
    else:  # the body ends when the server closes the connection
        keep = False
        body = await _read_bytes(reader, None, deadline, wait_s)
    encoding = headers.get("content-encoding", "").strip().lower()
    if encoding in ("gzip", "deflate"):
        body = _decompressed(body, encoding)
    elif encoding not in ("", "identity"):
        raise BadReply(f"the reply is encoded with {encoding!r}, which this client cannot read")
    return Reply(status, headers, body), keep


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    lines = head[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise BadReply(f"the reply does not start with an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise BadReply(f"malformed header line in the reply: {line[:80]!r}")
        headers[name.lower()] = value.strip()
    return int(code), version, headers


def _keeps_alive(version: str, connection: str) -> bool:
    tokens = {token.strip() for token in connection.lower().split(",")}
    if version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


async def _read_chunked(
    reader: asyncio.StreamReader, deadline: asyncio.Timeout, wait_s: float
) -> bytes:
    parts: list[bytes] = []
    size = 0
    loop = asyncio.get_running_loop()
    while True:
        deadline.reschedule(loop.time() + wait_s)
        line = await reader.readuntil(b"\r\n")
        chunk = int(line.split(b";", 1)[0].strip() or b"x", 16)  # ValueError: not a size
        if chunk == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailer fields: not used
            return b"".join(parts)
        size += chunk
        if chunk < 0:
            raise BadReply("a chunk of the reply has a negative size")
        if size > MAX_BODY_BYTES:
            raise ReplyTooLarge(f"the reply is over {MAX_BODY_BYTES:,} bytes")
        parts.append(await _read_bytes(reader, chunk, deadline, wait_s))
        if await reader.readexactly(2) != b"\r\n":
            raise BadReply("a chunk of the reply does not end where its size says")


async def _read_bytes(
    reader: asyncio.StreamReader, length: int | None, deadline: asyncio.Timeout, wait_s: float
) -> bytes:
    """``length`` bytes, or with None all until the server closes (at most the cap); the
    timeout bounds each wait for more, not the whole body (a long reply that keeps coming is
    not cut off)."""
    parts: list[bytes] = []
    size = 0
    loop = asyncio.get_running_loop()
    while length is None or size < length:
        deadline.reschedule(loop.time() + wait_s)
        want = 256 * 1024 if length is None else min(length - size, 256 * 1024)
        part = await reader.read(want)
        if not part:
            if length is None:
                break
            raise asyncio.IncompleteReadError(b"".join(parts), length)
        size += len(part)
        if size > MAX_BODY_BYTES:
            raise ReplyTooLarge(f"the reply is over {MAX_BODY_BYTES:,} bytes")
        parts.append(part)
    return b"".join(parts)


def _decompressed(body: bytes, encoding: str) -> bytes:
    # gzip: a gzip header; deflate: zlib-wrapped as the standard says, or raw as some send.
    attempts = (31,) if encoding == "gzip" else (15, -15)
    for wbits in attempts:
        decoder = zlib.decompressobj(wbits)
        try:
            data = decoder.decompress(body, MAX_BODY_BYTES)
        except zlib.error:
            continue
        if decoder.unconsumed_tail:
            raise ReplyTooLarge(f"the reply is over {MAX_BODY_BYTES:,} bytes decompressed")
        return data
    raise BadReply(f"the reply says it is {encoding}-encoded but does not decompress")
