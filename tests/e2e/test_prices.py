"""``pipeline prices``: the table, its date, a config's overrides, and --json."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_errors import assert_clean_error
from tests.helpers import write


def test_prices_shows_the_dated_table_and_where_to_override(cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")

    result = cli("prices")

    assert result.exit_code == 0, result.output
    assert "2026-12-07" in result.output and "claude-sonnet-5-5" in result.output
    assert "prompt > 100k" in result.output  # Haiku 5.5's dearer tier
    assert "pricing:" in result.output
    table = [line for line in result.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and all(len(line) <= 80 for line in table)


def test_prices_json_merges_and_marks_a_configs_pricing(cli, tmp_path: Path) -> None:
    config = write(
        tmp_path / "pipeline.yaml",
        "name: p\npricing:\n  llama3.2: {input: 0, output: 0}\n"
        "steps:\n  - {id: a, kind: shell, command: [echo]}\n",
    )

    result = cli("prices", "-c", str(config), "--json")

    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert listing["models"]["llama3.2"]["from_config"] is True
    assert listing["models"]["claude-haiku-5-5"]["tiers"][0]["above_prompt_tokens"] == 100_000
    assert listing["models"]["claude-haiku-5-5"]["from_config"] is False


def test_prices_with_a_missing_config_says_so(cli, tmp_path: Path) -> None:
    result = cli("prices", "-c", str(tmp_path / "nope.yaml"))

    assert_clean_error(result, 2, "nope.yaml")
