"""Hostile and broken configs, run ids and work folders, through the real command.

Each case must end in one readable message naming what is wrong, a non-zero exit and no
traceback, before anything is written; and nothing a config, a run id or a step id says may
create a path outside the run's folder or run code the config did not name.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_errors import assert_clean_error
from tests.helpers import run_pipeline_process, write

SHELL_CONFIG = """
name: hostile
steps:
  - id: first
    kind: shell
    command: ["echo", "one"]
"""


@pytest.fixture
def shell_run(cli, tmp_path: Path) -> Path:
    """A completed run ``good`` of a one-step shell pipeline; returns the work folder."""
    write(tmp_path / "in.txt", "input")
    write(tmp_path / "pipeline-config.yaml", SHELL_CONFIG)
    assert cli("run", "in.txt", "--run-id", "good").exit_code == 0
    return tmp_path / ".pipeline"


def entries_outside(tmp_path: Path, before: set[Path]) -> set[Path]:
    """Paths that appeared in the test folder's parent, i.e. outside the test's own folder."""
    return set(tmp_path.parent.iterdir()) - before


# --------------------------------------------------------------------------------------------
# Run ids


BAD_RUN_IDS = {
    "parent": "../x",
    "dotdot": "..",
    "dot": ".",
    "absolute": "/etc",
    "separator": "a/b",
    "space": "a b",
    "nul": "a\x00b",
    "too-long": "r" * 101,
    "hidden": ".hidden",
    "removal-name": ".removing-x",
    "option-like": "-x",
    "newline": "run\n",
}


@pytest.mark.parametrize("run_id", BAD_RUN_IDS.values(), ids=BAD_RUN_IDS.keys())
@pytest.mark.parametrize("command", ["resume", "show"])
def test_an_unsafe_run_id_is_refused_by_every_command(cli, shell_run: Path, command, run_id):
    result = cli(command, "--", run_id)

    assert_clean_error(result, 2, "invalid run id", "starting with a letter, a digit or _")


@pytest.mark.parametrize("run_id", BAD_RUN_IDS.values(), ids=BAD_RUN_IDS.keys())
def test_an_unsafe_run_id_for_a_new_run_creates_nothing(cli, tmp_path: Path, run_id):
    write(tmp_path / "in.txt", "input")
    write(tmp_path / "pipeline-config.yaml", SHELL_CONFIG)
    before = set(tmp_path.parent.iterdir())

    result = cli("run", "in.txt", "--run-id", run_id)

    assert_clean_error(result, 2, "invalid run id")
    assert not (tmp_path / ".pipeline").exists()
    assert entries_outside(tmp_path, before) == set()


def test_the_longest_allowed_run_id_works(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "input")
    write(tmp_path / "pipeline-config.yaml", SHELL_CONFIG)
    run_id = "r" * 100

    assert cli("run", "in.txt", "--run-id", run_id).exit_code == 0
    assert cli("show", run_id).exit_code == 0
    assert (tmp_path / ".pipeline" / run_id / "state.json").is_file()


def test_show_step_with_a_path_is_an_unknown_step(cli, shell_run: Path):
    result = cli("show", "good", "--step", "../../etc/passwd")

    assert_clean_error(result, 2, "../../etc/passwd")
    assert "root:" not in result.output


# --------------------------------------------------------------------------------------------
# --workdir


@pytest.mark.parametrize(
    ("workdir", "message"),
    [
        ("in.txt", "work folder in.txt is not a folder"),
        ("in.txt/runs", "is under in.txt, which is not a folder"),
        ("/dev/null", "work folder /dev/null is not a folder"),
        ("x" * 300, "over 255 bytes"),
        ("runs\x00/x", "embedded null byte"),
    ],
    ids=["file", "under-a-file", "device", "long-name", "nul"],
)
@pytest.mark.parametrize("command", [["run", "in.txt"], ["list"], ["show", "good"]])
def test_an_unusable_workdir_is_refused(cli, tmp_path: Path, command, workdir, message):
    write(tmp_path / "in.txt", "input")
    write(tmp_path / "pipeline-config.yaml", SHELL_CONFIG)

    result = cli(*command, "--workdir", workdir)

    assert_clean_error(result, 2, message)
    assert (tmp_path / "in.txt").read_text() == "input"


def test_workdir_from_the_environment_is_checked_too(cli, tmp_path: Path, monkeypatch):
    write(tmp_path / "in.txt", "input")
    monkeypatch.setenv("PIPELINE_WORKDIR", "in.txt")

    assert_clean_error(cli("list"), 2, "work folder in.txt is not a folder", "PIPELINE_WORKDIR")


@pytest.mark.parametrize("workdir", ["../elsewhere", "{absolute}"], ids=["relative-up", "absolute"])
def test_a_workdir_anywhere_is_the_users_choice(cli, tmp_path: Path, workdir: str):
    """The work folder is chosen by the user like --record's file; only run ids are confined."""
    target = tmp_path / "runs" if workdir == "{absolute}" else tmp_path.parent / "elsewhere"
    write(tmp_path / "in.txt", "input")
    write(tmp_path / "pipeline-config.yaml", SHELL_CONFIG)

    result = cli("run", "in.txt", "--run-id", "r1", "--workdir", str(target))

    assert result.exit_code == 0, result.output
    assert (target / "r1" / "steps" / "01-first.json").is_file()


# --------------------------------------------------------------------------------------------
# Step ids and item keys never become paths outside the run


@pytest.mark.parametrize("step_id", ["../evil", "a/b", "/abs", ".hidden", "x" * 65, "A\x00"])
def test_a_step_id_that_could_be_a_path_is_a_config_error(cli, tmp_path: Path, step_id):
    write(tmp_path / "in.txt", "input")
    config = {"name": "ids", "steps": [{"id": step_id, "kind": "shell", "command": ["true"]}]}
    (tmp_path / "pipeline-config.yaml").write_text(json.dumps(config), encoding="utf-8")

    result = cli("run", "in.txt")

    assert_clean_error(result, 2, "pipeline-config.yaml:1", "id")
    assert not (tmp_path / ".pipeline").exists()


def test_item_keys_that_look_like_paths_stay_data(cli, tmp_path: Path):
    keys = ["../../escape", "/etc/passwd", "a/b", "..", "con\x01trol"]
    write(tmp_path / "in.jsonl", "\n".join(json.dumps({"k": key}) for key in keys) + "\n")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: keys
        steps:
          - id: each
            kind: shell
            for_each: input.records
            item_key: "{{ item.k }}"
            command: ["printf", "%s", "{{ item_key }}"]
        """,
    )
    before = set(tmp_path.parent.iterdir())

    result = cli("run", "in.jsonl", "--run-id", "k", "--json")

    assert result.exit_code == 0, result.output
    run = tmp_path / ".pipeline" / "k"
    assert json.loads((run / "steps" / "01-each.json").read_text()) == keys
    inside = {path.relative_to(run).parts[0] for path in run.rglob("*")}
    assert inside <= {"state.json", "config.yaml", "input", "steps", "events.jsonl"} | {
        "items.sqlite",
        "items.sqlite-wal",
        "items.sqlite-shm",
        ".lock",
        "processes",  # noted process groups (docs/state.md), there when a command outlived its note
    }
    assert entries_outside(tmp_path, before) == set()
    assert not (tmp_path / "escape").exists()


# --------------------------------------------------------------------------------------------
# YAML


@pytest.mark.parametrize(
    ("yaml_text", "tag"),
    [
        (
            "name: x\nsteps: !!python/object/apply:os.system ['touch pwned']\n",
            "!!python/object/apply",
        ),
        ("name: !!python/name:os.system\nsteps: []\n", "!!python/name:os.system"),
        ("name: !!python/object/new:os.system ['touch pwned']\nsteps: []\n", "!!python/object/new"),
        ("name: x\n!!python/name:os.system : 1\nsteps: []\n", "!!python/name:os.system"),
        ("name: !custom x\nsteps: []\n", "!custom"),
    ],
    ids=["apply", "name", "new", "as-a-key", "custom"],
)
def test_yaml_tags_that_build_objects_are_refused(cli, tmp_path: Path, yaml_text: str, tag: str):
    write(tmp_path / "pipeline-config.yaml", yaml_text)

    result = cli("validate")

    assert_clean_error(result, 2, f"the YAML tag {tag}", "is not allowed", "pipeline-config.yaml:")
    assert not (tmp_path / "pwned").exists()


def test_a_python_tag_in_a_schema_file_is_refused(cli, tmp_path: Path):
    write(tmp_path / "schema.yaml", "type: !!python/object/apply:os.system ['touch pwned']\n")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: schema
        llm: {model: m}
        steps:
          - id: ask
            kind: llm
            prompt: hi
            schema_file: schema.yaml
        """,
    )

    result = cli("validate")

    assert_clean_error(result, 2, 'step "ask"', "schema.yaml", "!!python/object/apply:os.system")
    assert not (tmp_path / "pwned").exists()


def test_a_merge_key_bomb_is_refused_quickly(cli, tmp_path: Path):
    levels = ["a: &a {" + ", ".join(f"k{i}: {i}" for i in range(10)) + "}"]
    for name, previous in zip("bcdefgh", "abcdefg", strict=True):
        levels.append(f"{name}: &{name} {{<<: [" + ", ".join([f"*{previous}"] * 10) + "]}")
    write(tmp_path / "pipeline-config.yaml", "\n".join(levels) + "\nname: bomb\nsteps: []\n")

    result = cli("validate")

    assert_clean_error(result, 2, "expands to more than 100,000 values")


def test_merge_keys_of_a_reasonable_size_still_work(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "input")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: merged
        steps:
          - &base {id: one, kind: shell, command: ["echo", "1"]}
          - {<<: *base, id: two, command: ["echo", "2"]}
        """,
    )

    result = cli("run", "in.txt", "--run-id", "m")

    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / ".pipeline/m/steps/02-two.json").read_text()) == 2


@pytest.mark.parametrize("opening", ["[", "{a: "], ids=["lists", "mappings"])
def test_deeply_nested_yaml_is_refused_without_a_traceback(cli, tmp_path: Path, opening: str):
    closing = "]" if opening == "[" else "}"
    nested = opening * 5000 + ("" if opening == "[" else "1") + closing * 5000
    write(tmp_path / "pipeline-config.yaml", f"name: deep\nsteps: {nested}\n")

    result = cli("validate")

    assert_clean_error(result, 2, "pipeline-config.yaml:2", "nest more than 100 levels")


def test_a_config_that_never_ends_is_refused(cli):
    assert_clean_error(cli("validate", "-c", "/dev/zero"), 2, "is larger than 1024 KiB")


def test_an_oversized_prompt_file_is_refused(cli, tmp_path: Path):
    with (tmp_path / "prompt.md").open("wb") as handle:
        handle.truncate(8 * 1024 * 1024 + 1)
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: big-prompt
        llm: {model: m}
        steps:
          - id: ask
            kind: llm
            prompt_file: prompt.md
        """,
    )

    result = cli("validate")

    assert_clean_error(result, 2, 'step "ask"', "prompt.md is larger than 8192 KiB", ":6")


def test_a_prompt_file_that_is_not_utf8_names_the_file_and_line(cli, tmp_path: Path):
    (tmp_path / "prompt.md").write_bytes(b"line one\nline \xff two\n")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: latin
        llm: {model: m}
        steps:
          - id: ask
            kind: llm
            prompt_file: prompt.md
        """,
    )

    assert_clean_error(
        cli("validate"), 2, "prompt.md is not UTF-8 text (line 2", "save it as UTF-8"
    )


def test_a_config_that_is_not_utf8_is_refused(cli, tmp_path: Path):
    (tmp_path / "pipeline-config.yaml").write_bytes(b"name: caf\xe9\nsteps: []\n")

    assert_clean_error(cli("validate"), 2, "is not UTF-8 text (line 1, byte 9)")


# --------------------------------------------------------------------------------------------
# Shell steps never go through a shell


HOSTILE_TEXT = (
    "x; touch pwned-semicolon && touch pwned-and | touch pwned-pipe "
    "$(touch pwned-sub) `touch pwned-tick` > pwned-redirect; rm -rf ."
)


def test_template_values_with_shell_syntax_stay_one_argument(cli, tmp_path: Path):
    write(tmp_path / "in.txt", HOSTILE_TEXT)
    write(tmp_path / "argv.py", "import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: no-shell
        vars: {script: argv.py}
        steps:
          - id: as-list
            kind: shell
            command: ["python3", "{{ vars.script }}", "{{ input.text }}"]
          - id: as-string
            kind: shell
            command: python3 {{ vars.script }} {{ input.text }} "$HOME" *.txt
        """,
    )

    result = cli("run", "in.txt", "--run-id", "s")

    assert result.exit_code == 0, result.output
    steps = tmp_path / ".pipeline" / "s" / "steps"
    assert json.loads((steps / "01-as-list.json").read_text()) == [HOSTILE_TEXT]
    assert json.loads((steps / "02-as-string.json").read_text()) == [
        HOSTILE_TEXT,
        "$HOME",
        "*.txt",
    ]
    assert sorted(path.name for path in tmp_path.glob("pwned*")) == []


def test_a_string_command_with_shell_operators_runs_one_program(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "input")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: operators
        steps:
          - id: one
            kind: shell
            command: echo a; touch pwned && touch pwned2 | cat > pwned3
        """,
    )

    result = cli("run", "in.txt", "--run-id", "o")

    assert result.exit_code == 0, result.output
    output = json.loads((tmp_path / ".pipeline/o/steps/01-one.json").read_text())
    assert output == "a; touch pwned && touch pwned2 | cat > pwned3"
    assert list(tmp_path.glob("pwned*")) == []


def test_an_explicit_sh_c_is_the_users_choice(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "input")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: explicit-shell
        steps:
          - id: one
            kind: shell
            command: ["sh", "-c", "echo a && touch made-by-sh"]
        """,
    )

    assert cli("run", "in.txt").exit_code == 0
    assert (tmp_path / "made-by-sh").exists()


# --------------------------------------------------------------------------------------------
# Python steps load module:callable from the config's folder or installed packages only


PYTHON_CONFIG = """
name: modules
steps:
  - id: call
    kind: python
    function: {function}
"""


@pytest.mark.parametrize(
    "function", ["../helpers:f", "/tmp/helpers:f", ".helpers:f", "helpers", "os.system('x'):f"]
)
def test_a_function_that_is_not_module_colon_callable_is_a_config_error(
    cli, tmp_path: Path, function: str
):
    write(tmp_path / "pipeline-config.yaml", PYTHON_CONFIG.format(function=json.dumps(function)))

    assert_clean_error(cli("validate"), 2, "pipeline-config.yaml:5", 'step 1 ("call") key function')


def test_a_module_in_the_current_folder_is_not_imported(tmp_path: Path):
    """``python -m stepline`` puts the current folder on sys.path; a ``helpers.py`` lying there
    (not in the config's folder, not installed) must not be picked up."""
    config_folder = tmp_path / "pipeline"
    write(config_folder / "pipeline-config.yaml", PYTHON_CONFIG.format(function="stray:call"))
    write(config_folder / "in.txt", "input")
    work = tmp_path / "work"
    write(work / "stray.py", "def call(ctx):\n    open('pwned', 'w').close()\n    return 1\n")

    result = run_pipeline_process(
        "run",
        str(config_folder / "in.txt"),
        "-c",
        str(config_folder / "pipeline-config.yaml"),
        cwd=work,
    )

    assert result.returncode == 2, result.stderr
    assert 'cannot import module "stray"' in result.stderr
    assert "Traceback" not in result.stderr
    assert not (work / "pwned").exists()


def test_a_module_next_to_the_config_and_an_installed_one_are_imported(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "input")
    write(tmp_path / "helpers.py", "def f(ctx):\n    return 'local'\n")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: both
        steps:
          - id: local
            kind: python
            function: helpers:f
          - id: installed
            kind: python
            function: json:dumps
        """,
    )

    result = cli("run", "in.txt", "--run-id", "b")

    assert result.exit_code == 1  # json.dumps(ctx) is not serialisable: imported, then called
    steps = tmp_path / ".pipeline" / "b" / "steps"
    assert json.loads((steps / "01-local.json").read_text()) == "local"
    assert "TypeError: Object of type StepContext is not JSON serializable" in result.output


# --------------------------------------------------------------------------------------------
# Known gap, outside this change's files


@pytest.mark.parametrize("field", ["output", "input_copy"])
def test_paths_in_a_tampered_state_json_never_leave_the_run_folder(cli, tmp_path: Path, field):
    write(tmp_path / "in.txt", "input")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: tampered
        steps:
          - id: first
            kind: shell
            command: ["echo", "one"]
          - id: second
            kind: shell
            command: ["echo", "got {{ steps.first }} {{ input.text }}"]
        """,
    )
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    write(tmp_path / "secret.json", '"SECRET"')
    state_path = tmp_path / ".pipeline" / "r" / "state.json"
    state = json.loads(state_path.read_text())
    if field == "output":
        state["steps"][0]["output"] = "../../secret.json"
    else:
        state["input_copy"] = "../../secret.json"
    state["steps"][1]["status"] = "failed"
    state_path.write_text(json.dumps(state))

    result = cli("resume", "r")

    second = (tmp_path / ".pipeline" / "r" / "steps" / "02-second.json").read_text()
    assert "SECRET" not in second
    assert_clean_error(result, 2, "state.json")
