"""``pipeline show``: the timeline and the LLM usage per step and per model, in the table and
in ``--json`` (which keeps every field it had); and show, report and diff stay light to start.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from tests.fakes import FakeLLMServer, RecordedRequest, Reply
from tests.helpers import heavy_modules_imported_by, write

CONFIG = """
name: two-models
llm: {model: claude-haiku-4-5-20251001, cache: {enabled: false}}
steps:
  - id: draft
    kind: llm
    prompt: "Draft {{ input.text }}"
  - id: polish
    kind: llm
    model: claude-test-model
    prompt: "Polish {{ steps.draft }}"
  - id: review
    kind: llm
    prompt: "Review {{ steps.polish }}"
  - id: wrap
    kind: shell
    command: ["python3", "-c", "print('done')"]
"""


def tokens_by_model(request: RecordedRequest) -> Reply:
    if request.body["model"] == "claude-test-model":
        return Reply(text="polished", input_tokens=1000, output_tokens=300)
    return Reply(text="drafted", input_tokens=200, output_tokens=50)


@pytest.fixture
def run(cli, tmp_path: Path, fake_llm: FakeLLMServer) -> dict:
    write(tmp_path / "pipeline-config.yaml", CONFIG)
    write(tmp_path / "in.txt", "a plan")
    fake_llm.responder = tokens_by_model
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    return json.loads((tmp_path / ".pipeline/r/state.json").read_text())


def test_show_json_adds_the_timeline_and_usage_and_keeps_every_field(cli, run: dict):
    shown = json.loads(cli("show", "r", "--json").stdout)

    assert {key: shown[key] for key in run if key not in ("status",)} == {
        key: value for key, value in run.items() if key != "status"
    }
    assert shown["status"] == "completed"
    by_step, by_model = shown["usage_by_step"], shown["usage_by_model"]
    assert list(by_step) == ["draft", "polish", "review"]  # the shell step made no call
    assert (by_step["polish"]["input_tokens"], by_step["polish"]["output_tokens"]) == (1000, 300)
    assert by_model["claude-haiku-4-5-20251001"]["requests"] == 2
    assert by_model["claude-haiku-4-5-20251001"]["input_tokens"] == 400
    assert by_model["claude-test-model"]["cost_usd"] is None  # no price known for it
    for table in (by_step, by_model):
        for key in ("requests", "input_tokens", "output_tokens"):
            assert sum(row[key] for row in table.values()) == run["usage"][key]
    bars = shown["timeline"]["bars"]
    assert [bar["step"] for bar in bars] == ["draft", "polish", "review", "wrap"]
    offsets = [bar["offset_s"] for bar in bars]
    assert offsets[0] == 0 and offsets == sorted(offsets)
    for bar, step in zip(bars, run["steps"], strict=True):  # from the recorded start and end
        began, ended = (datetime.fromisoformat(step[key]) for key in ("started_at", "finished_at"))
        assert bar["duration_s"] == pytest.approx((ended - began).total_seconds(), abs=0.002)
    end = bars[-1]["offset_s"] + bars[-1]["duration_s"]  # three values, each rounded to 1 ms
    assert shown["timeline"]["span_s"] >= end - 0.002


def test_show_draws_the_timeline_and_the_breakdown(cli, run: dict):
    shown = cli("show", "r")

    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    timeline = text[text.index("Timeline") :]
    rows = [line for line in timeline.splitlines() if "█" in line]
    names = ("draft", "polish", "review", "wrap")
    assert len(rows) == 4 and all(n in row for n, row in zip(names, rows, strict=True))
    by_model = text[text.index("LLM usage by model") :]
    assert "claude-test-model" in by_model and "unknown" in by_model
    assert "claude-haiku-4-5-20251001" in by_model and "400" in by_model
    by_step = text[text.index("LLM usage by step") : text.index("LLM usage by model")]
    assert "1,000" in by_step and "polish" in by_step and "wrap" not in by_step


SHELL_ONLY = """
name: light
steps:
  - id: one
    kind: shell
    command: ["python3", "-c", "print(1)"]
"""


@pytest.mark.parametrize(
    "args", [["show", "r"], ["show", "r", "--json"], ["report", "r"], ["diff", "r", "r"]]
)
def test_show_report_and_diff_do_not_import_the_heavy_libraries(
    cli, tmp_path: Path, args: list[str]
):
    write(tmp_path / "pipeline-config.yaml", SHELL_ONLY)
    write(tmp_path / "in.txt", "x")
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    assert heavy_modules_imported_by(args, tmp_path) == []
