"""The config's JSON Schema: committed copy up to date, shipped configs valid, every key
described, and every config the loader accepts accepted by the schema too."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepline.errors import SpecError
from stepline.spec import load_spec, parse_spec
from stepline.spec.schema import config_schema

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "pipeline-config.schema.json"
EXAMPLE = ROOT / "pipeline-config.example.yaml"


def shipped_configs() -> list[Path]:
    """Every pipeline config we ship: the example file and each YAML under configs/ that has
    steps (schema files written in YAML are not configs)."""
    found = [EXAMPLE]
    for path in sorted((ROOT / "configs").rglob("*.y*ml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "steps" in data:
            found.append(path)
    return found


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = config_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_is_what_pipeline_schema_prints(cli: Any, tmp_path: Path) -> None:
    printed = cli("schema")
    assert printed.exit_code == 0
    assert printed.stdout == COMMITTED.read_text(encoding="utf-8"), (
        "docs/pipeline-config.schema.json is stale: run "
        "`pipeline schema -o docs/pipeline-config.schema.json`"
    )
    written = cli("schema", "-o", str(tmp_path / "out.json"))
    assert written.exit_code == 0
    assert (tmp_path / "out.json").read_text(encoding="utf-8") == printed.stdout


def test_schema_to_an_unwritable_place_is_one_message(cli: Any, tmp_path: Path) -> None:
    result = cli("schema", "-o", str(tmp_path / "missing" / "out.json"))
    assert result.exit_code == 2
    assert "cannot write" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_configs_load_and_match_the_schema(
    path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    load_spec(path)
    errors = [error.message for error in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


def test_the_example_file_points_editors_at_the_schema() -> None:
    first = EXAMPLE.read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=docs/pipeline-config.schema.json"


def test_every_key_has_a_description() -> None:
    schema = config_schema()
    undescribed = [
        f"{model}.{key}"
        for model, definition in [("PipelineSpec", schema), *schema["$defs"].items()]
        for key, prop in definition.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert undescribed == []


def test_the_example_sets_every_key_the_schema_has() -> None:
    """pipeline-config.example.yaml claims to use every key; the schema is the list."""
    schema = config_schema()
    used = _keys(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))
    declared = {key for d in [schema, *schema["$defs"].values()] for key in d.get("properties", {})}
    commented = {"system_file", "prompt_file", "schema_file"}  # alternatives, shown commented
    assert declared - used - commented == set()


@pytest.mark.parametrize(
    "change",
    [
        {"modle": "x"},
        {"steps": [{"id": "a", "kind": "sql", "query": "select 1"}]},
        {"steps": [{"id": "a", "kind": "shell", "command": ["x"], "timeout": "5 minutes"}]},
        {"steps": [{"id": "A b", "kind": "python", "function": "m:f"}]},
        {"rate_limit": "lots"},
    ],
)
def test_the_schema_refuses_what_the_loader_refuses(
    change: dict[str, Any], validator: jsonschema.Draft202012Validator
) -> None:
    data = {"name": "x", "steps": [{"id": "a", "kind": "python", "function": "m:f"}], **change}
    with pytest.raises(SpecError):
        parse_spec(yaml.safe_dump(data))
    assert list(validator.iter_errors(data)) != []


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=300_000),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1, max_value=1e6),
    st.sampled_from(
        ["5m", "250ms", " 2 ", "2048", "1.5", "yes", "Off", "1", "50/min", "json", "jsonl",
         "text", "fail", "collect", "llm", "python", "shell", "openai", "replay", "echo hi",
         "helpers:f", "input.lines", "{{ steps.extract }}", "", "abc", "1_000", "v2"]
    ),
    st.lists(st.sampled_from(["a", "echo", "1"]), max_size=3),
    st.dictionaries(st.sampled_from(["model", "attempts", "enabled", "x"]),
                    st.sampled_from(["m", 1, True, "2s"]), max_size=2),
)  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return found
    return found + [p for key, child in items for p in _paths(child, (*prefix, key))]


EXAMPLE_DATA = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
EXAMPLE_PATHS = _paths(EXAMPLE_DATA)


@settings(
    max_examples=int(os.environ.get("STEPLINE_PROPERTY_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.sampled_from(EXAMPLE_PATHS), VALUES, st.booleans())
def test_whatever_loads_matches_the_schema(
    location: tuple[Any, ...], replacement: Any, delete: bool
) -> None:
    """The schema must never flag a config stepline accepts (editors would show false errors):
    one value of the full example replaced or removed, and if it still loads, it validates."""
    data = copy.deepcopy(EXAMPLE_DATA)
    parent = data
    for key in location[:-1]:
        parent = parent[key]
    if delete:
        del parent[location[-1]]
    else:
        parent[location[-1]] = replacement
    text = json.dumps(data)
    try:
        parse_spec(text)
    except SpecError:
        return
    read = yaml.safe_load(text)  # what the loader saw: YAML 1.1 reads 1e-05 as text
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator().iter_errors(read)]
    assert errors == []


_VALIDATOR: list[jsonschema.Draft202012Validator] = []


def _validator() -> jsonschema.Draft202012Validator:
    if not _VALIDATOR:
        _VALIDATOR.append(jsonschema.Draft202012Validator(config_schema()))
    return _VALIDATOR[0]


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for child in value.values() for k in _keys(child)}
    if isinstance(value, list):
        return {k for child in value for k in _keys(child)}
    return set()
