"""``--json`` on every command: results as JSON on stdout, and failures too.

A script that reads stdout gets either the command's result or ``{"error", "hint",
"exit_code"}``, never nothing; people still read the error on stderr.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer

from stepline.cli.app import app
from tests.helpers import write

CONFIG = """
name: tiny
steps:
  - {id: hello, kind: shell, command: ["echo", "hi"]}
"""


def commands(group: typer.Typer, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command of the CLI, sub-commands included, as its words."""
    found = [(*prefix, info.name or "") for info in group.registered_commands]
    for sub in group.registered_groups:
        assert sub.typer_instance is not None
        found += commands(sub.typer_instance, (*prefix, sub.name or ""))
    return found


@pytest.mark.parametrize("words", commands(app), ids=" ".join)
def test_every_command_takes_json(cli, words: tuple[str, ...]) -> None:
    assert "--json" in cli(*words, "--help").stdout


def test_validate_json(cli, tmp_path: Path) -> None:
    write(tmp_path / "pipeline-config.yaml", CONFIG)

    result = cli("validate", "--json")

    assert result.exit_code == 0
    assert json.loads(result.stdout) == {
        "config": "pipeline-config.yaml",
        "pipeline": "tiny",
        "steps": ["hello"],
        "ok": True,
    }


def test_init_json_lists_the_files_and_the_next_commands(cli, tmp_path: Path) -> None:
    result = cli("init", "new", "--json")

    assert result.exit_code == 0
    created = json.loads(result.stdout)
    assert created["directory"] == "new"
    assert all((tmp_path / "new" / name).is_file() for name in created["files"])
    assert created["next"][0] == "cd new"
    assert any(command.startswith("pipeline run") for command in created["next"])


def test_init_list_json(cli) -> None:
    listed = json.loads(cli("init", "--list", "--json").stdout)

    assert "notes-to-backlog" in listed["examples"]


def test_cache_clear_and_prune_json(cli) -> None:
    assert json.loads(cli("cache", "clear", "--json").stdout) == {"removed": 0}
    pruned = json.loads(cli("cache", "prune", "--older-than", "1d", "--json").stdout)
    assert pruned == {"removed": 0, "older_than": "1d"}


def test_schema_json_to_a_file_says_where(cli, tmp_path: Path) -> None:
    result = cli("schema", "-o", "schema.json", "--json")

    assert json.loads(result.stdout) == {"written": "schema.json"}
    assert json.loads((tmp_path / "schema.json").read_text())["title"]


@pytest.mark.parametrize(
    ("args", "exit_code", "words"),
    [
        (("validate", "--json"), 2, "pipeline-config.yaml"),
        (("show", "no-such-run", "--json"), 2, "no-such-run"),
        (("run", "missing.txt", "--json"), 2, "missing.txt"),
        (("init", "--example", "nope", "--json"), 2, "nope"),
    ],
    ids=["validate-no-config", "show-unknown-run", "run-missing-input", "init-unknown-example"],
)
def test_a_failure_under_json_is_json_on_stdout(
    cli, tmp_path: Path, args: tuple[str, ...], exit_code: int, words: str
) -> None:
    if args[0] == "run":
        write(tmp_path / "pipeline-config.yaml", CONFIG)

    result = cli(*args)

    assert result.exit_code == exit_code
    failure = json.loads(result.stdout)
    assert set(failure) == {"error", "hint", "exit_code"}
    assert failure["exit_code"] == exit_code and words in failure["error"]
    assert "error:" in result.stderr  # people still read it there


def test_without_json_a_failure_leaves_stdout_empty(cli) -> None:
    result = cli("show", "no-such-run")

    assert result.exit_code == 2 and result.stdout == ""


def test_help_lists_every_command_with_a_whole_summary(cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")

    shown = cli("--help").stdout.split("Commands:")[1]

    listed = [line.split()[0] for line in shown.splitlines() if line.strip()]
    assert set(listed) == {words[0] for words in commands(app)}
    assert "..." not in shown and all(len(line) <= 80 for line in shown.splitlines())
