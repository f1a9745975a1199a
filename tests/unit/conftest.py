"""Fixtures of the unit tests that drive the fake LLM server with the real SDK."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest

from tests.fakes import FakeLLMServer


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture
def client(server: FakeLLMServer) -> Iterator[anthropic.Anthropic]:
    """The real SDK pointed at the fake, with no retries of its own."""
    with anthropic.Anthropic(api_key="test-key", base_url=server.base_url, max_retries=0) as sdk:
        yield sdk
