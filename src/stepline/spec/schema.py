"""The JSON Schema of the pipeline config file, generated from the pydantic models.

Editors (through ``# yaml-language-server: $schema=...``) use it to complete and check configs,
so it must accept every config that loads: besides the canonical types it allows the forms
the loader coerces (``timeout: 5m``, ``command: "wc -l x"``, ``pause: "yes"``, a quoted
number). It may accept a little more than loads (cross-key rules such as "exactly one of
prompt and prompt_file" and the template checks are the loader's job). ``KEY_HELP`` gives
every key a one-line description; docs/config.md has the full story.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from stepline.spec.models import PipelineSpec

_DURATION = {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)\s*$"}
_RATE = {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*/\s*(s|sec|m|min|h|hour)\s*$"}
_NUMBER_TEXT = r"^\s*[+-]?(\d[\d_]*(\.[\d_]*)?|\.\d[\d_]*)([eE][+-]?\d+)?\s*$|^\s*[+-]?(inf|nan)"
_INTEGER_TEXT = r"^\s*[+-]?\d[\d_]*\s*$"
_BOOLEAN_WORDS = ["true", "false", "yes", "no", "on", "off", "t", "f", "y", "n", "1", "0"]

KEY_HELP: dict[str, str] = {
    # top level
    "name": "The pipeline's name, shown by `pipeline list` and recorded in each run.",
    "description": "Free text for people; stepline does not use it.",
    "llm": "Defaults for every `kind: llm` step; a step may override each key.",
    "vars": "Template variables, read as {{ vars.<name> }}; --set name=value overrides them.",
    "pricing": "USD per million tokens (and context window) by model name; adds to or "
    "overrides the shipped price table.",
    "concurrency": "Items of a fan-out step that run at once (1-1000, default 8); "
    "--concurrency N overrides it.",
    "rate_limit": "At most this many LLM requests per period across the run, evenly spaced: "
    "50/min, 5/s, 1000/h.",
    "budget": "The most the run may spend on LLM calls: before each call, what was spent plus "
    "the most the call could cost must fit, else the run pauses (exit 3).",
    "max_usd": "The budget in US dollars; --max-cost USD on run or resume overrides it.",
    "steps": "The steps, run in this order; ids must be unique.",
    # llm settings (under llm: and on llm steps)
    "provider": "anthropic (default), openai (any OpenAI-compatible server: Ollama, vLLM) or "
    "replay (answer from `cassette:`, offline).",
    "model": "Model name sent to the API, e.g. claude-sonnet-5-5. Each llm step needs one.",
    "max_tokens": "Upper limit on the reply's length in tokens (default 1024).",
    "temperature": "Sampling temperature, 0-2, for OpenAI-compatible servers; Anthropic's "
    "current API refuses it for every model (use effort:).",
    "effort": "How much the model thinks before it answers: low, medium, high, xhigh or max "
    "(Anthropic's output_config.effort, OpenAI's reasoning_effort); the model's default when "
    "not set.",
    "stop": "Stop sequences (at most 16): the reply ends where the model would write one.",
    "extra": "Fields added to the request body as they are (top_k, seed, metadata...); "
    "a step's extra merges over llm.extra.",
    "base_url": "API endpoint; when not set, ANTHROPIC_BASE_URL / OPENAI_BASE_URL apply.",
    "stream": "true: receive replies as they are written, with a live token count.",
    "prompt_version": "A label never sent; changing it asks the model again and re-runs the step.",
    "repair_attempts": "Times a reply that is not JSON or misses the schema is shown back to "
    "the model (0-10, default 2).",
    "cassette": "With provider: replay, the JSONL cassette (made with --record) that answers, "
    "relative to the config's folder.",
    "retry": "How failing calls (429, 5xx, 529, timeouts) are tried again.",
    "fallback_models": "Models tried in order once a model has used its attempts: a name, or "
    "{model, provider, base_url}.",
    "cache": "The response cache in <workdir>/cache.sqlite.",
    "cache_prompt": "true: mark the part every request of the step shares (system prompt and "
    "the prompt before the first item variable) for Anthropic's prompt cache.",
    "cached_prefix": "Text (a template without item variables) sent before the prompt and "
    "cached; implies cache_prompt.",
    "mode": "live (default) or batch: a fan-out step's items go through Anthropic's Message "
    "Batches API at half price, results within 24 hours.",
    "batch_fallback": "none (default): failed or expired batch items follow on_item_error | "
    "live: they are asked again with live calls.",
    "batch_poll": "The longest wait between two polls of a batch (default 60s); polling "
    "starts at 1s and backs off.",
    "batch_size": "Requests per batch (default and most 100000); a larger fan-out sends "
    "several batches.",
    "cache_min_tokens": "The shortest prefix the model's prompt cache takes; cache_prompt "
    "warns below it.",
    "tiers": "Dearer prices for long prompts: a request whose prompt (input, cache reads and "
    "writes) is over above_prompt_tokens pays that tier's prices for all its tokens.",
    "above_prompt_tokens": "The prompt size (tokens) above which this tier's prices apply.",
    # retry:, cache:, fallback models, pricing entries
    "attempts": "Requests per model, the first included (default 5).",
    "initial_delay": "Scale of the exponential backoff with jitter (default 1s).",
    "max_delay": "Longest wait between attempts; a longer retry-after fails (default 60s).",
    "enabled": "Read and write the response cache (default true).",
    "ttl": "How old a cached reply may be and still answer (default 7d).",
    "input": "USD per million input tokens.",
    "output": "USD per million output tokens.",
    "cache_write": "USD per million cache-write tokens (default 1.25 x input).",
    "cache_write_1h": "USD per million tokens written to the one-hour cache (batch mode; "
    "default 2 x input).",
    "cache_read": "USD per million cache-read tokens (default 0.1 x input).",
    "context_window": "Tokens the model reads at most; a prompt that cannot fit fails before "
    "it is sent.",
    # every step kind
    "id": "Unique step name: [a-z0-9][a-z0-9_-]*, at most 64 characters; read as steps.<id>.",
    "kind": "What the step does: llm, python or shell.",
    "label": "Display text for progress lines and tables (default: the id).",
    "critical": "true (default): a failure stops the run. false: it is recorded and the run "
    "goes on.",
    "pause": "A review point after the step: edit its output file, then continue.",
    "timeout": "Seconds or 250ms/30s/5m/2h/1d. The whole step's limit; for llm steps, each "
    "request's.",
    "for_each": "Run the step once per item: a {{ expression }} giving a list, input.lines or "
    "input.records.",
    "item_key": "A stable name per item, a template (default: a hash of the item).",
    "on_item_error": "fail (default): stop the step | skip: leave failed items out | collect: "
    "an error record in their place.",
    "stream_items": "Take the previous fan-out step's items as they finish (docs/streaming.md).",
    "output_format": "How a fan-out output is stored: json or jsonl (default: jsonl above "
    "10,000 items).",
    # kind: llm
    "system": "The system prompt, a template. At most one of system and system_file.",
    "system_file": "A file holding the system prompt template, relative to the config.",
    "prompt": "The user message, a template. Exactly one of prompt and prompt_file.",
    "prompt_file": "A file holding the prompt template, relative to the config.",
    "schema": "A JSON Schema the reply must match; implies output: json.",
    "schema_file": "A JSON or YAML file holding the reply's JSON Schema, relative to the config.",
    # kind: python
    "function": "module:callable, imported from the config's folder, e.g. helpers:count_items.",
    # kind: shell
    "command": "The program and its arguments (no shell): a list of templates, or a string "
    "split like a shell would.",
    "env": "Extra environment variables; each value is a template.",
    "cwd": "Working folder, relative to the config's folder (default: that folder).",
}
"""One line per config key, by key name. A key with two meanings has its own entry below."""

_MODEL_KEY_HELP: dict[tuple[str, str], str] = {
    ("PipelineSpec", "concurrency"): KEY_HELP["concurrency"],
    ("LLMStep", "concurrency"): "Items at once for this fan-out step (overrides concurrency:).",
    ("PythonStep", "concurrency"): "Items at once for this fan-out step (overrides concurrency:).",
    ("ShellStep", "concurrency"): "Items at once for this fan-out step (overrides concurrency:).",
    ("LLMStep", "enabled"): "false: the step is skipped (default true).",
    ("PythonStep", "enabled"): "false: the step is skipped (default true).",
    ("ShellStep", "enabled"): "false: the step is skipped (default true).",
    ("LLMStep", "output"): "text (default) or json: the reply is parsed and repaired if needed.",
    ("LLMDefaults", "timeout"): "Per request (each attempt), not per step: 30s, 2m... "
    "(default: the SDKs' 10 minutes).",
    ("FallbackModel", "model"): "The fallback model's name.",
    ("FallbackModel", "provider"): "Its provider (default: the step's).",
    ("FallbackModel", "base_url"): "Its endpoint (default: the step's).",
}


class ConfigSchemaGenerator(GenerateJsonSchema):
    """pydantic's generator, with the lax forms the loader accepts and a description per key."""

    def int_schema(self, schema: core_schema.IntSchema) -> JsonSchemaValue:
        strict = super().int_schema(schema)
        return _either(strict, {"type": "string", "pattern": _INTEGER_TEXT}, {"type": "boolean"})

    def float_schema(self, schema: core_schema.FloatSchema) -> JsonSchemaValue:
        strict = super().float_schema(schema)
        return _either(strict, {"type": "string", "pattern": _NUMBER_TEXT}, {"type": "boolean"})

    def bool_schema(self, schema: core_schema.BoolSchema) -> JsonSchemaValue:
        words = {
            "type": "string",
            "pattern": "^(" + "|".join(map(_any_case, _BOOLEAN_WORDS)) + ")$",
        }
        return _either({"type": "boolean"}, words, {"enum": [0, 1]})

    def generate(self, schema: core_schema.CoreSchema, mode: Any = "validation") -> JsonSchemaValue:
        result = super().generate(schema, mode=mode)
        for name, definition in result.get("$defs", {}).items():
            _describe_keys(name, definition)
        _describe_keys("PipelineSpec", result)
        return result


def _any_case(word: str) -> str:
    """``yes`` -> ``[yY][eE][sS]``: JSON Schema patterns (ECMA 262) have no ``(?i)`` flag."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in word)


def _either(*choices: JsonSchemaValue) -> JsonSchemaValue:
    return {"anyOf": list(choices)}


def _describe_keys(model: str, definition: JsonSchemaValue) -> None:
    for key, prop in definition.get("properties", {}).items():
        prop.pop("title", None)
        text = _MODEL_KEY_HELP.get((model, key)) or KEY_HELP.get(key)
        if text is not None:
            prop["description"] = text


def config_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a pipeline config file."""
    schema = PipelineSpec.model_json_schema(
        mode="validation", schema_generator=ConfigSchemaGenerator
    )
    definitions = schema["$defs"]
    _loosen_durations(definitions["RetrySpec"], ("initial_delay", "max_delay"))
    _loosen_durations(definitions["CacheSpec"], ("ttl",))
    for name in ("LLMDefaults", "LLMStep", "PythonStep", "ShellStep"):
        _loosen_durations(definitions[name], ("timeout",))
    for name in ("LLMDefaults", "LLMStep"):
        _loosen_durations(definitions[name], ("batch_poll",))
        _widen(definitions[name]["properties"]["prompt_version"], {"type": "number"})
    _widen(definitions["ShellStep"]["properties"]["command"], {"type": "string"})
    rate = schema["properties"]["rate_limit"]
    rate["anyOf"] = [_RATE, {"type": "null"}]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "stepline pipeline config",
        **{key: value for key, value in schema.items() if key != "title"},
    }


def _loosen_durations(definition: JsonSchemaValue, keys: tuple[str, ...]) -> None:
    """A duration is seconds (a number) or text such as ``5m`` (``parse_duration``); pydantic
    sees only the float it becomes."""
    for key in keys:
        prop = definition["properties"][key]
        nullable = {"type": "null"} in prop.get("anyOf", [])
        choices = [{"type": "number", "exclusiveMinimum": 0}, _DURATION]
        kept: dict[str, Any] = {k: prop[k] for k in ("description", "default") if k in prop}
        prop.clear()
        prop.update({"anyOf": choices + ([{"type": "null"}] if nullable else []), **kept})


def _widen(prop: JsonSchemaValue, extra: JsonSchemaValue) -> None:
    """Add ``extra`` as one more accepted form of ``prop``, keeping its description."""
    kept: dict[str, Any] = {k: prop.pop(k) for k in ("description", "default") if k in prop}
    choices = prop.pop("anyOf", None) or [dict(prop)]
    prop.clear()
    prop.update({"anyOf": [*choices, extra], **kept})


def schema_text() -> str:
    """The schema as committed in docs/pipeline-config.schema.json (stable key order)."""
    return json.dumps(config_schema(), indent=2, ensure_ascii=False) + "\n"
