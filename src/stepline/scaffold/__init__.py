"""``pipeline init``: new pipelines from the starter in ``starter/`` or a shipped example.

The starter is a small pipeline of every kind of file a real one has (config, prompt file,
helpers module, JSON Schema, input) plus a cassette, so its first run works offline with
``--replay``. Examples are the ``configs/<name>/`` folders of the source tree; a wheel carries
them as ``stepline/examples`` (hatch ``force-include``), and an editable install reads them
from the source tree. Nothing existing is overwritten unless asked to.

An example's ``pipeline.yaml`` is written as ``pipeline-config.yaml``, the name ``run`` and
``validate`` look for, so the copy needs no ``-c``; the commands ``init`` prints from the
config's header are rewritten to match, and an example with a cassette gets the offline
``--replay`` command before the one that needs an API key.
"""

from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass
from pathlib import Path

from stepline.errors import InputError
from stepline.settings import DEFAULT_CONFIG_NAME

STARTER_DIR = Path(__file__).parent / "starter"
SCHEMA_FILE = "pipeline-config.schema.json"
SCHEMA_COMMENT = "# yaml-language-server: $schema="
EXAMPLE_CONFIG = "pipeline.yaml"  # the config's name in configs/<name>/
CASSETTE_GLOB = "*cassette*.jsonl"  # an example's recorded replies, for --replay
_CONFIG_FLAGS = ("-c", "--config")
_SKIPPED = {"__pycache__", ".pipeline", ".DS_Store"}


@dataclass(frozen=True)
class Scaffold:
    """What ``init`` writes: each destination path (relative) and its bytes."""

    files: dict[Path, bytes]
    config: Path
    """The config among ``files``: its header comment says how to run the pipeline."""
    source_prefix: str = ""
    """How the header's commands name the source folder (``configs/<name>/``), dropped."""
    source_config: str = ""
    """How the header's commands name the config (``pipeline.yaml``): their ``-c`` of it is
    dropped, the copy having the default name."""
    cassette: Path | None = None
    """Recorded replies among ``files``: the first run command gets an offline twin."""


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
    return Scaffold(files=files, config=Path(DEFAULT_CONFIG_NAME))


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
    config = Path(DEFAULT_CONFIG_NAME)
    files[config] = _point_schema_comment(files.pop(Path(EXAMPLE_CONFIG)))
    files[Path(SCHEMA_FILE)] = schema_text.encode()
    cassettes = sorted(
        path for path in files if path.parent == Path() and path.match(CASSETTE_GLOB)
    )
    return Scaffold(
        files=files,
        config=config,
        source_prefix=f"configs/{name}/",
        source_config=EXAMPLE_CONFIG,
        cassette=cassettes[0] if cassettes else None,
    )


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
    """The indented command lines of the config's header comment (how to run it), as they
    read in the copy; after ``pipeline validate`` and the offline run when the header has
    neither."""
    lines = [_as_copied(command, scaffold) for command in _header_commands(scaffold)]
    offline = _offline_command(lines, scaffold.cassette)
    if offline is not None:
        lines.insert(_first_run(lines), offline)
    if not any(line.startswith("pipeline validate") for line in lines):
        lines.insert(0, _validate_command(scaffold.config))
    return lines


def _header_commands(scaffold: Scaffold) -> list[str]:
    """``pipeline ...`` and ``export ...`` lines indented in the leading comment."""
    commands = []
    for line in scaffold.files[scaffold.config].decode().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#")
        if text.startswith("   ") and text.strip().startswith(("pipeline ", "export ")):
            commands.append(text.strip())
    return commands


def _as_copied(command: str, scaffold: Scaffold) -> str:
    """A header command with the source folder dropped, and its ``-c`` of the example's
    config too (the copy has the default name); the starter's are kept as written."""
    if scaffold.source_prefix:
        command = command.replace(scaffold.source_prefix, "")
    if not scaffold.source_config or not command.startswith("pipeline "):
        return command
    words = shlex.split(command)
    kept = [
        word
        for index, word in enumerate(words)
        if not _is_config_flag(words, index, scaffold.source_config)
        and not (index and _is_config_flag(words, index - 1, scaffold.source_config))
    ]
    return shlex.join(kept)


def _is_config_flag(words: list[str], index: int, config: str) -> bool:
    """``words[index]`` is ``-c``/``--config`` followed by ``config``."""
    return words[index] in _CONFIG_FLAGS and words[index + 1 : index + 2] == [config]


def _offline_command(commands: list[str], cassette: Path | None) -> str | None:
    """``pipeline run INPUT --replay CASSETTE`` for the header's first run of INPUT, unless
    the header has an offline run already (or there is no cassette to replay)."""
    if cassette is None:
        return None
    runs = [shlex.split(command) for command in commands if command.startswith("pipeline run ")]
    if not runs or any("--replay" in words for words in runs) or runs[0][2].startswith("-"):
        return None
    return shlex.join(["pipeline", "run", runs[0][2], "--replay", str(cassette)])


def _first_run(commands: list[str]) -> int:
    return next(
        (index for index, command in enumerate(commands) if command.startswith("pipeline run ")),
        len(commands),
    )


def _validate_command(config: Path) -> str:
    return "pipeline validate" + ("" if str(config) == DEFAULT_CONFIG_NAME else f" -c {config}")


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
