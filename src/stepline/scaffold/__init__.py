"""``pipeline init``: new pipelines from the starter in ``starter/`` or a shipped example.

The starter is a small pipeline of every kind of file a real one has (config, prompt file,
helpers module, JSON Schema, input) plus a cassette, so its first run works offline with
``--replay``. Examples are the ``configs/<name>/`` folders of the source tree; a wheel carries
them as ``stepline/examples`` (hatch ``force-include``), and an editable install reads them
from the source tree. Nothing existing is overwritten unless asked to.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from stepline.errors import InputError

STARTER_DIR = Path(__file__).parent / "starter"
SCHEMA_FILE = "pipeline-config.schema.json"
SCHEMA_COMMENT = "# yaml-language-server: $schema="
_SKIPPED = {"__pycache__", ".pipeline", ".DS_Store"}


@dataclass(frozen=True)
class Scaffold:
    """What ``init`` writes: each destination path (relative) and its bytes."""

    files: dict[Path, bytes]
    config: Path
    """The config among ``files``: its header comment says how to run the pipeline."""
    source_prefix: str = ""
    """How the header's commands name the source folder (``configs/<name>/``), dropped."""


def examples_dir() -> Path | None:
    """Where the shipped examples are: inside the installed package, else the source tree."""
    packaged = Path(__file__).parent.parent / "examples"
    source = Path(__file__).resolve().parents[3] / "configs"
    for candidate in (packaged, source):
        if candidate.is_dir() and any(candidate.glob("*/pipeline.yaml")):
            return candidate
    return None


def example_names() -> list[str]:
    """The names ``--example`` accepts, sorted."""
    root = examples_dir()
    return sorted(p.parent.name for p in root.glob("*/pipeline.yaml")) if root else []


def starter_scaffold(schema_text: str) -> Scaffold:
    """The starter pipeline, with the config schema beside it for editors."""
    files = _read_tree(STARTER_DIR)
    files[Path(SCHEMA_FILE)] = schema_text.encode()
    return Scaffold(files=files, config=Path("pipeline-config.yaml"))


def example_scaffold(name: str, schema_text: str) -> Scaffold:
    """A copy of example ``name``; its ``$schema`` comment is pointed at the copied schema."""
    root = examples_dir()
    names = example_names()
    if root is None or name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        available = ", ".join(names) or "none (this installation has no examples)"
        hint = f'did you mean "{close[0]}"?' if close else f"examples: {available}"
        raise InputError(f'unknown example "{name}"', hint=hint)
    files = _read_tree(root / name)
    config = Path("pipeline.yaml")
    files[config] = _point_schema_comment(files[config])
    files[Path(SCHEMA_FILE)] = schema_text.encode()
    return Scaffold(files=files, config=config, source_prefix=f"configs/{name}/")


def write_scaffold(scaffold: Scaffold, target: Path, *, force: bool = False) -> list[Path]:
    """Write ``scaffold`` under ``target``; refuse (InputError, exit 2) to overwrite any file
    unless ``force``. Checks every path before writing one, so a refusal writes nothing."""
    if target.exists() and not target.is_dir():
        raise InputError(f"{target} is a file; pass a folder to create the pipeline in")
    clashes = sorted(str(path) for path in scaffold.files if (target / path).exists())
    if clashes and not force:
        raise InputError(
            f"{target}: these files exist already: {', '.join(clashes)}",
            hint="pick an empty folder (pipeline init DIR), or pass --force to overwrite them",
        )
    written = []
    for relative, content in sorted(scaffold.files.items()):
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        written.append(path)
    return written


def how_to_run(scaffold: Scaffold) -> list[str]:
    """The indented command lines of the config's header comment (how to run it), after a
    ``pipeline validate`` when the header has none."""
    lines = []
    for line in scaffold.files[scaffold.config].decode().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#")
        if text.startswith("   ") and text.strip().startswith(("pipeline ", "export ")):
            command = text.strip()
            prefix = scaffold.source_prefix
            lines.append(command.replace(prefix, "") if prefix else command)
    if not any(line.startswith("pipeline validate") for line in lines):
        lines.insert(0, f"pipeline validate -c {scaffold.config}")
    return lines


def _read_tree(root: Path) -> dict[Path, bytes]:
    return {
        path.relative_to(root): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not _SKIPPED & set(path.relative_to(root).parts)
    }


def _point_schema_comment(config: bytes) -> bytes:
    """Point a first-line ``$schema`` comment at the schema file copied beside the config."""
    first, newline, rest = config.partition(b"\n")
    comment = f"{SCHEMA_COMMENT}{SCHEMA_FILE}".encode()
    if first.startswith(SCHEMA_COMMENT.encode()):
        return comment + newline + rest
    return comment + b"\n" + config
