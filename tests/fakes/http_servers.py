"""Small HTTP servers on 127.0.0.1 for replies the fake LLM server cannot make: a canned
reply (a gateway's HTML error page, a redirect) and a plain forward proxy; and the check the
tests of a provider's two paths (direct and SDK) share."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

from stepline.errors import ProviderError


class _ServedInBackground:
    """A ``ThreadingHTTPServer`` on 127.0.0.1, served from a thread inside a ``with`` block."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> Self:
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class CannedServer(_ServedInBackground):
    """A server on 127.0.0.1 (a thread) answering every request with one canned reply, for
    replies the fake LLM server cannot make: a proxy's HTML error page, say."""

    def __init__(
        self, status: int, content_type: str, body: bytes, *, location: str | None = None
    ) -> None:
        self.requests = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                owner.requests += 1
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                if location is not None:
                    self.send_header("Location", location)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler)
        self.base_url = self.url


HOP_BY_HOP = {"connection", "proxy-connection", "keep-alive", "transfer-encoding", "te"}


class ForwardProxy(_ServedInBackground):
    """A plain-HTTP forward proxy on 127.0.0.1: takes absolute-form requests
    (``POST http://host:port/path HTTP/1.1``), sends them on, relays the reply."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                owner.targets.append(self.path)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                target = urlsplit(self.path)
                upstream = http.client.HTTPConnection(str(target.hostname), target.port, timeout=10)
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in HOP_BY_HOP
                }
                upstream.request("POST", target.path, body, headers)
                reply = upstream.getresponse()
                data = reply.read()
                upstream.close()
                self.send_response(reply.status)
                for name, value in reply.getheaders():
                    if name.lower() not in HOP_BY_HOP | {"content-length"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler)


def assert_same_error(direct: ProviderError, through_sdk: ProviderError, *, api_name: str) -> None:
    """The two paths failed alike by stepline's contract: same class, status, wait asked for
    and hint (so the same retry decision and the same advice), and both messages name the
    provider and the status. Not the words otherwise: the SDK's change between releases."""
    assert type(direct) is type(through_sdk)
    assert direct.status_code == through_sdk.status_code
    assert getattr(direct, "retry_after", None) == getattr(through_sdk, "retry_after", None)
    assert direct.hint == through_sdk.hint
    for error in (direct, through_sdk):
        assert error.message.startswith(api_name), error.message
        if error.status_code is not None:
            assert f"{api_name} {error.status_code}" in error.message, error.message
