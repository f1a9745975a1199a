"""The config folder's Python modules, zipped for workers that do not share its path.

A cluster's workers import a step's function from a copy of the config's folder. What goes
in is an allow-list, not the whole folder minus some names: the top-level ``*.py`` files and
the packages (folders with an ``__init__.py``), and inside packages only Python files. Every
folder whose name starts with ``.`` or ``_`` is passed over, so ``.pipeline/``, ``.venv/``,
``__pycache__/`` and caches never go, whatever else the folder holds: a deny-list once let
Ray zip its own temp folder into the upload until the disk was full.

The zip is the same bytes for the same files (sorted names, fixed timestamps), so an engine
that names uploads by their hash (Ray) sends it once; it always holds a top-level manifest,
so an engine that strips a lone top-level folder from an archive (Ray again) leaves a
config folder holding one package as it is.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from stepline.errors import SpecError

MAX_CODE_BYTES = 50 * 2**20
"""The most the shipped modules may weigh: more is a folder that holds something else."""
MANIFEST = "_stepline_code.json"
SHIPPED_SUFFIXES = (".py", ".pyi")
SHIPPED_NAMES = ("py.typed",)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class CodeBundle:
    """A zip of a config folder's modules: ``path``, named by its ``digest``."""

    path: Path
    digest: str
    files: tuple[str, ...]  # as in the zip, relative to the folder


def shipped_files(folder: Path) -> Iterator[Path]:
    """The files of ``folder`` a worker may import, in a stable order."""
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix in SHIPPED_SUFFIXES:
            yield entry
        elif _package(entry):
            yield from _package_files(entry)


def _package_files(package: Path) -> Iterator[Path]:
    for entry in sorted(package.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and (entry.suffix in SHIPPED_SUFFIXES or entry.name in SHIPPED_NAMES):
            yield entry
        elif _package(entry):
            yield from _package_files(entry)


def _package(entry: Path) -> bool:
    """A folder to ship: a package, not hidden (``.``, ``_``: ``__pycache__``), not a link
    (which may lead anywhere, the folder itself included)."""
    return (
        entry.is_dir()
        and not entry.is_symlink()
        and not entry.name.startswith((".", "_"))
        and (entry / "__init__.py").is_file()
    )


def bundle_code(folder: Path, into: Path, *, limit: int = MAX_CODE_BYTES) -> CodeBundle:
    """Zip ``folder``'s modules into the folder ``into`` (``stepline-code-<digest>.zip``).

    Raises ``SpecError`` when they weigh more than ``limit`` bytes, naming the largest files.
    """
    files = list(shipped_files(folder))
    sizes = {path: path.stat().st_size for path in files}
    total = sum(sizes.values())
    if total > limit:
        largest = sorted(files, key=lambda path: -sizes[path])[:3]
        named = ", ".join(f"{path.relative_to(folder)} ({_mib(sizes[path])})" for path in largest)
        raise SpecError(
            f"the Python modules beside the config ({folder}) weigh {_mib(total)}, more than "
            f"the {_mib(limit)} a cluster's workers are sent; the largest: {named}",
            hint="move data files out of the config's folder (or into a folder whose name "
            "starts with '.' or '_') and read them through the step's input or vars",
        )
    names = tuple(path.relative_to(folder).as_posix() for path in files)
    contents = [path.read_bytes() for path in files]
    digest = hashlib.sha256()
    for name, content in zip(names, contents, strict=True):
        digest.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    short = digest.hexdigest()[:16]
    into.mkdir(parents=True, exist_ok=True)
    path = into / f"stepline-code-{short}.zip"
    partial = path.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_entry(MANIFEST), json.dumps({"digest": short, "files": names}))
        for name, content in zip(names, contents, strict=True):
            archive.writestr(_entry(name), content)
    partial.replace(path)
    return CodeBundle(path=path, digest=short, files=names)


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"
