"""rate_limit: request starts are spaced evenly across the run, retries included."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepline.spec.durations import parse_rate
from tests.e2e.test_errors import assert_clean_error
from tests.fakes import ErrorReply, FakeLLMServer
from tests.helpers import write

CONFIG = """
name: limited
RATE
concurrency: 8
llm:
  model: claude-haiku-4-5
  retry: {attempts: 3, initial_delay: 1ms, max_delay: 10ms}
steps:
  - id: items
    kind: python
    function: helpers:items
  - id: ask
    kind: llm
    for_each: "{{ steps.items }}"
    prompt: "Item {{ item }}"
"""


def write_pipeline(tmp_path: Path, rate: str) -> None:
    write(tmp_path / "in.txt", "x")
    write(tmp_path / "helpers.py", "def items(ctx):\n    return list(range(6))\n")
    write(tmp_path / "pipeline-config.yaml", CONFIG.replace("RATE", rate))


def arrivals(fake_llm: FakeLLMServer) -> list[float]:
    """When each model request reached the server, in order."""
    return sorted(request.received_at for request in fake_llm.requests_for("/v1/messages"))


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


def test_requests_are_spaced_by_the_rate_limit(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_pipeline(tmp_path, "rate_limit: 4/s")

    assert cli("run", "in.txt").exit_code == 0

    assert len(arrivals(fake_llm)) == 6
    assert min(gaps(arrivals(fake_llm))) >= 0.17  # 250 ms apart, less a busy machine's slack


def test_without_a_rate_limit_requests_go_out_together(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_pipeline(tmp_path, "")

    assert cli("run", "in.txt").exit_code == 0

    times = arrivals(fake_llm)
    assert times[-1] - times[0] < 0.4  # not 6 x 100 ms


def test_retries_take_their_own_slots(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_pipeline(tmp_path, "rate_limit: 4/s")
    fake_llm.script(ErrorReply.overloaded())

    assert cli("run", "in.txt").exit_code == 0

    times = arrivals(fake_llm)
    assert len(times) == 7
    assert min(gaps(times)) >= 0.17  # 250 ms apart, the retry included


@pytest.mark.parametrize(
    ("text", "per_second"), [("50/min", 50 / 60), ("5/s", 5.0), ("3600/h", 1.0), ("1.5/sec", 1.5)]
)
def test_rates_read_the_way_people_write_them(text: str, per_second: float):
    assert parse_rate(text) == pytest.approx(per_second)


def test_a_bad_rate_is_a_config_error(cli, tmp_path: Path):
    write_pipeline(tmp_path, "rate_limit: fast")

    assert_clean_error(cli("validate"), 2, "rate_limit", "expected a rate such as 50/min")
