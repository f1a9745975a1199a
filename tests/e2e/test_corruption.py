"""Damaged run folders, stray temp files and I/O faults, through the real command.

Each damaged file gives one readable message naming the file and what to do, with a non-zero
exit and no traceback; ``list`` shows a damaged run as ``unreadable`` instead of failing; and
the run goes on once the cause is gone, redoing only what the fault cost.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stepline.store.atomic import TEMP_PREFIX
from stepline.store.state import SCHEMA_VERSION, RunStatus, StepStatus, load_state
from tests.e2e.test_errors import assert_clean_error
from tests.helpers import write

HELPERS = """
import json
from pathlib import Path

HERE = Path(__file__).parent


def _called(name):
    with (HERE / "calls.log").open("a") as handle:
        handle.write(name + "\\n")


def parse(ctx):
    _called("parse")
    return {"lines": ctx.input.text.split()}


def shout(ctx):
    _called("shout:" + ctx.item)
    if (HERE / ("broken-" + ctx.item)).exists():
        raise RuntimeError("item " + ctx.item + " is broken")
    return ctx.item.upper()


def join(ctx):
    _called("join")
    return " ".join(ctx.steps["fan"])


def measure(ctx):
    _called("measure")
    return len(ctx.steps["big"])


def big(ctx):
    _called("big")
    return "x" * int((HERE / "size.txt").read_text())
"""

CONFIG = """
name: letters
steps:
  - id: parse
    kind: python
    function: helpers:parse
  - id: fan
    kind: python
    for_each: "{{ steps.parse.lines }}"
    function: helpers:shout
  - id: join
    kind: python
    function: helpers:join
"""

BIG_CONFIG = """
name: big-output
steps:
  - id: parse
    kind: python
    function: helpers:parse
  - id: big
    kind: python
    function: helpers:big
  - id: measure
    kind: python
    function: helpers:measure
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path / "helpers.py", HELPERS)
    write(tmp_path / "pipeline-config.yaml", CONFIG)
    write(tmp_path / "in.txt", "a b c\n")
    return tmp_path


def calls(folder: Path) -> list[str]:
    log = folder / "calls.log"
    calls = log.read_text().split() if log.exists() else []
    log.unlink(missing_ok=True)
    return calls


def run_folder(project: Path, run_id: str = "r1") -> Path:
    return project / ".pipeline" / run_id


@pytest.fixture
def completed(cli, project: Path) -> Path:
    result = cli("run", "in.txt", "--run-id", "r1")
    assert result.exit_code == 0, result.output
    calls(project)
    return run_folder(project)


# --------------------------------------------------------------------------------------------
# state.json

DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda raw: b"",
    "truncated": lambda raw: raw[: len(raw) // 2],
    "binary": lambda raw: b"\x00\xff\xfe\x00" * 64,
    "not-json": lambda raw: b"state: completed\n",
    "wrong-shape": lambda raw: json.dumps({"schema_version": 1, "steps": "all"}).encode(),
    "future": lambda raw: raw.replace(
        f'"schema_version": {SCHEMA_VERSION}'.encode(),
        f'"schema_version": {SCHEMA_VERSION + 1}'.encode(),
    ),
}
TELLS = {
    "empty": "it is empty",
    "truncated": "as if cut off",
    "binary": "not UTF-8 text",
    "not-json": "not valid JSON",
    "wrong-shape": "is damaged: run_id",
    "future": "written by a newer stepline",
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize(
    "command",
    [("resume", "r1"), ("resume", "r1", "--from-step", "join"), ("show", "r1"),
     ("show", "r1", "--json"), ("show", "r1", "--step", "parse")],
    ids=["resume", "from-step", "show", "show-json", "show-step"],
)  # fmt: skip
def test_a_damaged_state_file_is_a_clear_error_from_every_command(
    cli, completed: Path, damage: str, command: tuple[str, ...]
):
    state = completed / "state.json"
    state.write_bytes(DAMAGE[damage](state.read_bytes()))

    result = cli(*command)

    assert_clean_error(result, 2, ".pipeline/r1/state.json", TELLS[damage], "hint: ")
    assert calls(completed.parent.parent) == []  # nothing ran


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_list_shows_a_damaged_run_as_unreadable_beside_the_others(
    cli, project: Path, completed: Path, damage: str
):
    assert cli("run", "in.txt", "--run-id", "r2").exit_code == 0
    state = completed / "state.json"
    state.write_bytes(DAMAGE[damage](state.read_bytes()))

    table = cli("list")
    rows = {row["run_id"]: row for row in json.loads(cli("list", "--json").stdout)}

    assert table.exit_code == 0 and "unreadable" in table.stdout and "Traceback" not in table.output
    assert rows["r1"]["status"] == "unreadable"
    assert ".pipeline/r1/state.json" in rows["r1"]["problem"]
    assert TELLS[damage] in rows["r1"]["problem"]
    assert rows["r2"]["status"] == "completed" and rows["r2"]["problem"] is None


# --------------------------------------------------------------------------------------------
# SQLite files


@pytest.mark.parametrize(
    "damage",
    [lambda raw: b"not a database" * 500, lambda raw: raw[: len(raw) // 3]],
    ids=["garbage", "truncated"],
)
def test_a_damaged_item_checkpoint_file_is_a_clear_error_and_moving_it_aside_recovers(
    cli, project: Path, damage: Callable[[bytes], bytes]
):
    (project / "broken-b").touch()
    assert cli("run", "in.txt", "--run-id", "r1").exit_code == 1  # item b failed; a, c kept
    calls(project)
    (project / "broken-b").unlink()
    items = run_folder(project) / "items.sqlite"
    items.write_bytes(damage(items.read_bytes()))

    assert cli("show", "r1").exit_code == 0  # show and list never open it
    assert "failed" in cli("list").stdout
    result = cli("resume", "r1")
    assert_clean_error(
        result, 1, ".pipeline/r1/items.sqlite is damaged", "move items.sqlite aside", "hint: "
    )

    items.rename(items.with_name("items.sqlite.damaged"))  # what the message says
    result = cli("resume", "r1")

    assert result.exit_code == 0, result.output
    assert sorted(calls(project)) == ["join", "shout:a", "shout:b", "shout:c"]  # parse reused
    assert json.loads((run_folder(project) / "steps" / "03-join.json").read_text()) == "A B C"


def test_a_damaged_response_cache_is_a_clear_error_from_the_cache_commands(cli, tmp_path: Path):
    cache = tmp_path / ".pipeline" / "cache.sqlite"
    cache.parent.mkdir()
    cache.write_bytes(b"this is not a database" * 100)

    for command in (("cache", "stats"), ("cache", "clear"), ("cache", "prune")):
        result = cli(*command)
        assert_clean_error(
            result, 2, ".pipeline/cache.sqlite is damaged", "move cache.sqlite aside"
        )

    cache.rename(tmp_path / "cache.sqlite.damaged")
    assert json.loads(cli("cache", "stats", "--json").stdout)["entries"] == 0


# --------------------------------------------------------------------------------------------
# Temp files a crash left behind


def strays(run: Path) -> list[Path]:
    return [
        run / f"{TEMP_PREFIX}state.json.k3x9",
        run / "steps" / f"{TEMP_PREFIX}03-join.json.p2q1",
        run / "input" / f"{TEMP_PREFIX}original.txt.z8w7",
    ]


def test_stray_temp_files_are_ignored_by_readers_and_removed_by_the_next_resume(
    cli, project: Path, completed: Path
):
    for stray in strays(completed):
        stray.write_bytes(b'{"status": "torn mid-wr')

    shown = json.loads(cli("show", "r1", "--json").stdout)
    listed = json.loads(cli("list", "--json").stdout)
    joined = cli("show", "r1", "--step", "join", "--json")

    assert shown["status"] == "completed" and len(shown["steps"]) == 3
    assert [row["status"] for row in listed] == ["completed"]
    assert json.loads(joined.stdout) == "A B C"
    assert all(stray.exists() for stray in strays(completed))  # readers never write

    result = cli("resume", "r1", "--from-step", "join")

    assert result.exit_code == 0, result.output
    assert calls(project) == ["join"]
    assert [stray for stray in strays(completed) if stray.exists()] == []
    assert list(completed.rglob(f"{TEMP_PREFIX}*")) == []


# --------------------------------------------------------------------------------------------
# I/O faults


def failing_replace(name: str, *, after: int) -> Callable[[Any, Any], None]:
    """``os.replace`` that raises ENOSPC for every target called ``name`` past the first
    ``after`` (a disk that fills up mid-run and stays full)."""
    real = os.replace
    seen = 0

    def replace(source: Any, target: Any) -> None:
        nonlocal seen
        if Path(target).name == name:
            seen += 1
            if seen > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(source, target)

    return replace


def failing_fdatasync(name: str, *, after: int) -> Callable[[int], None]:
    """``os.fdatasync`` that raises ENOSPC for every file called ``name`` past the first
    ``after`` (found through /proc: the journal syncs its change log by descriptor)."""
    real = os.fdatasync
    seen = 0

    def fdatasync(fd: int) -> None:
        nonlocal seen
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name == name:
            seen += 1
            if seen > after:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    return fdatasync


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_full_disk_during_a_state_write_keeps_the_previous_state_and_the_run_resumes(
    cli, project: Path, monkeypatch: pytest.MonkeyPatch
):
    # state.json is written when the run starts; then each transition is a line in the change
    # log: parse started, parse completed with fan started (one line), fan completed with join
    # started. The disk is full from that third line on (and for state.json after its first
    # write), after fan's items ran and its output was written.
    with monkeypatch.context() as patch:
        patch.setattr(os, "fdatasync", failing_fdatasync("state-changes.jsonl", after=2))
        patch.setattr(os, "replace", failing_replace("state.json", after=1))
        result = cli("run", "in.txt", "--run-id", "r1")

    run = run_folder(project)
    assert_clean_error(
        result,
        1,
        ".pipeline/r1/state-changes.jsonl: the disk is full; the lines before are kept",
        "hint: free some disk space",
        "pipeline resume",
    )
    state = load_state(run / "state.json")  # the last write that made it: fan started
    assert [step.status for step in state.steps] == [
        StepStatus.COMPLETED,
        StepStatus.RUNNING,
        StepStatus.PENDING,
    ]
    assert list(run.rglob(f"{TEMP_PREFIX}*")) == []
    assert json.loads(cli("list", "--json").stdout)[0]["status"] == "interrupted"
    assert sorted(calls(project)) == ["parse", "shout:a", "shout:b", "shout:c"]  # any order

    resumed = cli("resume", "r1")

    assert resumed.exit_code == 0, resumed.output
    assert calls(project) == ["join"]  # parse reused; fan re-ran from its item checkpoints
    assert load_state(run / "state.json").status == RunStatus.COMPLETED


def test_a_write_fault_shows_its_traceback_only_with_debug(
    cli, project: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(os, "replace", failing_replace("state.json", after=0))

    quiet = cli("run", "in.txt", "--run-id", "r1")
    loud = cli("run", "in.txt", "--run-id", "r2", "--debug")

    assert quiet.exit_code == loud.exit_code == 1
    assert "Traceback" not in quiet.output
    assert "Traceback" in loud.output and "WriteFailed" in loud.output


def pipeline_process(
    project: Path, *args: str, file_size_limit: int | None = None
) -> subprocess.CompletedProcess[str]:
    """``pipeline ARGS`` in a child process, optionally under a file size limit (a real
    EFBIG on write: CPython ignores SIGXFSZ)."""
    limit = (
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({file_size_limit}, {file_size_limit}))"
        if file_size_limit
        else ""
    )
    code = f"import resource, sys\n{limit}\nfrom stepline.cli.app import main\nmain(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "300"},
    )


def test_an_output_too_large_to_write_keeps_the_previous_output_and_the_run_resumes(
    project: Path,
):
    write(project / "pipeline-config.yaml", BIG_CONFIG)
    write(project / "size.txt", "10")
    first = pipeline_process(project, "run", "in.txt", "--run-id", "r1", "--to-step", "big")
    assert first.returncode == 0, first.stderr
    output = run_folder(project) / "steps" / "02-big.json"
    assert json.loads(output.read_text()) == "x" * 10
    write(project / "size.txt", "300000")
    calls(project)

    failed = pipeline_process(
        project, "resume", "r1", "--from-step", "big", file_size_limit=200_000
    )

    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr
    assert "cannot write .pipeline/r1/steps/02-big.json" in failed.stderr
    assert "the file is larger than this process may write" in failed.stderr
    assert "ulimit -f" in failed.stderr
    assert json.loads(output.read_text()) == "x" * 10
    assert list(run_folder(project).rglob(f"{TEMP_PREFIX}*")) == []
    state = load_state(run_folder(project) / "state.json")
    assert state.status == RunStatus.FAILED and state.step("big").status == StepStatus.FAILED

    resumed = pipeline_process(project, "resume", "r1")

    assert resumed.returncode == 0, resumed.stderr
    assert calls(project) == ["big", "big", "measure"]  # the refused attempt, then the resume
    assert json.loads(output.read_text()) == "x" * 300_000
    assert json.loads((output.parent / "03-measure.json").read_text()) == 300_000


def test_a_refused_output_write_is_recorded_without_calling_it_an_internal_error(
    cli, project: Path, monkeypatch: pytest.MonkeyPatch
):
    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", failing_replace("01-parse.json", after=0))
        result = cli("run", "in.txt", "--run-id", "r1")

    assert_clean_error(result, 1, "cannot write .pipeline/r1/steps/01-parse.json")
    error = load_state(run_folder(project) / "state.json").step("parse").error
    assert error is not None and "the disk is full" in error
    assert "internal error" not in error
