"""YAML text -> validated ``PipelineSpec``, with errors that point at a file and line.

The YAML is composed into nodes first so every value keeps its line number; pydantic's error
locations are then mapped back onto those lines, and unknown keys get a "did you mean".
Prompt, system and schema files are read here, so the rest of stepline only sees text, and
the program of each shell step is looked for (``commands.py``), so a missing one is a config
error before any run folder exists.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from stepline.errors import SpecError
from stepline.hashing import hash_text
from stepline.spec.commands import check_shell_commands
from stepline.spec.model_rules import check_spec_models
from stepline.spec.models import (
    FUNCTION_PATTERN,
    STEP_ID_PATTERN,
    STEP_KINDS,
    LLMDefaults,
    LLMStep,
    PipelineSpec,
    check_json_schema,
)
from stepline.spec.needs import check_needs
from stepline.spec.reading import (
    MAX_CONFIG_BYTES,
    MAX_STEP_FILE_BYTES,
    Location,
    compose,
    read_capped,
)


def load_spec(path: Path) -> PipelineSpec:
    """Read, parse and validate the config at ``path``."""
    try:
        text = read_capped(
            path,
            MAX_CONFIG_BYTES,
            what="config file",
            hint="a pipeline config is a few pages; put long prompts in prompt_file:",
        )
    except FileNotFoundError:
        raise SpecError(
            f"config file not found: {path}",
            hint="pass -c FILE, set PIPELINE_CONFIG, or create pipeline-config.yaml here",
        ) from None
    return parse_spec(text, source=path.resolve())


def parse_spec(
    text: str, *, source: Path | None = None, base_dir: Path | None = None
) -> PipelineSpec:
    """Validate config ``text``.

    ``source`` names the file in errors; relative paths start from ``base_dir``, by default
    the source's folder (a run's config snapshot passes the original config's folder).
    """
    label = str(source) if source else "<config>"
    data, lines = compose(text, label)
    if not isinstance(data, dict):
        raise SpecError(f"{label}: the config must be a mapping with name: and steps:")
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_describe(exc, data, lines, label)) from None
    spec._attach_source(text, source, base_dir)
    spec._step_lines = {
        step.id: line
        for index, step in enumerate(spec.steps)
        if (line := lines.get(("steps", index))) is not None
    }
    spec = _read_step_files(spec, lines, label)
    check_needs(spec, lines, label)
    check_spec_models(spec, lines, label)
    check_shell_commands(spec, lines, label)
    return spec


def config_hash(text: str) -> str:
    """A tagged content hash of config text, recorded in a run's state."""
    return hash_text(text)


def _describe(exc: ValidationError, data: Any, lines: dict[Location, int], label: str) -> str:
    """One line per problem: ``file:line: where: what (did you mean ...)``."""
    messages = []
    errors = exc.errors()
    suggested = _suggested_keys(errors, data)
    for error in errors:
        if error["type"] == "missing" and _data_location(error["loc"], data) in suggested:
            continue  # the unknown key next to it is the typo of this one; say it once
        location = _data_location(error["loc"], data)
        if error["type"] == "union_tag_invalid":
            location += ("kind",)
        line = _nearest_line(location, lines)
        where = f"{label}:{line}" if line else label
        # An unknown key is named by the message itself, so point at its parent.
        parent = (
            location[:-1] if error["type"] in {"extra_forbidden", "union_tag_invalid"} else location
        )
        messages.append(f"{where}: {_where(parent, data)}{_what(error, location, data)}")
    return "\n".join(dict.fromkeys(messages))


def _suggested_keys(errors: list[Any], data: Any) -> set[Location]:
    """Locations of required keys that an unknown key nearby is probably a typo of."""
    suggested: set[Location] = set()
    for error in errors:
        if error["type"] == "extra_forbidden":
            location = _data_location(error["loc"], data)
            valid = config_keys(_model_at(location[:-1], data))
            for close in closest_keys(str(location[-1]), valid):
                suggested.add(location[:-1] + (close,))
    return suggested


def closest_keys(key: str, valid: Iterable[str]) -> list[str]:
    """The valid key ``key`` is most likely a typo of (none when nothing is close). Swapped
    letters are the commonest slip, so a key with the same letters wins: "modle" is "model",
    not "mode"."""
    candidates = list(valid)
    same_letters = [name for name in candidates if sorted(name) == sorted(key)]
    return same_letters[:1] or difflib.get_close_matches(key, candidates, n=1)


def _data_location(pydantic_loc: tuple[Any, ...], data: Any) -> Location:
    """Drop the union tags pydantic inserts (``steps.0.llm.prompt`` -> ``steps.0.prompt``)."""
    location: list[str | int] = []
    current = data
    for part in pydantic_loc:
        is_step_tag = len(location) == 2 and location[0] == "steps" and part in STEP_KINDS
        if is_step_tag:
            continue
        if (
            isinstance(current, dict)
            and part in current
            or isinstance(current, list)
            and isinstance(part, int)
            and part < len(current)
        ):
            current = current[part]
        location.append(part)
    return tuple(location)


def _nearest_line(location: Location, lines: dict[Location, int]) -> int | None:
    for end in range(len(location), -1, -1):
        if location[:end] in lines:
            return lines[location[:end]]
    return None


def _where(location: Location, data: Any) -> str:
    if len(location) >= 2 and location[0] == "steps" and isinstance(location[1], int):
        step = data["steps"][location[1]] if location[1] < len(data.get("steps", [])) else {}
        step_id = step.get("id") if isinstance(step, dict) else None
        name = f'step {location[1] + 1} ("{step_id}")' if step_id else f"step {location[1] + 1}"
        rest = ".".join(str(part) for part in location[2:])
        return f"{name}{' key ' + rest if rest else ''}: "
    if location:
        return ".".join(str(part) for part in location) + ": "
    return ""


def _what(error: Any, location: Location, data: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(location[-1])
        valid = sorted(config_keys(_model_at(location[:-1], data))) if location else []
        close = closest_keys(key, valid)
        suggestion = (
            f'; did you mean "{close[0]}"?' if close else f"; valid keys: {', '.join(valid)}"
        )
        return f'unknown key "{key}"{suggestion}'
    if kind == "missing":
        return "this key is required"
    if kind == "union_tag_invalid":
        tag = error.get("ctx", {}).get("tag", "")
        close = difflib.get_close_matches(str(tag), list(STEP_KINDS), n=1)
        suggestion = f'; did you mean "{close[0]}"?' if close else ""
        return f'unknown step kind "{tag}"{suggestion} (kinds: {", ".join(STEP_KINDS)})'
    if kind in {"string_type", "list_type"} and isinstance(error.get("input"), bool):
        return (
            "got a boolean where text belongs (YAML reads true/false/yes/no/on/off "
            "as booleans; quote it)"
        )
    if kind == "union_tag_not_found":
        return f"every step needs kind: one of {', '.join(STEP_KINDS)}"
    if kind == "string_pattern_mismatch":
        pattern = str(error.get("ctx", {}).get("pattern"))
        words = _pattern_mismatch(pattern, str(error["input"]))
        if words is not None:
            return words
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _pattern_mismatch(pattern: str, value: str) -> str | None:
    """What a patterned key expects, in words: a regular expression explains nothing to the
    person who wrote ``function: helpers.clean_text``. None for a pattern not described here
    (pydantic's message is kept)."""
    if pattern == FUNCTION_PATTERN:
        module, dot, function = value.strip().rpartition(".")
        close = f"{module}:{function}" if dot and ":" not in value else None
        expects = (
            "write it as module:function (a Python module next to the config, a colon, then "
            "the function's name)"
        )
    elif pattern == STEP_ID_PATTERN:
        close = re.sub(r"[^a-z0-9_-]+", "-", value.strip().lower()).strip("-_") or None
        expects = (
            'a step id is lowercase letters, digits, "_" and "-", starting with a letter or a '
            "digit, e.g. extract-items"
        )
    else:
        return None
    suggestion = f'; did you mean "{close}"?' if close and close != value else ""
    return f'got "{value}": {expects}{suggestion}'


def config_keys(model: type[BaseModel]) -> list[str]:
    """The keys a config may use for ``model``: field names, or their aliases where set."""
    return [field.alias or name for name, field in model.model_fields.items()]


def _model_at(location: Location, data: Any) -> type[BaseModel]:
    """The model whose keys are valid at ``location`` (for did-you-mean suggestions)."""
    if len(location) >= 2 and location[0] == "steps":
        steps = data.get("steps") or []
        index = location[1]
        step = steps[index] if isinstance(index, int) and index < len(steps) else {}
        kind = step.get("kind") if isinstance(step, dict) else None
        return STEP_KINDS.get(str(kind), LLMStep)
    if location == ("llm",):
        return LLMDefaults
    return PipelineSpec


def _read_step_files(spec: PipelineSpec, lines: dict[Location, int], label: str) -> PipelineSpec:
    """Replace ``prompt_file`` / ``system_file`` / ``schema_file`` with the files' content."""
    steps = []
    for index, step in enumerate(spec.steps):
        if isinstance(step, LLMStep) and (step.prompt_file or step.system_file or step.schema_file):
            update: dict[str, Any] = {}
            for key in ("prompt_file", "system_file", "schema_file"):
                relative = getattr(step, key)
                if relative:
                    line = lines.get(("steps", index, key))
                    where = f"{label}:{line}" if line else label
                    text = _read_relative(spec.base_dir, relative, where, step.id)
                    if key == "schema_file":
                        update["output_schema"] = _parse_schema(text, relative, where, step.id)
                    else:
                        update[key.removesuffix("_file")] = text
            step = step.model_copy(update=update)
        steps.append(step)
    return spec.model_copy(update={"steps": steps})


def _parse_schema(text: str, relative: str, where: str, step_id: str) -> dict[str, Any]:
    """A schema file's JSON Schema (JSON, or YAML for hand-written ones), checked."""
    try:  # YAML is a superset of JSON, so both parse here, with the config's own caps
        schema, _ = compose(text, relative)
    except SpecError as exc:
        raise SpecError(
            f'{where}: step "{step_id}": {relative} is not JSON or YAML: {exc}'
        ) from None
    if not isinstance(schema, dict):
        raise SpecError(f'{where}: step "{step_id}": {relative} must hold a JSON Schema object')
    try:
        check_json_schema(schema)
    except ValueError as exc:
        raise SpecError(f'{where}: step "{step_id}": {relative}: {exc}') from None
    return schema


def _read_relative(base_dir: Path, relative: str, where: str, step_id: str) -> str:
    path = base_dir / relative
    try:
        return read_capped(
            path, MAX_STEP_FILE_BYTES, what="file", hint="split it, or shorten what it holds"
        )
    except FileNotFoundError:
        raise SpecError(
            f'{where}: step "{step_id}": file not found: {path}',
            hint="paths in the config are relative to the config file's folder",
        ) from None
    except SpecError as exc:
        raise SpecError(f'{where}: step "{step_id}": {exc.message}', hint=exc.hint) from None
