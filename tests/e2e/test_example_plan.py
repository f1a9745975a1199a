"""The plan-to-code example end to end, offline from its cassette: discovery respects
.gitignore, globs and the size cap, a long file is judged in chunks, and plan.md is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.e2e.test_examples import assert_report_renders
from tests.helpers import write

ROOT = Path(__file__).resolve().parents[2]


def test_plan_to_code_demo_replays_offline(cli, tmp_path: Path):
    example = Path(shutil.copytree(ROOT / "configs" / "plan-to-code", tmp_path / "plan-to-code"))
    repo = example / "sample-repo"
    # Files the repository ignores or the config excludes: none may reach a prompt (the
    # cassette has no reply for them, so the run would fail if one did).
    write(repo / "build" / "generated.py", "GENERATED = True\n")
    write(repo / "src" / "shop" / "debug.log", "noise\n")
    write(repo / "src" / "shop" / "huge.py", "# padding\n" * 30_000)  # > max_file_kb
    write(repo / "docs" / "discounts.md", "Discount codes are great.\n")  # exclude: docs/**

    result = cli(
        "run",
        str(example / "task.md"),
        "-c",
        str(example / "pipeline.yaml"),
        "--replay",
        str(example / "demo-cassette.jsonl"),
        "--run-id",
        "plan",
    )

    assert result.exit_code == 0, result.output
    run = tmp_path / ".pipeline" / "plan"
    chunks = json.loads((run / "steps/01-discover.json").read_text())
    assert [(chunk["path"], chunk["chunk"]) for chunk in chunks] == [
        ("README.md", 1),
        ("pyproject.toml", 1),
        ("src/shop/cart.py", 1),
        ("src/shop/checkout.py", 1),
        ("src/shop/checkout.py", 2),  # 67 lines, chunk_lines: 40
        ("src/shop/emails.py", 1),
        ("src/shop/pricing.py", 1),
        ("tests/test_pricing.py", 1),
    ]
    plan = (run / "plan.md").read_text()
    assert plan.startswith("# Plan\n\nTask: Add discount codes to checkout")
    assert (
        "Files read: `src/shop/checkout.py`, `src/shop/emails.py`, `src/shop/pricing.py`, "
        "`tests/test_pricing.py`"
    ) in plan
    assert "1. **`src/shop/discounts.py` (new).**" in plan
    calls = [json.loads(line) for line in (run / "llm-calls.jsonl").read_text().splitlines()]
    plan_prompt = next(call["prompt"] for call in calls if call["step"] == "plan")
    assert "def checkout(cart: Cart, country: str, card_token: str)" in plan_prompt
    assert "orders_over_500" not in plan_prompt  # chunk 2 was judged irrelevant
    for line in (example / "demo-cassette.jsonl").read_text().splitlines():
        assert json.loads(line)["example"].startswith("Hand-written example reply")
    assert_report_renders(cli, run)
