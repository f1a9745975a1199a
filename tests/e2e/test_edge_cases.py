"""Edge cases found in review: each once left a wrong state or an unclear message."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.e2e.test_errors import assert_clean_error
from tests.helpers import write

TWO_SHELLS = """
name: two
vars: {word: hello}
steps:
  - id: first
    kind: shell
    command: echo "{{ vars.word }}"
  - id: second
    kind: shell
    command: echo "{{ steps.first }} again"
"""


@pytest.fixture
def two_shells(cli, tmp_path: Path) -> Path:
    write(tmp_path / "in.txt", "x")
    write(tmp_path / "pipeline-config.yaml", TWO_SHELLS)
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    return tmp_path / ".pipeline" / "r"


def test_snapshot_resume_can_be_repeated(cli, two_shells: Path, tmp_path: Path):
    (tmp_path / "pipeline-config.yaml").unlink()

    assert cli("resume", "r", "--from-step", "second").exit_code == 0
    assert cli("resume", "r", "--from-step", "second").exit_code == 0
    state = json.loads((two_shells / "state.json").read_text())
    assert state["config_path"] == str(tmp_path / "pipeline-config.yaml")


def test_resume_option_takes_set_values(cli, two_shells: Path):
    result = cli("--resume", "r", "--set", "word=bye")

    assert result.exit_code == 0, result.output
    assert json.loads((two_shells / "steps" / "02-second.json").read_text()) == "bye again"


def test_broken_hand_edit_is_no_obstacle_to_from_step(cli, two_shells: Path):
    (two_shells / "steps" / "02-second.json").write_text("{broken")

    assert_clean_error(cli("resume", "r"), 2, "02-second.json is not valid JSON")
    assert cli("resume", "r", "--from-step", "second").exit_code == 0


def test_a_step_that_fails_again_no_longer_points_at_its_old_output(
    cli, two_shells: Path, tmp_path: Path
):
    config = tmp_path / "pipeline-config.yaml"
    config.write_text(TWO_SHELLS.replace('echo "{{ steps.first }} again"', '"false"'))

    assert cli("resume", "r").exit_code == 1

    assert_clean_error(cli("show", "r", "--step", "second"), 2, "has no output")
    history = [path.name for path in (two_shells / "history").iterdir()]
    assert not any(name.startswith("02-second") for name in history)  # not replaced yet
    assert (two_shells / "steps" / "02-second.json").exists()  # the old file is still there


def test_template_error_at_run_time_names_the_step_once(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "x")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: runtime-template
        steps:
          - id: first
            kind: shell
            command: echo plain text
          - id: second
            kind: shell
            command: echo "{{ steps.first.nothing }}"
        """,
    )

    result = cli("run", "in.txt")

    assert_clean_error(result, 1, 'step "second": command: template error')
    assert all(line.count('step "second"') <= 1 for line in result.output.splitlines())
    assert result.stderr.count('step "second"') == 1


def test_python_step_with_integer_keys_is_stored_as_json_reads_it(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "x")
    write(tmp_path / "helpers.py", "def mixed(ctx):\n    return {1: 'a', 'b': 2}\n")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: keys
        steps:
          - id: mixed
            kind: python
            function: helpers:mixed
          - id: after
            kind: shell
            command: echo "{{ steps.mixed['1'] }}"
        """,
    )

    result = cli("run", "in.txt", "--run-id", "k")

    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / ".pipeline/k/steps/02-after.json").read_text()) == "a"


def test_shell_cwd_that_is_not_a_folder(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "x")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: cwd
        steps:
          - id: here
            kind: shell
            command: pwd
            cwd: in.txt
        """,
    )

    assert_clean_error(cli("run", "in.txt"), 1, "is not a folder")


def test_disabled_python_step_need_not_be_importable(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "x")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: disabled
        steps:
          - id: later
            kind: python
            function: not_written_yet:work
            enabled: false
          - id: now
            kind: shell
            command: echo ok
        """,
    )

    assert cli("validate").exit_code == 0
    assert cli("run", "in.txt").exit_code == 0


def test_malformed_environment_variable_is_named(cli, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PIPELINE_NO_PAUSE", "maybe")

    assert_clean_error(cli("list"), 2, "PIPELINE_NO_PAUSE='maybe' is not valid")


def test_empty_api_key_counts_as_missing(cli, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "  ")
    write(tmp_path / "in.txt", "x")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: key
        llm: {model: m}
        steps:
          - id: ask
            kind: llm
            prompt: hi
        """,
    )

    assert_clean_error(cli("run", "in.txt"), 2, "ANTHROPIC_API_KEY is not set")


def test_run_files_are_readable_and_events_use_utc_z(cli, two_shells: Path):
    for name in ("state.json", "steps/01-first.json", "config.yaml"):
        mode = (two_shells / name).stat().st_mode
        assert mode & stat.S_IRUSR and mode & stat.S_IWUSR
        assert mode & stat.S_IRGRP or mode & 0o077 == 0  # follows the umask, never forced 0600
    first_event = json.loads((two_shells / "events.jsonl").read_text().splitlines()[0])
    assert first_event["time"].endswith("Z")


def test_unquoted_boolean_in_a_command_gets_a_yaml_hint(cli, tmp_path: Path):
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: yaml-boolean
        steps:
          - id: nope
            kind: shell
            command: false
        """,
    )

    assert_clean_error(cli("validate"), 2, "got a boolean where text belongs", "quote it")
