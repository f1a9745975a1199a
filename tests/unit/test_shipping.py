"""What a cluster's workers are sent of the config's folder: its modules, nothing else."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from stepline.errors import SpecError
from stepline.workers.shipping import MANIFEST, bundle_code


def folder_with_everything(root: Path) -> Path:
    for name, text in {
        "steps.py": "def work(ctx): ...\n",
        "helpers/__init__.py": "",
        "helpers/parse.py": "X = 1\n",
        "helpers/py.typed": "",
        "helpers/table.csv": "a,b\n",
        "notes/loose.py": "not a package\n",
        "_vendor/__init__.py": "",
        ".pipeline/run/state.json": "{}",
        ".venv/lib/site.py": "",
        "helpers/__pycache__/parse.cpython-311.pyc": "",
        "pipeline-config.yaml": "name: x\n",
        "input.txt": "data\n",
    }.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "helpers" / "loop").symlink_to(root)
    return root


def test_only_modules_and_packages_are_shipped(tmp_path: Path):
    bundle = bundle_code(folder_with_everything(tmp_path / "cfg"), tmp_path / "out")

    assert bundle.files == (
        "helpers/__init__.py",
        "helpers/parse.py",
        "helpers/py.typed",
        "steps.py",
    )
    with zipfile.ZipFile(bundle.path) as archive:
        assert sorted(archive.namelist()) == sorted([MANIFEST, *bundle.files])
        assert archive.read("helpers/parse.py") == b"X = 1\n"


def test_the_same_files_give_the_same_zip_and_a_change_a_new_name(tmp_path: Path):
    folder = folder_with_everything(tmp_path / "cfg")
    first = bundle_code(folder, tmp_path / "a")
    again = bundle_code(folder, tmp_path / "b")
    assert first.path.read_bytes() == again.path.read_bytes()
    assert first.path.name == again.path.name == f"stepline-code-{first.digest}.zip"

    (folder / "steps.py").write_text("def work(ctx): return 1\n")
    assert bundle_code(folder, tmp_path / "c").digest != first.digest


def test_modules_over_the_limit_are_refused_naming_the_largest(tmp_path: Path):
    folder = folder_with_everything(tmp_path / "cfg")
    (folder / "big.py").write_text("#" * 5000)

    with pytest.raises(SpecError) as raised:
        bundle_code(folder, tmp_path / "out", limit=4096)

    assert "big.py" in raised.value.message and "more than the" in raised.value.message
    assert raised.value.hint and "'_'" in raised.value.hint
    assert not (tmp_path / "out").exists()
