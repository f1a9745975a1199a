"""``executor: ray``: Python steps as tasks on a Ray cluster.

Most tests use the session's Ray head (``ray_cluster``: two CPUs on 127.0.0.1, with a token,
started once) through ``ray: {address}``; the rest let the run start a local instance of its
own, as a config without an address does, and check that nothing of it outlives the run.
The steps' module is shipped to the workers (Ray's ``working_dir``), so it writes its notes
to the test's folder, found from the run's folder rather than beside its own file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import tempfile
from pathlib import Path

import pytest

from stepline.store.state import load_state
from tests.e2e.test_dask import descendants, start_blocked
from tests.e2e.test_errors import assert_clean_error
from tests.e2e.test_processes import ITEMS, alive, output, pipeline, ran
from tests.helpers import eventually, run_pipeline_process


def on_ray(folder: Path, items: list[object], extra: str = "", address: str | None = None) -> None:
    top = f"ray: {{address: '{address}'}}\n" if address else ""
    pipeline(folder, items, executor="ray", extra=extra, top=top)


def test_ray_gives_the_output_threads_give_in_input_order(cli, tmp_path: Path, ray_cluster: str):
    pipeline(tmp_path, ITEMS, executor="threads", workers=None)
    assert cli("run", "in.txt", "--run-id", "threads").exit_code == 0
    (tmp_path / "ran.txt").unlink()

    on_ray(tmp_path, ITEMS, "\n    concurrency: 4", address=ray_cluster)
    result = cli("run", "in.txt", "--run-id", "ray")

    assert result.exit_code == 0, result.stderr
    assert output(tmp_path, "ray") == output(tmp_path, "threads")
    assert os.getpid() not in {pid for _, pid in ran(tmp_path)}
    metrics = load_state(tmp_path / ".pipeline" / "ray" / "state.json").steps[1].metrics
    assert (metrics["executor"], metrics["workers"]) == ("ray", 2)
    shown = cli("show", "ray").stdout
    assert re.search(r"ray: 2 workers, [\d.]+m?s per\s+item", shown), shown


def test_failures_and_a_dead_worker_follow_on_item_error(cli, tmp_path: Path, ray_cluster: str):
    on_ray(tmp_path, ["a", "raise", "die", "bb"], "\n    on_item_error: collect", ray_cluster)
    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.stderr
    values = output(tmp_path, "r")
    assert [value.get("item") for value in values] == ["a", None, None, "bb"]
    lines = (tmp_path / "work.py").read_text().splitlines()
    raised_at = lines.index('        raise ValueError("bad item")') + 1
    assert values[1]["error"] == f"ValueError: bad item (work.py:{raised_at})"
    assert values[2]["error"] == "its ray worker died while running it (WorkerCrashedError)"


def test_a_dead_worker_fails_one_attempt_and_the_retry_runs_on_a_new_one(
    cli, tmp_path: Path, ray_cluster: str
):
    extra = "\n    retry: {attempts: 2, initial_delay: 1ms, max_delay: 2ms}"
    on_ray(tmp_path, ["die-once", "a"], extra, ray_cluster)
    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.stderr
    tries = [pid for item, pid in ran(tmp_path) if item == "die-once"]
    assert len(tries) == 2 and tries[0] != tries[1]


def test_a_timeout_kills_the_hung_task_and_its_worker(cli, tmp_path: Path, ray_cluster: str):
    extra = "\n    timeout: 3s\n    on_item_error: collect\n    concurrency: 1"
    on_ray(tmp_path, ["hang", "a"], extra, ray_cluster)
    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.stderr
    values = output(tmp_path, "r")
    assert values[0]["error"] == "timed out after 3.0s" and values[1]["item"] == "a"
    (hung,) = [int(path.name.split("-")[1]) for path in tmp_path.glob("hung-*")]
    eventually(lambda: not alive(hung), what="the hung worker to be gone")
    assert [item for item, _ in ran(tmp_path)] == ["hang", "a"]


def test_a_function_the_workers_cannot_import_fails_the_step(cli, tmp_path: Path, ray_cluster: str):
    on_ray(tmp_path, ITEMS, "\n    on_item_error: skip", ray_cluster)
    work = tmp_path / "work.py"
    good = work.read_text()
    work.write_text(
        'import os\nif os.environ.get("ON_TEST_CLUSTER"):\n    import not_on_workers\n' + good
    )
    result = cli("run", "in.txt", "--run-id", "r")

    assert_clean_error(result, 1, "cannot import work:square on ray worker ")
    assert "not_on_workers" in result.stderr

    work.write_text(good)
    assert cli("resume", "r").exit_code == 0
    assert [value["item"] for value in output(tmp_path, "r")] == ITEMS


def test_a_missing_extra_is_a_config_error_before_the_run(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    pipeline(tmp_path, ITEMS, executor="ray")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed

    result = cli("run", "in.txt")

    assert_clean_error(result, 2, "runs on executor: ray, which is not installed")
    assert "pip install 'stepline[ray]'" in result.stderr
    assert not (tmp_path / ".pipeline").exists()


def test_a_run_without_an_address_starts_a_local_instance_and_stops_it(tmp_path: Path):
    before = descendants()
    on_ray(tmp_path, ["a", "die", "bb"], "\n    on_item_error: collect")
    result = run_pipeline_process("run", "in.txt", "--run-id", "r", "--json", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "completed"  # Ray's notes went to stderr
    assert [value.get("item") for value in output(tmp_path, "r")] == ["a", None, "bb"]
    assert not (tmp_path / ".ray").exists()  # HOME: no token written there
    eventually(lambda: descendants() <= before, what="the local instance to be gone")


def test_ctrl_c_with_a_local_instance_interrupts_and_resumes(tmp_path: Path):
    on_ray(tmp_path, ["a", "block", "bb"], "\n    concurrency: 1")
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


def test_kill_9_of_the_runner_takes_its_local_instance_and_resume_sends_only_the_missing(
    tmp_path: Path,
):
    on_ray(tmp_path, ["a", "bb", "block", "ccc"], "\n    concurrency: 1")
    process, blocked = start_blocked(tmp_path, "k")
    process.kill()
    process.communicate()
    left = f"stepline-ray-{process.pid}-*"

    eventually(lambda: not alive(blocked), what="the instance to die with its runner")
    (tmp_path / "go").touch()
    resumed = run_pipeline_process("resume", "k", cwd=tmp_path, timeout=120)

    assert resumed.returncode == 0, resumed.stderr
    counts = {
        item: [i for i, _ in ran(tmp_path)].count(item) for item in ("a", "bb", "block", "ccc")
    }
    assert counts == {"a": 1, "bb": 1, "block": 2, "ccc": 1}
    assert not list(Path(tempfile.gettempdir()).glob(left))  # the resume swept them
