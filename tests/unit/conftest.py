"""Fixtures of the unit tests: the fake LLM server, the real SDK pointed at it, a forward proxy."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest

from tests.fakes import FakeLLMServer
from tests.fakes.http_servers import ForwardProxy


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture
def client(server: FakeLLMServer) -> Iterator[anthropic.Anthropic]:
    """The real SDK pointed at the fake, with no retries of its own."""
    with anthropic.Anthropic(api_key="test-key", base_url=server.base_url, max_retries=0) as sdk:
        yield sdk


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ForwardProxy]:
    """A forward proxy named by ``HTTP_PROXY``, with no other proxy variable set."""
    for name in (
        "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
        "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    with ForwardProxy() as forward:
        monkeypatch.setenv("HTTP_PROXY", forward.url)
        yield forward
