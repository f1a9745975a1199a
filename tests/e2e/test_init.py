"""``pipeline init``: the starter validates and runs offline from the commands it prints,
nothing existing is overwritten without --force, and shipped examples copy out working."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from stepline.spec.schema import schema_text
from tests.helpers import run_pipeline_process

STARTER_FILES = {
    "pipeline-config.yaml",
    "pipeline-config.schema.json",
    "helpers.py",
    "input.txt",
    "example-cassette.jsonl",
    "prompts/summarise.md",
    "schemas/summary.json",
}


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def printed_commands(output: str) -> list[str]:
    """The commands ``init`` prints under "Next:", without their trailing comments."""
    after = output.split("\nNext:\n", 1)[1]
    return [line.split("#")[0].strip() for line in after.splitlines() if line.strip()]


def test_the_starter_runs_offline_end_to_end_from_the_printed_commands(tmp_path: Path) -> None:
    created = run_pipeline_process("init", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert files_under(tmp_path) == STARTER_FILES
    commands = printed_commands(created.stdout)
    assert commands[0] == "pipeline validate"
    offline = next(c for c in commands if "--replay" in c)

    validated = run_pipeline_process("validate", cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    assert "OK (my-pipeline, 3 steps)" in validated.stdout

    args = shlex.split(offline)[1:]  # drop "pipeline"; the env has no API key
    ran = run_pipeline_process(*args, "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert result["status"] == "completed"
    assert [s["status"] for s in result["steps"]] == ["completed"] * 3
    report = json.loads((Path(result["run_dir"]) / "steps" / "03-report.json").read_text())
    assert report.startswith("# Sprint 14 retro")
    assert "- Add a certificate expiry check to CI" in report


def test_the_starter_config_points_at_its_schema_which_is_current(cli: Any, tmp_path: Path):
    assert cli("init", "new").exit_code == 0
    config = (tmp_path / "new" / "pipeline-config.yaml").read_text()
    assert config.splitlines()[0] == "# yaml-language-server: $schema=pipeline-config.schema.json"
    assert (tmp_path / "new" / "pipeline-config.schema.json").read_text() == schema_text()


def test_init_refuses_to_overwrite_and_lists_the_files(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("mine = True\n")
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "summarise.md").write_text("my prompt\n")

    refused = cli("init")
    assert refused.exit_code == 2
    assert "helpers.py" in refused.stderr and "prompts/summarise.md" in refused.stderr
    assert "--force" in refused.stderr
    assert "Traceback" not in refused.output
    assert files_under(tmp_path) == {"helpers.py", "prompts/summarise.md"}  # nothing written
    assert (tmp_path / "helpers.py").read_text() == "mine = True\n"

    forced = cli("init", "--force")
    assert forced.exit_code == 0
    assert files_under(tmp_path) == STARTER_FILES
    assert "def clean_text" in (tmp_path / "helpers.py").read_text()


def test_init_into_a_file_is_one_message(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    result = cli("init", "taken")
    assert result.exit_code == 2
    assert "is a file" in result.stderr


def test_example_notes_to_backlog_copies_a_config_that_validates(tmp_path: Path) -> None:
    created = run_pipeline_process("init", "--example", "notes-to-backlog", "nb", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    copied = tmp_path / "nb"
    config = (copied / "pipeline-config.yaml").read_text()  # the default name: no -c needed
    assert config.splitlines()[0] == "# yaml-language-server: $schema=pipeline-config.schema.json"
    assert (copied / "pipeline-config.schema.json").is_file()
    assert "__pycache__" not in str(files_under(copied))
    source = Path(__file__).resolve().parents[2] / "configs" / "notes-to-backlog"
    renamed = {"pipeline.yaml": "pipeline-config.yaml"}
    assert files_under(copied) - {"pipeline-config.schema.json"} == {
        renamed.get(f, f) for f in files_under(source) if "__pycache__" not in f
    }
    validated = run_pipeline_process("validate", cwd=copied)
    assert validated.returncode == 0, validated.stderr
    assert "notes-to-backlog" in validated.stdout
    commands = printed_commands(created.stdout)
    assert commands[:3] == [
        "cd nb",
        "pipeline validate",
        "pipeline run meeting-notes.txt --replay demo-cassette.jsonl",
    ]
    assert "pipeline run meeting-notes.txt" in commands[3:]  # the one that needs a key, last
    assert not any("configs/" in command or "-c" in command.split() for command in commands)


def test_an_examples_printed_offline_command_runs_in_the_copy(tmp_path: Path) -> None:
    created = run_pipeline_process("init", "--example", "ticket-triage", "tt", cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    offline = next(c for c in printed_commands(created.stdout) if "--replay" in c)

    ran = run_pipeline_process(*shlex.split(offline)[1:], "--json", cwd=tmp_path / "tt")

    assert ran.returncode == 0, ran.stderr  # the env has no API key: replies are replayed
    result = json.loads(ran.stdout)
    assert result["status"] == "completed"
    assert (tmp_path / "tt" / "triage.sqlite").is_file()


def test_an_example_without_llm_steps_prints_its_run_command(cli: Any, tmp_path: Path) -> None:
    created = cli("init", "--example", "action-items", "ai", "--json")
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["next"] == [
        "cd ai",
        "pipeline validate",
        "pipeline run meeting-notes.txt",
    ]


def test_unknown_example_suggests_and_list_names_them(cli: Any, tmp_path: Path) -> None:
    typo = cli("init", "--example", "notes-to-bakclog")
    assert typo.exit_code == 2
    assert 'did you mean "notes-to-backlog"' in typo.stderr
    assert files_under(tmp_path) == set()
    listed = cli("init", "--list")
    assert listed.exit_code == 0
    assert {"notes-to-backlog", "action-items"} <= set(listed.stdout.split())
