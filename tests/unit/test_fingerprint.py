"""Step spec hashes: what in the config makes a completed step run again, and what does not."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from stepline.engine.fingerprint import changed_parts, fingerprint, spec_hash, spec_parts
from stepline.engine.references import analyse_spec
from stepline.spec import load_spec
from tests.helpers import write

BASE = """
    name: demo
    llm:
      model: claude-one
    steps:
      - id: ask
        kind: llm
        prompt: "Summarise {{ input.text }}"
"""


def hash_of(tmp_path: Path, config: str, variables: Mapping[str, Any] | None = None) -> str:
    """The spec hash of the first step of ``config`` (written next to any module files)."""
    spec = load_spec(write(tmp_path / "pipeline.yaml", config))
    variables = {**spec.vars, **(variables or {})}
    needs = analyse_spec(spec, variables, given=())  # as a resume with names recorded earlier
    step = spec.steps[0]
    return spec_hash(spec, step, needs[step.id], variables)


@pytest.mark.parametrize(
    "extra",
    ["label: A nicer name", "pause: true", "critical: false", "timeout: 5m"],
)
def test_display_only_keys_do_not_change_the_hash(tmp_path: Path, extra: str) -> None:
    before = hash_of(tmp_path, BASE)

    after = hash_of(tmp_path, f"{BASE}        {extra}\n")

    assert after == before


def test_prompt_change_changes_the_hash(tmp_path: Path) -> None:
    before = hash_of(tmp_path, BASE)

    after = hash_of(tmp_path, BASE.replace("Summarise", "Shorten"))

    assert after != before


def test_model_from_llm_defaults_is_part_of_the_hash(tmp_path: Path) -> None:
    before = hash_of(tmp_path, BASE)

    after = hash_of(tmp_path, BASE.replace("claude-one", "claude-two"))

    assert after != before


def test_same_model_set_on_the_step_instead_of_defaults_keeps_the_hash(tmp_path: Path) -> None:
    on_step = """
        name: demo
        steps:
          - id: ask
            kind: llm
            model: claude-one
            prompt: "Summarise {{ input.text }}"
    """

    assert hash_of(tmp_path, on_step) == hash_of(tmp_path, BASE)


def test_prompt_file_content_counts_not_its_name(tmp_path: Path) -> None:
    config = BASE.replace('prompt: "Summarise {{ input.text }}"', "prompt_file: {name}")
    write(tmp_path / "one.txt", "Summarise {{ input.text }}")
    write(tmp_path / "two.txt", "Summarise {{ input.text }}")

    first = hash_of(tmp_path, config.format(name="one.txt"))
    renamed = hash_of(tmp_path, config.format(name="two.txt"))
    write(tmp_path / "two.txt", "Shorten {{ input.text }}")
    edited = hash_of(tmp_path, config.format(name="two.txt"))

    assert renamed == first
    assert edited != first


def test_a_used_var_is_part_of_the_hash(tmp_path: Path) -> None:
    config = BASE.replace("Summarise", "In a {{ vars.tone }} tone, summarise")

    calm = hash_of(tmp_path, config, {"tone": "calm", "unused": "1"})
    unused_changed = hash_of(tmp_path, config, {"tone": "calm", "unused": "2"})
    angry = hash_of(tmp_path, config, {"tone": "angry", "unused": "1"})

    assert unused_changed == calm
    assert angry != calm


def test_vars_read_dynamically_are_part_of_the_hash(tmp_path: Path) -> None:
    config = BASE.replace("Summarise", "{% for k in vars %}{{ vars[k] }}{% endfor %} summarise")

    assert hash_of(tmp_path, config, {"tone": "calm"}) != hash_of(
        tmp_path, config, {"tone": "angry"}
    )


@pytest.fixture
def module_name(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[str]:
    """A module name unique to this test, forgotten (with any sys.path entry) afterwards."""
    name = f"fingerprint_{request.node.name.replace('-', '_')}"
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield name
    sys.modules.pop(name, None)


def python_config(module: str) -> str:
    return f"""
        name: demo
        steps:
          - id: calc
            kind: python
            function: {module}:calc
    """


def test_editing_a_python_steps_module_changes_the_hash(tmp_path: Path, module_name: str) -> None:
    module = write(tmp_path / f"{module_name}.py", "def calc(context):\n    return 1\n")
    before = hash_of(tmp_path, python_config(module_name))

    module.write_text("def calc(context):\n    return 2\n", encoding="utf-8")
    after = hash_of(tmp_path, python_config(module_name))

    assert after != before


def test_unchanged_python_module_keeps_the_hash(tmp_path: Path, module_name: str) -> None:
    write(tmp_path / f"{module_name}.py", "def calc(context):\n    return 1\n")

    assert hash_of(tmp_path, python_config(module_name)) == hash_of(
        tmp_path, python_config(module_name)
    )


def test_fingerprint_follows_spec_hash_and_reads() -> None:
    base = fingerprint("sha256:spec", {"a": "sha256:1", "@input": "sha256:in"})

    assert fingerprint("sha256:spec", {"@input": "sha256:in", "a": "sha256:1"}) == base
    assert fingerprint("sha256:other", {"a": "sha256:1", "@input": "sha256:in"}) != base
    assert fingerprint("sha256:spec", {"a": "sha256:2", "@input": "sha256:in"}) != base


def parts_of(tmp_path: Path, config: str) -> tuple[Any, dict[str, str]]:
    spec = load_spec(write(tmp_path / "pipeline.yaml", config))
    needs = analyse_spec(spec, dict(spec.vars), given=())
    step = spec.steps[0]
    return step, spec_parts(spec, step, needs[step.id], dict(spec.vars))


def test_changed_parts_name_the_key_and_the_file_it_came_from(tmp_path: Path) -> None:
    config = BASE.replace('prompt: "Summarise {{ input.text }}"', "prompt_file: prompts/p.md")
    write(tmp_path / "prompts/p.md", "Summarise {{ input.text }}")
    step, before = parts_of(tmp_path, config)
    write(tmp_path / "prompts/p.md", "Summarise briefly {{ input.text }}")
    _, after = parts_of(tmp_path, config.replace("claude-one", "claude-two"))

    assert changed_parts(step, before, after) == ["model", "prompt (prompts/p.md)"]
    assert changed_parts(step, before, before) == []
    assert changed_parts(step, {}, after) == []  # a record from before parts were kept


def test_parts_are_the_keys_of_the_spec_with_llm_settings_and_variables_apart(
    tmp_path: Path,
) -> None:
    _, parts = parts_of(tmp_path, BASE.replace("name: demo", 'name: demo\n    vars: {k: "1"}'))

    assert {"prompt", "kind", "llm.model", "llm.max_tokens"} <= set(parts)
    assert all(len(value) == 16 for value in parts.values())
