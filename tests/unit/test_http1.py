"""Tests of stepline's own HTTP/1.1 client (``providers/http1.py``) against real sockets.

Each test starts an asyncio server on ``127.0.0.1`` in its own event loop that answers every
request with scripted raw bytes, so replies can be exactly as odd as a real server's (chunk
extensions, 103 Early Hints, HTTP/1.0, a head of 70 KiB, a connection cut mid-body) and the
server can count the connections the pool opened and see when the pool closes one.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import zlib
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeAlias

import pytest

from stepline.providers import http1
from stepline.providers.http1 import (
    BadReply,
    ConnectFailed,
    ConnectionPool,
    Disconnected,
    HTTPError,
    Reply,
    ReplyTooLarge,
    TimedOut,
)
from tests.fakes.clock import MockClock

# --------------------------------------------------------------------------------------------
# A scripted raw HTTP server
# --------------------------------------------------------------------------------------------


@dataclass
class Received:
    """One request as the server read it off the socket."""

    method: str
    target: str
    version: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    connection: int  # which accepted connection carried it: 1, 2, ...


@dataclass(frozen=True)
class Answer:
    """What the server does with one request."""

    raw: bytes = b""
    close: bool = False  # close the connection after writing ``raw``
    delay: float = 0.0  # seconds to wait before writing
    hang: bool = False  # write ``raw`` (maybe nothing), then wait for the client to go away


Script: TypeAlias = Answer | Callable[[Received], Answer]


def ok(body: bytes = b"ok", *headers: str, close: bool = False, delay: float = 0.0) -> Answer:
    """A plain ``200`` with a Content-Length body (kept alive unless the server closes)."""
    head = ("HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *headers)
    return Answer(reply(*head, body=body), close=close, delay=delay)


def reply(status_line: str, *headers: str, body: bytes = b"") -> bytes:
    """Raw reply bytes: status line, header lines, blank line, body."""
    return "\r\n".join((status_line, *headers, "", "")).encode("latin-1") + body


class RawServer:
    """An asyncio server on 127.0.0.1 answering requests with scripted :class:`Answer`s in
    order, then with ``default``; records every request and which connections the client
    closed."""

    def __init__(self, *script: Script, default: Script | None = None) -> None:
        self._script: deque[Script] = deque(script)
        self._default = default
        self.requests: list[Received] = []
        self.connections = 0
        self.closed_by_client: list[int] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._stopping = True
        self._server.close()
        for writer in list(self._writers):
            writer.close()  # the handlers see EOF and return
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def wait_until_closed_by_client(self, connection: int) -> None:
        """Wait (2 s at most) until the client has closed ``connection``."""
        await _eventually(lambda: connection in self.closed_by_client)

    async def wait_for_requests(self, count: int) -> None:
        await _eventually(lambda: len(self.requests) >= count)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        number = self.connections
        try:
            while await self._answer_one(number, reader, writer):
                pass
        except (ConnectionError, OSError):
            self._client_closed(number)
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)

    def _client_closed(self, number: int) -> None:
        if not self._stopping:  # at the end of a test, the server closes them itself
            self.closed_by_client.append(number)

    async def _answer_one(
        self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Read one request and answer it; False when the connection is done."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            self._client_closed(number)  # EOF between requests: the client closed
            return False
        received = _parse_request(head, number)
        received.body = await reader.readexactly(int(received.headers.get("content-length", 0)))
        self.requests.append(received)
        answer = self._next(received)
        if answer.delay:
            await asyncio.sleep(answer.delay)
        writer.write(answer.raw)
        await writer.drain()
        if answer.hang:
            await reader.read()  # returns at EOF: the client gave up and closed
            self._client_closed(number)
            return False
        return not answer.close

    def _next(self, received: Received) -> Answer:
        spec = self._script.popleft() if self._script else self._default
        assert spec is not None, f"no answer scripted for request {len(self.requests)}"
        return spec(received) if callable(spec) else spec


def _parse_request(head: bytes, connection: int) -> Received:
    lines = head.decode("latin-1").split("\r\n")[:-2]
    method, target, version = lines[0].split(" ")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return Received(method, target, version, headers, b"", connection)


async def _eventually(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def run(
    scenario: Callable[[], Coroutine[Any, Any, None]], *, clock: MockClock | None = None
) -> None:
    """Run ``scenario``; with ``clock``, its timeouts and sleeps are virtual (exact, however
    busy the machine) while its sockets stay real."""
    if clock is None:
        asyncio.run(scenario())
    else:
        clock.run(scenario())


def virtual_time() -> MockClock:
    """A mock clock that jumps only after 50 ms of real quiet: loopback I/O between the
    client and a server on the same loop is ready long before that."""
    return MockClock(autojump_threshold=0.05)


def pool_for(server: RawServer, headers: dict[str, str] | None = None) -> ConnectionPool:
    return ConnectionPool(server.url, headers=headers or {})


def two_requests(*script: Script) -> tuple[Reply, Reply, list[int]]:
    """Two requests in a row to a server answering with ``script``: both replies, and the
    connection that carried each request."""

    async def scenario() -> tuple[Reply, Reply, list[int]]:
        async with RawServer(*script) as server:
            pool = pool_for(server)
            first = await pool.request("GET", "/", timeout=2)
            second = await pool.request("GET", "/", timeout=2)
            await pool.aclose()
        return first, second, [request.connection for request in server.requests]

    return asyncio.run(scenario())


# --------------------------------------------------------------------------------------------
# Requests and Content-Length replies
# --------------------------------------------------------------------------------------------


def test_content_length_reply_and_the_request_the_server_received() -> None:
    answer = reply(
        "HTTP/1.1 201 Created",
        "Content-Type: application/json",
        "X-Request-ID: req_123",
        "Content-Length: 11",
        body=b'{"ok":true}',
    )

    async def scenario() -> None:
        async with RawServer(Answer(answer), ok(b"")) as server:
            pool = ConnectionPool(
                server.url + "/prefix/",
                headers={"authorization": "Bearer k-1", "anthropic-version": "2023-06-01"},
            )
            got = await pool.request("POST", "/v1/messages", b'{"model":"m"}', timeout=2)
            empty = await pool.request("GET", "/v1/models", timeout=2)
            await pool.aclose()

        assert got.status == 201
        assert got.body == b'{"ok":true}'
        assert got.headers["content-type"] == "application/json"
        assert got.headers["x-request-id"] == "req_123"
        assert all(name == name.lower() for name in got.headers)
        first, second = server.requests
        assert (first.method, first.target, first.version) == (
            "POST",
            "/prefix/v1/messages",
            "HTTP/1.1",
        )
        assert first.headers["host"] == f"127.0.0.1:{server.port}"
        assert first.headers["content-length"] == str(len(b'{"model":"m"}'))
        assert first.body == b'{"model":"m"}'
        assert first.headers["authorization"] == "Bearer k-1"
        assert first.headers["anthropic-version"] == "2023-06-01"
        assert first.headers["accept-encoding"] == "gzip, deflate"
        assert (second.method, second.target) == ("GET", "/prefix/v1/models")
        assert second.headers["content-length"] == "0"
        assert empty.status == 200 and empty.body == b""

    run(scenario)


# --------------------------------------------------------------------------------------------
# Keep-alive
# --------------------------------------------------------------------------------------------


def test_sequential_requests_reuse_one_connection() -> None:
    async def scenario() -> None:
        async with RawServer(ok(b"one"), ok(b"two"), ok(b"three")) as server:
            pool = pool_for(server)
            bodies = [(await pool.request("GET", "/", timeout=2)).body for _ in range(3)]
            await pool.aclose()
        assert bodies == [b"one", b"two", b"three"]
        assert server.connections == 1
        assert [request.connection for request in server.requests] == [1, 1, 1]

    run(scenario)


def test_connection_close_in_the_reply_makes_the_next_request_open_a_new_connection() -> None:
    async def scenario() -> None:
        # The server itself keeps the socket open: only the client can close it.
        async with RawServer(ok(b"one", "Connection: close"), ok(b"two")) as server:
            pool = pool_for(server)
            first = await pool.request("GET", "/", timeout=2)
            await server.wait_until_closed_by_client(1)
            second = await pool.request("GET", "/", timeout=2)
            await pool.aclose()
        assert (first.body, second.body) == (b"one", b"two")
        assert [request.connection for request in server.requests] == [1, 2]

    run(scenario)


@pytest.mark.parametrize(
    ("connection_header", "connections"),
    [((), [1, 2]), (("Connection: Keep-Alive",), [1, 1])],
    ids=["no-keep-alive", "keep-alive"],
)
def test_http10_reply_is_reused_only_when_it_asks_for_keep_alive(
    connection_header: tuple[str, ...], connections: list[int]
) -> None:
    def answer(body: bytes) -> Answer:
        head = ("HTTP/1.0 200 OK", f"Content-Length: {len(body)}", *connection_header)
        return Answer(reply(*head, body=body))

    first, second, used = two_requests(answer(b"one"), answer(b"two"))

    assert (first.body, second.body) == (b"one", b"two")
    assert used == connections


def test_a_kept_connection_the_server_closed_while_idle_is_not_used() -> None:
    async def scenario() -> None:
        # The reply says nothing about closing; the server then closes anyway, while idle.
        async with RawServer(ok(b"one", close=True), ok(b"two")) as server:
            pool = pool_for(server)
            first = await pool.request("GET", "/", timeout=2)
            await asyncio.sleep(0.05)  # the FIN reaches the client's idle socket
            second = await pool.request("GET", "/", timeout=2)
            await pool.aclose()
        assert (first.body, second.body) == (b"one", b"two")
        assert [request.connection for request in server.requests] == [1, 2]

    run(scenario)


def test_an_idle_connection_past_keepalive_is_closed_and_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http1, "KEEPALIVE_S", 0.05)

    async def scenario() -> None:
        async with RawServer(ok(b"one"), ok(b"two")) as server:
            pool = pool_for(server)
            await pool.request("GET", "/", timeout=2)
            await asyncio.sleep(0.1)
            second = await pool.request("GET", "/", timeout=2)
            await server.wait_until_closed_by_client(1)  # the expired one was closed
            await pool.aclose()
        assert second.body == b"two"
        assert [request.connection for request in server.requests] == [1, 2]

    run(scenario)


# --------------------------------------------------------------------------------------------
# Bodies: chunked, to the end of the connection, compressed, none
# --------------------------------------------------------------------------------------------


def test_chunked_body_with_extensions_and_trailers_and_the_connection_is_kept() -> None:
    chunked = reply(
        "HTTP/1.1 200 OK",
        "Transfer-Encoding: chunked",
        body=(
            b"5;name=value\r\nhello\r\n"
            b"2\r\n, \r\n"
            b"A ; ext\r\n0123456789\r\n"
            b"0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n"
        ),
    )

    first, second, used = two_requests(Answer(chunked), ok(b"next"))

    assert first.body == b"hello, 0123456789"
    # The trailers were read to their end: the next reply on the same socket is intact.
    assert second.body == b"next"
    assert used == [1, 1]


def test_a_body_delimited_by_the_server_closing_the_connection() -> None:
    until_close = Answer(reply("HTTP/1.1 200 OK", body=b"all of it"), close=True)

    first, second, used = two_requests(until_close, ok(b"next"))

    assert first.body == b"all of it"
    assert second.body == b"next"
    assert used == [1, 2]


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


TEXT = b"the same text, compressed " * 20


@pytest.mark.parametrize(
    ("encoding", "encoded"),
    [
        ("gzip", gzip.compress(TEXT)),
        ("deflate", zlib.compress(TEXT)),
        ("deflate", _raw_deflate(TEXT)),
        ("GZip ", gzip.compress(TEXT)),
        ("identity", TEXT),
    ],
    ids=["gzip", "deflate-zlib", "deflate-raw", "gzip-odd-case", "identity"],
)
def test_compressed_bodies_are_decompressed(encoding: str, encoded: bytes) -> None:
    async def scenario() -> None:
        async with RawServer(ok(encoded, f"Content-Encoding: {encoding}")) as server:
            pool = pool_for(server)
            got = await pool.request("GET", "/", timeout=2)
            await pool.aclose()
        assert got.body == TEXT

    run(scenario)


@pytest.mark.parametrize(
    ("encoding", "body", "words"),
    [
        ("br", b"\x1b\x03\x00", "'br'"),
        ("gzip", b"not gzip at all", "does not decompress"),
        ("deflate", b"not deflate \xff\xff", "does not decompress"),
    ],
    ids=["brotli", "bad-gzip", "bad-deflate"],
)
def test_an_unreadable_encoding_is_a_bad_reply(encoding: str, body: bytes, words: str) -> None:
    async def scenario() -> None:
        async with RawServer(ok(body, f"Content-Encoding: {encoding}")) as server:
            pool = pool_for(server)
            with pytest.raises(BadReply) as caught:
                await pool.request("GET", "/", timeout=2)
            await pool.aclose()
        assert words in str(caught.value)

    run(scenario)


def test_interim_1xx_replies_are_skipped() -> None:
    answer = (
        reply("HTTP/1.1 100 Continue")
        + reply("HTTP/1.1 103 Early Hints", "Link: </style.css>; rel=preload")
        + reply("HTTP/1.1 200 OK", "Content-Length: 5", "X-Final: yes", body=b"final")
    )

    async def scenario() -> None:
        async with RawServer(Answer(answer), ok(b"next")) as server:
            pool = pool_for(server)
            got = await pool.request("GET", "/", timeout=2)
            after = await pool.request("GET", "/", timeout=2)
            await pool.aclose()
        assert (got.status, got.body) == (200, b"final")
        assert got.headers["x-final"] == "yes"
        assert "link" not in got.headers  # the interim reply's headers are not the reply's
        assert after.body == b"next"

    run(scenario)


def test_204_has_no_body_and_the_connection_is_reused() -> None:
    async def scenario() -> None:
        async with RawServer(Answer(reply("HTTP/1.1 204 No Content")), ok(b"next")) as server:
            pool = pool_for(server)
            got = await pool.request("DELETE", "/thing", timeout=2)
            after = await pool.request("GET", "/", timeout=2)
            await pool.aclose()
        assert (got.status, got.body) == (204, b"")
        assert after.body == b"next"
        assert [request.connection for request in server.requests] == [1, 1]

    run(scenario)


# --------------------------------------------------------------------------------------------
# Errors; the pool keeps working after each
# --------------------------------------------------------------------------------------------


def test_connection_refused_is_connect_failed_naming_the_address() -> None:
    with socket.socket() as probe:  # a port nothing listens on once this socket is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> None:
        pool = ConnectionPool(f"http://127.0.0.1:{port}", headers={})
        with pytest.raises(ConnectFailed) as caught:
            await pool.request("GET", "/", timeout=2)
        await pool.aclose()
        assert f"127.0.0.1:{port}" in str(caught.value)

    run(scenario)


BIG_HEAD = reply("HTTP/1.1 200 OK", "X-Big: " + "a" * (70 * 1024), "Content-Length: 0")


@pytest.mark.parametrize(
    ("answer", "error", "words"),
    [
        (Answer(hang=True), TimedOut, "no reply within the timeout"),
        (Answer(reply("HTTP/1.1 200 OK", "Content-Length: 100", body=b"only ten.."), close=True),
         Disconnected, ""),
        (Answer(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", close=True), BadReply, "status line"),
        (Answer(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", close=True), BadReply, "header"),
        (Answer(BIG_HEAD, close=True), BadReply, "not HTTP/1.x"),
        (Answer(reply("HTTP/1.1 200 OK", "Content-Length: ten")), BadReply, "not HTTP/1.x"),
        (Answer(reply("HTTP/1.1 200 OK", "Content-Length: -1")), BadReply, "-1 bytes long"),
        (Answer(reply("HTTP/1.1 200 OK", "Transfer-Encoding: chunked", body=b"zz\r\nab\r\n")),
         BadReply, "not HTTP/1.x"),
        (Answer(reply("HTTP/1.1 200 OK", "Transfer-Encoding: chunked", body=b"-5\r\n")),
         BadReply, "negative size"),
        (Answer(reply("HTTP/1.1 200 OK", "Transfer-Encoding: chunked", body=b"2\r\nabcd\r\n")),
         BadReply, "does not end where its size says"),
        (Answer(reply("HTTP/1.1 200 OK", "Transfer-Encoding: chunked", body=b"5\r\nab"),
                close=True), Disconnected, ""),
    ],
    ids=[
        "never-answers",
        "closed-mid-body",
        "garbage-status-line",
        "malformed-header",
        "head-over-64KiB",
        "content-length-not-a-number",
        "content-length-negative",
        "chunk-size-not-hex",
        "chunk-size-negative",
        "chunk-longer-than-its-size",
        "closed-mid-chunk",
    ],
)  # fmt: skip
def test_errors_and_the_pool_still_works_afterwards(
    answer: Answer, error: type[HTTPError], words: str
) -> None:
    async def scenario() -> None:
        async with RawServer(answer, ok(b"after")) as server:
            pool = pool_for(server)
            with pytest.raises(error) as caught:
                await pool.request("GET", "/", timeout=0.2)
            after = await pool.request("GET", "/", timeout=2)
            await pool.aclose()
        assert type(caught.value) is error
        assert words in str(caught.value)
        assert after.body == b"after"
        assert [request.connection for request in server.requests] == [1, 2]

    run(scenario, clock=virtual_time())


TWO_CHUNKS = b"40\r\n" + b"a" * 64 + b"\r\n40\r\n" + b"b" * 64 + b"\r\n0\r\n\r\n"


@pytest.mark.parametrize(
    "answer",
    [
        ok(b"x" * 101),
        # Two chunks of 0x40 bytes: the second takes the body past the cap.
        Answer(reply("HTTP/1.1 200 OK", "Transfer-Encoding: chunked", body=TWO_CHUNKS)),
        Answer(reply("HTTP/1.1 200 OK", body=b"y" * 101), close=True),
        ok(gzip.compress(b"\0" * 1000), "Content-Encoding: gzip"),
    ],
    ids=["content-length", "chunked", "until-close", "decompressed"],
)
def test_a_body_over_the_size_cap_is_refused(
    answer: Answer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http1, "MAX_BODY_BYTES", 100)

    async def scenario() -> None:
        async with RawServer(answer, ok(b"after")) as server:
            pool = pool_for(server)
            with pytest.raises(ReplyTooLarge, match="over 100"):
                await pool.request("GET", "/", timeout=2)
            after = await pool.request("GET", "/", timeout=2)
            await pool.aclose()
        assert after.body == b"after"
        assert [request.connection for request in server.requests] == [1, 2]

    run(scenario, clock=virtual_time())


def test_a_body_at_the_size_cap_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http1, "MAX_BODY_BYTES", 100)

    async def scenario() -> None:
        async with RawServer(ok(b"x" * 100)) as server:
            pool = pool_for(server)
            got = await pool.request("GET", "/", timeout=2)
            await pool.aclose()
        assert got.body == b"x" * 100

    run(scenario)


# --------------------------------------------------------------------------------------------
# Cancellation, closing, concurrency
# --------------------------------------------------------------------------------------------


def test_cancelling_a_request_closes_its_connection_and_the_pool_still_works() -> None:
    async def scenario() -> None:
        async with RawServer(Answer(hang=True), ok(b"after")) as server:
            pool = pool_for(server)
            waiting = asyncio.create_task(pool.request("POST", "/slow", b"x", timeout=10))
            await server.wait_for_requests(1)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            await server.wait_until_closed_by_client(1)
            after = await pool.request("GET", "/", timeout=2)
            await pool.aclose()
        assert after.body == b"after"
        assert [request.connection for request in server.requests] == [1, 2]

    run(scenario, clock=virtual_time())


def test_aclose_closes_idle_connections_and_refuses_new_requests() -> None:
    async def scenario() -> None:
        async with RawServer(ok(b"one"), ok(b"two")) as server:
            pool = pool_for(server)
            await pool.request("GET", "/", timeout=2)
            await pool.request("GET", "/", timeout=2)
            assert server.closed_by_client == []  # kept alive until now
            await pool.aclose()
            await server.wait_until_closed_by_client(1)
            with pytest.raises(HTTPError, match="closed"):
                await pool.request("GET", "/", timeout=2)
        assert len(server.requests) == 2  # the refused request never reached the server

    run(scenario)


def test_concurrent_requests_each_get_their_own_reply() -> None:
    def echo(received: Received) -> Answer:
        return ok(b"echo " + received.target.encode() + b" " + received.body, delay=0.05)

    async def scenario() -> None:
        async with RawServer(default=echo) as server:
            pool = pool_for(server)
            for wave in range(2):
                replies = await asyncio.gather(
                    *(
                        pool.request("POST", f"/item/{n}", f"body-{n}".encode(), timeout=5)
                        for n in range(50)
                    )
                )
                assert [got.body for got in replies] == [
                    f"echo /item/{n} body-{n}".encode() for n in range(50)
                ], f"wave {wave}"
            await pool.aclose()
        assert len(server.requests) == 100
        # No more connections than requests in flight, and the second wave reused the first's.
        assert server.connections <= 50

    run(scenario)


# --------------------------------------------------------------------------------------------
# What a connection may still hold, the timeout per wait, and what the pool refuses to build
# --------------------------------------------------------------------------------------------

STRAY_408 = reply("HTTP/1.1 408 Request Timeout", "Content-Length: 0", "Connection: close")


def test_bytes_after_a_reply_are_never_read_as_the_next_reply() -> None:
    """A server that sends more than its reply (a miscounted Content-Length, an extra
    reply) leaves bytes no request asked for: that connection is not kept."""
    first, second, used = two_requests(Answer(ok(b"one").raw + STRAY_408), ok(b"two"))

    assert first.body == b"one"
    assert (second.status, second.body) == (200, b"two")
    assert used == [1, 2]


def test_a_connection_the_server_gave_up_on_while_idle_is_not_reused() -> None:
    """A server ending an idle keep-alive connection may first send a ``408``: the next
    request must go on a new connection instead of reading that ``408`` as its reply."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(len(connections) + 1)
        await reader.readuntil(b"\r\n\r\n")
        writer.write(ok(f"reply {len(connections)}".encode()).raw)
        await writer.drain()
        await asyncio.sleep(0.05)  # idle: the server times the connection out
        writer.write(STRAY_408)
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = ConnectionPool(f"http://127.0.0.1:{port}", headers={})
        assert (await pool.request("GET", "/", timeout=2)).body == b"reply 1"
        await asyncio.sleep(0.2)  # the 408 has arrived, the connection is still open
        second = await pool.request("GET", "/", timeout=2)
        await pool.aclose()
        server.close()
        assert (second.status, second.body) == (200, b"reply 2")
        assert connections == [1, 2]

    run(scenario)


def test_the_timeout_bounds_each_wait_not_the_whole_body() -> None:
    """A body that keeps coming (a piece every 0.15 s for 0.75 s) is read whole under a
    0.3 s timeout; a pause longer than the timeout is not."""
    pieces = [b"a" * 10] * 5

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply("HTTP/1.1 200 OK", "Content-Length: 50"))
        for piece in pieces:
            await asyncio.sleep(0.15)
            writer.write(piece)
            await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = ConnectionPool(f"http://127.0.0.1:{port}", headers={})
        got = await pool.request("GET", "/", timeout=0.3)
        with pytest.raises(TimedOut):
            await pool.request("GET", "/", timeout=0.1)
        await pool.aclose()
        server.close()
        assert got.body == b"a" * 50

    run(scenario, clock=virtual_time())


def test_expired_connections_are_closed_while_requests_go_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a burst, the connections steady traffic no longer uses are closed once they
    expire, though the most recent one is still good and is the one reused."""
    monkeypatch.setattr(http1, "KEEPALIVE_S", 0.5)

    async def scenario() -> None:
        async with RawServer(default=ok(b"x", delay=0.05)) as server:
            pool = pool_for(server)
            await asyncio.gather(*(pool.request("GET", "/", timeout=2) for _ in range(3)))
            await asyncio.sleep(0.3)
            await pool.request("GET", "/", timeout=2)  # reuses the newest, renewing it
            await asyncio.sleep(0.3)  # the other two have been idle 0.6 s, past 0.5 s
            await pool.request("GET", "/", timeout=2)
            newest = server.requests[3].connection
            for expired in {1, 2, 3} - {newest}:
                await server.wait_until_closed_by_client(expired)
            await pool.aclose()
        assert server.connections == 3  # no new one was needed
        assert server.requests[4].connection == newest

    run(scenario)


def test_connections_send_tcp_keepalive_probes() -> None:
    async def scenario() -> None:
        async with RawServer(ok(b"x")) as server:
            pool = pool_for(server)
            await pool.request("GET", "/", timeout=2)
            (connection,) = pool._idle  # the kept connection's socket
            sock = connection.writer.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            if hasattr(socket, "TCP_KEEPIDLE"):
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
            await pool.aclose()

    run(scenario)


def test_a_reply_with_both_framings_is_read_as_chunked_and_its_connection_dropped() -> None:
    both = reply(
        "HTTP/1.1 200 OK",
        "Transfer-Encoding: chunked",
        "Content-Length: 999",
        body=b"3\r\nabc\r\n0\r\n\r\n",
    )

    first, second, used = two_requests(Answer(both), ok(b"next"))

    assert (first.body, second.body) == (b"abc", b"next")
    assert used == [1, 2]


@pytest.mark.parametrize(
    "url",
    [
        "http://user:secret@127.0.0.1:8000/v1",  # the SDK sends Basic auth for these
        "http://127.0.0.1:8000/v1?api-version=1",
        "http://127.0.0.1:8000/v1#part",
        "ftp://127.0.0.1/v1",
        "127.0.0.1:8000",
    ],
)
def test_urls_this_client_would_not_send_as_meant_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        ConnectionPool(url, headers={})


def test_a_header_with_a_line_break_is_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        ConnectionPool("http://127.0.0.1:8000", headers={"x-api-key": "k\r\nx-evil: 1"})
