"""The ticket-triage example end to end: offline from its cassette, and against the fake server
for fallbacks and item-level resume (only the tickets that failed are asked again)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.e2e.test_examples import assert_report_renders
from tests.fakes import ErrorReply, FakeLLMServer, RecordedRequest, Reply, ResponseSpec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "configs" / "ticket-triage"


def copy_example(destination: Path) -> Path:
    return Path(shutil.copytree(EXAMPLE, destination / "ticket-triage"))


def run_triage(cli, example: Path, run_id: str, *args: str):
    return cli(
        "run",
        str(example / "tickets.jsonl"),
        "-c",
        str(example / "pipeline.yaml"),
        "--run-id",
        run_id,
        *args,
    )


def table(database: Path) -> dict[str, tuple[str, str, float, str]]:
    with sqlite3.connect(database) as connection:
        rows = connection.execute(
            "SELECT id, urgency, category, confidence, run_id FROM tickets"
        ).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def summary(tmp_path: Path, run_id: str) -> dict:
    return json.loads((tmp_path / ".pipeline" / run_id / "steps/03-summary.json").read_text())


def test_triage_demo_replays_offline_and_upserts(cli, tmp_path: Path):
    example = copy_example(tmp_path)
    cassette = str(example / "demo-cassette.jsonl")

    first = run_triage(cli, example, "first", "--replay", cassette)
    second = run_triage(cli, example, "second", "--replay", cassette)

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    rows = table(tmp_path / "triage.sqlite")
    assert len(rows) == 30  # the second run updated the rows, it did not add any
    assert rows["T-00001"] == ("critical", "outage", 0.95, "second")
    assert rows["T-00002"] == ("high", "billing", 0.8, "second")
    result = summary(tmp_path, "second")
    assert result["by_urgency"] == {"critical": 5, "high": 7, "medium": 9, "low": 9}
    assert sum(result["by_category"].values()) == result["classified"] == 30
    assert result["cost"] == {"usd": 0.0, "calls": 30, "replayed": 30}
    for line in (example / "demo-cassette.jsonl").read_text().splitlines():
        assert json.loads(line)["example"].startswith("Hand-written example reply")
    assert_report_renders(cli, tmp_path / ".pipeline/second")


def ticket_id(request: RecordedRequest) -> str:
    return request.prompt.split("Ticket ", 1)[1].split()[0]


def test_triage_falls_back_and_resumes_only_failed_tickets(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    example = copy_example(tmp_path)
    broken = {"T-00007", "T-00013"}
    refused = ErrorReply(status=400, type="invalid_request_error", message="refused")

    def responder(request: RecordedRequest) -> ResponseSpec:
        ticket = ticket_id(request)
        if ticket in broken:
            return refused  # not retried, no fallback: the item fails
        if ticket == "T-00004" and request.model == "claude-haiku-5-5":
            return ErrorReply.overloaded()  # retried, then the fallback model answers
        triage = {"urgency": "low", "category": "how-to", "suggested_response": "Hi."}
        return Reply(text=json.dumps({**triage, "confidence": 0.5}), input_tokens=200)

    fake_llm.responder = responder
    first = run_triage(cli, example, "live")

    assert first.exit_code == 0, first.output  # on_item_error: collect
    asked = [(ticket_id(request), request.model) for request in fake_llm.requests]
    assert ("T-00004", "claude-sonnet-5-5") in asked  # the fallback answered
    assert len(table(tmp_path / "triage.sqlite")) == 28
    result = summary(tmp_path, "live")
    assert sorted(result["failed"]) == sorted(broken)
    assert result["cost"]["usd"] > 0  # haiku is priced; token counts come from the server
    assert result["cost"].get("unpriced_calls", 0) == 0  # haiku and its fallback are priced
    assert result["cost"]["failed_attempts"] == 2 + 3  # 7 and 13 once, 4 on each haiku attempt

    broken.clear()
    before = len(fake_llm.requests)
    resumed = cli("resume", "live")

    assert resumed.exit_code == 0, resumed.output
    again = sorted(ticket_id(request) for request in fake_llm.requests[before:])
    assert again == ["T-00007", "T-00013"]
    assert len(table(tmp_path / "triage.sqlite")) == 30
    assert summary(tmp_path, "live")["failed"] == []


def test_ticket_generator_makes_10000_distinct_tickets(tmp_path: Path):
    """The item-level resume demo's input: python make_tickets.py 10000."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLE / "make_tickets.py"), "10000"],
        capture_output=True,
        text=True,
        check=True,
    )

    tickets = [json.loads(line) for line in result.stdout.splitlines()]
    assert len({ticket["id"] for ticket in tickets}) == 10000
    assert tickets[:30] == [
        json.loads(line) for line in (EXAMPLE / "tickets.jsonl").read_text().splitlines()
    ]
    assert tickets[9999]["customer"] != tickets[0]["customer"] or len(tickets) < 31
