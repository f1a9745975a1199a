"""requirements/dev.lock against pyproject.toml: what CI installs must be what pyproject asks for.

A dependency added to pyproject without `make lock` would be missing on a fresh machine (the
lock installs with --no-deps), and a range narrowed past the locked version would test a
release users can no longer get.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", re.MULTILINE)


def _locked() -> dict[str, list[str]]:
    versions: dict[str, list[str]] = {}
    for name, version in _PIN.findall((ROOT / "requirements" / "dev.lock").read_text()):
        versions.setdefault(canonicalize_name(name), []).append(version)
    return versions


def _required() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    names = [*project["dependencies"], *extras["dev"], *extras["examples"]]
    return [Requirement(line) for line in names if not line.startswith("stepline")]


def test_every_dependency_is_locked_within_its_range() -> None:
    locked = _locked()
    for requirement in _required():
        versions = locked.get(canonicalize_name(requirement.name))
        assert versions, f"{requirement.name} is not in requirements/dev.lock: run make lock"
        for version in versions:
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{requirement.name}=={version} in the lock is outside {requirement}: run make lock"
            )


def test_the_lock_pins_every_package_with_hashes_and_names_no_index() -> None:
    text = (ROOT / "requirements" / "dev.lock").read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[-1])
    assert len(entries) > 20
    for entry in entries:
        assert "==" in entry.split("\n")[0] and "--hash=sha256:" in entry, entry[:80]
    assert not re.search(r"--(extra-)?index-url|--find-links|file://", text)
