"""Cassettes: recorded LLM completions in a JSONL file, for running pipelines offline.

``--record FILE`` appends each real completion (one line: request hash, the request's text and
the completion); ``--replay FILE`` answers from those lines with no network. Lines never hold
credentials, so a cassette can be committed next to a pipeline and used in CI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stepline.errors import InputError
from stepline.store.state import now


class Cassette:
    """One cassette file: recorded completions by request hash (a later line wins)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._entries: dict[str, dict[str, Any]] | None = None
        self._endpoints: list[tuple[str, str | None]] | None = None

    def get(self, key: str) -> dict[str, Any] | None:
        """The recorded completion for ``key``."""
        entry = self._loaded().get(key)
        return entry["completion"] if entry else None

    def endpoints(self) -> list[tuple[str, str | None]]:
        """Each (provider, base_url) the cassette was recorded against, first seen first."""
        if self._endpoints is None:
            seen = {
                (str(entry.get("provider")), entry.get("base_url")): None
                for entry in self._loaded().values()
                if entry.get("provider")
            }
            self._endpoints = list(seen)
        return self._endpoints

    def _loaded(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = self._load()
        return self._entries

    def append(self, key: str, request: dict[str, Any], completion: dict[str, Any]) -> None:
        line = {
            "request_hash": key,
            **request,
            "completion": completion,
            "recorded_at": now().isoformat().replace("+00:00", "Z"),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        if self._entries is not None:
            self._entries[key] = line
        self._endpoints = None

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise InputError(f"cassette not found: {self.path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read cassette {self.path}: {exc}") from None
        entries = {}
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                entry = None
            if not _is_entry(entry):
                raise InputError(
                    f"{self.path}:{number}: not a cassette line",
                    hint="each line is a JSON object with request_hash and completion.text",
                )
            entries[str(entry["request_hash"])] = entry
        return entries


def _is_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("request_hash"), str)
        and isinstance(entry.get("completion"), dict)
        and isinstance(entry["completion"].get("text"), str)
    )
