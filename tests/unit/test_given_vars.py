"""``analyse_spec`` refuses the names set from outside the config that it does not know, and only
those given this time: variables a resume finds recorded in the run are never refused."""

from __future__ import annotations

import pytest

from stepline.engine.references import analyse_spec
from stepline.errors import InputError
from stepline.spec import parse_spec

SPEC = parse_spec(
    "name: demo\nvars: {top_k: 2}\nsteps:\n"
    "  - id: show\n    kind: shell\n    command: [echo, '{{ vars.top_k }} {{ vars.team }}']\n"
)
VARIABLES = {"top_k": 2, "team": "ops", "topk": "3"}


def test_by_default_every_name_not_declared_is_checked() -> None:
    with pytest.raises(InputError) as caught:
        analyse_spec(SPEC, VARIABLES)

    assert caught.value.message.startswith("--set topk:")
    assert 'did you mean "top_k"?' in caught.value.message
    assert caught.value.hint is not None and "team, top_k" in caught.value.hint


def test_only_the_names_given_this_time_are_checked() -> None:
    assert set(analyse_spec(SPEC, VARIABLES, given=("team",))) == {"show"}

    with pytest.raises(InputError):
        analyse_spec(SPEC, VARIABLES, given=("team", "topk"))
