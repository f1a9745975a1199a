"""Fan-out steps end to end: for_each over a step's list, input.lines and input.records.

Covers order and concurrency at the fake server, per-item checkpoints in items.sqlite (resume
after an item failure, a kill -9 and Ctrl-C sends only the missing items), on_item_error
skip/collect with --skip-failed, python and shell fan-out with per-item timeouts, reuse of
unchanged items after an upstream edit, and the errors a fan-out config can make.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from stepline.hashing import hash_value
from stepline.store.state import load_state
from tests.e2e.test_errors import assert_clean_error
from tests.fakes import ANTHROPIC_MESSAGES_PATH, ErrorReply, FakeLLMServer, RecordedRequest, Reply
from tests.helpers import run_pipeline_process, write

NAMES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]

HEADER = """
name: fan
llm:
  model: claude-test-model
  retry: {attempts: 2, initial_delay: 1ms, max_delay: 5ms}
  cache: {enabled: false}
"""

EXTRACT_HELPERS = """
import json
from pathlib import Path


def extract(ctx):
    return json.loads(Path(__file__).with_name("names.json").read_text())
"""

# An LLM fan-out over the list a python step makes.
ASK_PIPELINE = (
    HEADER
    + """
steps:
  - id: extract
    kind: python
    function: helpers:extract
  - id: ask
    kind: llm
    for_each: "{{ steps.extract }}"
    prompt: "Describe NAME=[{{ item.name }}] (item {{ item_index }}, key {{ item_key }})."
    ASK_EXTRA
"""
)


# --------------------------------------------------------------------------------------------
# A responder that answers per item, with delays, failures, hangs and an overlap count
# --------------------------------------------------------------------------------------------

NAME = re.compile(r"NAME=\[(\w+)\]")


class ItemResponder:
    """Answers "NAME=[x]" prompts with "about x"; counts how many calls overlap.

    ``delays`` hold the reply (per name, else ``hold``) inside the responder, so ``peak`` is
    the largest number of requests the server was answering at once; with ``gather``, the first
    replies also wait (up to 10 s) until that many requests are in, so ``peak`` reaches it
    however slowly the client sends them, if the client sends that many at once at all.
    ``fail`` names get a 400;
    while ``hang`` is set, names outside ``fast`` get a reply delayed for a minute (cut short
    when the server stops).
    """

    def __init__(
        self,
        *,
        hold: float = 0.0,
        delays: dict[str, float] | None = None,
        fail: frozenset[str] = frozenset(),
        gather: int = 0,
    ) -> None:
        self.hold = hold
        self.gather = gather
        self.gathered = threading.Event()
        self.delays = delays or {}
        self.fail = set(fail)
        self.hang = threading.Event()
        self.fast: set[str] = set()
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.finished: list[str] = []

    def __call__(self, request: RecordedRequest) -> Reply | ErrorReply:
        match = NAME.search(request.prompt)
        assert match is not None, request.prompt
        name = match.group(1)
        if name in self.fail:
            return ErrorReply(400, "invalid_request_error", f"cannot describe {name}")
        if self.hang.is_set() and name not in self.fast:
            return Reply(text=f"about {name}", delay=60)
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            if self.active >= self.gather:
                self.gathered.set()
        try:
            if self.gather:
                self.gathered.wait(10)
            time.sleep(self.delays.get(name, self.hold))
        finally:
            with self.lock:
                self.active -= 1
                self.finished.append(name)
        return Reply(text=f"about {name}", input_tokens=10, output_tokens=3)


def asked(server: FakeLLMServer) -> list[str]:
    """The item names the server was asked about, in arrival order."""
    names = []
    for request in server.requests_for(ANTHROPIC_MESSAGES_PATH):
        match = NAME.search(request.prompt)
        assert match is not None, request.prompt
        names.append(match.group(1))
    return names


# --------------------------------------------------------------------------------------------
# Reading a run folder
# --------------------------------------------------------------------------------------------


def run_dir(folder: Path, run_id: str) -> Path:
    return folder / ".pipeline" / run_id


def state_of(folder: Path, run_id: str) -> dict[str, Any]:
    """The state as stepline reads it: the snapshot and the changes logged since."""
    return load_state(run_dir(folder, run_id) / "state.json").model_dump(mode="json")


def step_of(folder: Path, run_id: str, step_id: str) -> dict[str, Any]:
    return next(s for s in state_of(folder, run_id)["steps"] if s["id"] == step_id)


def output_of(folder: Path, run_id: str, step_id: str) -> Any:
    record = step_of(folder, run_id, step_id)
    assert record["output"], record
    return json.loads((run_dir(folder, run_id) / record["output"]).read_text())


def calls_of(folder: Path, run_id: str) -> list[dict[str, Any]]:
    path = run_dir(folder, run_id) / "llm-calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def events_of(folder: Path, run_id: str) -> list[dict[str, Any]]:
    path = run_dir(folder, run_id) / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def item_rows(folder: Path, run_id: str, step_id: str) -> dict[str, tuple[str, Any]]:
    """items.sqlite for one step: item key -> (status, result)."""
    path = run_dir(folder, run_id) / "items.sqlite"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT key, status, result FROM items WHERE step = ? ORDER BY position", (step_id,)
        ).fetchall()
    finally:
        db.close()
    return {key: (status, json.loads(result) if result else None) for key, status, result in rows}


def default_key(value: Any) -> str:
    """The key stepline gives an item without item_key: a short hash of its value."""
    return hash_value(value).split(":", 1)[-1][:16]


def ask_pipeline(folder: Path, names: list[str], extra: str = "") -> None:
    """The extract -> ask pipeline over ``names`` (as {"name": ...} items)."""
    write(folder / "helpers.py", EXTRACT_HELPERS)
    write_names(folder, names)
    write(folder / "pipeline-config.yaml", ASK_PIPELINE.replace("ASK_EXTRA", extra))
    write(folder / "in.txt", "input")


def write_names(folder: Path, names: list[str]) -> None:
    (folder / "names.json").write_text(json.dumps([{"name": name} for name in names]))


# --------------------------------------------------------------------------------------------
# 1. Order, prompts and call records
# --------------------------------------------------------------------------------------------


def test_llm_fan_out_sends_one_request_per_item_and_keeps_input_order(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    names = NAMES[:4]
    ask_pipeline(tmp_path, names)
    # The first item answers last, the last first: replies arrive in reverse order.
    responder = ItemResponder(delays={"alpha": 0.3, "bravo": 0.2, "charlie": 0.1, "delta": 0.0})
    fake_llm.responder = responder

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert sorted(asked(fake_llm)) == sorted(names)
    assert responder.finished == list(reversed(names))
    assert output_of(tmp_path, "r", "ask") == [f"about {name}" for name in names]
    keys = [default_key({"name": name}) for name in names]
    prompts = {request.prompt for request in fake_llm.requests_for(ANTHROPIC_MESSAGES_PATH)}
    assert prompts == {
        f"Describe NAME=[{name}] (item {index}, key {key})."
        for index, (name, key) in enumerate(zip(names, keys, strict=True))
    }
    records = calls_of(tmp_path, "r")
    assert {(c["item_key"], c["response"]) for c in records} == {
        (key, f"about {name}") for name, key in zip(names, keys, strict=True)
    }
    assert all(c["step"] == "ask" and c["outcome"] == "ok" for c in records)
    metrics = step_of(tmp_path, "r", "ask")["metrics"]
    assert metrics["items"] == 4 and metrics["items_done"] == 4
    assert metrics["items_reused"] == 0 and metrics["items_failed"] == 0
    assert metrics["input_tokens"] == 40 and metrics["output_tokens"] == 12
    assert set(item_rows(tmp_path, "r", "ask")) == set(keys)


def test_explicit_item_key_names_items_in_records_and_checkpoints(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    ask_pipeline(tmp_path, NAMES[:3], extra='item_key: "k-{{ item.name }}"')
    fake_llm.responder = ItemResponder()

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert sorted(c["item_key"] for c in calls_of(tmp_path, "r")) == [
        "k-alpha",
        "k-bravo",
        "k-charlie",
    ]
    assert item_rows(tmp_path, "r", "ask") == {
        "k-alpha": ("done", "about alpha"),
        "k-bravo": ("done", "about bravo"),
        "k-charlie": ("done", "about charlie"),
    }
    assert "key k-bravo" in " ".join(r.prompt for r in fake_llm.requests)


def test_empty_list_gives_an_empty_output_and_no_requests(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    ask_pipeline(tmp_path, [])

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert fake_llm.count(ANTHROPIC_MESSAGES_PATH) == 0
    assert output_of(tmp_path, "r", "ask") == []
    assert step_of(tmp_path, "r", "ask")["metrics"]["items"] == 0


# --------------------------------------------------------------------------------------------
# 2. Concurrency
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "top_level", "args", "limit"),
    [
        ("concurrency: 3", "", [], 3),
        ("", "concurrency: 2\n", [], 2),
        ("concurrency: 3", "", ["--concurrency", "1"], 1),
    ],
    ids=["step", "pipeline-default", "cli-overrides"],
)
def test_concurrency_bounds_the_requests_in_flight(
    cli,
    fake_llm: FakeLLMServer,
    tmp_path: Path,
    extra: str,
    top_level: str,
    args: list[str],
    limit: int,
):
    ask_pipeline(tmp_path, NAMES, extra=extra)
    config = tmp_path / "pipeline-config.yaml"
    config.write_text(config.read_text().replace("name: fan\n", "name: fan\n" + top_level))
    responder = ItemResponder(hold=0.12, gather=limit)
    fake_llm.responder = responder

    result = cli("run", "in.txt", "--run-id", "r", *args)

    assert result.exit_code == 0, result.output
    assert fake_llm.count(ANTHROPIC_MESSAGES_PATH) == 9
    assert responder.peak == limit
    assert output_of(tmp_path, "r", "ask") == [f"about {name}" for name in NAMES]
    if limit == 1:  # serialised: items go out one by one, in input order
        assert asked(fake_llm) == NAMES


def test_default_concurrency_is_eight(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    ask_pipeline(tmp_path, NAMES)
    responder = ItemResponder(hold=0.15, gather=8)
    fake_llm.responder = responder

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert responder.peak == 8


# --------------------------------------------------------------------------------------------
# 3. A failed item fails the step; resume sends only what is missing
# --------------------------------------------------------------------------------------------


def test_failed_item_fails_the_step_and_resume_sends_only_the_rest(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    names = NAMES[:5]
    ask_pipeline(tmp_path, names, extra='item_key: "{{ item.name }}"\n    concurrency: 1')
    fake_llm.responder = ItemResponder(fail=frozenset({"charlie"}))

    failed = cli("run", "in.txt", "--run-id", "r")

    assert_clean_error(failed, 1, 'step "ask"', 'item "charlie"', "cannot describe charlie")
    assert "1 of 5 items failed" in failed.output
    assert "pipeline resume r" in failed.output
    assert asked(fake_llm) == ["alpha", "bravo", "charlie"]
    assert state_of(tmp_path, "r")["status"] == "failed"
    rows = item_rows(tmp_path, "r", "ask")
    assert rows["alpha"] == ("done", "about alpha")
    assert rows["bravo"] == ("done", "about bravo")
    assert rows["charlie"][0] == "failed"
    assert "delta" not in rows and "echo" not in rows
    assert [c["item_key"] for c in calls_of(tmp_path, "r") if c["outcome"] == "error"] == [
        "charlie"
    ]

    fake_llm.reset()
    fake_llm.responder = ItemResponder()
    resumed = cli("resume", "r")

    assert resumed.exit_code == 0, resumed.output
    assert asked(fake_llm) == ["charlie", "delta", "echo"]
    assert output_of(tmp_path, "r", "ask") == [f"about {name}" for name in names]
    metrics = step_of(tmp_path, "r", "ask")["metrics"]
    assert (metrics["items_done"], metrics["items_reused"], metrics["items_failed"]) == (3, 2, 0)
    assert metrics["input_tokens"] == 50  # reused items' tokens are counted too
    assert "failed_items" not in metrics


def test_a_failed_item_cancels_the_items_in_flight_and_resume_sends_the_unfinished(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    names = NAMES[:6]
    ask_pipeline(tmp_path, names, extra='item_key: "{{ item.name }}"\n    concurrency: 3')
    # alpha fails at once while bravo and charlie are slow; the rest never start.
    fake_llm.responder = ItemResponder(
        delays={"bravo": 0.5, "charlie": 0.5}, fail=frozenset({"alpha"})
    )

    started = time.monotonic()
    failed = cli("run", "in.txt", "--run-id", "r")

    assert failed.exit_code == 1, failed.output
    assert time.monotonic() - started < 5
    rows = item_rows(tmp_path, "r", "ask")
    assert rows["alpha"][0] == "failed"
    assert not any(status == "done" for status, _ in rows.values())
    assert len(asked(fake_llm)) < 6  # no item is launched after the failure

    fake_llm.reset()
    fake_llm.responder = ItemResponder()
    resumed = cli("resume", "r")

    assert resumed.exit_code == 0, resumed.output
    assert sorted(asked(fake_llm)) == sorted(names)
    assert output_of(tmp_path, "r", "ask") == [f"about {name}" for name in names]
    # bravo and charlie were cancelled with their calls sent: the resume says so.
    assert "2 item(s) were cut short last time" in resumed.output


# --------------------------------------------------------------------------------------------
# 4-5. kill -9 and Ctrl-C in the middle of a fan-out step
# --------------------------------------------------------------------------------------------


def start_process(folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "stepline", *args],
        cwd=folder,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: Any, process: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"run ended early: {process.communicate()}")
        assert time.monotonic() < deadline, "timed out waiting for the run"
        time.sleep(0.02)


@pytest.fixture
def hanging_fan_out(tmp_path: Path, fake_llm: FakeLLMServer) -> ItemResponder:
    """Six items two at a time: alpha and bravo answer, every later one hangs."""
    ask_pipeline(tmp_path, NAMES[:6], extra='item_key: "{{ item.name }}"\n    concurrency: 2')
    responder = ItemResponder()
    responder.fast = {"alpha", "bravo"}
    responder.hang.set()
    fake_llm.responder = responder
    return responder


def stop_midway(fake_llm: FakeLLMServer, tmp_path: Path, run_id: str) -> subprocess.Popen[str]:
    """Start a run and return once alpha and bravo are done and charlie and delta hang.

    A slot frees only after its item is committed, so four requests at the server mean the
    first two items are in items.sqlite.
    """
    process = start_process(tmp_path, "run", "in.txt", "--run-id", run_id)
    wait_until(lambda: fake_llm.count(ANTHROPIC_MESSAGES_PATH) >= 4, process)
    time.sleep(0.1)  # nothing more may go out: both slots hang
    assert sorted(asked(fake_llm)) == ["alpha", "bravo", "charlie", "delta"]
    return process


def test_killed_fan_out_resumes_with_only_the_unfinished_items(
    hanging_fan_out: ItemResponder, fake_llm: FakeLLMServer, tmp_path: Path
):
    process = stop_midway(fake_llm, tmp_path, "k")
    process.kill()
    process.wait()

    assert state_of(tmp_path, "k")["status"] == "running"
    rows = item_rows(tmp_path, "k", "ask")
    assert {key: status for key, (status, _) in rows.items()} == {
        "alpha": "done",
        "bravo": "done",
        "charlie": "started",
        "delta": "started",
    }

    hanging_fan_out.hang.clear()
    fake_llm.reset()
    resumed = run_pipeline_process("resume", "k", cwd=tmp_path)

    assert resumed.returncode == 0, resumed.stderr
    assert sorted(asked(fake_llm)) == ["charlie", "delta", "echo", "foxtrot"]
    assert "2 item(s) were cut short last time" in resumed.stderr
    assert any(
        "2 item(s) were cut short" in (e.get("message") or "") for e in events_of(tmp_path, "k")
    )
    metrics = step_of(tmp_path, "k", "ask")["metrics"]
    assert (metrics["items_done"], metrics["items_reused"]) == (4, 2)

    fake_llm.reset()
    fresh = run_pipeline_process("run", "in.txt", "--run-id", "fresh", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert fake_llm.count(ANTHROPIC_MESSAGES_PATH) == 6
    assert output_of(tmp_path, "k", "ask") == output_of(tmp_path, "fresh", "ask")
    assert output_of(tmp_path, "k", "ask") == [f"about {name}" for name in NAMES[:6]]


def test_ctrl_c_mid_fan_out_interrupts_and_resumes(
    hanging_fan_out: ItemResponder, fake_llm: FakeLLMServer, tmp_path: Path
):
    process = stop_midway(fake_llm, tmp_path, "i")
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "pipeline resume i" in stdout + stderr
    state = state_of(tmp_path, "i")
    assert state["status"] == "interrupted"
    assert [s["status"] for s in state["steps"]] == ["completed", "pending"]
    rows = item_rows(tmp_path, "i", "ask")
    assert rows["alpha"] == ("done", "about alpha") and rows["bravo"] == ("done", "about bravo")
    assert not {"echo", "foxtrot"} & set(rows)
    shown = run_pipeline_process("show", "i", "--json", cwd=tmp_path)
    assert json.loads(shown.stdout)["status"] == "interrupted"

    hanging_fan_out.hang.clear()
    fake_llm.reset()
    resumed = run_pipeline_process("resume", "i", cwd=tmp_path)

    assert resumed.returncode == 0, resumed.stderr
    assert sorted(asked(fake_llm)) == ["charlie", "delta", "echo", "foxtrot"]
    assert output_of(tmp_path, "i", "ask") == [f"about {name}" for name in NAMES[:6]]
    assert state_of(tmp_path, "i")["status"] == "completed"


# --------------------------------------------------------------------------------------------
# 6. on_item_error: skip and collect; --skip-failed
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["skip", "collect"])
def test_skip_and_collect_complete_the_step_and_record_the_failures(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, strategy: str
):
    names = NAMES[:4]
    ask_pipeline(
        tmp_path, names, extra=f'item_key: "{{{{ item.name }}}}"\n    on_item_error: {strategy}'
    )
    fake_llm.responder = ItemResponder(fail=frozenset({"bravo"}))

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert state_of(tmp_path, "r")["status"] == "completed"
    ask = step_of(tmp_path, "r", "ask")
    assert ask["status"] == "completed"
    output = output_of(tmp_path, "r", "ask")
    if strategy == "skip":
        assert output == ["about alpha", "about charlie", "about delta"]
    else:
        assert output[0] == "about alpha" and output[2:] == ["about charlie", "about delta"]
        assert output[1]["item_key"] == "bravo"
        assert "cannot describe bravo" in output[1]["error"]
    metrics = ask["metrics"]
    assert (metrics["items"], metrics["items_done"], metrics["items_failed"]) == (4, 3, 1)
    assert [entry["item_key"] for entry in metrics["failed_items"]] == ["bravo"]
    assert "cannot describe bravo" in metrics["failed_items"][0]["error"]
    assert item_rows(tmp_path, "r", "ask")["bravo"][0] == "failed"


@pytest.mark.parametrize("strategy", ["skip", "collect"])
def test_resume_retries_failed_items_unless_skip_failed(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, strategy: str
):
    names = NAMES[:4]
    ask_pipeline(
        tmp_path, names, extra=f'item_key: "{{{{ item.name }}}}"\n    on_item_error: {strategy}'
    )
    fake_llm.responder = ItemResponder(fail=frozenset({"bravo"}))
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    first_output = output_of(tmp_path, "r", "ask")

    fake_llm.reset()
    fake_llm.responder = ItemResponder()
    kept = cli("resume", "r", "--skip-failed")

    assert kept.exit_code == 0, kept.output
    assert fake_llm.count(ANTHROPIC_MESSAGES_PATH) == 0
    assert output_of(tmp_path, "r", "ask") == first_output
    assert step_of(tmp_path, "r", "ask")["metrics"]["items_failed"] == 1

    retried = cli("resume", "r")

    assert retried.exit_code == 0, retried.output
    assert asked(fake_llm) == ["bravo"]
    assert output_of(tmp_path, "r", "ask") == [f"about {name}" for name in names]
    metrics = step_of(tmp_path, "r", "ask")["metrics"]
    assert (metrics["items_done"], metrics["items_reused"], metrics["items_failed"]) == (1, 3, 0)
    assert "failed_items" not in metrics

    fake_llm.reset()
    again = cli("resume", "r")
    assert again.exit_code == 0, again.output
    assert fake_llm.count(ANTHROPIC_MESSAGES_PATH) == 0


# --------------------------------------------------------------------------------------------
# 11. pipeline show notes failed items
# --------------------------------------------------------------------------------------------


def test_show_notes_the_failed_items_of_a_completed_step(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    ask_pipeline(tmp_path, NAMES[:4], extra="on_item_error: skip")
    fake_llm.responder = ItemResponder(fail=frozenset({"bravo", "delta"}))
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0

    shown = cli("show", "r")

    assert shown.exit_code == 0, shown.output
    assert "completed (2 of 4 items failed)" in shown.stdout
    extract_line = next(line for line in shown.stdout.splitlines() if "extract" in line)
    assert "items failed" not in extract_line


# --------------------------------------------------------------------------------------------
# 7. Errors: duplicate keys, a for_each that is not a list, config mistakes
# --------------------------------------------------------------------------------------------

ITEM_HELPERS = """
import asyncio
import json
from pathlib import Path

LOG = Path(__file__).with_name("calls.log")


def same(ctx):
    return ctx.item


def describe(ctx):
    with LOG.open("a") as handle:
        handle.write(f"{ctx.item_key}\\n")
    return {"item": ctx.item, "index": ctx.item_index, "key": ctx.item_key}


async def describe_later(ctx):
    await asyncio.sleep(0.01)
    return {"item": ctx.item, "index": ctx.item_index, "key": ctx.item_key}


def shaky(ctx):
    if ctx.item == "bad":
        raise ValueError("this item is bad")
    return ctx.item.upper()


async def nap(ctx):
    await asyncio.sleep(float(ctx.item))
    return ctx.item


def make(ctx):
    return json.loads(Path(__file__).with_name("made.json").read_text())
"""

ONE_STEP = """
name: fan
steps:
  - id: each
    kind: python
    function: helpers:FUNCTION
    for_each: SOURCE
    EXTRA
"""


def one_step(
    folder: Path, *, function: str = "same", source: str = "input.lines", extra: str = ""
) -> None:
    write(folder / "helpers.py", ITEM_HELPERS)
    write(
        folder / "pipeline-config.yaml",
        ONE_STEP.replace("FUNCTION", function).replace("SOURCE", source).replace("EXTRA", extra),
    )


def test_identical_items_without_item_key_are_duplicate_keys(cli, tmp_path: Path):
    one_step(tmp_path)
    write(tmp_path / "in.txt", "same\nother\nsame\n")

    result = cli("run", "in.txt", "--run-id", "r")

    key = default_key("same")
    assert_clean_error(
        result, 1, 'step "each"', f'duplicate item keys: "{key}" (items 1 and 3)', "item_key"
    )
    assert step_of(tmp_path, "r", "each")["status"] == "failed"


def test_duplicate_explicit_item_keys_are_named(cli, tmp_path: Path):
    one_step(tmp_path, source="input.records", extra='item_key: "{{ item.group }}"')
    records = [{"group": "g1"}, {"group": "g1"}, {"group": "g2"}, {"group": "g2"}]
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")

    result = cli("run", "in.jsonl")

    assert_clean_error(
        result, 1, '"g1" (items 1 and 2)', '"g2" (items 3 and 4)', "make item_key unique"
    )


def test_empty_item_key_is_an_error(cli, tmp_path: Path):
    one_step(tmp_path, extra='item_key: "{{ item[5:] }}"')
    write(tmp_path / "in.txt", "long enough\nshort\n")

    result = cli("run", "in.txt")

    assert_clean_error(result, 1, "item_key is empty for item 2")


@pytest.mark.parametrize(
    ("made", "source", "kind"),
    [
        ({"a": [1, 2]}, "{{ steps.make }}", "a mapping"),
        ("just text", "{{ steps.make }}", "text"),
        (42, "{{ steps.make }}", "a int"),
        ([1, 2], "{{ input.text }}", "text"),
    ],
    ids=["mapping", "text", "number", "input-text"],
)
def test_for_each_that_is_not_a_list_is_a_clean_error(
    cli, tmp_path: Path, made: Any, source: str, kind: str
):
    write(tmp_path / "helpers.py", ITEM_HELPERS)
    (tmp_path / "made.json").write_text(json.dumps(made))
    write(
        tmp_path / "pipeline-config.yaml",
        f"""
        name: fan
        steps:
          - id: make
            kind: python
            function: helpers:make
          - id: each
            kind: python
            function: helpers:same
            for_each: "{source}"
        """,
    )
    write(tmp_path / "in.txt", "x")

    result = cli("run", "in.txt", "--run-id", "r")

    assert_clean_error(result, 1, 'step "each"', f"for_each must give a list, but it gave {kind}")
    assert [s["status"] for s in state_of(tmp_path, "r")["steps"]] == ["completed", "failed"]


def test_for_each_naming_a_missing_key_says_which(cli, tmp_path: Path):
    write(tmp_path / "helpers.py", ITEM_HELPERS)
    (tmp_path / "made.json").write_text(json.dumps({"rows": [1, 2]}))
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: fan
        steps:
          - id: make
            kind: python
            function: helpers:make
          - id: each
            kind: python
            function: helpers:same
            for_each: "{{ steps.make.nope }}"
        """,
    )
    write(tmp_path / "in.txt", "x")

    result = cli("run", "in.txt")

    assert_clean_error(result, 1, 'step "each"', "nope")
    assert "Undefined" not in result.output


FAN_OUT_SHELL = """
name: fan
steps:
  - id: first
    kind: shell
    command: ["echo", "[1, 2]"]
  - id: second
    kind: shell
    command: ["echo", "hi"]
    KEYS
"""


@pytest.mark.parametrize(
    ("keys", "fragments"),
    [
        ('item_key: "{{ item }}"', ["item_key needs for_each"]),
        ("concurrency: 2", ["concurrency needs for_each"]),
        ("on_item_error: skip", ["on_item_error needs for_each"]),
        ("for_each: steps.first", ["for_each must be input.lines, input.records or a"]),
        ('for_each: "{{ item }}"', ["for_each cannot use item"]),
        ('for_each: "{{ steps.first[item_index] }}"', ["for_each cannot use item_index"]),
        ('for_each: "{{ steps.nope }}"', ['there is no step "nope"']),
        ('for_each: "{{ steps.first }}"\n    on_item_error: ignore', ["on_item_error"]),
        ('for_each: "{{ steps.first }}"\n    concurrency: 0', ["concurrency"]),
    ],
)
def test_fan_out_config_mistakes_are_spec_errors(
    cli, tmp_path: Path, keys: str, fragments: list[str]
):
    write(tmp_path / "pipeline-config.yaml", FAN_OUT_SHELL.replace("KEYS", keys))
    write(tmp_path / "in.txt", "x")

    assert_clean_error(cli("validate"), 2, *fragments)
    assert_clean_error(cli("run", "in.txt"), 2, *fragments)
    assert not (tmp_path / ".pipeline").exists() or not any((tmp_path / ".pipeline").iterdir())


@pytest.mark.parametrize(
    "command",
    ['["echo", "{{ item }}"]', '["echo", "{{ item_index }}"]', '["echo", "{{ item_key }}"]'],
)
def test_item_variables_outside_a_fan_out_step_are_spec_errors(cli, tmp_path: Path, command: str):
    write(
        tmp_path / "pipeline-config.yaml",
        FAN_OUT_SHELL.replace('["echo", "hi"]', command).replace("KEYS", ""),
    )

    result = cli("validate")

    assert_clean_error(result, 2, 'step "second": unknown template variable "item')
    assert "exist in steps with for_each" in result.output


@pytest.mark.parametrize(
    "source", ["items: {{ steps.first }}", "{{ steps.first }}{{ steps.first }}"]
)
def test_for_each_with_text_around_the_expression_fails_validation(
    cli, tmp_path: Path, source: str
):
    write(
        tmp_path / "pipeline-config.yaml",
        FAN_OUT_SHELL.replace("KEYS", f'for_each: "{source}"'),
    )

    assert_clean_error(cli("validate"), 2, "for_each")


# --------------------------------------------------------------------------------------------
# 8. input.lines and input.records
# --------------------------------------------------------------------------------------------


def test_input_lines_skips_blank_lines(cli, tmp_path: Path):
    one_step(tmp_path, function="describe", extra='item_key: "line-{{ item_index }}"')
    write(tmp_path / "in.txt", "first\n\n   \nsecond one\nthird\n")

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert output_of(tmp_path, "r", "each") == [
        {"item": "first", "index": 0, "key": "line-0"},
        {"item": "second one", "index": 1, "key": "line-1"},
        {"item": "third", "index": 2, "key": "line-2"},
    ]


RECORDS = [{"id": 1, "title": "one"}, {"id": 2, "title": "two, too"}, {"id": 3, "title": "3"}]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("in.jsonl", "\n".join(json.dumps(r) for r in RECORDS) + "\n\n", RECORDS),
        ("in.json", json.dumps(RECORDS, indent=2), RECORDS),
        (
            "in.csv",
            'id,title\n1,one\n2,"two, too"\n3,3\n',
            [{"id": str(r["id"]), "title": r["title"]} for r in RECORDS],
        ),
        ("in.jsonl", json.dumps(RECORDS[0]) + "\n", RECORDS[:1]),
    ],
    ids=["jsonl", "json-array", "csv", "one-jsonl-line"],
)
def test_input_records(cli, tmp_path: Path, name: str, text: str, expected: list[Any]):
    one_step(tmp_path, source="input.records", extra='item_key: "{{ item.id }}"')
    (tmp_path / name).write_text(text)

    result = cli("run", name, "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert output_of(tmp_path, "r", "each") == expected
    assert list(item_rows(tmp_path, "r", "each")) == [str(r["id"]) for r in expected]


@pytest.mark.parametrize("source", ['"{{ input.records }}"', '"{{input.records}}"'])
def test_input_records_in_braces_is_input_records(cli, tmp_path: Path, source: str):
    """The tour writes for_each as an expression, so users write this one so too."""
    one_step(tmp_path, source=source, extra='item_key: "{{ item.id }}"')
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")

    assert cli("validate").exit_code == 0
    result = cli("run", "in.jsonl", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert output_of(tmp_path, "r", "each") == RECORDS


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ('"{{ input.records | first }}"', ["input.records is not a template value", "for_each:"]),
        ('"{{ input.recrods }}"', ['input has no attribute "recrods"', "text, path, name"]),
    ],
)
def test_input_attributes_that_do_not_exist_are_refused_at_load(
    cli, tmp_path: Path, source: str, words: list[str]
):
    one_step(tmp_path, source=source)
    write(tmp_path / "in.txt", "a\n")

    for result in (cli("validate"), cli("run", "in.txt", "--run-id", "r")):
        assert_clean_error(result, 2, 'step "each" for_each', *words)
        assert "InputView" not in result.output and "stepline." not in result.output
    assert not (tmp_path / ".pipeline" / "r").exists()


def test_a_for_each_that_fails_at_run_time_names_its_step_once(cli, tmp_path: Path):
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: once
        steps:
          - {id: first, kind: shell, command: ["echo", '{"a": [1, 2]}']}
          - id: each
            kind: shell
            for_each: "{{ steps.first.nope }}"
            command: ["echo", "{{ item }}"]
        """,
    )
    write(tmp_path / "in.txt", "x\n")

    result = cli("run", "in.txt", "--run-id", "r")

    assert_clean_error(result, 1, 'step "each" for_each: template error', "nope")
    assert all(line.count('step "each"') <= 1 for line in result.output.splitlines())


def test_broken_json_lines_name_the_line(cli, tmp_path: Path):
    one_step(tmp_path, source="input.records")
    (tmp_path / "in.jsonl").write_text('{"id": 1}\n\n{"id": 2,\n{"id": 3}\n')

    result = cli("run", "in.jsonl", "--run-id", "r")

    assert_clean_error(result, 1, 'step "each"', "line 3 of in.jsonl is not JSON", "JSON Lines")
    assert step_of(tmp_path, "r", "each")["status"] == "failed"


# --------------------------------------------------------------------------------------------
# 9. Python and shell fan-out; per-item timeouts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("function", ["describe", "describe_later"])
def test_python_fan_out_sees_item_index_and_key(cli, tmp_path: Path, function: str):
    one_step(tmp_path, function=function, extra='item_key: "{{ item | upper }}"')
    write(tmp_path / "in.txt", "red\ngreen\nblue\n")

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert output_of(tmp_path, "r", "each") == [
        {"item": "red", "index": 0, "key": "RED"},
        {"item": "green", "index": 1, "key": "GREEN"},
        {"item": "blue", "index": 2, "key": "BLUE"},
    ]


def test_python_item_exceptions_are_collected(cli, tmp_path: Path):
    one_step(tmp_path, function="shaky", extra="on_item_error: collect")
    write(tmp_path / "in.txt", "good\nbad\nfine\n")

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    output = output_of(tmp_path, "r", "each")
    assert output[0] == "GOOD" and output[2] == "FINE"
    assert output[1]["item_key"] == default_key("bad")
    assert "ValueError: this item is bad" in output[1]["error"]
    assert f'each: item "{default_key("bad")}" failed: ' in result.output  # logged as it happens


def test_shell_fan_out_renders_each_item_as_one_argument(cli, tmp_path: Path):
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: fan
        steps:
          - id: each
            kind: shell
            for_each: input.lines
            command:
              - python3
              - -c
              - "import sys; print(len(sys.argv) - 1, sys.argv[1].upper())"
              - "{{ item_index }}: {{ item }}"
        """,
    )
    write(tmp_path / "in.txt", "it's; a test\n$(touch pwned) `x`\n")

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert output_of(tmp_path, "r", "each") == ["1 0: IT'S; A TEST", "1 1: $(TOUCH PWNED) `X`"]
    assert not (tmp_path / "pwned").exists()


def test_timeout_applies_to_each_python_item(cli, tmp_path: Path):
    # Four items of 0.2 s one at a time take 0.8 s: longer than the timeout, fine per item.
    one_step(tmp_path, function="nap", extra="timeout: 0.5s\n    concurrency: 1")
    write(tmp_path / "in.txt", "0.2\n0.21\n0.22\n0.23\n")

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert output_of(tmp_path, "r", "each") == ["0.2", "0.21", "0.22", "0.23"]


@pytest.mark.parametrize("kind", ["python", "shell"])
def test_an_item_over_the_timeout_fails_alone(cli, tmp_path: Path, kind: str):
    # 3 s: a python3 process starting on a loaded machine must not look like a timeout
    work = (
        "kind: python\n    function: helpers:nap"
        if kind == "python"
        else "kind: shell\n    command: [python3, -c, 'import sys, time; "
        "time.sleep(float(sys.argv[1])); print(sys.argv[1])', '{{ item }}']"
    )
    write(tmp_path / "helpers.py", ITEM_HELPERS)
    write(
        tmp_path / "pipeline-config.yaml",
        f"""
name: fan
steps:
  - id: each
    {work}
    for_each: input.lines
    item_key: "n{{{{ item_index }}}}"
    on_item_error: collect
    timeout: 3s
""",
    )
    write(tmp_path / "in.txt", "0.01\n20\n0.02\n")

    started = time.monotonic()
    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 10
    output = output_of(tmp_path, "r", "each")
    assert output[1] == {"error": "timed out after 3.0s", "item_key": "n1"}
    assert len(output) == 3 and str(output[0]) == "0.01" and str(output[2]) == "0.02"
    failed = step_of(tmp_path, "r", "each")["metrics"]["failed_items"]
    assert failed == [{"item_key": "n1", "error": "timed out after 3.0s"}]


def test_an_item_over_the_timeout_fails_the_step_by_default(cli, tmp_path: Path):
    one_step(tmp_path, function="nap", extra='timeout: 0.3s\n    item_key: "n{{ item_index }}"')
    write(tmp_path / "in.txt", "0.01\n20\n")

    result = cli("run", "in.txt")

    assert_clean_error(result, 1, 'step "each"', 'item "n1": timed out after 0.3s')


# --------------------------------------------------------------------------------------------
# 10. Only changed items run again
# --------------------------------------------------------------------------------------------


@pytest.fixture
def finished_ask(cli, fake_llm: FakeLLMServer, tmp_path: Path) -> Path:
    """A completed run "r" of extract -> ask over alpha..delta; the server's log cleared."""
    ask_pipeline(tmp_path, NAMES[:4])
    fake_llm.responder = ItemResponder()
    result = cli("run", "in.txt", "--run-id", "r")
    assert result.exit_code == 0, result.output
    fake_llm.reset()
    return run_dir(tmp_path, "r")


def test_editing_one_upstream_item_reruns_only_that_item(
    cli, fake_llm: FakeLLMServer, finished_ask: Path, tmp_path: Path
):
    extract = finished_ask / "steps" / "01-extract.json"
    extract.write_text(json.dumps([{"name": n} for n in ["alpha", "zulu", "charlie", "delta"]]))

    result = cli("resume", "r")

    assert result.exit_code == 0, result.output
    assert asked(fake_llm) == ["zulu"]
    assert output_of(tmp_path, "r", "ask") == [
        "about alpha",
        "about zulu",
        "about charlie",
        "about delta",
    ]
    metrics = step_of(tmp_path, "r", "ask")["metrics"]
    assert (metrics["items"], metrics["items_done"], metrics["items_reused"]) == (4, 1, 3)
    assert metrics["input_tokens"] == 40
    assert [c["item_key"] for c in calls_of(tmp_path, "r")][-1] == default_key({"name": "zulu"})


def test_changing_only_concurrency_reruns_nothing(
    cli, fake_llm: FakeLLMServer, finished_ask: Path, tmp_path: Path
):
    config = tmp_path / "pipeline-config.yaml"  # concurrency decides how, not what
    config.write_text(config.read_text() + "    concurrency: 2\n")

    result = cli("resume", "r")

    assert result.exit_code == 0, result.output
    assert fake_llm.count(ANTHROPIC_MESSAGES_PATH) == 0


def test_reordered_items_are_all_reused_in_the_new_order(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    # Without item_index in the prompt, an item's result does not depend on its place.
    ask_pipeline(tmp_path, NAMES[:4])
    config = tmp_path / "pipeline-config.yaml"
    config.write_text(
        config.read_text().replace(" (item {{ item_index }}, key {{ item_key }})", "")
    )
    fake_llm.responder = ItemResponder()
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    fake_llm.reset()
    reordered = ["delta", "charlie", "bravo", "alpha"]
    extract = run_dir(tmp_path, "r") / "steps" / "01-extract.json"
    extract.write_text(json.dumps([{"name": n} for n in reordered]))

    result = cli("resume", "r")

    assert result.exit_code == 0, result.output
    assert fake_llm.count(ANTHROPIC_MESSAGES_PATH) == 0
    assert output_of(tmp_path, "r", "ask") == [f"about {n}" for n in reordered]
    assert step_of(tmp_path, "r", "ask")["metrics"]["items_reused"] == 4


def test_changing_the_prompt_reruns_every_item(
    cli, fake_llm: FakeLLMServer, finished_ask: Path, tmp_path: Path
):
    config = tmp_path / "pipeline-config.yaml"
    config.write_text(config.read_text().replace("Describe", "Portray"))

    result = cli("resume", "r")

    assert result.exit_code == 0, result.output
    assert sorted(asked(fake_llm)) == sorted(NAMES[:4])
    assert step_of(tmp_path, "r", "ask")["metrics"]["items_reused"] == 0


def test_a_changed_var_the_prompt_reads_reruns_every_item(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    ask_pipeline(tmp_path, NAMES[:3], extra="")
    config = tmp_path / "pipeline-config.yaml"
    text = config.read_text().replace("Describe", "Describe {{ vars.tone }}")
    config.write_text(text.replace("steps:\n", "vars: {tone: plainly}\nsteps:\n", 1))
    fake_llm.responder = ItemResponder()
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    fake_llm.reset()

    result = cli("resume", "r", "--set", "tone=warmly")

    assert result.exit_code == 0, result.output
    assert sorted(asked(fake_llm)) == sorted(NAMES[:3])
    assert all("warmly" in r.prompt for r in fake_llm.requests_for(ANTHROPIC_MESSAGES_PATH))


LINES_PIPELINE = (
    HEADER
    + """
steps:
  - id: ask
    kind: llm
    for_each: input.lines
    prompt: "Describe NAME=[{{ item }}]"
  - id: joined
    kind: shell
    command: ["echo", "{{ steps.ask | join(' / ') }}"]
"""
)


def test_editing_one_input_line_reruns_only_that_item_and_what_follows(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write(tmp_path / "pipeline-config.yaml", LINES_PIPELINE)
    write(tmp_path / "in.txt", "alpha\nbravo\ncharlie\n")
    fake_llm.responder = ItemResponder()
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    fake_llm.reset()
    (run_dir(tmp_path, "r") / "input" / "original.txt").write_text("alpha\nbravo\ndelta\n")

    result = cli("resume", "r")

    assert result.exit_code == 0, result.output
    assert asked(fake_llm) == ["delta"]
    assert output_of(tmp_path, "r", "joined") == "about alpha / about bravo / about delta"
    metrics = step_of(tmp_path, "r", "ask")["metrics"]
    assert (metrics["items_done"], metrics["items_reused"]) == (1, 2)


def test_items_rerun_when_the_prompt_reads_the_whole_list_and_it_changes(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    ask_pipeline(tmp_path, NAMES[:3], extra="")
    config = tmp_path / "pipeline-config.yaml"
    config.write_text(
        config.read_text().replace(
            "(item {{ item_index }}, key {{ item_key }})", "(one of {{ steps.extract | length }})"
        )
    )
    fake_llm.responder = ItemResponder()
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    fake_llm.reset()
    write_names(tmp_path, NAMES[:4])

    result = cli("resume", "r", "--from-step", "extract")

    assert result.exit_code == 0, result.output
    # Every prompt now says "one of 4": a fresh run would send all four.
    assert sorted(asked(fake_llm)) == sorted(NAMES[:4])


def test_items_whose_index_moved_rerun_when_the_step_uses_item_index(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: fan
        steps:
          - id: each
            kind: shell
            for_each: input.lines
            command: ["echo", "{{ item }}-{{ item_index }}"]
        """,
    )
    write(tmp_path / "in.txt", "a\nb\n")
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    (run_dir(tmp_path, "r") / "input" / "original.txt").write_text("new\na\nb\n")

    result = cli("resume", "r")

    assert result.exit_code == 0, result.output
    assert output_of(tmp_path, "r", "each") == ["new-0", "a-1", "b-2"]


def test_setting_on_item_error_skip_after_a_failure_keeps_the_finished_items(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    # The failure's hint suggests exactly this edit; it must not pay for finished items again.
    ask_pipeline(tmp_path, NAMES[:5], extra='item_key: "{{ item.name }}"\n    concurrency: 1')
    fake_llm.responder = ItemResponder(fail=frozenset({"charlie"}))
    failed = cli("run", "in.txt", "--run-id", "r")
    assert failed.exit_code == 1 and "on_item_error: skip" in failed.output
    fake_llm.reset()
    config = tmp_path / "pipeline-config.yaml"
    config.write_text(config.read_text() + "    on_item_error: skip\n")

    result = cli("resume", "r")

    assert result.exit_code == 0, result.output
    assert asked(fake_llm) == ["charlie", "delta", "echo"]
    assert output_of(tmp_path, "r", "ask") == [
        "about alpha",
        "about bravo",
        "about delta",
        "about echo",
    ]


def test_from_step_reuses_unchanged_items_and_fresh_items_redoes_them(cli, tmp_path: Path):
    # Issue 4: "Resume and --from-step skip completed items whose key and fingerprint are
    # unchanged". An edited script is not in the fingerprint: --fresh-items redoes every item.
    write(tmp_path / "shout.py", "import sys\nprint(sys.argv[1].upper())\n")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: fan
        steps:
          - id: each
            kind: shell
            for_each: input.lines
            command: ["python3", "shout.py", "{{ item }}"]
        """,
    )
    write(tmp_path / "in.txt", "red\ngreen\n")
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    assert output_of(tmp_path, "r", "each") == ["RED", "GREEN"]
    write(tmp_path / "shout.py", "import sys\nprint(sys.argv[1] + '!')\n")

    assert cli("resume", "r", "--from-step", "each").exit_code == 0
    assert output_of(tmp_path, "r", "each") == ["RED", "GREEN"]

    result = cli("resume", "r", "--from-step", "each", "--fresh-items")

    assert result.exit_code == 0, result.output
    assert output_of(tmp_path, "r", "each") == ["red!", "green!"]


def test_python_api_takes_the_fan_out_options(fake_llm: FakeLLMServer, tmp_path: Path):
    import stepline

    ask_pipeline(tmp_path, NAMES)
    responder = ItemResponder(hold=0.05)
    fake_llm.responder = responder

    result = stepline.run(
        tmp_path / "pipeline-config.yaml", tmp_path / "in.txt", run_id="api", concurrency=1
    )

    assert result.status.value == "completed"
    assert responder.peak == 1
    asked_before = len(asked(fake_llm))
    again = stepline.resume("api", from_step="ask", fresh_items=True, concurrency=2)
    assert again.status.value == "completed"
    assert len(asked(fake_llm)) == 2 * asked_before, "fresh_items asked every item again"
