"""Batch mode: a fan-out step's items go through the Message Batches API (the fake server's
batch endpoints), are matched back by custom_id, checkpointed per item and priced at half the
live rate; an interrupted run resumes by polling the same batch, never by submitting again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from stepline.store.state import RunStatus, load_state
from tests.e2e.test_crash_points import crash_at
from tests.e2e.test_errors import assert_clean_error
from tests.fakes import BatchExpired, ErrorReply, FakeLLMServer, Reply
from tests.helpers import SENTINEL_KEY, eventually, write

BATCHES = "/v1/messages/batches"
LIVE = "/v1/messages"

CONFIG = """
name: batched
llm:
  model: claude-haiku-4-5
  max_tokens: 100
  retry: {attempts: 2, initial_delay: 1ms}
  cache: {enabled: CACHE}
steps:
  - id: label
    kind: llm
    for_each: input.lines
    item_key: "{{ item }}"
    mode: batch
    batch_poll: 50ms
    prompt: "Label {{ item }}"
EXTRA
"""


def write_project(folder: Path, *, extra: str = "", cache: bool = False, lines: str = "") -> None:
    write(folder / "tickets.txt", lines or "alpha\nbeta\ngamma\ndelta\nepsilon\n")
    config = CONFIG.replace("CACHE", str(cache).lower()).replace("EXTRA", extra)
    write(folder / "pipeline-config.yaml", config)


@pytest.fixture
def labels(fake_llm: FakeLLMServer) -> FakeLLMServer:
    fake_llm.responder = lambda request: Reply(
        text=request.prompt.replace("Label ", "L:"), input_tokens=1000, output_tokens=100
    )
    fake_llm.batch_processing_time = 0.2
    return fake_llm


def output(folder: Path, run_id: str, name: str = "01-label") -> list:
    return json.loads((folder / f".pipeline/{run_id}/steps/{name}.json").read_text())


def calls(folder: Path, run_id: str) -> list[dict]:
    lines = (folder / f".pipeline/{run_id}/llm-calls.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_items_go_out_as_one_batch_and_come_back_in_input_order_at_batch_prices(
    cli, labels: FakeLLMServer, tmp_path: Path
):
    write_project(tmp_path)

    result = cli("run", "tickets.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert labels.count(BATCHES) == 1 and labels.count(LIVE) == 0
    assert output(tmp_path, "r") == ["L:alpha", "L:beta", "L:gamma", "L:delta", "L:epsilon"]
    (batch,) = labels.batches.values()
    assert sorted(request.custom_id for request in labels.batch_requests) == sorted(
        ["alpha", "beta", "gamma", "delta", "epsilon"]
    )
    # claude-haiku-4-5 live: 1,000 x $1 + 100 x $5 per million = $0.0015; batch: half
    records = calls(tmp_path, "r")
    assert len(records) == 5
    assert {record["batch_id"] for record in records} == {batch.id}
    assert all(record["cost_usd"] == pytest.approx(0.00075) for record in records)
    state = load_state(tmp_path / ".pipeline/r/state.json")
    assert state.steps[0].metrics["cost_usd"] == pytest.approx(5 * 0.00075)
    shown = cli("show", "r")
    assert batch.id in shown.stdout and "5 succeeded" in shown.stdout
    (listed,) = json.loads(cli("show", "r", "--json").stdout)["batches"]
    assert (listed["batch_id"], listed["status"], listed["requests"]) == (batch.id, "collected", 5)


def test_a_fan_out_larger_than_batch_size_is_split_into_several_batches(
    cli, labels: FakeLLMServer, tmp_path: Path
):
    write_project(tmp_path, extra="    batch_size: 2")

    assert cli("run", "tickets.txt", "--run-id", "r").exit_code == 0

    assert sorted(len(batch.requests) for batch in labels.batches.values()) == [1, 2, 2]
    assert output(tmp_path, "r")[-1] == "L:epsilon"


def test_errored_and_expired_requests_follow_the_error_strategy(
    cli, labels: FakeLLMServer, tmp_path: Path
):
    write_project(tmp_path, extra="    on_item_error: collect")
    labels.when_prompt_contains("beta", ErrorReply(400, "invalid_request_error", "bad beta"))
    labels.when_prompt_contains("delta", BatchExpired())

    result = cli("run", "tickets.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    values = output(tmp_path, "r")
    assert values[0] == "L:alpha" and values[2] == "L:gamma"
    assert values[1]["item_key"] == "beta" and "bad beta" in values[1]["error"]
    assert values[3]["item_key"] == "delta" and "expired" in values[3]["error"]
    assert labels.count(LIVE) == 0
    failed = [record for record in calls(tmp_path, "r") if record["outcome"] == "error"]
    assert sorted(record["item_key"] for record in failed) == ["beta", "delta"]


def test_batch_fallback_live_finishes_failed_requests_with_live_calls(
    cli, labels: FakeLLMServer, tmp_path: Path
):
    write_project(tmp_path, extra="    batch_fallback: live")
    in_batch = lambda needle: lambda request: request.custom_id and needle in request.prompt  # noqa: E731
    labels.when(in_batch("beta"), ErrorReply(529, "overloaded_error", "busy"))
    labels.when(in_batch("delta"), BatchExpired())

    result = cli("run", "tickets.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert output(tmp_path, "r") == ["L:alpha", "L:beta", "L:gamma", "L:delta", "L:epsilon"]
    assert sorted(request.prompt for request in labels.requests_for(LIVE)) == [
        "Label beta",
        "Label delta",
    ]
    live = [record for record in calls(tmp_path, "r") if record["batch_id"] is None]
    assert all(record["cost_usd"] == pytest.approx(0.0015) for record in live)  # live prices


def test_a_batch_reply_that_misses_the_schema_is_repaired_with_a_live_call(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    extra = "    schema: {type: object, required: [label]}"
    write_project(tmp_path, extra=extra, lines="alpha\nbeta\n")
    fake_llm.batch_processing_time = 0.1
    fake_llm.when_prompt_contains("beta", Reply(text='{"wrong": 1}'))
    fake_llm.responder = lambda request: Reply(text='{"label": "ok"}')

    result = cli("run", "tickets.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert output(tmp_path, "r") == [{"label": "ok"}, {"label": "ok"}]
    (repair,) = fake_llm.requests_for(LIVE)
    assert "Label beta" in json.dumps(repair.messages) and len(repair.messages) == 3


def test_items_the_response_cache_answers_never_enter_a_batch(
    cli, labels: FakeLLMServer, tmp_path: Path
):
    write_project(tmp_path, cache=True, lines="alpha\nbeta\n")
    assert cli("run", "tickets.txt", "--run-id", "first").exit_code == 0
    write_project(tmp_path, cache=True, lines="alpha\nbeta\ngamma\n")

    result = cli("run", "tickets.txt", "--run-id", "second")

    assert result.exit_code == 0, result.output
    assert output(tmp_path, "second") == ["L:alpha", "L:beta", "L:gamma"]
    assert labels.count(BATCHES) == 2
    assert [len(batch.requests) for batch in labels.batches.values()] == [2, 1]


def test_a_run_killed_while_polling_resumes_by_polling_the_same_batch(
    cli, labels: FakeLLMServer, tmp_path: Path
):
    write_project(tmp_path)
    labels.batch_processing_time = 1.0

    killed = crash_at(tmp_path, "batch-polled", 0, "tickets.txt")

    assert killed.returncode == -9, killed.stderr
    assert labels.count(BATCHES) == 1
    result = cli("resume", "r")
    assert result.exit_code == 0, result.output
    assert labels.count(BATCHES) == 1  # polled and collected, never submitted again
    assert labels.count(LIVE) == 0
    assert output(tmp_path, "r") == ["L:alpha", "L:beta", "L:gamma", "L:delta", "L:epsilon"]
    assert "cut short" not in (tmp_path / ".pipeline/r/events.jsonl").read_text()


def test_a_run_killed_before_it_saved_the_batch_id_submits_again_and_says_so(
    cli, labels: FakeLLMServer, tmp_path: Path
):
    write_project(tmp_path)

    killed = crash_at(tmp_path, "batch-created", 0, "tickets.txt")

    assert killed.returncode == -9, killed.stderr
    result = cli("resume", "r")
    assert result.exit_code == 0, result.output
    assert labels.count(BATCHES) == 2  # the first batch's id died with the process
    assert "5 item(s) were cut short" in (tmp_path / ".pipeline/r/events.jsonl").read_text()


def test_a_step_that_cannot_poll_fails_and_its_resume_polls_the_same_batch(
    cli, labels: FakeLLMServer, tmp_path: Path
):
    write_project(tmp_path)
    labels.batch_processing_time = 1.5
    stop = threading.Event()

    def fail_polls_once_created() -> None:  # two 529s: both attempts at one poll
        while not stop.is_set() and not labels.count(BATCHES):
            stop.wait(0.001)
        labels.script_batch_api(*[ErrorReply(529, "overloaded_error", "busy")] * 2)

    thread = threading.Thread(target=fail_polls_once_created, daemon=True)
    thread.start()
    try:
        result = cli("run", "tickets.txt", "--run-id", "r")
    finally:
        stop.set()
        thread.join()

    assert_clean_error(result, 1, "could not poll a batch")
    assert load_state(tmp_path / ".pipeline/r/state.json").status is RunStatus.FAILED
    resumed = cli("resume", "r")
    assert resumed.exit_code == 0, resumed.output
    assert labels.count(BATCHES) == 1 and labels.count(LIVE) == 0
    assert output(tmp_path, "r") == ["L:alpha", "L:beta", "L:gamma", "L:delta", "L:epsilon"]


def test_batch_flag_batches_fan_out_steps_and_leaves_the_others_live(
    cli, labels: FakeLLMServer, tmp_path: Path
):
    write(tmp_path / "tickets.txt", "alpha\nbeta\n")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: flagged
        llm: {model: claude-haiku-4-5, cache: {enabled: false}, batch_poll: 50ms}
        steps:
          - {id: intro, kind: llm, prompt: "Label intro"}
          - id: label
            kind: llm
            for_each: input.lines
            prompt: "Label {{ item }}"
        """,
    )

    result = cli("run", "tickets.txt", "--run-id", "r", "--batch")

    assert result.exit_code == 0, result.output
    assert labels.count(BATCHES) == 1 and labels.count(LIVE) == 1
    assert output(tmp_path, "r", "02-label") == ["L:alpha", "L:beta"]
    assert load_state(tmp_path / ".pipeline/r/state.json").overrides == {"mode": "batch"}


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("{id: one, kind: llm, prompt: hi, mode: batch}", "mode: batch needs for_each"),
        (
            "{id: one, kind: llm, for_each: input.lines, prompt: hi, mode: batch, "
            "provider: openai}",
            "mode: batch needs provider anthropic",
        ),
    ],
)
def test_batch_mode_where_it_cannot_work_is_a_config_error(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, step: str, message: str
):
    write(tmp_path / "in.txt", "a\n")
    write(
        tmp_path / "pipeline-config.yaml",
        f"name: x\nllm: {{model: m}}\nsteps:\n  - {step}\n",
    )

    assert_clean_error(cli("run", "in.txt"), 2, message)
    assert fake_llm.count() == 0


def test_cancel_stops_the_run_and_cancels_its_batch(cli, labels: FakeLLMServer, tmp_path: Path):
    # Every item ends canceled: 100% lets the step complete with them all as error records.
    write_project(tmp_path, extra="    on_item_error: collect\n    max_failed_items: 100%")
    config = tmp_path / "pipeline-config.yaml"  # a prompt file: found beside the config
    config.write_text(config.read_text().replace('prompt: "Label {{ item }}"', "prompt_file: p.md"))
    write(tmp_path / "p.md", "Label {{ item }}")
    labels.batch_processing_time = 30.0
    child = subprocess.Popen(
        [sys.executable, "-m", "stepline", "run", "tickets.txt", "--run-id", "r"],
        cwd=tmp_path,
        env={**os.environ, "ANTHROPIC_API_KEY": SENTINEL_KEY},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def created_and_polled() -> bool:
            assert child.poll() is None, "the run ended before its batch was polled"
            return len(labels.requests_for(BATCHES)) + len(polls(labels)) >= 2

        eventually(created_and_polled, what="the batch to be created and polled")

        result = cli("cancel", "r", "--json")
    finally:
        child.kill()
        child.wait()

    assert result.exit_code == 0, result.output
    (batch,) = labels.batches.values()
    assert json.loads(result.stdout)["batches_canceled"] == [batch.id]
    assert batch.is_canceled
    resumed = cli("resume", "r")
    assert resumed.exit_code == 0, resumed.output
    assert all("canceled" in value["error"] for value in output(tmp_path, "r"))
    assert labels.count(BATCHES) == 1


def polls(server: FakeLLMServer) -> list:
    return [r for r in server.requests if r.method == "GET" and r.path.startswith(BATCHES + "/")]


def test_a_budget_submits_only_the_items_it_can_bound_then_pauses(
    cli, labels: FakeLLMServer, tmp_path: Path
):
    write_project(tmp_path)
    # At most ~$0.00025 per request at batch prices (a 3-token prompt, a 100-token reply):
    # three fit under $0.0008, the fourth would not.
    result = cli("run", "tickets.txt", "--run-id", "r", "--max-cost", "0.0008")

    assert result.exit_code == 3, result.output
    assert [len(batch.requests) for batch in labels.batches.values()] == [3]
    state = load_state(tmp_path / ".pipeline/r/state.json")
    assert state.status is RunStatus.PAUSED and state.pause_reason == "budget"
    resumed = cli("resume", "r", "--max-cost", "1")
    assert resumed.exit_code == 0, resumed.output
    assert [len(batch.requests) for batch in labels.batches.values()] == [3, 2]
    assert output(tmp_path, "r") == ["L:alpha", "L:beta", "L:gamma", "L:delta", "L:epsilon"]


def test_with_cache_prompt_one_item_goes_live_first_and_the_batch_reads_its_cache(
    cli, labels: FakeLLMServer, tmp_path: Path
):
    write_project(tmp_path, extra="    cache_prompt: true\n    system: " + "rules " * 60)
    labels.cache_min_tokens = 50  # the fake counts words: the shared prefix has 61
    labels.responder = lambda request: Reply(text="x", input_tokens=2, output_tokens=1)

    assert cli("run", "tickets.txt", "--run-id", "r").exit_code == 0

    (warm_up,) = labels.requests_for(LIVE)
    shared, own = warm_up.body["messages"][0]["content"]
    assert (shared["text"], own["text"]) == ("Label ", "alpha")
    marker = shared["cache_control"]
    assert marker == {"type": "ephemeral", "ttl": "1h"}
    assert sorted(request.custom_id for request in labels.batch_requests) == [
        "beta",
        "delta",
        "epsilon",
        "gamma",
    ]
    records = {record["item_key"]: record for record in calls(tmp_path, "r")}
    first = records["alpha"]
    assert (first["cache_write_tokens"], first["cache_write_1h_tokens"]) == (61, 61)
    # claude-haiku-4-5: a one-hour write costs 2 x $1 per million; live prices
    assert first["cost_usd"] == pytest.approx((2 + 5 + 61 * 2.0) / 1e6)
    batched = [records[key] for key in ("beta", "gamma", "delta", "epsilon")]
    assert all(record["cache_read_tokens"] == 61 for record in batched)
    assert all(record["cost_usd"] == pytest.approx((2 + 5 + 6.1) / 2e6) for record in batched)


def test_a_failed_warm_up_item_stops_the_step_before_any_batch_is_sent(
    cli, labels: FakeLLMServer, tmp_path: Path
):
    write_project(tmp_path, extra="    cache_prompt: true")
    labels.when(
        lambda request: request.custom_id is None,
        ErrorReply(400, "invalid_request_error", "prompt is broken"),
    )

    result = cli("run", "tickets.txt", "--run-id", "r")

    assert_clean_error(result, 1, "prompt is broken")
    assert labels.count(LIVE) == 1 and labels.count(BATCHES) == 0


def test_a_refused_batch_forgets_its_intents_so_the_resume_reports_nothing_cut_short(
    cli, labels: FakeLLMServer, tmp_path: Path
):
    write_project(tmp_path)
    labels.script_batch_api(ErrorReply(400, "invalid_request_error", "batch refused"))

    result = cli("run", "tickets.txt", "--run-id", "r")

    assert_clean_error(result, 1, "could not submit a batch", "batch refused")
    assert json.loads(cli("show", "r", "--json").stdout)["batches"] == []
    resumed = cli("resume", "r")
    assert resumed.exit_code == 0, resumed.output
    assert labels.count(BATCHES) == 2  # the refused one, then the resume's
    assert "cut short" not in (tmp_path / ".pipeline/r/events.jsonl").read_text()
    assert output(tmp_path, "r")[0] == "L:alpha"
