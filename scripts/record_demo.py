"""Re-record an example's offline demo cassette from hand-written replies.

    python scripts/record_demo.py notes-to-backlog

Runs the example for real through the CLI (``--record``) against the fake LLM server of the
test suite (``tests/fakes``), which answers each request with the reply that the example's
``demo_replies.py`` writes for it. So the cassette's request hashes are exactly what the
pipeline sends, and re-recording after a prompt change is one command. Every line is labelled
``example`` so nobody mistakes the replies for real model output. Run it from the repository
root with the dev environment (``.venv/bin/python``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
LABEL = "Hand-written example reply for the offline demo; not real model output."


def load_replies(example: Path) -> ModuleType:
    """The example's ``demo_replies.py``: ``INPUT``, ``ARGS`` and ``reply(prompt, model)``."""
    spec = importlib.util.spec_from_file_location("demo_replies", example / "demo_replies.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(example: Path) -> Path:
    """Run the example against the fake server with ``--record``; return the new cassette."""
    sys.path.insert(0, str(ROOT))
    from tests.fakes import FakeLLMServer, RecordedRequest, Reply

    replies = load_replies(example)

    def responder(request: RecordedRequest) -> Reply:
        text = replies.reply(request.prompt, request.model or "")
        return Reply(text=text, input_tokens=len(request.prompt) // 4, output_tokens=len(text) // 4)

    with tempfile.TemporaryDirectory() as workdir, FakeLLMServer() as server:
        server.responder = responder
        recorded = Path(workdir) / "cassette.jsonl"
        env = {**os.environ, "ANTHROPIC_BASE_URL": server.base_url, "ANTHROPIC_API_KEY": "demo"}
        command = [sys.executable, "-m", "stepline", "run", str(example / replies.INPUT)]
        command += ["-c", str(example / "pipeline.yaml"), "--record", str(recorded)]
        command += ["--no-cache", "--no-pause", "--workdir", workdir, *replies.ARGS]
        subprocess.run(command, env=env, check=True, cwd=workdir)
        assert server.errors == [], server.errors
        lines = [json.loads(line) for line in recorded.read_text().splitlines()]
    cassette = example / "demo-cassette.jsonl"
    with cassette.open("w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps({"example": LABEL, **line}, ensure_ascii=False) + "\n")
    return cassette


if __name__ == "__main__":
    for name in sys.argv[1:] or ["notes-to-backlog"]:
        print(f"wrote {record(ROOT / 'configs' / name)}")
