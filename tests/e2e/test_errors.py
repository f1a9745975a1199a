"""Bad input gets one clear message and the right exit code, and loses nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.pipelines import REPLY, calls, write_backlog_pipeline
from tests.fakes import ErrorReply, FakeLLMServer, Reply
from tests.helpers import write

SHELL_PIPELINE = """
name: shells
steps:
  - id: first
    kind: shell
    command: echo one
  - id: second
    kind: shell
    command: echo "{{ steps.first }}"
"""


def assert_clean_error(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


@pytest.fixture
def shell_pipeline(tmp_path: Path) -> Path:
    write(tmp_path / "in.txt", "input")
    return write(tmp_path / "pipeline-config.yaml", SHELL_PIPELINE)


def test_malformed_yaml_names_file_line_and_column(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "x")
    write(tmp_path / "pipeline-config.yaml", "name: x\nsteps:\n  - id: [a\n")

    result = cli("run", "in.txt")

    assert_clean_error(result, 2, "pipeline-config.yaml:4:1", "invalid YAML")
    assert not (tmp_path / ".pipeline").exists()


def test_unknown_key_suggests_the_closest(cli, shell_pipeline: Path):
    shell_pipeline.write_text(SHELL_PIPELINE.replace("command: echo one", "comand: echo one"))

    result = cli("validate")

    assert_clean_error(result, 2, 'unknown key "comand"; did you mean "command"?', ":6:")
    assert "required" not in result.output


def test_reference_to_a_later_step_is_found_before_step_one(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "x")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: bad-ref
        steps:
          - id: first
            kind: shell
            command: ["echo", "{{ steps.second }}"]
          - id: second
            kind: shell
            command: echo two
        """,
    )

    result = cli("run", "in.txt")

    assert_clean_error(result, 2, 'step "first" uses steps.second, but "second" runs later')
    assert not (tmp_path / ".pipeline").exists()


def test_unknown_step_reference_suggests(cli, shell_pipeline: Path):
    shell_pipeline.write_text(SHELL_PIPELINE.replace("steps.first", "steps.frist"))

    assert_clean_error(cli("validate"), 2, 'no step "frist"; did you mean "first"?')


def test_missing_input_file(cli, shell_pipeline: Path, tmp_path: Path):
    result = cli("run", "nope.txt")

    assert_clean_error(result, 2, "input file not found: nope.txt")
    assert not (tmp_path / ".pipeline").exists()


def test_missing_config_file(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "x")

    assert_clean_error(cli("run", "in.txt"), 2, "config file not found", "pipeline-config.yaml")


def test_config_from_environment(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write(tmp_path / "in.txt", "x")
    write(tmp_path / "configs" / "shells.yaml", SHELL_PIPELINE)
    monkeypatch.setenv("PIPELINE_CONFIG", "configs/shells.yaml")

    assert cli("run", "in.txt").exit_code == 0


def test_unknown_run_id_lists_the_nearest(cli, shell_pipeline: Path):
    assert cli("run", "in.txt", "--run-id", "nightly-2026").exit_code == 0

    result = cli("resume", "nightly-2025")

    assert_clean_error(result, 2, 'no run "nightly-2025"', "did you mean: nightly-2026")
    assert_clean_error(cli("show", "nightly-2025"), 2, "nightly-2026")


@pytest.mark.parametrize("run_id", ["..", "a/b", "../escape", "x" * 101])
def test_invalid_run_id(cli, shell_pipeline: Path, tmp_path: Path, run_id: str):
    result = cli("run", "in.txt", "--run-id", run_id)

    assert_clean_error(result, 2, "invalid run id")
    assert not (tmp_path / ".pipeline").exists()


def test_function_that_cannot_be_imported(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "x")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: imports
        steps:
          - id: count
            kind: python
            function: helperz:count
        """,
    )

    result = cli("run", "in.txt")

    assert_clean_error(result, 2, 'step "count": cannot import module "helperz"')
    assert not (tmp_path / ".pipeline").exists()


def test_function_missing_from_module_suggests(cli, tmp_path: Path):
    write(tmp_path / "helpers.py", "def count_items(ctx):\n    return 1\n")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: imports
        steps:
          - id: count
            kind: python
            function: helpers:count_itmes
        """,
    )

    assert_clean_error(cli("validate"), 2, 'did you mean "count_items"?')


def test_missing_api_key_names_the_variable(cli, tmp_path: Path):
    write_backlog_pipeline(tmp_path)

    result = cli("run", "notes.txt")

    assert_clean_error(result, 2, "ANTHROPIC_API_KEY is not set")
    assert not (tmp_path / ".pipeline").exists()


def test_debug_shows_the_traceback(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "x")

    result = cli("run", "in.txt", "--debug")

    assert result.exit_code == 2
    assert "Traceback" in result.output


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--set", "novalue"], "expected NAME=VALUE"),
        (["--from-step", "secnod"], 'did you mean "second"?'),
        (["--from-step", "9"], "there is no step 9"),
        (["--from-step", "2", "--to-step", "1"], "--to-step comes before --from-step"),
    ],
)
def test_bad_command_line_values(cli, shell_pipeline: Path, args: list[str], fragment: str):
    assert_clean_error(cli("run", "in.txt", *args), 2, fragment)


def test_model_reply_that_is_not_json_fails_keeps_it_and_resumes(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_backlog_pipeline(tmp_path)
    chatty = [Reply(text=f"Sure! Here are the items ({n}): fix login.") for n in (1, 2, 3)]
    fake_llm.script(*chatty)

    failed = cli("run", "notes.txt", "--run-id", "r")

    assert_clean_error(
        failed, 1, 'step "extract"', "not JSON", "after 2 repair attempts", "01-extract.failed.txt"
    )
    kept = (tmp_path / ".pipeline" / "r" / "steps" / "01-extract.failed.txt").read_text()
    assert "----- reply 1 of 3 -----\nSure! Here are the items (1)" in kept
    assert "----- reply 3 of 3 -----\nSure! Here are the items (3)" in kept
    assert len(fake_llm.requests) == 3

    fake_llm.script(Reply(text=REPLY))
    assert cli("resume", "r").exit_code == 0
    assert calls(tmp_path) == ["count", "flaky", "report"]


def test_reply_cut_off_at_max_tokens_says_to_raise_it(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text='[{"title": "Fix', stop_reason="max_tokens"))

    assert_clean_error(cli("run", "notes.txt"), 1, "cut off at max_tokens", "raise max_tokens")


def test_provider_rejecting_the_key(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_backlog_pipeline(tmp_path)
    fake_llm.script(ErrorReply(401, "authentication_error", "invalid x-api-key"))

    result = cli("run", "notes.txt")

    assert_clean_error(result, 1, "Anthropic API 401: invalid x-api-key", "ANTHROPIC_API_KEY")


def test_provider_down_keeps_completed_work(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    write(tmp_path / "in.txt", "x")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: down
        llm: {model: m, retry: {attempts: 2, initial_delay: 1ms}}
        steps:
          - id: prepare
            kind: shell
            command: echo ready
          - id: ask
            kind: llm
            prompt: "{{ steps.prepare }}"
        """,
    )

    result = cli("run", "in.txt", "--run-id", "d")

    assert_clean_error(result, 1, 'step "ask"', "cannot connect")
    assert json.loads((tmp_path / ".pipeline/d/steps/01-prepare.json").read_text()) == "ready"


def test_shell_failure_carries_the_stderr_tail(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "x")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: shell-fails
        steps:
          - id: boom
            kind: shell
            command: ["python3", "-c", "import sys; sys.stderr.write('disk on fire'); sys.exit(3)"]
        """,
    )

    assert_clean_error(cli("run", "in.txt"), 1, "exited with code 3", "disk on fire")


def test_shell_timeout_kills_the_process_group(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "x")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: slow
        steps:
          - id: slow
            kind: shell
            command: ["sh", "-c", "sleep 30 & echo $! > child.pid; wait"]
            timeout: 500ms
        """,
    )

    result = cli("run", "in.txt")

    assert_clean_error(result, 1, 'step "slow": timed out after 0.5s')
    child = int((tmp_path / "child.pid").read_text())
    assert not _alive(child)


def test_non_critical_failure_is_recorded_and_the_run_continues(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "x")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: tolerant
        steps:
          - id: optional
            kind: shell
            command: "false"
            critical: false
          - id: disabled
            kind: shell
            command: echo never
            enabled: false
          - id: last
            kind: shell
            command: echo done
        """,
    )

    result = cli("run", "in.txt", "--run-id", "t", "--json")

    assert result.exit_code == 0
    statuses = [step["status"] for step in json.loads(result.stdout)["steps"]]
    assert statuses == ["failed", "skipped", "completed"]


def test_python_step_returning_a_set_fails_clearly(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "x")
    write(tmp_path / "helpers.py", "def bad(ctx):\n    return {1, 2}\n")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: bad-return
        steps:
          - id: bad
            kind: python
            function: helpers:bad
        """,
    )

    assert_clean_error(cli("run", "in.txt"), 1, "not JSON-serialisable")


def _alive(pid: int) -> bool:
    import os
    import time

    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.05)
    return True


def test_yaml_alias_bomb_is_refused_quickly(cli, tmp_path: Path):
    levels = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for name, previous in zip("bcdefg", "abcdef", strict=True):
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]")
    write(tmp_path / "pipeline-config.yaml", "\n".join(levels) + "\nname: bomb\nsteps: []\n")

    result = cli("validate")

    assert_clean_error(result, 2, "expands to more than 100,000 values", "aliases")


def test_oversized_config_is_refused(cli, tmp_path: Path):
    filler = "# " + "x" * 1000 + "\n"
    write(tmp_path / "pipeline-config.yaml", "name: big\n" + filler * 1100 + "steps: []\n")

    assert_clean_error(cli("validate"), 2, "is larger than 1024 KiB", "prompt_file")
