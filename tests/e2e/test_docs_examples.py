"""The Python API example in docs/quickstart.md runs as written and prints what its comments
say, so the documentation cannot drift from the API."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"


def python_blocks(markdown: str, section: str) -> list[str]:
    """The ```python blocks under the ``## section`` heading."""
    body = markdown.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", body, re.DOTALL)


def test_the_python_api_example_prints_what_it_says(tmp_path: Path) -> None:
    [code] = python_blocks(DOC.read_text(encoding="utf-8"), "From Python")
    expected = [
        line.split("#", 1)[1].strip()
        for line in code.splitlines()
        if line.startswith("print(") and "#" in line
    ]
    assert len(expected) == 4
    ran = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines() == expected
    assert (tmp_path / "api-demo" / ".runs").is_dir()
