"""import_user_module: each config folder gets its own helpers, and edits are picked up."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from stepline.usercode import import_user_module


@pytest.fixture(autouse=True)
def forget_helpers():
    yield
    for name in [name for name in sys.modules if name.startswith("stepline_test_helpers")]:
        del sys.modules[name]


def folder_with(tmp_path: Path, name: str, value: str) -> Path:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "stepline_test_helpers.py").write_text(f"VALUE = {value!r}\n")
    return folder


def test_two_config_folders_each_get_their_own_module_however_often_they_alternate(
    tmp_path: Path,
):
    first, second = folder_with(tmp_path, "a", "A"), folder_with(tmp_path, "b", "B")

    values = [
        import_user_module("stepline_test_helpers", folder).VALUE
        for folder in (first, first, second, second, first, second)
    ]

    assert values == ["A", "A", "B", "B", "A", "B"]


def test_an_edited_module_is_imported_again(tmp_path: Path):
    folder = folder_with(tmp_path, "a", "old")
    assert import_user_module("stepline_test_helpers", folder).VALUE == "old"
    assert import_user_module("stepline_test_helpers", folder).VALUE == "old"

    source = folder_with(tmp_path, "a", "new") / "stepline_test_helpers.py"
    later = source.stat().st_mtime_ns + 1_000_000_000  # a clearly different mtime
    os.utime(source, ns=(later, later))

    assert import_user_module("stepline_test_helpers", folder).VALUE == "new"


def test_a_module_is_not_imported_again_while_unchanged(tmp_path: Path):
    folder = folder_with(tmp_path, "a", "A")
    first = import_user_module("stepline_test_helpers", folder)

    assert import_user_module("stepline_test_helpers", folder) is first
