"""A worker imports only the standard library and stepline's light modules: no pydantic, no
jinja2, no SDK, so worker processes start in tens of milliseconds (``workers/__init__.py``)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pydantic", "jinja2", "anthropic", "openai", "yaml", "rich", "stepline.spec")


def test_the_worker_side_imports_nothing_heavy():
    probe = (
        "import sys, stepline.workers.process_main, stepline.workers.remote, "
        "stepline.workers.guard; "
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
