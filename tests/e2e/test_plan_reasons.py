"""--dry-run names what changed in a step's config: the key, the file, the variable."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import write

CONFIG = """
name: reasons
vars: {top_k: "3"}
steps:
  - id: shout
    kind: shell
    command: ["python3", "-c", "import sys; print(open(sys.argv[1]).read())", "prompts/p.md"]
  - {id: count, kind: python, function: "helpers:count"}
  - id: topk
    kind: shell
    command: ["echo", "{{ vars.top_k }}"]
"""


def reasons(cli, *args: str) -> dict[str, str]:
    printed = cli("resume", "r", "--dry-run", "--json", *args)
    assert printed.exit_code == 0, printed.output
    return {d["step"]: d["reason"] for d in json.loads(printed.stdout)["plan"]}


def test_the_plan_says_which_part_of_a_step_changed(cli, tmp_path: Path) -> None:
    write(tmp_path / "pipeline-config.yaml", CONFIG)
    write(tmp_path / "prompts/p.md", "hello")
    write(tmp_path / "helpers.py", "def count(ctx):\n    return 1\n")
    write(tmp_path / "in.txt", "x\n")
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0

    write(tmp_path / "helpers.py", "def count(ctx):\n    return 2\n")
    write(tmp_path / "pipeline-config.yaml", CONFIG.replace('"prompts/p.md"]', '"prompts/q.md"]'))

    assert reasons(cli, "--set", "top_k=5") == {
        "shout": "its config changed: command",
        "count": "its config changed: helpers.py (the module of its function: any edit to it "
        "re-runs the step), the variable top_k (vars: or --set)",  # Python may read any var
        "topk": "its config changed: the variable top_k (vars: or --set)",
    }


def test_a_record_from_before_the_parts_were_kept_still_says_its_config_changed(
    cli, tmp_path: Path
) -> None:
    write(tmp_path / "pipeline-config.yaml", CONFIG)
    write(tmp_path / "prompts/p.md", "hello")
    write(tmp_path / "helpers.py", "def count(ctx):\n    return 1\n")
    write(tmp_path / "in.txt", "x\n")
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    state_path = tmp_path / ".pipeline/r/state.json"
    state = json.loads(state_path.read_text())
    for step in state["steps"]:
        del step["spec_parts"]  # as stepline wrote it before
    state_path.write_text(json.dumps(state))
    (tmp_path / ".pipeline/r/state-changes.jsonl").unlink(missing_ok=True)

    assert reasons(cli, "--set", "top_k=5")["topk"] == "its config changed"
