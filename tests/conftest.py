"""Shared fixtures: an isolated environment per test, the fake LLM server, and CLI drivers.

Every test runs in its own temporary folder with ``PIPELINE_*``, ``ANTHROPIC_*`` and
``OPENAI_*`` cleared and HOME pointed at that folder, so nothing from the developer's machine
(keys, SDK profiles, a stray .pipeline) can leak in or out.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stepline.cli.app import main
from tests.clusters import DaskTestCluster, RayTestCluster
from tests.fakes import FakeLLMServer
from tests.helpers import SENTINEL_KEY

ENV_PREFIXES = ("PIPELINE_", "ANTHROPIC_", "OPENAI_", "DASK_", "RAY_")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES) or name == "NO_COLOR":
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[str]:
    """The session's dask cluster (two workers on 127.0.0.1): its scheduler's address."""
    cluster = DaskTestCluster()
    try:
        yield cluster.address
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def _ray_head() -> Iterator[RayTestCluster]:
    cluster = RayTestCluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def ray_cluster(_ray_head: RayTestCluster, monkeypatch: pytest.MonkeyPatch) -> str:
    """The session's Ray head (two CPUs on 127.0.0.1), its token in this test's environment:
    its address."""
    for name, value in _ray_head.environment.items():
        monkeypatch.setenv(name, value)
    return _ray_head.address


@pytest.fixture
def fake_llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLMServer]:
    """The fake Anthropic server, with the SDK pointed at it and a sentinel API key set."""
    with FakeLLMServer() as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", SENTINEL_KEY)
        yield server
        assert server.errors == [], f"a test responder raised: {server.errors}"


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    """Run ``pipeline ARGS`` in this process; returns exit code, stdout and stderr."""

    def invoke(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        else:  # pragma: no cover - main always exits
            code = 0
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke
