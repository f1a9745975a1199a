"""What the two cluster executors share: shell items run on a worker (``ray`` and ``dask``),
in the folder the engine gives it, and a timeout stops the command with everything it
started; a cluster that does not answer fails the step at once, with the run resumable.

Most tests run on both session clusters (started once, on 127.0.0.1), whose workers see
``ON_TEST_CLUSTER=1``: a command that prints it ran on a worker, not in the runner.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_errors import assert_clean_error
from tests.e2e.test_processes import alive, output, pipeline
from tests.helpers import eventually, run_pipeline_process

REPORT = (
    'printf \'{"item": "%s", "worker": "%s", "step": "%s", "cwd": "%s", "helpers": "%s"}\' '
    '"$ITEM" "$ON_TEST_CLUSTER" "$STEPLINE_STEP_ID" "$PWD" "$(cat helpers.py)"'
)


@pytest.fixture(params=["ray", "dask"])
def cluster(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(executor, address) of one of the session's clusters."""
    executor: str = request.param
    return executor, request.getfixturevalue(f"{executor}_cluster")


def shell_pipeline(folder: Path, cluster: tuple[str, str], items: list[Any], step: str) -> None:
    executor, address = cluster
    (folder / "pipeline-config.yaml").write_text(
        f"name: shells\n{executor}: {{address: '{address}'}}\nsteps:\n"
        f"  - id: each\n    kind: shell\n    executor: {executor}\n    workers: 2\n"
        f'    for_each: "{{{{ {items!r} }}}}"\n' + step
    )
    (folder / "helpers.py").write_text("VALUE = 1\n")
    (folder / "in.txt").write_text("x\n")


def test_the_function_runs_from_a_copy_of_the_config_folder_modules_only(
    cli, tmp_path: Path, cluster: tuple[str, str]
):
    executor, address = cluster
    top = f"{executor}: {{address: '{address}'}}\n"
    pipeline(tmp_path, ["a"], executor=executor, function="work:where", top=top)
    (tmp_path / "data.csv").write_text("not code\n")
    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.stderr
    (where,) = output(tmp_path, "r")
    copy = Path(where["file"]).parent
    assert copy != tmp_path
    assert where["files"] == ["_stepline_code.json", "lists.py", "work.py"]
    if executor == "ray":  # the job's working_dir: each task's current folder
        assert Path(where["cwd"]) == copy
    else:  # the run's upload, removed with the run
        assert copy.name.startswith("stepline-code-")
        eventually(lambda: not copy.exists(), what="the upload to be removed with the run")


def test_shell_items_run_on_the_workers_in_order(cli, tmp_path: Path, cluster: tuple[str, str]):
    step = f"    env: {{ITEM: '{{{{ item }}}}'}}\n    command: [sh, -c, {json.dumps(REPORT)}]\n"
    shell_pipeline(tmp_path, cluster, ["a", "bb", "ccc", "dddd"], step)

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.stderr
    values = output(tmp_path, "r", "each")
    assert [value["item"] for value in values] == ["a", "bb", "ccc", "dddd"]
    assert {(value["worker"], value["step"]) for value in values} == {("1", "each")}
    folders = {Path(value["cwd"]) for value in values}
    # the engine's copy of the config folder's modules: Ray's working_dir, dask's upload
    assert tmp_path not in folders
    assert {value["helpers"] for value in values} == {"VALUE = 1"}


def test_a_failing_command_follows_retry_on_exit_and_on_item_error(
    cli, tmp_path: Path, cluster: tuple[str, str]
):
    tries = tmp_path / "tries.txt"
    fail = f"echo {{{{ item }}}} >> {tries}; [ {{{{ item }}}} = bad ] && echo oops >&2 && exit 3"
    step = (
        f"    command: [sh, -c, {json.dumps(fail + '; echo ok')}]\n"
        "    retry: {attempts: 2, initial_delay: 0.01s}\n    retry_on_exit: [3]\n"
        "    on_item_error: collect\n"
    )
    shell_pipeline(tmp_path, cluster, ["good", "bad"], step)

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.stderr
    good, bad = output(tmp_path, "r", "each")
    assert good == "ok"
    assert bad["error"] == "sh exited with code 3; stderr:\noops (after 2 attempts)"
    assert sorted(tries.read_text().split()) == ["bad", "bad", "good"]


def test_a_program_the_workers_cannot_find_fails_the_step_once(
    cli, tmp_path: Path, cluster: tuple[str, str]
):
    step = "    command: [no-such-program-here, '{{ item }}']\n    retry: {attempts: 3}\n"
    shell_pipeline(tmp_path, cluster, ["a"], step)

    result = cli("run", "in.txt", "--run-id", "r")

    assert_clean_error(result, 1, "cannot run no-such-program-here: no-such-program-here not found")


def test_a_timeout_stops_the_command_and_what_it_started(
    cli, tmp_path: Path, cluster: tuple[str, str]
):
    hang = (
        f"[ {{{{ item }}}} = hang ] && {{ sleep 300 & echo $! > {tmp_path}/child; wait; }}; "
        "echo {{ item }}"
    )
    step = (
        f"    command: [sh, -c, {json.dumps(hang)}]\n    timeout: 2s\n"
        "    on_item_error: collect\n    concurrency: 1\n"
    )
    shell_pipeline(tmp_path, cluster, ["hang", "after"], step)

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.stderr
    hung, after = output(tmp_path, "r", "each")
    assert hung["error"] == "timed out after 2.0s" and after == "after"
    child = int((tmp_path / "child").read_text())
    eventually(lambda: not alive(child), what="the command's own child to be stopped")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # closed again: nothing listens there


@pytest.mark.parametrize("executor", ["ray", "dask"])
def test_a_cluster_that_does_not_answer_fails_the_step_at_once(tmp_path: Path, executor: str):
    address = f"{'tcp://' if executor == 'dask' else ''}127.0.0.1:{closed_port()}"
    shell_pipeline(tmp_path, (executor, address), ["a"], "    command: [echo, '{{ item }}']\n")

    # dask waits for its connect timeout (30 s unless set), Ray for our probe's refusal
    environment = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s"}
    result = run_pipeline_process(
        "run", "in.txt", "--run-id", "r", cwd=tmp_path, env=environment, timeout=120
    )

    assert result.returncode == 1, result.stderr
    assert f"could not reach the {executor} cluster at {address}" in result.stderr
    assert f"check {executor}: address" in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / ".pipeline" / "r" / "state.json").exists()  # resumable once it answers
