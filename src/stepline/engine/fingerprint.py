"""Step fingerprints: a hash of what a step is (its resolved spec) and of what it read.

Display-only keys (label, pause, critical, timeout), where the work runs (executor, workers)
and the settings that decide how an LLM reply is obtained (retry, fallback_models, cache,
timeout, stream, repair_attempts, cassette, prompt caching and batch mode) are left out, so
editing them never causes a re-run. For a Python step the module file's content is part of its
spec: editing the function re-runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stepline.engine.references import StepNeeds
from stepline.hashing import hash_value
from stepline.spec import LLMDefaults, LLMStep, PipelineSpec, PythonStep, StepBase
from stepline.steps.python import function_source_hash

_NOT_IN_FINGERPRINT = frozenset(
    {
        "label",
        "pause",
        "critical",
        "needs",
        "when",
        "enabled",
        "timeout",
        "prompt_file",
        "system_file",
        "schema_file",
        "concurrency",
        "stream_items",
        "output_format",
        "retry",
        "retry_on_exit",
        "executor",
        "workers",
    }
)


_HOW_NOT_WHAT = frozenset(
    {
        "retry",
        "fallback_models",
        "cache",
        "timeout",
        "stream",
        "repair_attempts",
        "cassette",
        "cache_prompt",
        "mode",
        "batch_fallback",
        "batch_poll",
        "batch_size",
    }
)
"""LLM settings that decide how a reply is obtained, not what it says."""


_ADDED_LATER: dict[str, Any] = {
    "output_schema": None,
    "stop": None,
    "effort": None,
    "extra": None,
    "prompt_version": None,
    "for_each": None,
    "item_key": None,
    "on_item_error": "fail",
    "cached_prefix": None,
    "filter": None,
    "group_size": None,
    "flatten": False,
}
"""Keys added after the first release, with the value that means "not set"."""


def spec_hash(
    spec: PipelineSpec,
    step: StepBase,
    needs: StepNeeds,
    variables: Mapping[str, Any],
    *,
    for_items: bool = False,
) -> str:
    """Hash of everything in the config that shapes this step's output.

    ``for_items``: the part each item of a fan-out step depends on, which leaves out
    ``on_item_error`` (it shapes the list, not what one item returns).
    """
    return hash_value(_spec_fields(spec, step, needs, variables, for_items=for_items))


def spec_parts(
    spec: PipelineSpec, step: StepBase, needs: StepNeeds, variables: Mapping[str, Any]
) -> dict[str, str]:
    """A short hash of each part of the step's spec (``prompt``, ``llm.model``, ``source``,
    ``vars.top_k``...), kept in the step's record so that the next plan can say which part
    changed instead of only that something did."""
    return _parts_of(_spec_fields(spec, step, needs, variables))


def spec_identity(
    spec: PipelineSpec, step: StepBase, needs: StepNeeds, variables: Mapping[str, Any]
) -> tuple[str, dict[str, str]]:
    """``spec_hash`` and ``spec_parts`` together, from one reading of the spec (a Python
    step's module is read and hashed once)."""
    fields = _spec_fields(spec, step, needs, variables)
    return hash_value(fields), _parts_of(fields)


def _parts_of(fields: Mapping[str, Any]) -> dict[str, str]:
    parts: dict[str, str] = {}
    for key, value in fields.items():
        if key in ("llm", "vars"):
            parts.update({f"{key}.{name}": _short(each) for name, each in value.items()})
        else:
            parts[key] = _short(value)
    return parts


def changed_parts(
    step: StepBase, previous: Mapping[str, str], current: Mapping[str, str]
) -> list[str]:
    """What changed between two ``spec_parts``, in words a config's author knows: the key,
    the file it was read from, the variable; empty when ``previous`` is unknown (a record
    made before parts were kept)."""
    if not previous:
        return []
    keys = sorted(
        key for key in set(previous) | set(current) if previous.get(key) != current.get(key)
    )
    return [describe_part(step, key) for key in keys]


def describe_part(step: StepBase, key: str) -> str:
    """``prompt (prompts/extract.md)``, ``the variable top_k``, ``helpers.py (...)``."""
    files = {"prompt": "prompt_file", "system": "system_file", "output_schema": "schema_file"}
    if key in files:
        name = "schema" if key == "output_schema" else key
        source = getattr(step, files[key], None)
        return f"{name} ({source})" if source else name
    if key == "source" and isinstance(step, PythonStep):
        module = step.function.partition(":")[0].replace(".", "/") + ".py"
        return f"{module} (the module of its function: any edit to it re-runs the step)"
    if key.startswith("vars."):
        return f"the variable {key.removeprefix('vars.')} (vars: or --set)"
    return key.removeprefix("llm.")


def _spec_fields(
    spec: PipelineSpec,
    step: StepBase,
    needs: StepNeeds,
    variables: Mapping[str, Any],
    *,
    for_items: bool = False,
) -> dict[str, Any]:
    # an item's result depends neither on what the step does with failures, nor on which
    # other items the filter keeps, nor on how the results are spliced into the output
    excluded = set(_NOT_IN_FINGERPRINT) | (
        {"on_item_error", "filter", "flatten"} if for_items else set()
    )
    fields = _set_keys(step.model_dump(exclude=excluded))
    if isinstance(step, LLMStep):
        for key in LLMDefaults.model_fields:
            fields.pop(key, None)
        fields["llm"] = _set_keys(spec.llm_params(step).model_dump(exclude=set(_HOW_NOT_WHAT)))
    if isinstance(step, PythonStep):
        fields["source"] = function_source_hash(step, spec.base_dir)
    names = needs.item_vars if for_items else needs.vars
    fields["vars"] = {name: variables[name] for name in sorted(names) if name in variables}
    return fields


def _short(value: Any) -> str:
    """Sixteen hex digits of the value's hash: enough to tell two versions of a part apart."""
    return hash_value(value).partition(":")[2][:16]


def _set_keys(fields: dict[str, Any]) -> dict[str, Any]:
    """Leave out keys added after the first release while they are unset, so upgrading
    stepline never makes an unchanged step look changed (and re-run)."""
    return {
        key: value
        for key, value in fields.items()
        if not (key in _ADDED_LATER and value in (_ADDED_LATER[key], None, {}, []))
    }


def fingerprint(step_spec_hash: str, reads: Mapping[str, str]) -> str:
    """The step's identity for reuse: its spec hash plus the hashes of everything it read."""
    return hash_value({"spec": step_spec_hash, "reads": dict(sorted(reads.items()))})
