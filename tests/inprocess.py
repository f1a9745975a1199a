"""Runs of the engine in this process, on a mock clock, answered by a scripted provider.

What the CLI tests do through a subprocess and the HTTP fakes, these do in a few milliseconds
and exactly: ``stepline.engine.api`` is called as the CLI calls it, with the provider seam
(``Hooks.provider_factory``) answered by ``ScriptedProvider`` and every wait on ``MockClock``.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from stepline.engine import api
from stepline.engine.contract import Hooks, RunResult
from stepline.engine.events import Event
from stepline.engine.pauses import PauseMode
from stepline.engine.prepare import RunOptions
from stepline.settings import Settings
from tests.fakes.clock import MockClock
from tests.fakes.scripted import ScriptedProvider


class InProcess:
    """One folder's runs: its config, its input, the provider and the clock they share."""

    def __init__(
        self,
        folder: Path,
        config: str,
        input_text: str = "notes\n",
        *,
        provider: ScriptedProvider | None = None,
        clock: MockClock | None = None,
    ) -> None:
        self.folder = folder
        self.config_path = folder / "pipeline-config.yaml"
        self.config_path.write_text(textwrap.dedent(config), encoding="utf-8")
        self.input_path = folder / "input.txt"
        self.input_path.write_text(input_text, encoding="utf-8")
        self.provider = provider or ScriptedProvider()
        self.clock = clock or MockClock()
        self.settings = Settings(workdir=folder / ".pipeline")
        self.events: list[Event] = []

    def hooks(self) -> Hooks:
        return Hooks(
            listener=self.events.append,
            pause_mode=PauseMode.NEVER,
            provider_factory=self.provider.factory,
        )

    def run(self, **options: Any) -> RunResult:
        """``pipeline run`` (``options`` are ``RunOptions``'), to its end."""
        work = api.start_run(
            self.config_path,
            self.input_path,
            settings=self.settings,
            options=RunOptions(check_credentials=False, **options),
            hooks=self.hooks(),
        )
        return self.clock.run(work)

    def resume(self, run_id: str, **options: Any) -> RunResult:
        """``pipeline resume RUN_ID``, to its end."""
        work = api.resume_run(
            run_id,
            settings=self.settings,
            options=RunOptions(check_credentials=False, **options),
            hooks=self.hooks(),
        )
        return self.clock.run(work)
