"""Mistakes of a first hour found at load: by ``validate``, and by ``run`` before any folder.

A ``--set`` name nothing uses, a shell program that is not installed, YAML indented by hand
and values that do not fit a key's pattern: each is one message with the file, the line, the
step and what to do, exit code 2, and no run folder.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

import stepline
from stepline.errors import InputError
from stepline.spec.models import FUNCTION_PATTERN, STEP_ID_PATTERN
from tests.e2e.test_errors import assert_clean_error
from tests.helpers import write

# --------------------------------------------------------------------------------------------
# --set with a name nothing uses

TOP_K = """
name: top-k
vars: {top_k: 2}
steps:
  - id: show
    kind: shell
    command: ["echo", "top {{ vars.top_k }} for {{ vars.team }}"]
"""


@pytest.fixture
def top_k(tmp_path: Path) -> Path:
    write(tmp_path / "in.txt", "x")
    return write(tmp_path / "pipeline-config.yaml", TOP_K)


def test_validate_refuses_a_set_name_nothing_uses_with_a_did_you_mean(cli, top_k: Path):
    result = cli("validate", "--set", "team=ops", "--set", "topk=3")

    assert_clean_error(result, 2, "--set topk", 'did you mean "top_k"?', "pipeline-config.yaml")


def test_run_refuses_it_before_making_a_run_folder(cli, top_k: Path, tmp_path: Path):
    result = cli("run", "in.txt", "--set", "team=ops", "--set", "topk=3")

    assert_clean_error(result, 2, "--set topk", 'did you mean "top_k"?')
    assert not (tmp_path / ".pipeline").exists()
    # top_k is declared under vars:, team only read by a template: both are known
    fixed = cli("run", "in.txt", "--run-id", "r", "--set", "team=ops", "--set", "top_k=5")
    assert fixed.exit_code == 0, fixed.output
    output = tmp_path / ".pipeline/r/steps/01-show.json"
    assert json.loads(output.read_text()) == "top 5 for ops"


def test_dry_run_refuses_it(cli, top_k: Path):
    result = cli("run", "in.txt", "--dry-run", "--set", "team=ops", "--set", "topk=3")

    assert_clean_error(result, 2, "--set topk", 'did you mean "top_k"?')


def test_the_python_api_refuses_it(top_k: Path, tmp_path: Path):
    with pytest.raises(InputError) as caught:
        stepline.run(top_k, tmp_path / "in.txt", variables={"team": "ops", "topk": "3"})

    assert caught.value.exit_code == 2
    assert "--set topk" in caught.value.message
    assert not (tmp_path / ".pipeline").exists()


def test_a_template_reading_vars_as_a_whole_accepts_any_name(cli, tmp_path: Path):
    config = write(
        tmp_path / "pipeline-config.yaml",
        """
        name: all-vars
        steps:
          - id: show
            kind: shell
            command: ["echo", "{{ vars | tojson }}"]
        """,
    )

    assert cli("validate", "--set", "anything=1").exit_code == 0
    config.write_text(config.read_text().replace("vars | tojson", "vars.anything"))
    assert cli("validate", "--set", "anythign=1", "--set", "anything=1").exit_code == 2


PYTHON_VARS = """
name: python-vars
VARS
steps:
  - id: pick
    kind: python
    function: helpers:pick
"""


def test_a_python_step_reads_only_declared_names(cli, tmp_path: Path):
    """A Python step may read any name, so an undeclared one is most likely a typo: the hint
    says how to pass a new one on purpose."""
    write(tmp_path / "helpers.py", "def pick(ctx):\n    return ctx.vars.get('limit')\n")
    write(tmp_path / "in.txt", "x")
    config = write(tmp_path / "pipeline-config.yaml", PYTHON_VARS.replace("VARS", ""))

    refused = cli("run", "in.txt", "--set", "limit=4")

    assert_clean_error(refused, 2, "--set limit", "declare it under vars:")
    assert not (tmp_path / ".pipeline").exists()

    config.write_text(PYTHON_VARS.replace("VARS", "vars: {limit: 1}"))
    accepted = cli("run", "in.txt", "--run-id", "r", "--set", "limit=4")

    assert accepted.exit_code == 0, accepted.output
    assert json.loads((tmp_path / ".pipeline/r/steps/01-pick.json").read_text()) == "4"


def test_resume_refuses_a_new_set_name_nothing_uses(cli, top_k: Path, tmp_path: Path):
    assert cli("run", "in.txt", "--run-id", "r", "--set", "team=ops").exit_code == 0
    state = tmp_path / ".pipeline/r/state.json"
    before = state.read_text()

    result = cli("resume", "r", "--set", "topk=3")

    assert_clean_error(result, 2, "--set topk", 'did you mean "top_k"?')
    assert state.read_text() == before
    resumed = cli("resume", "r", "--set", "top_k=3")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(state.read_text())["vars"] == {"team": "ops", "top_k": "3"}


def test_resume_keeps_a_recorded_name_the_config_no_longer_uses(cli, top_k: Path, tmp_path: Path):
    """A run made before this check (or before an edit of the config) may hold a --set name
    nothing reads now: resuming it must go on working."""
    assert cli("run", "in.txt", "--run-id", "r", "--set", "team=ops").exit_code == 0
    state_path = tmp_path / ".pipeline/r/state.json"
    state = json.loads(state_path.read_text())
    state["vars"]["topk"] = "3"  # what a run made before this check could hold
    state_path.write_text(json.dumps(state))

    result = cli("resume", "r", "--from-step", "show")

    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------------------------
# A shell step whose program is not installed

SHELL = """
name: tools
steps:
  - id: first
    kind: shell
    command: echo one
  - id: fetch
    kind: shell
    COMMAND
"""


def shell_config(tmp_path: Path, command: str) -> Path:
    write(tmp_path / "in.txt", "x")
    return write(tmp_path / "pipeline-config.yaml", SHELL.replace("COMMAND", command))


def executable(path: Path, text: str = "#!/bin/sh\necho ran\n") -> Path:
    write(path, text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.parametrize(
    "command",
    ["command: no-such-tool-x1 --flag", 'command: ["no-such-tool-x1", "{{ steps.first }}"]'],
)
def test_a_program_not_on_path_is_a_config_error(cli, tmp_path: Path, command: str):
    shell_config(tmp_path, command)

    for result in (cli("validate"), cli("run", "in.txt")):
        assert_clean_error(
            result,
            2,
            "pipeline-config.yaml:8:",
            'step "fetch"',
            '"no-such-tool-x1" not found on PATH',
            "install it or fix command[0]",
        )
    assert not (tmp_path / ".pipeline").exists()


def test_a_missing_relative_program_is_a_config_error(cli, tmp_path: Path):
    shell_config(tmp_path, "cwd: tools\n    command: [./fetch.sh]")

    result = cli("run", "in.txt")

    assert_clean_error(result, 2, 'step "fetch"', "./fetch.sh", "not found", "cwd")
    assert not (tmp_path / ".pipeline").exists()
    # a relative program starts from the step's cwd, as the process does
    executable(tmp_path / "tools" / "fetch.sh")
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    assert json.loads((tmp_path / ".pipeline/r/steps/02-fetch.json").read_text()) == "ran"


def test_a_program_that_is_not_executable_is_a_config_error(cli, tmp_path: Path):
    shell_config(tmp_path, "command: [./fetch.sh]")
    write(tmp_path / "fetch.sh", "#!/bin/sh\necho ran\n")

    result = cli("validate")

    assert_clean_error(result, 2, 'step "fetch"', "./fetch.sh", "not executable", "chmod +x")


def test_a_bare_name_is_looked_up_on_the_steps_own_path(cli, tmp_path: Path):
    executable(tmp_path / "bin" / "fetch-tool")
    shell_config(tmp_path, f"env: {{PATH: '{tmp_path / 'bin'}'}}\n    command: fetch-tool")

    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0

    shell_config(tmp_path, f"env: {{PATH: '{tmp_path / 'none'}'}}\n    command: echo two")
    result = cli("validate")

    assert_clean_error(result, 2, 'step "fetch"', '"echo" not found on PATH', "env:")


def test_a_bare_name_in_a_relative_path_folder_starts_from_cwd(cli, tmp_path: Path):
    shell_config(tmp_path, f"env: {{PATH: 'bin{os.pathsep}/usr/bin'}}\n    command: fetch-tool")
    assert_clean_error(cli("validate"), 2, '"fetch-tool" not found on PATH')

    executable(tmp_path / "bin" / "fetch-tool")
    assert cli("validate").exit_code == 0


@pytest.mark.parametrize(
    "setting",
    [
        'command: ["{{ vars.tool }}"]\n    enabled: true',
        "enabled: false\n    command: no-such-tool-x1",
        "cwd: '{{ vars.where }}'\n    command: [./fetch.sh]",
        "env: {PATH: '{{ vars.path }}'}\n    command: no-such-tool-x1",
    ],
)
def test_templated_programs_and_disabled_steps_are_not_checked(cli, tmp_path: Path, setting: str):
    """Each is beside a step whose program is missing: that step alone is named."""
    config = shell_config(tmp_path, setting)
    text = config.read_text().replace("steps:", "vars: {tool: x, where: ., path: .}\nsteps:")
    config.write_text(text + "  - id: last\n    kind: shell\n    command: no-such-tool-x2\n")

    result = cli("validate")

    assert_clean_error(result, 2, 'step "last"', '"no-such-tool-x2" not found on PATH')


# --------------------------------------------------------------------------------------------
# YAML written by hand


def yaml_error(cli, tmp_path: Path, text: str):
    write(tmp_path / "in.txt", "x")
    (tmp_path / "pipeline-config.yaml").write_text(text)
    result = cli("run", "in.txt")
    assert not (tmp_path / ".pipeline").exists()
    return result


def test_a_key_indented_less_than_its_siblings(cli, tmp_path: Path):
    text = "name: x\nsteps:\n  - id: a\n    kind: shell\n   command: echo\n"

    result = yaml_error(cli, tmp_path, text)

    assert_clean_error(
        result, 2, "pipeline-config.yaml:5:4: invalid YAML", "indented differently", "same column"
    )


def test_a_list_item_key_at_the_dash(cli, tmp_path: Path):
    text = "name: x\nsteps:\n  - id: a\n  kind: shell\n"

    assert_clean_error(yaml_error(cli, tmp_path, text), 2, ":4:3:", "indented differently")


def test_a_line_indented_deeper_than_its_sibling(cli, tmp_path: Path):
    text = "name: x\nsteps:\n  - id: a\n    kind: shell\n      command: echo\n"

    result = yaml_error(cli, tmp_path, text)

    assert_clean_error(result, 2, ":5:", "indented deeper than the line before")


def test_a_colon_inside_a_plain_value_needs_quotes(cli, tmp_path: Path):
    text = "name: x\nsteps:\n  - id: a\n    kind: llm\n    prompt: Summarise: the text\n"

    result = yaml_error(cli, tmp_path, text)

    assert_clean_error(result, 2, ":5:", '": "', "quotes", 'prompt: "Summarise: the text"')


def test_a_tab_used_for_indentation(cli, tmp_path: Path):
    text = "name: x\nsteps:\n  - id: a\n\tkind: llm\n"

    assert_clean_error(yaml_error(cli, tmp_path, text), 2, ":4:1:", "tab", "spaces")


def test_an_unclosed_quote_names_where_it_opened(cli, tmp_path: Path):
    text = 'name: x\nsteps:\n  - id: a\n    kind: llm\n    prompt: "Summarise\n'

    result = yaml_error(cli, tmp_path, text)

    assert_clean_error(result, 2, "invalid YAML", "opened on line 5", "never closed")


def test_an_unclosed_bracket_names_where_it_opened(cli, tmp_path: Path):
    text = "name: x\nsteps:\n  - id: a\n    command: [echo, one\n    kind: shell\n"

    result = yaml_error(cli, tmp_path, text)

    assert_clean_error(result, 2, "invalid YAML", '"[" opened on line 4', "never closed")


def test_a_template_that_starts_a_value_needs_quotes(cli, tmp_path: Path):
    text = "name: x\nsteps:\n  - id: a\n    kind: llm\n    prompt: {{ input.text }} now\n"

    result = yaml_error(cli, tmp_path, text)

    assert_clean_error(result, 2, ":5:", "starts with {", "quote the whole value")


def test_text_after_a_closing_quote(cli, tmp_path: Path):
    text = 'name: "x" y\nsteps: []\n'

    result = yaml_error(cli, tmp_path, text)

    assert_clean_error(result, 2, ":1:11:", "after the value", "quote the whole value")


def test_a_line_without_a_colon(cli, tmp_path: Path):
    text = "name: x\nsteps\n  - id: a\n"

    assert_clean_error(yaml_error(cli, tmp_path, text), 2, ":2:1:", 'no "key: value"')


# --------------------------------------------------------------------------------------------
# Values that do not fit a key's pattern


def pattern_error(cli, tmp_path: Path, step: str):
    write(tmp_path / "pipeline-config.yaml", f"name: x\nsteps:\n{step}")
    result = cli("validate")
    assert FUNCTION_PATTERN not in result.output and STEP_ID_PATTERN not in result.output
    return result


def test_a_function_with_a_dot_for_a_colon(cli, tmp_path: Path):
    step = "  - id: clean\n    kind: python\n    function: helpers.clean_text\n"

    result = pattern_error(cli, tmp_path, step)

    assert_clean_error(
        result,
        2,
        "pipeline-config.yaml:5:",
        'step 1 ("clean") key function',
        "write it as module:function",
        'did you mean "helpers:clean_text"?',
    )


def test_a_step_id_with_capitals_and_spaces(cli, tmp_path: Path):
    step = "  - id: Clean Text\n    kind: shell\n    command: echo\n"

    result = pattern_error(cli, tmp_path, step)

    assert_clean_error(
        result,
        2,
        "pipeline-config.yaml:3:",
        "lowercase letters, digits",
        'did you mean "clean-text"?',
    )


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        ("retry_on_exit: [3]", "retry_on_exit needs retry:"),
        ("retry: {attempts: 2}, retry_on_exit: [0, 3]", "0 is success"),
        ("retry: {attempts: 0}", "attempts"),
    ],
)
def test_bad_retry_keys_are_refused_at_load_with_the_line(
    cli, tmp_path: Path, keys: str, words: str
) -> None:
    write(
        tmp_path / "pipeline-config.yaml",
        f"name: r\nsteps:\n  - {{id: s, kind: shell, command: [echo, hi], {keys}}}\n",
    )

    assert_clean_error(cli("validate"), 2, "pipeline-config.yaml:3", words)


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        ('when: "true"', "when must be a single {{ expression }}"),
        ('filter: "{{ item }}"', "filter needs for_each"),
        ('for_each: input.lines, filter: "{{ item"', "filter must be a single"),
        ("needs: [s]", "a step cannot need itself"),
        ("needs: first", "needs"),
        ("for_each: input.lines, group_size: 0", "group_size"),
        ("for_each: input.lines, flatten: maybe", "flatten"),
        ('when: "{{ item }}"', 'step "s": unknown template variable "item"'),
    ],
)
def test_bad_graph_keys_are_refused_at_load_with_the_line(
    cli, tmp_path: Path, keys: str, words: str
) -> None:
    write(
        tmp_path / "pipeline-config.yaml",
        f"name: g\nsteps:\n  - {{id: s, kind: shell, command: [echo, hi], {keys}}}\n",
    )

    assert_clean_error(cli("validate"), 2, "pipeline-config.yaml:3", words)


def test_a_problem_found_in_a_steps_templates_points_at_the_steps_line(cli, tmp_path: Path):
    write(
        tmp_path / "pipeline-config.yaml",
        "name: g\nsteps:\n  - {id: a, kind: shell, command: [echo], for_each: input.lines}\n"
        '  - {id: b, kind: shell, command: [echo], for_each: "{{ steps.a }}",\n'
        "     stream_items: true, group_size: 2}\n",
    )

    assert_clean_error(
        cli("validate"),
        2,
        'pipeline-config.yaml:4: step "b": group_size cannot be used with stream_items',
    )


def test_a_program_is_not_looked_up_here_for_a_step_on_a_cluster(cli, tmp_path: Path):
    # its workers start it, and may have programs this machine has not
    shell_config(tmp_path, "executor: dask\n    command: no-such-tool-x1")
    assert cli("validate").exit_code == 0

    shell_config(tmp_path, "executor: processes\n    command: no-such-tool-x1")
    assert_clean_error(cli("validate"), 2, '"no-such-tool-x1" not found on PATH')
