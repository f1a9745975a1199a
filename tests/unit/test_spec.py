"""Loading the pipeline config: defaults, merged LLM settings, step files, and clear errors.

Every config error must be one ``SpecError`` that names the file and the line (and, for YAML
syntax, the column), with a did-you-mean where a typo is likely.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from stepline.errors import InputError, SpecError
from stepline.spec import (
    LLMStep,
    PipelineSpec,
    PythonStep,
    ShellStep,
    format_duration,
    load_spec,
    parse_duration,
    select_step,
)
from tests.helpers import write


def load(tmp_path: Path, text: str) -> PipelineSpec:
    return load_spec(write(tmp_path / "pipeline.yaml", text))


def load_error(tmp_path: Path, text: str) -> str:
    """Load a config that must fail; return the message, checked to name the file."""
    path = write(tmp_path / "pipeline.yaml", text)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert str(path.resolve()) in caught.value.message
    return caught.value.message


# --------------------------------------------------------------------------------------------
# A valid config


VALID = """
    name: demo
    llm:
      model: claude-default
      max_tokens: 500
      effort: medium
    steps:
      - id: extract
        kind: llm
        prompt: "Extract from {{ input.text }}"
        effort: high
        timeout: 5m
      - id: score
        kind: python
        function: helpers:score
      - id: publish
        kind: shell
        command: "echo --title 'two words' '{{ steps.score }}'"
"""


def test_valid_config_loads_each_step_kind(tmp_path: Path) -> None:
    spec = load(tmp_path, VALID)

    assert spec.name == "demo"
    assert spec.step_ids == ["extract", "score", "publish"]
    assert [type(step) for step in spec.steps] == [LLMStep, PythonStep, ShellStep]


def test_step_defaults(tmp_path: Path) -> None:
    step = load(tmp_path, VALID).steps[1]

    assert step.enabled is True
    assert step.critical is True
    assert step.pause is False
    assert step.timeout is None
    assert step.title == "score"


def test_timeout_string_is_held_in_seconds(tmp_path: Path) -> None:
    assert load(tmp_path, VALID).steps[0].timeout == 300.0


def test_command_string_is_split_like_a_shell(tmp_path: Path) -> None:
    step = load(tmp_path, VALID).steps[2]

    assert isinstance(step, ShellStep)
    assert step.command == ["echo", "--title", "two words", "{{ steps.score }}"]


def test_command_string_keeps_a_spaced_template_in_one_argument(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        """
        name: demo
        steps:
          - id: say
            kind: shell
            command: echo {{ input.text }}
        """,
    )
    step = spec.steps[0]

    assert isinstance(step, ShellStep)
    assert step.command == ["echo", "{{ input.text }}"]


def test_llm_params_merge_pipeline_defaults_with_step_overrides(tmp_path: Path) -> None:
    spec = load(tmp_path, VALID)
    step = spec.steps[0]
    assert isinstance(step, LLMStep)

    params = spec.llm_params(step)

    assert params.model == "claude-default"
    assert params.max_tokens == 500
    assert params.effort == "high"
    assert params.provider == "anthropic"


def test_llm_params_without_any_model_is_a_spec_error(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        """
        name: demo
        steps:
          - id: ask
            kind: llm
            prompt: hi
        """,
    )
    step = spec.steps[0]
    assert isinstance(step, LLMStep)

    with pytest.raises(SpecError, match='step "ask": no model is set') as caught:
        spec.llm_params(step)
    assert caught.value.hint is not None
    assert "llm.model" in caught.value.hint


def test_missing_config_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="config file not found"):
        load_spec(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------------------------
# Prompt and system files


def test_prompt_and_system_files_are_read_relative_to_the_config_folder(tmp_path: Path) -> None:
    write(tmp_path / "config" / "prompts" / "ask.txt", "Prompt from a file")
    write(tmp_path / "config" / "prompts" / "system.txt", "System from a file")
    config = write(
        tmp_path / "config" / "pipeline.yaml",
        """
        name: demo
        steps:
          - id: ask
            kind: llm
            model: m
            prompt_file: prompts/ask.txt
            system_file: prompts/system.txt
        """,
    )

    step = load_spec(config).steps[0]

    assert isinstance(step, LLMStep)
    assert step.prompt == "Prompt from a file"
    assert step.system == "System from a file"


def test_missing_prompt_file_names_the_file_and_line(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        """
        name: demo
        steps:
          - id: ask
            kind: llm
            model: m
            prompt_file: prompts/missing.txt
        """,
    )

    assert "pipeline.yaml:6:" in message
    assert 'step "ask"' in message
    assert str(tmp_path.resolve() / "prompts" / "missing.txt") in message


# --------------------------------------------------------------------------------------------
# Errors: one SpecError with file and line


def test_malformed_yaml_names_line_and_column(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        """
        name: demo
        steps:
          - id: a
           kind: shell
        """,
    )

    assert "pipeline.yaml:4:4: invalid YAML" in message


def test_unknown_key_in_a_step_suggests_the_right_one(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        """
        name: demo
        steps:
          - id: ask
            kind: llm
            promt: hello
        """,
    )

    assert 'pipeline.yaml:5: step 1 ("ask"): unknown key "promt"; did you mean "prompt"?' in message


def test_unknown_key_suggestion_follows_the_step_kind(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        """
        name: demo
        steps:
          - id: calc
            kind: python
            functon: helpers:calc
        """,
    )

    assert 'pipeline.yaml:5: step 1 ("calc"): unknown key "functon"; did you mean "function"?' in (
        message
    )


def test_unknown_key_in_llm_defaults_suggests_the_right_one(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        """
        name: demo
        llm:
          modle: m
        steps:
          - id: a
            kind: shell
            command: ls
        """,
    )

    assert 'pipeline.yaml:3: llm: unknown key "modle"; did you mean "model"?' in message


def test_unknown_step_kind_suggests_the_right_one(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        """
        name: demo
        steps:
          - id: calc
            kind: pythn
            function: helpers:calc
        """,
    )

    assert "pipeline.yaml:4:" in message
    assert 'unknown step kind "pythn"; did you mean "python"?' in message


def test_duplicate_step_id(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        """
        name: demo
        steps:
          - id: a
            kind: shell
            command: ls
          - id: a
            kind: shell
            command: pwd
        """,
    )

    assert "pipeline.yaml:2:" in message
    assert 'step id "a" is used twice' in message


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        """
        name: demo
        steps:
          - id: a
            kind: shell
            command: ls
            command: pwd
        """,
    )

    assert 'pipeline.yaml:6: key "command" appears twice' in message


def test_step_id_must_match_the_pattern(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        """
        name: demo
        steps:
          - id: Bad Id
            kind: shell
            command: ls
        """,
    )

    assert 'pipeline.yaml:3: step 1 ("Bad Id") key id:' in message
    assert "lowercase letters, digits" in message and 'did you mean "bad-id"?' in message


def test_missing_required_step_key(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        """
        name: demo
        steps:
          - kind: shell
            command: ls
        """,
    )

    assert "pipeline.yaml:3: step 1 key id: this key is required" in message


def test_missing_pipeline_name(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        """
        steps:
          - id: a
            kind: shell
            command: ls
        """,
    )

    assert "pipeline.yaml:1: name: this key is required" in message


PROMPT_AND_PROMPT_FILE = """
    name: demo
    steps:
      - id: ask
        kind: llm
        prompt: hello
        prompt_file: ask.txt
"""


def test_prompt_and_prompt_file_together_is_an_error(tmp_path: Path) -> None:
    message = load_error(tmp_path, PROMPT_AND_PROMPT_FILE)

    assert "pipeline.yaml:3:" in message
    assert 'step 1 ("ask")' in message
    assert "set exactly one of prompt and prompt_file" in message


def test_prompt_and_prompt_file_error_names_no_phantom_key(tmp_path: Path) -> None:
    message = load_error(tmp_path, PROMPT_AND_PROMPT_FILE)

    assert "key llm" not in message


def test_invalid_duration_names_the_line_and_accepted_forms(tmp_path: Path) -> None:
    message = load_error(
        tmp_path,
        """
        name: demo
        steps:
          - id: a
            kind: shell
            command: ls
            timeout: soon
        """,
    )

    assert 'pipeline.yaml:6: step 1 ("a") key timeout:' in message
    assert "expected a duration such as 30s, 5m or 1h, got 'soon'" in message


def test_config_that_is_not_a_mapping(tmp_path: Path) -> None:
    message = load_error(tmp_path, "- just a list\n")

    assert "must be a mapping" in message


# --------------------------------------------------------------------------------------------
# Choosing steps by number or id


STEP_IDS = ["extract", "summarise", "publish"]


@pytest.mark.parametrize(("selector", "index"), [("1", 0), ("3", 2), ("summarise", 1)])
def test_select_step_by_number_or_id(selector: str, index: int) -> None:
    assert select_step(selector, STEP_IDS) == index


@pytest.mark.parametrize("selector", ["0", "4"])
def test_select_step_number_out_of_range(selector: str) -> None:
    with pytest.raises(InputError, match="there are steps 1 to 3"):
        select_step(selector, STEP_IDS)


def test_select_unknown_step_suggests_a_close_id() -> None:
    with pytest.raises(InputError, match='unknown step "sumarise"') as caught:
        select_step("sumarise", STEP_IDS)

    assert caught.value.hint == 'did you mean "summarise"?'


def test_select_unknown_step_without_close_match_lists_the_steps() -> None:
    with pytest.raises(InputError) as caught:
        select_step("zzz", STEP_IDS)

    assert caught.value.hint == "steps: extract, summarise, publish"


def test_pipeline_step_index_uses_its_own_steps(tmp_path: Path) -> None:
    spec = load(tmp_path, VALID)

    assert spec.step_index("score") == 1
    assert spec.step_index("3") == 2
    with pytest.raises(InputError):
        spec.step_index("scroe")


# --------------------------------------------------------------------------------------------
# Durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1.5h", 5400.0),
        (" 5 m ", 300.0),
        (10, 10.0),
        (0.5, 0.5),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "5M", "5 minutes", "", "-5s", None, [5], True])
def test_parse_duration_rejects_other_forms(value: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(value)


@pytest.mark.parametrize("value", [0, "0s", -3])
def test_parse_duration_rejects_zero_and_negative(value: object) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        parse_duration(value)


def test_parse_duration_rejects_nan() -> None:
    with pytest.raises(ValueError):
        parse_duration(math.nan)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0.4s"), (12, "12.0s"), (185, "3m05s"), (3720, "1h02m"), (60, "1m00s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
