"""Property: any config text, however broken or hostile, either loads or raises ``SpecError``.

Generated documents are random YAML-ish structures, valid configs with one value replaced,
removed or retyped, and valid configs with their text cut or garbled; the loader must never
let a foreign exception (``KeyError``, ``RecursionError``, a yaml or pydantic error) through.
"""

from __future__ import annotations

import json
import os
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepline.errors import SpecError
from stepline.spec import PipelineSpec, parse_spec

VALID: dict[str, Any] = {
    "name": "demo",
    "vars": {"team": "core", "n": 3},
    "llm": {"model": "m", "max_tokens": 100, "retry": {"attempts": 2}},
    "concurrency": 4,
    "steps": [
        {
            "id": "ask",
            "kind": "llm",
            "prompt": "{{ input.text }} {{ vars.team }}",
            "output": "json",
        },
        {"id": "count", "kind": "python", "function": "json:dumps", "enabled": False},
        {
            "id": "each",
            "kind": "shell",
            "command": ["echo", "{{ item }}"],
            "for_each": "{{ steps.ask }}",
            "timeout": "5s",
        },
    ],
}

KEYS = st.sampled_from(
    [
        "name",
        "steps",
        "id",
        "kind",
        "prompt",
        "llm",
        "model",
        "command",
        "for_each",
        "vars",
        "retry",
        "timeout",
        "schema",
        "<<",
        "output",
        "function",
        "concurrency",
        "x",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["llm", "shell", "python", "{{ steps.ask }}", "{{", "5s", "input.lines", "-1"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(KEYS, st.text(max_size=8)), children, max_size=4),
    ),
    max_leaves=20,
)


def loads_or_spec_error(text: str) -> None:
    try:
        spec = parse_spec(text)
    except SpecError as exc:
        assert exc.message  # a message a person can read
    else:
        assert isinstance(spec, PipelineSpec)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location inside a config, to mutate one of them."""
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths(child, prefix + (index,))
    return found


ALL_PATHS = paths(VALID)[1:]


def mutate(location: tuple[Any, ...], replacement: Any, delete: bool) -> dict[str, Any]:
    config = json.loads(json.dumps(VALID))
    parent = config
    for part in location[:-1]:
        parent = parent[part]
    if delete:
        del parent[location[-1]]
    else:
        parent[location[-1]] = replacement
    return config


FAST = settings(
    max_examples=int(os.environ.get("STEPLINE_PROPERTY_EXAMPLES", "50")),  # more for a long run
    deadline=None,
    database=None,  # nothing written into the checkout
    suppress_health_check=[HealthCheck.too_slow],
)


def test_the_valid_config_loads() -> None:
    assert parse_spec(yaml.safe_dump(VALID)).name == "demo"


@FAST
@given(VALUES)
def test_random_structures(document: Any) -> None:
    loads_or_spec_error(yaml.safe_dump(document))


@FAST
@given(VALUES)
def test_random_structures_as_json(document: Any) -> None:
    loads_or_spec_error(json.dumps(document))


@FAST
@given(st.sampled_from(ALL_PATHS), VALUES, st.booleans())
def test_a_valid_config_with_one_value_changed(location, replacement, delete) -> None:
    loads_or_spec_error(yaml.safe_dump(mutate(location, replacement, delete)))


@FAST
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=8), st.text(max_size=6))
def test_a_valid_config_text_cut_or_garbled(where: int, cut: int, inserted: str) -> None:
    text = yaml.safe_dump(VALID)
    position = where % (len(text) + 1)
    loads_or_spec_error(text[:position] + inserted + text[position + cut :])


PIECES = st.sampled_from(
    list("[]{}:,-&*!<>|'\"#%@` \n\tabk01") + ["!!python/name:os.system ", "*a", "&a ", "<<: "]
)


@FAST
@given(st.lists(PIECES, max_size=40))
def test_yaml_punctuation_soup(pieces: list[str]) -> None:
    loads_or_spec_error("name: x\nsteps: " + "".join(pieces))
