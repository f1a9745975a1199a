"""``executor: dask``: Python steps as tasks on a dask.distributed cluster.

Most tests use the session's cluster (``dask_cluster``: two workers on 127.0.0.1, started once)
through ``dask: {address}``; the rest let the run start a local cluster of its own, as a
config without an address does, and check that none of its processes outlive the run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stepline.store.state import load_state
from tests.e2e.test_errors import assert_clean_error
from tests.e2e.test_fanout import start_process
from tests.e2e.test_processes import ITEMS, RAISED_AT, WORK, alive, output, pipeline, ran
from tests.helpers import eventually, run_pipeline_process


def on_cluster(folder: Path, address: str, items: list[object], extra: str = "") -> None:
    pipeline(folder, items, executor="dask", extra=extra, top=f"dask: {{address: '{address}'}}\n")


def test_dask_gives_the_output_threads_give_in_input_order(cli, tmp_path: Path, dask_cluster: str):
    pipeline(tmp_path, ITEMS, executor="threads", workers=None)
    assert cli("run", "in.txt", "--run-id", "threads").exit_code == 0
    (tmp_path / "ran.txt").unlink()

    on_cluster(tmp_path, dask_cluster, ITEMS, extra="\n    concurrency: 4")
    result = cli("run", "in.txt", "--run-id", "dask")

    assert result.exit_code == 0, result.stderr
    assert output(tmp_path, "dask") == output(tmp_path, "threads")
    assert os.getpid() not in {pid for _, pid in ran(tmp_path)}
    metrics = load_state(tmp_path / ".pipeline" / "dask" / "state.json").steps[1].metrics
    assert (metrics["executor"], metrics["workers"]) == ("dask", 2)
    shown = cli("show", "dask").stdout
    assert re.search(r"dask: 2 workers, \d+ms per\s+item", shown), shown


def test_an_edited_module_is_what_long_lived_workers_run_next(
    cli, tmp_path: Path, dask_cluster: str
):
    on_cluster(tmp_path, dask_cluster, ["a"])
    config = tmp_path / "pipeline-config.yaml"
    config.write_text(config.read_text().replace("work:square", "version:get"))
    (tmp_path / "version.py").write_text("def get(ctx):\n    return 1\n")
    assert cli("run", "in.txt", "--run-id", "one").exit_code == 0
    (tmp_path / "version.py").write_text("def get(ctx):\n    return 2\n")
    assert cli("run", "in.txt", "--run-id", "two").exit_code == 0

    assert (output(tmp_path, "one"), output(tmp_path, "two")) == ([1], [2])


def test_code_shared_imports_from_the_config_folder_itself(cli, tmp_path: Path, dask_cluster: str):
    pipeline(
        tmp_path,
        ["a"],
        executor="dask",
        function="work:where",
        top=f"dask: {{address: '{dask_cluster}', code: shared}}\n",
    )
    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.stderr
    assert Path(output(tmp_path, "r")[0]["file"]) == tmp_path / "work.py"


def test_failures_and_a_dead_worker_follow_on_item_error(cli, tmp_path: Path, dask_cluster: str):
    on_cluster(tmp_path, dask_cluster, ["a", "raise", "die", "bb"], "\n    on_item_error: collect")
    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.stderr
    values = output(tmp_path, "r")
    assert [value.get("item") for value in values] == ["a", None, None, "bb"]
    assert values[1]["error"] == f"ValueError: bad item ({RAISED_AT})"
    assert values[2]["error"] == "its dask worker died while running it (KilledWorker)"


def test_a_timeout_stops_the_hung_task_and_its_worker(cli, tmp_path: Path, dask_cluster: str):
    extra = "\n    timeout: 1s\n    on_item_error: collect\n    concurrency: 1"
    on_cluster(tmp_path, dask_cluster, ["hang", "a"], extra)
    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.stderr
    values = output(tmp_path, "r")
    assert values[0]["error"] == "timed out after 1.0s" and values[1]["item"] == "a"
    (hung,) = [int(path.name.split("-")[1]) for path in tmp_path.glob("hung-*")]
    eventually(lambda: not alive(hung), what="the hung worker to be gone")
    assert [item for item, _ in ran(tmp_path)] == ["hang", "a"]  # never run again


def test_a_function_the_workers_cannot_import_fails_the_step(
    cli, tmp_path: Path, dask_cluster: str
):
    on_cluster(tmp_path, dask_cluster, ITEMS, "\n    on_item_error: skip")
    work = tmp_path / "work.py"
    work.write_text(
        'import os\nif os.environ.get("ON_TEST_CLUSTER"):\n'
        "    import not_installed_on_workers\n" + work.read_text()
    )
    result = cli("run", "in.txt", "--run-id", "r")

    assert_clean_error(result, 1, "cannot import work:square on dask worker tcp://127.0.0.1:")
    assert "not_installed_on_workers" in result.stderr

    work.write_text(WORK)
    assert cli("resume", "r").exit_code == 0
    assert [value["item"] for value in output(tmp_path, "r")] == ITEMS


def test_a_missing_extra_is_a_config_error_before_the_run(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    pipeline(tmp_path, ITEMS, executor="dask")
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed

    result = cli("run", "in.txt")

    assert_clean_error(result, 2, "runs on executor: dask, which is not installed")
    assert "pip install 'stepline[dask]'" in result.stderr
    assert "pipeline-config.yaml:" in result.stderr
    assert not (tmp_path / ".pipeline").exists()


def descendants() -> set[int]:
    """This process's living descendants (a run's local cluster would be among them), but
    for the standard library's resource tracker, which stays until this process exits."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if b"multiprocessing.resource_tracker" in (entry / "cmdline").read_bytes():
                    continue
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [os.getpid()]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found and alive(child):
                found.add(child)
                todo.append(child)
    return found


def test_a_run_without_an_address_starts_a_local_cluster_and_stops_it(cli, tmp_path: Path):
    before = descendants()
    pipeline(tmp_path, ITEMS, executor="dask")
    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.stderr
    assert [value["item"] for value in output(tmp_path, "r")] == ITEMS
    assert len({pid for _, pid in ran(tmp_path)} - {os.getpid()}) >= 1
    eventually(lambda: descendants() <= before, what="the local cluster to be gone")


def start_blocked(folder: Path, run_id: str) -> tuple[subprocess.Popen[str], int]:
    """A run (its own local cluster) with one worker blocked in an item, and that worker."""
    process = start_process(folder, "run", "in.txt", "--run-id", run_id)
    eventually(lambda: list(folder.glob("blocked-*")), what="a blocked item", timeout=60)
    (blocked,) = [int(path.name.split("-")[1]) for path in folder.glob("blocked-*")]
    return process, blocked


def test_ctrl_c_with_a_local_cluster_interrupts_and_resumes(tmp_path: Path):
    pipeline(tmp_path, ["a", "block", "bb"], executor="dask", extra="\n    concurrency: 1")
    process, blocked = start_blocked(tmp_path, "i")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    eventually(lambda: not alive(blocked), what="the blocked worker to be gone")
    (tmp_path / "go").touch()
    resumed = run_pipeline_process("resume", "i", cwd=tmp_path, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert [value["item"] for value in output(tmp_path, "i")] == ["a", "block", "bb"]
    assert [item for item, _ in ran(tmp_path)].count("a") == 1


def test_kill_9_of_the_runner_takes_its_local_cluster_and_resume_sends_only_the_missing(
    tmp_path: Path,
):
    pipeline(tmp_path, ["a", "bb", "block", "ccc"], executor="dask", extra="\n    concurrency: 1")
    process, blocked = start_blocked(tmp_path, "k")
    process.kill()
    process.communicate()

    eventually(lambda: not alive(blocked), what="the cluster to die with its runner")
    (tmp_path / "go").touch()
    resumed = run_pipeline_process("resume", "k", cwd=tmp_path, timeout=120)

    assert resumed.returncode == 0, resumed.stderr
    counts = {
        item: [i for i, _ in ran(tmp_path)].count(item) for item in ("a", "bb", "block", "ccc")
    }
    assert counts == {"a": 1, "bb": 1, "block": 2, "ccc": 1}
    assert [value["item"] for value in output(tmp_path, "k")] == ["a", "bb", "block", "ccc"]
