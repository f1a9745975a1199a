"""``executor: processes``: Python steps in worker processes, with every guarantee threads give.

Each test runs real worker processes (``python -m stepline.workers.process_main``) and checks
what the run records against what a thread-run gives, and what happens to the workers: a
worker that dies fails only its attempt, a timeout kills the hung worker, Ctrl-C and kill -9
of the runner leave no worker behind and a run that resumes with only the missing items.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from stepline.store.state import load_state
from tests.e2e.test_errors import assert_clean_error
from tests.e2e.test_fanout import start_process
from tests.helpers import eventually, run_pipeline_process, write

WORK = """
import asyncio
import os
import time
from pathlib import Path


def here(ctx):
    # the test's folder, wherever the engine put this module (a cluster ships a copy)
    return ctx.run_dir.parent.parent


def note(ctx):
    with open(here(ctx) / "ran.txt", "a") as handle:  # O_APPEND: one whole line per write
        handle.write(f"{ctx.item} {os.getpid()}\\n")


def square(ctx):
    note(ctx)
    folder = here(ctx)
    item = ctx.item
    if item == "die":
        os._exit(3)
    if item == "die-once" and not (folder / "died").exists():
        (folder / "died").touch()
        os._exit(3)
    if item == "hang":
        (folder / f"hung-{os.getpid()}").touch()
        time.sleep(300)
    if item == "raise":
        raise ValueError("bad item")
    if item == "block":
        (folder / f"blocked-{os.getpid()}").touch()
        while not (folder / "go").exists():
            time.sleep(0.02)
    print("noise on stdout")  # must not reach the runner's pipe
    ctx.log.info("squared %s", item)
    return {"item": item, "square": len(str(item)) ** 2}


async def square_later(ctx):
    await asyncio.sleep(0)
    return square(ctx)


def where(ctx):
    folder = Path(__file__).parent
    return {"file": __file__, "cwd": os.getcwd(), "files": sorted(os.listdir(folder))}


def whole(ctx):
    return {"pid": os.getpid(), "count": len(ctx.steps["items"])}


def explode(ctx):
    raise ValueError("exploded")
"""


def pipeline(
    folder: Path,
    items: list[Any],
    *,
    executor: str | None = "processes",
    workers: int | None = 2,
    extra: str = "",
    function: str = "work:square",
    top: str = "",
) -> None:
    write(folder / "work.py", WORK)
    write(folder / "lists.py", f"def items(ctx):\n    return {items!r}\n")
    placed = f"\n    executor: {executor}" if executor else ""
    placed += f"\n    workers: {workers}" if workers else ""
    config = f"""name: procs
{top}steps:
  - id: items
    kind: python
    function: lists:items
  - id: work
    kind: python
    function: {function}
    for_each: "{{{{ steps['items'] }}}}"{placed}{extra}
"""
    write(folder / "pipeline-config.yaml", config)
    write(folder / "in.txt", "x\n")


def output(folder: Path, run_id: str, step: str = "work") -> Any:
    state = load_state(folder / ".pipeline" / run_id / "state.json")
    record = next(s for s in state.steps if s.id == step)
    assert record.output is not None
    return json.loads((folder / ".pipeline" / run_id / record.output).read_text())


def ran(folder: Path) -> list[tuple[str, int]]:
    """(item, pid) of every attempt that started, in the order they wrote."""
    path = folder / "ran.txt"
    if not path.exists():
        return []
    return [(line.split()[0], int(line.split()[1])) for line in path.read_text().splitlines()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie is dead: nobody may have reaped it yet


def worker_pids() -> list[int]:
    """The worker processes of this test process's runs that are still alive."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
        except OSError:
            continue
        if b"stepline.workers.process_main" in cmdline and int(parent) == os.getpid():
            pids.append(int(entry.name))
    return [pid for pid in pids if alive(pid)]


RAISE_LINE = 'raise ValueError("bad item")'
RAISED_AT = "work.py:{}".format(
    next(
        number
        for number, line in enumerate(WORK.lstrip().splitlines(), start=1)
        if line.strip() == RAISE_LINE
    )
)
ITEMS = ["a", "bb", "ccc", "dddd", "eeeee", "ffffff"]


def test_processes_give_the_output_threads_give_in_input_order(cli, tmp_path: Path):
    pipeline(tmp_path, ITEMS, executor="threads", workers=None, extra="\n    concurrency: 4")
    assert cli("run", "in.txt", "--run-id", "threads").exit_code == 0
    on_threads = {pid for _, pid in ran(tmp_path)}
    (tmp_path / "ran.txt").unlink()

    pipeline(tmp_path, ITEMS, extra="\n    concurrency: 4")
    result = cli("run", "in.txt", "--run-id", "procs")

    assert result.exit_code == 0, result.stderr
    assert output(tmp_path, "procs") == output(tmp_path, "threads")
    assert [value["item"] for value in output(tmp_path, "procs")] == ITEMS
    assert on_threads == {os.getpid()}
    pids = {pid for _, pid in ran(tmp_path)}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # workers: 2
    assert "noise on stdout" not in result.stdout
    assert worker_pids() == []  # the pool is closed with the run

    metrics = load_state(tmp_path / ".pipeline" / "procs" / "state.json").steps[1].metrics
    assert (metrics["executor"], metrics["workers"]) == ("processes", 2)
    assert metrics["item_seconds"] > 0
    shown = cli("show", "procs")
    assert re.search(r"processes: 2 workers, \d+ms per\s+item", shown.stdout), shown.stdout
    threads = load_state(tmp_path / ".pipeline" / "threads" / "state.json").steps[1].metrics
    assert threads["executor"] == "threads" and "workers" not in threads
    assert "workers" not in cli("show", "threads").stdout


def test_a_step_that_is_not_a_fan_out_runs_on_a_worker_too(cli, tmp_path: Path):
    pipeline(tmp_path, ITEMS)
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: procs
        executor: processes
        steps:
          - id: items
            kind: python
            function: lists:items
          - id: unread
            kind: python
            function: lists:items
          - id: whole
            kind: python
            function: work:whole
        """,
    )
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    value = output(tmp_path, "r", "whole")
    assert value["count"] == len(ITEMS) and value["pid"] != os.getpid()
    state = load_state(tmp_path / ".pipeline" / "r" / "state.json")
    # what the function read on the worker is recorded: only "items", never "unread"
    assert state.steps[2].reads == {"items": state.steps[0].output_hash, "@input": state.input_hash}


def test_async_functions_and_logs_work_on_workers(cli, tmp_path: Path):
    pipeline(tmp_path, ITEMS[:2], function="work:square_later")
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    assert [value["item"] for value in output(tmp_path, "r")] == ITEMS[:2]
    events = [
        json.loads(line)
        for line in (tmp_path / ".pipeline" / "r" / "events.jsonl").read_text().splitlines()
    ]
    logged = sorted(e["message"] for e in events if e["type"] == "log" and e.get("step") == "work")
    assert logged == ["squared a", "squared bb"]


@pytest.mark.parametrize("strategy", ["skip", "collect"])
def test_failing_items_follow_on_item_error(cli, tmp_path: Path, strategy: str):
    pipeline(tmp_path, ["a", "raise", "bb", "die"], extra=f"\n    on_item_error: {strategy}")
    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.stderr
    values = output(tmp_path, "r")
    kept = [value["item"] for value in values if "item" in value]
    assert kept == ["a", "bb"]
    if strategy == "collect":
        errors = [value["error"] for value in values if "error" in value]
        assert errors[0] == f"ValueError: bad item ({RAISED_AT})"
        assert errors[1].startswith("worker process ") and "exited with code 3" in errors[1]
    assert worker_pids() == []


def test_a_failed_item_fails_the_step_and_resume_runs_only_it(cli, tmp_path: Path):
    pipeline(tmp_path, ["a", "raise", "bb"], extra="\n    concurrency: 1")
    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 1
    assert 'item "' in result.stderr and f"ValueError: bad item ({RAISED_AT})" in result.stderr
    assert "Traceback" not in result.stderr
    assert [item for item, _ in ran(tmp_path)] == ["a", "raise"]

    (tmp_path / "lists.py").write_text("def items(ctx):\n    return ['a', 'cc', 'bb']\n")
    assert cli("resume", "r").exit_code == 0
    assert [item for item, _ in ran(tmp_path)] == ["a", "raise", "cc", "bb"]


def test_a_worker_that_dies_fails_only_that_attempt_and_retry_gets_a_new_worker(
    cli, tmp_path: Path
):
    retry = "\n    retry: {attempts: 2, initial_delay: 1ms, max_delay: 2ms}"
    pipeline(tmp_path, ["a", "die-once", "bb"], extra=retry)
    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.stderr
    assert [value["item"] for value in output(tmp_path, "r")] == ["a", "die-once", "bb"]
    attempts = [pid for item, pid in ran(tmp_path) if item == "die-once"]
    assert len(attempts) == 2 and attempts[0] != attempts[1]  # the dead worker was replaced
    assert "exited with code 3 while running it" in result.stderr  # the retry's warning


def test_a_timeout_kills_the_hung_worker_and_the_next_item_runs(cli, tmp_path: Path):
    pipeline(
        tmp_path,
        ["hang", "a", "bb"],
        extra="\n    timeout: 1s\n    on_item_error: collect\n    concurrency: 1",
    )
    started = time.monotonic()
    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.stderr
    assert time.monotonic() - started < 60  # the hung item sleeps for 300 s
    values = output(tmp_path, "r")
    assert values[0]["error"] == "timed out after 1.0s"
    assert [value["item"] for value in values[1:]] == ["a", "bb"]
    (hung,) = [int(path.name.split("-")[1]) for path in tmp_path.glob("hung-*")]
    assert not alive(hung)
    assert hung not in {pid for item, pid in ran(tmp_path) if item != "hang"}


def test_a_function_a_worker_cannot_import_fails_the_step_naming_it(cli, tmp_path: Path):
    pipeline(tmp_path, ITEMS, extra="\n    on_item_error: skip")
    work = tmp_path / "work.py"
    work.write_text(
        'import os\nif os.environ.get("STEPLINE_EXECUTOR") == "processes":\n'
        "    import not_installed_on_workers\n" + work.read_text()
    )
    result = cli("run", "in.txt", "--run-id", "r")

    assert_clean_error(result, code=1)
    assert 'step "work"' in result.stderr
    assert "cannot import work:square on worker process " in result.stderr
    assert "not_installed_on_workers" in result.stderr
    assert ran(tmp_path) == []

    work.write_text(WORK)  # installed now
    assert cli("resume", "r").exit_code == 0
    assert [value["item"] for value in output(tmp_path, "r")] == ITEMS


def test_executor_and_workers_change_nothing_the_run_records(cli, tmp_path: Path):
    pipeline(tmp_path, ITEMS, executor=None, workers=None)
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    first = ran(tmp_path)

    pipeline(tmp_path, ITEMS)  # executor: processes, workers: 2
    result = cli("resume", "r", "--from-step", "work")

    assert result.exit_code == 0, result.stderr
    assert ran(tmp_path) == first  # every item reused
    state = load_state(tmp_path / ".pipeline" / "r" / "state.json")
    assert state.steps[1].metrics["items_reused"] == len(ITEMS)


def test_the_executor_option_sticks_to_the_run_for_resumes(cli, tmp_path: Path):
    pipeline(
        tmp_path, ["a", "raise", "bb"], executor=None, workers=None, extra="\n    concurrency: 1"
    )
    assert cli("run", "in.txt", "--run-id", "r", "--executor", "processes").exit_code == 1
    assert {pid for _, pid in ran(tmp_path)} - {os.getpid()}

    (tmp_path / "lists.py").write_text("def items(ctx):\n    return ['a', 'cc', 'bb']\n")
    assert cli("resume", "r").exit_code == 0

    state = load_state(tmp_path / ".pipeline" / "r" / "state.json")
    assert state.executor == "processes"
    assert os.getpid() not in {pid for item, pid in ran(tmp_path) if item in ("cc", "bb")}


def test_an_unknown_executor_option_is_a_usage_error(cli, tmp_path: Path):
    pipeline(tmp_path, ITEMS)
    result = cli("run", "in.txt", "--executor", "procesess")
    assert_clean_error(result, code=2)
    assert '--executor "procesess": no such executor; did you mean "processes"?' in result.stderr


def test_workers_with_threads_is_a_config_error(cli, tmp_path: Path):
    pipeline(tmp_path, ITEMS, executor="threads")
    result = cli("run", "in.txt")
    assert_clean_error(result, code=2)
    assert "workers applies to executor: processes, ray and dask" in result.stderr
    assert "pipeline-config.yaml" in result.stderr


# --------------------------------------------------------------------------------------------
# The runner stopped: Ctrl-C and kill -9 with items in flight on workers
# --------------------------------------------------------------------------------------------

BLOCKING = ["a", "bb", "block", "block2", "ccc", "dddd"]


def blocking_pipeline(folder: Path) -> None:
    pipeline(folder, BLOCKING, extra="\n    concurrency: 2")
    work = folder / "work.py"
    work.write_text(work.read_text().replace('if item == "block":', 'if item.startswith("block"):'))


def start_run(folder: Path, run_id: str) -> subprocess.Popen[str]:
    """A run whose workers are both blocked in an item (a, bb done and committed)."""
    process = start_process(folder, "run", "in.txt", "--run-id", run_id)
    eventually(lambda: len(list(folder.glob("blocked-*"))) == 2, what="two blocked workers")
    return process


def blocked_workers(folder: Path) -> list[int]:
    return [int(path.name.split("-")[1]) for path in folder.glob("blocked-*")]


def test_ctrl_c_stops_the_workers_and_resume_runs_only_the_unfinished_items(tmp_path: Path):
    blocking_pipeline(tmp_path)
    process = start_run(tmp_path, "i")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert not any(alive(pid) for pid in blocked_workers(tmp_path))
    assert sorted(item for item, _ in ran(tmp_path)) == ["a", "bb", "block", "block2"]

    (tmp_path / "go").touch()
    resumed = run_pipeline_process("resume", "i", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    items = [item for item, _ in ran(tmp_path)]
    assert sorted(items) == sorted(["a", "bb", "block", "block2"] + BLOCKING[2:])
    assert [value["item"] for value in output(tmp_path, "i")] == BLOCKING


def test_kill_9_of_the_runner_takes_its_workers_and_resume_sends_only_the_missing(
    tmp_path: Path,
):
    blocking_pipeline(tmp_path)
    process = start_run(tmp_path, "k")
    process.kill()
    process.wait()

    eventually(lambda: not any(alive(pid) for pid in blocked_workers(tmp_path)))
    (tmp_path / "go").touch()
    resumed = run_pipeline_process("resume", "k", cwd=tmp_path)

    assert resumed.returncode == 0, resumed.stderr
    counts = {item: [i for i, _ in ran(tmp_path)].count(item) for item in BLOCKING}
    assert counts == {"a": 1, "bb": 1, "block": 2, "block2": 2, "ccc": 1, "dddd": 1}
    assert [value["item"] for value in output(tmp_path, "k")] == BLOCKING


def test_debug_shows_the_traceback_from_the_worker(cli, tmp_path: Path):
    pipeline(tmp_path, ITEMS)
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: procs
        steps:
          - {id: boom, kind: python, function: "work:explode", executor: processes}
        """,
    )
    quiet = cli("run", "in.txt")
    assert_clean_error(quiet, 1, "ValueError: exploded (work.py:")
    loud = cli("run", "in.txt", "--debug")
    assert loud.exit_code == 1
    assert "RemoteTraceback" in loud.stderr
    assert f'File "{tmp_path / "work.py"}"' in loud.stderr and "in explode" in loud.stderr


def test_shell_items_on_processes_run_at_most_workers_at_once(cli, tmp_path: Path):
    # Each item holds a lock folder for a moment: two at once would fail one of them.
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: shells
        steps:
          - id: each
            kind: shell
            for_each: "{{ [1, 2, 3, 4] }}"
            command: ["sh", "-c", "mkdir lock && sleep 0.2 && rmdir lock && echo {{ item }}"]
            concurrency: 4
            executor: processes
            workers: 1
        """,
    )
    write(tmp_path / "in.txt", "x\n")
    result = cli("run", "in.txt", "--run-id", "r")
    assert result.exit_code == 0, result.stderr
    assert output(tmp_path, "r", "each") == [1, 2, 3, 4]


SHAPES = """
import os


def numbers(ctx):
    return list(range(12))


def split(ctx):
    return [ctx.item, ctx.item + 100] if ctx.item % 3 else ctx.item


def pair(ctx):
    return {"group": ctx.item, "key": ctx.item_key, "pid": os.getpid() != 0}


def scale(ctx):
    return ctx.item * 2
"""


def shapes_config(executor: str) -> str:
    return f"""
name: shapes
executor: {executor}
steps:
  - {{id: numbers, kind: python, function: "shapes:numbers"}}
  - id: split
    kind: python
    function: shapes:split
    for_each: "{{{{ steps.numbers }}}}"
    filter: "{{{{ item != 4 }}}}"
    flatten: true
  - id: scaled
    kind: python
    function: shapes:scale
    for_each: "{{{{ steps.split }}}}"
    stream_items: true
  - id: grouped
    kind: python
    function: shapes:pair
    for_each: "{{{{ steps.scaled }}}}"
    group_size: 5
"""


def test_filter_flatten_stream_items_and_groups_record_the_same_on_processes(cli, tmp_path: Path):
    write(tmp_path / "shapes.py", SHAPES)
    write(tmp_path / "in.txt", "x\n")
    results = {}
    for executor in ("threads", "processes"):
        (tmp_path / "pipeline-config.yaml").write_text(shapes_config(executor))
        result = cli("run", "in.txt", "--run-id", executor)
        assert result.exit_code == 0, result.stderr
        results[executor] = [output(tmp_path, executor, step) for step in ("split", "grouped")]
    assert results["processes"] == results["threads"]
    split, grouped = results["processes"]
    assert split[:4] == [0, 1, 101, 2] and 4 not in split
    assert grouped[0]["group"] == [0, 2, 202, 4, 204]


def test_what_threads_refuse_workers_refuse_with_the_same_words(cli, tmp_path: Path):
    write(
        tmp_path / "odd.py",
        """
        def not_json(ctx):
            return {"when": object()}

        def sneaky(ctx):
            return ctx.steps["first"]
        """,
    )
    write(tmp_path / "in.txt", "x\n")
    messages = {}
    for executor in ("threads", "processes"):
        write(
            tmp_path / "pipeline-config.yaml",
            f"""
            name: odd
            executor: {executor}
            steps:
              - {{id: first, kind: python, function: "odd:not_json", critical: false}}
              - {{id: second, kind: python, function: "odd:sneaky", needs: []}}
            """,
        )
        result = cli("run", "in.txt", "--run-id", executor)
        assert result.exit_code == 1
        state = load_state(tmp_path / ".pipeline" / executor / "state.json")
        messages[executor] = [step.error for step in state.steps]
    assert messages["processes"] == messages["threads"]
    first, second = messages["processes"]
    assert first is not None and "not JSON-serialisable" in first
    assert (
        second is not None
        and 'reads ctx.steps["first"], but "first" is not in its needs:' in second
    )
