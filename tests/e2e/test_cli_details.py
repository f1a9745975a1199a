"""Details a new user meets in ``--help``: every option names what it takes (``--set
NAME=VALUE``, ``--max-cost USD``, ``--older-than AGE``), and run id arguments say ``RUN_ID``
and which forms they accept."""

from __future__ import annotations

import pytest


def help_of(cli, *command: str) -> str:
    result = cli(*command, "--help")
    assert result.exit_code == 0, result.output
    return result.stdout


def test_run_options_name_what_they_take(cli):
    text = help_of(cli, "run")

    for shown in (
        "-c, --config FILE",
        "--from-step STEP",
        "--to-step STEP",
        "--set NAME=VALUE",
        "--model MODEL",
        "--provider NAME",
        "--concurrency N",
        "--max-cost USD",
        "--replay FILE",
        "--record FILE",
        "--workdir DIR",
    ):
        assert shown in text, shown
    assert "list[str]" not in text


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (("diff",), ("RUN_A", "RUN_B", "--step STEP", "--exit-code", "unique prefix")),
        (("report",), ("RUN_ID", "-o, --output FILE", "unique prefix")),
        (("clean",), ("--older-than AGE", "--status STATUS", "--workdir DIR")),
        (("cache", "prune"), ("--older-than AGE",)),
        (("init",), ("DIRECTORY", "--example NAME")),
        (("schema",), ("-o, --output FILE",)),
        (("validate",), ("-c, --config FILE", "--set NAME=VALUE")),
    ],
)
def test_arguments_and_options_have_plain_metavars(cli, command: tuple[str, ...], shown):
    text = help_of(cli, *command)

    for each in shown:
        assert each in text, each
