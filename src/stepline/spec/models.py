"""The pipeline config format: pydantic models that are the contract of the YAML file.

Every model forbids unknown keys, so a typo is an error with a suggestion rather than a
silently ignored setting. ``docs/config.md`` documents each key; keep the two in step.
"""

from __future__ import annotations

import difflib
import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from stepline.errors import InputError, SpecError
from stepline.expressions import one_expression
from stepline.spec.durations import Duration, Rate

STEP_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]*$"
FUNCTION_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"


ProviderName = Literal["anthropic", "openai", "replay"]
"""``replay`` answers from a recorded cassette (``cassette:``) with no network."""

LLM_OVERRIDES = ("model", "provider", "mode")
"""The LLM settings the command line may force: model and provider on every step, ``mode:
batch`` (``--batch``) on the fan-out steps whose provider has a batch API."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySpec(_Strict):
    """How often and how patiently a failing LLM call, or Python or shell step, is tried again."""

    attempts: int = Field(default=5, ge=1, le=100)
    initial_delay: Duration = 1.0
    max_delay: Duration = 60.0


class CacheSpec(_Strict):
    """Whether replies are cached (in ``<workdir>/cache.sqlite``) and for how long."""

    enabled: bool = True
    ttl: Duration = 7 * 86400.0


class FallbackModel(_Strict):
    """A model to try when the primary has used its attempts (provider/base_url: inherited)."""

    model: str = Field(min_length=1)
    provider: ProviderName | None = None
    base_url: str | None = None


FallbackEntry = str | FallbackModel


class PriceTier(_Strict):
    """Prices for a request whose prompt (input, cache reads and writes) is over a size: the
    whole request, output included, is charged at them (Claude Haiku 5.5 above 100,000)."""

    above_prompt_tokens: int = Field(gt=0)
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write: float | None = Field(default=None, ge=0)
    cache_write_1h: float | None = Field(default=None, ge=0)
    cache_read: float | None = Field(default=None, ge=0)


class ModelPrice(_Strict):
    """USD per million tokens. Cache prices default to Anthropic's multipliers of ``input``.

    ``context_window`` (tokens the model reads at most) lets a too-large prompt fail before it
    is sent and paid for; ``cache_min_tokens`` (the shortest prefix the provider caches) lets
    ``cache_prompt`` warn instead of silently caching nothing.
    """

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write: float | None = Field(default=None, ge=0)
    cache_write_1h: float | None = Field(default=None, ge=0)  # default 2 x input
    cache_read: float | None = Field(default=None, ge=0)
    context_window: int | None = Field(default=None, gt=0)
    cache_min_tokens: int | None = Field(default=None, gt=0)  # shorter prefixes never cache
    tiers: list[PriceTier] = Field(default_factory=list)  # dearer prices for long prompts

    def for_prompt(self, prompt_tokens: float) -> ModelPrice:
        """The prices a request with a prompt of this size pays (the highest tier it is over)."""
        over = [tier for tier in self.tiers if prompt_tokens > tier.above_prompt_tokens]
        if not over:
            return self
        tier = max(over, key=lambda tier: tier.above_prompt_tokens)
        return self.model_copy(update=tier.model_dump(exclude={"above_prompt_tokens"}))


def _json_extra(value: Any) -> Any:
    if value is not None:
        check_json_value(value, "extra")
    return value


def _text_version(value: Any) -> Any:
    """``prompt_version: 2`` means the text "2"."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


ExtraBody = Annotated[dict[str, Any], AfterValidator(_json_extra)]
LLMMode = Literal["live", "batch"]
Effort = Literal["low", "medium", "high", "xhigh", "max"]
"""How much the model thinks before it answers (the Messages API's ``output_config.effort``)."""
BatchFallback = Literal["none", "live"]
MAX_BATCH_REQUESTS = 100_000
"""The Message Batches API's limit on requests per batch; larger fan-outs use several."""
PromptVersion = Annotated[str, BeforeValidator(_text_version)]


class LLMDefaults(_Strict):
    """Pipeline-wide defaults for ``kind: llm`` steps; any step may override each key."""

    provider: ProviderName = "anthropic"
    model: str | None = None
    max_tokens: int = Field(default=1024, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    effort: Effort | None = None
    stop: list[str] | None = Field(default=None, max_length=16)
    extra: ExtraBody = Field(default_factory=dict)
    base_url: str | None = None
    timeout: Duration | None = None
    stream: bool | None = None
    prompt_version: PromptVersion | None = None
    repair_attempts: int = Field(default=2, ge=0, le=10)
    cassette: str | None = None
    retry: RetrySpec = Field(default_factory=RetrySpec)
    fallback_models: list[FallbackEntry] = Field(default_factory=list)
    cache: CacheSpec = Field(default_factory=CacheSpec)
    cache_prompt: bool = False
    mode: LLMMode = "live"
    batch_fallback: BatchFallback = "none"
    batch_poll: Duration = 60.0
    batch_size: int = Field(default=MAX_BATCH_REQUESTS, ge=1, le=MAX_BATCH_REQUESTS)


class LLMParams(_Strict):
    """The LLM settings one step actually uses: defaults merged with the step's overrides."""

    provider: ProviderName
    model: str
    max_tokens: int
    temperature: float | None = None
    effort: Effort | None = None  # Anthropic: output_config.effort; OpenAI: reasoning_effort
    stop: list[str] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    base_url: str | None = None
    timeout: float | None = None  # seconds per request; None: the SDK's default (10 minutes)
    stream: bool | None = None  # None: stream only when max_tokens needs it
    prompt_version: str | None = None
    repair_attempts: int = 2
    cassette: str | None = None
    retry: RetrySpec = Field(default_factory=RetrySpec)
    fallback_models: list[FallbackModel] = Field(default_factory=list)
    cache: CacheSpec = Field(default_factory=CacheSpec)
    cache_prompt: bool = False  # mark the static prefix for the provider's prompt cache
    mode: LLMMode = "live"  # "batch": fan-out items go through the Message Batches API
    batch_fallback: BatchFallback = "none"
    batch_poll: float = 60.0  # seconds: the longest wait between two polls of a batch
    batch_size: int = MAX_BATCH_REQUESTS

    @field_validator("fallback_models", mode="before")
    @classmethod
    def _names_to_models(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"model": entry} if isinstance(entry, str) else entry for entry in value]
        return value


ItemErrorStrategy = Literal["fail", "skip", "collect"]
ExecutorName = Literal["threads", "processes", "ray", "dask"]
CLUSTER_EXECUTORS: tuple[ExecutorName, ...] = ("ray", "dask")
"""The executors whose workers are a cluster's: shell commands run there too."""
"""Where a Python or shell step's work runs: ``threads`` in the runner's process (async and
I/O-bound functions), ``processes`` in a pool of worker processes (CPU-bound functions),
``ray`` on a Ray cluster, ``dask`` on a dask.distributed cluster (the ``ray`` and ``dask``
extras)."""
PERCENT_PATTERN = r"^[0-9]+(\.[0-9]+)?%$"


def _failure_limit(value: Any) -> Any:
    """A count of items or a percentage of them, refused with one message that says both
    forms (a union would report each member's complaint)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    text = value.strip() if isinstance(value, str) else ""
    if re.match(PERCENT_PATTERN, text) and float(text.removesuffix("%")) <= 100:
        return text
    raise ValueError('give a count of items (0 or more) or a percentage of them, e.g. "10%"')


FailureLimit = Annotated[
    int | str,
    BeforeValidator(_failure_limit),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": PERCENT_PATTERN},
            ]
        }
    ),
]
"""``max_failed_items``: a count of items, or a percentage of them such as ``"10%"``."""
MAX_PARALLEL_STEPS = 4
MAX_WORKERS = 1024
"""Steps at once by default: enough for the branches of a typical pipeline, few enough that
their fan-outs (``concurrency`` items each) do not multiply into a provider's rate limit."""
ITEM_SOURCES = ("input.lines", "input.records")
"""``for_each`` values that read the input item by item instead of evaluating a template."""


class StepBase(_Strict):
    """Keys every step kind has."""

    id: str = Field(pattern=STEP_ID_PATTERN, max_length=64)
    label: str | None = None
    enabled: bool = True
    critical: bool = True
    pause: bool = False
    needs: list[str] | None = Field(
        default=None,
        description="Steps that must be done before this one starts, beyond those its "
        "templates read. A Python or shell step without needs: waits for every step "
        "before it; with it (even needs: []), only for these, and a Python step may read "
        "only these.",
    )
    when: str | None = Field(
        default=None,
        description='Run the step only when this {{ expression }} is true, e.g. "{{ '
        "steps.classify.kind == 'bug' }}\"; false skips it (status skipped), and templates "
        "that read it get none.",
    )
    timeout: Duration | None = None
    for_each: str | None = None
    filter: str | None = Field(
        default=None,
        description="Fan-out steps: run only the items for which this {{ expression }} of "
        "item (and item_index) is true, e.g. \"{{ item.priority == 'high' }}\"; the others "
        "are left out before they run and counted as filtered.",
    )
    item_key: str | None = None
    concurrency: int | None = Field(default=None, ge=1, le=1000)
    group_size: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Fan-out steps: run the items this many at a time, so one call sees up to "
        "N of them: item is the list, item_index the group's number, item_key the group's "
        "key. Checkpoints are per group.",
    )
    flatten: bool = Field(
        default=False,
        description="Fan-out steps: splice each item's result into the output when it is a "
        "list (one level), so a step that splits documents into chunks feeds a step over the "
        "chunks.",
    )
    on_item_error: ItemErrorStrategy = "fail"
    # Left out of model_dump, so of the fingerprints: it decides whether the step fails, not
    # what it or any item outputs, so setting or changing it re-runs nothing.
    max_failed_items: FailureLimit | None = Field(
        default=None,
        exclude=True,
        description="skip/collect: fail the step once more items failed than this, a count or "
        'a percentage such as "10%" (default: only when every item failed).',
    )
    stream_items: bool = False
    output_format: Literal["json", "jsonl"] | None = None  # fan-out: None picks by size

    @field_validator("for_each")
    @classmethod
    def _input_items_with_braces(cls, value: str | None) -> str | None:
        """``"{{ input.records }}"`` means ``input.records``: the tour writes every other
        ``for_each`` as an expression, so users write this one so too."""
        match = one_expression(value) if value is not None else None
        if match is not None and match.group(1).strip() in ITEM_SOURCES:
            return match.group(1).strip()
        return value

    @field_validator("when", "filter")
    @classmethod
    def _one_expression(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and one_expression(value) is None:
            name = info.field_name
            example = "steps.classify.kind == 'bug'" if name == "when" else "item.rank > 2"
            raise ValueError(
                f'{name} must be a single {{{{ expression }}}}, e.g. "{{{{ {example} }}}}"'
            )
        return value

    @model_validator(mode="after")
    def _fan_out_keys_need_for_each(self) -> StepBase:
        if self.for_each is None:
            fan_out_keys = {
                "filter",
                "group_size",
                "flatten",
                "item_key",
                "concurrency",
                "on_item_error",
                "max_failed_items",
                "stream_items",
                "output_format",
            }
            stray = fan_out_keys & self.model_fields_set
            if stray:
                raise ValueError(f"{sorted(stray)[0]} needs for_each (it applies to fan-out steps)")
        elif self.max_failed_items is not None and self.on_item_error == "fail":
            raise ValueError(
                "max_failed_items applies to on_item_error: skip or collect (with fail, the "
                "first failed item fails the step)"
            )
        elif self.for_each not in ITEM_SOURCES and one_expression(self.for_each) is None:
            raise ValueError(
                "for_each must be input.lines, input.records or a {{ expression }} "
                'that gives a list, e.g. "{{ steps.extract }}"'
            )
        return self

    @property
    def fans_out(self) -> bool:
        return self.for_each is not None

    @property
    def title(self) -> str:
        """What progress lines and tables show: the label, else the id."""
        return self.label or self.id

    @property
    def step_timeout(self) -> float | None:
        """The limit on the whole step (``timeout:``), enforced by the runner."""
        return self.timeout


class LLMStep(StepBase):
    """One call to a language model; the reply (text or parsed JSON) is the output."""

    kind: Literal["llm"]
    system: str | None = None
    system_file: str | None = None
    prompt: str | None = None
    prompt_file: str | None = None
    output: Literal["text", "json"] = "text"
    output_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    schema_file: str | None = None
    provider: ProviderName | None = None
    model: str | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    effort: Effort | None = None
    stop: list[str] | None = Field(default=None, max_length=16)
    extra: ExtraBody | None = None
    base_url: str | None = None
    stream: bool | None = None
    prompt_version: PromptVersion | None = None
    repair_attempts: int | None = Field(default=None, ge=0, le=10)
    cassette: str | None = None
    retry: RetrySpec | None = None
    fallback_models: list[FallbackEntry] | None = None
    cache: CacheSpec | None = None
    cache_prompt: bool | None = None
    cached_prefix: str | None = None  # a template without item variables, sent before prompt
    mode: LLMMode | None = None
    batch_fallback: BatchFallback | None = None
    batch_poll: Duration | None = None
    batch_size: int | None = Field(default=None, ge=1, le=MAX_BATCH_REQUESTS)

    @model_validator(mode="before")
    @classmethod
    def _schema_means_json(cls, data: Any) -> Any:
        has_schema = isinstance(data, dict) and (
            data.get("schema") is not None or data.get("schema_file") is not None
        )
        if has_schema and "output" not in data:
            return {**data, "output": "json"}
        return data

    @model_validator(mode="after")
    def _one_source_each(self) -> LLMStep:
        if (self.prompt is None) == (self.prompt_file is None):
            raise ValueError("set exactly one of prompt and prompt_file")
        if self.system is not None and self.system_file is not None:
            raise ValueError("set at most one of system and system_file")
        if self.output_schema is not None and self.schema_file is not None:
            raise ValueError("set at most one of schema and schema_file")
        if self.output == "text" and (self.output_schema or self.schema_file):
            raise ValueError(
                "a schema needs output: json (or no output: key, which then means json)"
            )
        if self.output_schema is not None:
            check_json_schema(self.output_schema)
        if self.mode == "batch" and self.for_each is None:
            raise ValueError(
                "mode: batch needs for_each (a batch sends a fan-out step's items together)"
            )
        if self.cached_prefix is not None and self.cache_prompt is False:
            raise ValueError("cached_prefix is the part cache_prompt caches; remove one of them")
        return self

    @property
    def step_timeout(self) -> float | None:
        """None: an LLM step's ``timeout`` bounds each request, so retries still happen."""
        return None


class _RunsOnExecutor(StepBase):
    """Keys of the step kinds whose work may run outside the runner's process."""

    executor: ExecutorName | None = Field(
        default=None,
        description="Where the step (each item, in a fan-out) runs: threads, in the runner's "
        "process (async and I/O-bound work); processes, a pool of worker processes that "
        "uses every core and whose timeout stops a hung item; ray, tasks on a Ray cluster "
        "(pip install 'stepline[ray]'); or dask, tasks on a dask.distributed cluster "
        "(pip install 'stepline[dask]'). Default: the pipeline's executor (--executor wins).",
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        le=MAX_WORKERS,
        description="processes: at most this many worker processes; ray and dask: the local "
        "cluster's workers, or the tasks out at once on yours. So items at once (default: the "
        "pipeline's workers, else the CPU count).",
    )

    @model_validator(mode="after")
    def _workers_need_a_pool(self) -> _RunsOnExecutor:
        if self.workers is not None and self.executor == "threads":
            raise ValueError(
                "workers applies to executor: processes, ray and dask; with threads, concurrency "
                "sets the items at once"
            )
        return self


class PythonStep(_RunsOnExecutor):
    """A Python callable ``module:function`` called with a step context."""

    kind: Literal["python"]
    function: str = Field(pattern=FUNCTION_PATTERN)
    retry: RetrySpec | None = Field(
        default=None,
        description="Try the function again when it raises (backoff with jitter; a timeout "
        "is a failed attempt; stepline.errors.DoNotRetry fails at once). Default: one attempt.",
    )


class ShellStep(_RunsOnExecutor):
    """A command run without a shell; stdout is the output (parsed when it is JSON)."""

    kind: Literal["shell"]
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    retry: RetrySpec | None = Field(
        default=None,
        description="Try the command again when it fails or times out (backoff with jitter). "
        "Default: one attempt.",
    )
    retry_on_exit: list[int] | None = Field(
        default=None,
        min_length=1,
        description="With retry: the exit codes worth trying again (default: any non-zero).",
    )

    @model_validator(mode="after")
    def _exit_codes_need_retry(self) -> ShellStep:
        if self.retry_on_exit is not None and self.retry is None:
            raise ValueError("retry_on_exit needs retry: (how many attempts, how long between)")
        if self.retry_on_exit is not None and 0 in self.retry_on_exit:
            raise ValueError("retry_on_exit lists exit codes of failures; 0 is success")
        return self

    @field_validator("command", mode="before")
    @classmethod
    def _split_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return split_command(value)
        return value


_TEMPLATE_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_HIDDEN_TAG = re.compile("\x00(\\d+)\x00")


def check_json_schema(schema: dict[str, Any]) -> None:
    """Raise ValueError naming the problem when ``schema`` is not a usable JSON Schema.

    Beyond the metaschema check, every ``$ref`` must point inside the schema: a reference that
    resolves nowhere would otherwise surface only after a reply has been paid for.
    """
    import jsonschema  # here, not at the top: only configs with schemas pay for the import

    check_json_value(schema, "the schema")
    validator = jsonschema.validators.validator_for(schema)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        path = "/".join(str(part) for part in error.absolute_path) or "(the root)"
        raise ValueError(
            f"the schema is not a valid JSON Schema at {path}: {error.message}"
        ) from None
    _check_references(schema)


def _check_references(schema: dict[str, Any]) -> None:
    """Every ``$ref`` must resolve inside the schema (pointers and anchors, as jsonschema
    resolves them); remote references are refused, so validating never touches the network."""
    from referencing import Registry
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012, specification_with

    specification = specification_with(schema.get("$schema", ""), default=DRAFT202012)
    resource = specification.create_resource(schema)
    resolver = Registry().with_resource(resource.id() or "", resource).resolver(resource.id() or "")
    for ref in _refs(schema):
        if not ref.startswith("#"):
            raise ValueError(f'the schema refers to "{ref}"; only local references (#...) work')
        try:
            resolver.lookup(ref)
        except Unresolvable:
            raise ValueError(f'the schema\'s reference "{ref}" points at nothing in it') from None


def check_json_value(value: Any, what: str) -> None:
    """Raise ValueError when ``value`` has something JSON cannot hold (a YAML date...)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{what} must hold only JSON values ({exc}); quote dates and times, e.g. '2026-01-01'"
        ) from None


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def split_command(command: str) -> list[str]:
    """Split like a POSIX shell, but keep each ``{{ ... }}`` / ``{% ... %}`` whole.

    ``echo {{ input.text }}`` is two arguments, and the rendered text stays one argument
    however many spaces it holds.
    """
    tags: list[str] = []

    def hide(match: re.Match[str]) -> str:
        tags.append(match.group(0))
        return f"\x00{len(tags) - 1}\x00"

    try:
        parts = shlex.split(_TEMPLATE_TAG.sub(hide, command))
    except ValueError as exc:
        raise ValueError(f"cannot split the command string: {exc}") from exc
    return [_HIDDEN_TAG.sub(lambda match: tags[int(match.group(1))], part) for part in parts]


StepSpec = Annotated[LLMStep | PythonStep | ShellStep, Field(discriminator="kind")]
STEP_KINDS: dict[str, type[StepBase]] = {"llm": LLMStep, "python": PythonStep, "shell": ShellStep}

VarValue = str | int | float | bool


class RaySpec(_Strict):
    """The cluster of ``executor: ray``."""

    address: str | None = Field(
        default=None,
        description="The cluster's head, e.g. 10.0.0.5:6379 (default: RAY_ADDRESS; with "
        "neither, a local Ray instance is started for the run).",
    )


class DaskSpec(_Strict):
    """The cluster of ``executor: dask``."""

    address: str | None = Field(
        default=None,
        description="The scheduler, e.g. tcp://10.0.0.5:8786 (default: DASK_SCHEDULER_ADDRESS; "
        "with neither, a local cluster of workers processes is started for the run).",
    )
    code: Literal["upload", "shared"] | None = Field(
        default=None,
        description="How the config folder's modules reach the workers: upload (zipped, sent "
        "to each worker and unpacked in its local directory, where functions are imported "
        "and shell commands run; the default with an address) or shared (the folder is at "
        "the same path on every worker; the default for the local cluster).",
    )


class Budget(_Strict):
    """The most a run may spend on LLM calls; ``--max-cost`` on the command line wins."""

    max_usd: float = Field(gt=0)


class PipelineSpec(_Strict):
    """A whole pipeline config file."""

    name: str = Field(min_length=1)
    description: str | None = None
    llm: LLMDefaults = Field(default_factory=LLMDefaults)
    vars: dict[str, VarValue] = Field(default_factory=dict)
    pricing: dict[str, ModelPrice] = Field(default_factory=dict)
    concurrency: int = Field(default=8, ge=1, le=1000)
    max_parallel_steps: int = Field(
        default=MAX_PARALLEL_STEPS,
        ge=1,
        le=64,
        description="At most this many steps run at once (--jobs on the command line wins); "
        "1 runs them one at a time in list order.",
    )
    executor: ExecutorName = Field(
        default="threads",
        description="Where Python and shell steps run unless they say otherwise: threads, "
        "processes, ray or dask (--executor on the command line wins).",
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        le=MAX_WORKERS,
        description="Workers of a step on executor: processes, ray or dask, unless it sets its "
        "own (default: the CPU count).",
    )
    ray: RaySpec | None = Field(
        default=None, description="executor: ray: the cluster (default: one for the run)."
    )
    dask: DaskSpec | None = Field(
        default=None, description="executor: dask: the cluster (default: one for the run)."
    )
    rate_limit: Rate | None = None  # LLM requests per second across the run, from "50/min"
    budget: Budget | None = None
    steps: list[StepSpec] = Field(min_length=1)

    _source_path: Path | None = PrivateAttr(default=None)
    _source_text: str = PrivateAttr(default="")
    _base_dir: Path | None = PrivateAttr(default=None)
    _step_lines: dict[str, int] = PrivateAttr(default_factory=dict)  # step id -> its line
    # step id -> (step, llm defaults, merged params): a fan-out asks once per item. Entries
    # hold the objects they were merged from, so a copy of the spec (which shares this dict)
    # never gets another spec's settings: every part is frozen, so identity means equality.
    _llm_params: dict[str, tuple[LLMStep, LLMDefaults, LLMParams]] = PrivateAttr(
        default_factory=dict
    )

    @field_validator("steps")
    @classmethod
    def _unique_ids(cls, steps: list[StepBase]) -> list[StepBase]:
        seen: set[str] = set()
        for step in steps:
            if step.id in seen:
                raise ValueError(f'step id "{step.id}" is used twice; step ids must be unique')
            seen.add(step.id)
        return steps

    @property
    def source_path(self) -> Path | None:
        """The file this spec was loaded from (absolute), if any."""
        return self._source_path

    @property
    def source_text(self) -> str:
        """The YAML text this spec was parsed from (snapshotted into each run)."""
        return self._source_text

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths (prompt files, Python modules, shell cwd) start from."""
        if self._base_dir is not None:
            return self._base_dir
        return self._source_path.parent if self._source_path else Path.cwd()

    def _attach_source(self, text: str, path: Path | None, base_dir: Path | None) -> None:
        self._source_text, self._source_path, self._base_dir = text, path, base_dir

    def where(self, step_id: str) -> str | None:
        """``file:line`` of the step ``step_id`` in the config it was loaded from, if known
        (errors found after loading, in its templates, point there)."""
        line = self._step_lines.get(step_id)
        if line is None:
            return None
        return f"{self._source_path or '<config>'}:{line}"

    @property
    def step_ids(self) -> list[str]:
        return [step.id for step in self.steps]

    def llm_params(self, step: LLMStep) -> LLMParams:
        """Merge the pipeline's ``llm:`` defaults with the step's own overrides."""
        known = self._llm_params.get(step.id)
        if known is not None and known[0] is step and known[1] is self.llm:
            return known[2]
        params = self._merge_llm_params(step)
        self._llm_params[step.id] = (step, self.llm, params)
        return params

    def _merge_llm_params(self, step: LLMStep) -> LLMParams:
        defaults = self.llm.model_dump()
        overrides = {
            key: getattr(step, key)
            for key in LLMDefaults.model_fields
            if getattr(step, key) is not None
        }
        merged = {**defaults, **overrides, "extra": {**self.llm.extra, **(step.extra or {})}}
        if step.cached_prefix is not None:
            merged["cache_prompt"] = True
        if not step.fans_out:  # llm: {mode: batch} batches the fan-out steps; others go live
            merged["mode"] = "live"
        if not merged.get("model"):
            raise SpecError(
                f'step "{step.id}": no model is set',
                hint="set llm.model at the top of the config or model: on the step",
            )
        fallbacks = [entry for entry in merged["fallback_models"] if isinstance(entry, dict)]
        if any(entry.get("provider") == "replay" for entry in fallbacks):
            raise SpecError(
                f'step "{step.id}": provider replay cannot be a fallback',
                hint="replay a whole step with provider: replay, or a run with --replay",
            )
        if merged["provider"] == "replay" and not merged.get("cassette"):
            raise SpecError(
                f'step "{step.id}": provider replay needs a cassette',
                hint="set cassette: (a JSONL file made with --record) in llm: or on the step",
            )
        if merged["mode"] == "batch" and merged["provider"] == "openai":
            raise SpecError(
                f'step "{step.id}": mode: batch needs provider anthropic (the Message Batches '
                "API); OpenAI-compatible servers are called live",
                hint="remove mode: batch from the step, or use provider: anthropic",
            )
        return LLMParams.model_validate(merged)

    def with_llm_overrides(self, overrides: Mapping[str, str]) -> PipelineSpec:
        """This spec with ``model`` / ``provider`` forced on every LLM step (--model, --provider).

        Steps' own settings lose to the command line; fallback models are kept.
        """
        update = {key: value for key, value in overrides.items() if key in LLM_OVERRIDES}
        batch = update.pop("mode", None) == "batch"
        if not update and not batch:
            return self
        if update.get("provider") not in (None, *get_args(ProviderName)):
            raise InputError(
                f'unknown provider "{update["provider"]}"',
                hint="providers: " + ", ".join(get_args(ProviderName)),
            )
        llm = self.llm.model_copy(update=update)
        steps = [
            self._overridden(step, llm, update, batch) if isinstance(step, LLMStep) else step
            for step in self.steps
        ]
        return self.model_copy(update={"llm": llm, "steps": steps})

    @staticmethod
    def _overridden(
        step: LLMStep, llm: LLMDefaults, update: dict[str, str], batch: bool
    ) -> LLMStep:
        step = step.model_copy(update=update)
        if batch and step.fans_out and (step.provider or llm.provider) == "anthropic":
            step = step.model_copy(update={"mode": "batch"})
        return step

    def step_index(self, selector: str) -> int:
        """Find a step by 1-based number or id (for --from-step / --to-step)."""
        return select_step(selector, self.step_ids)


def select_step(selector: str, step_ids: list[str]) -> int:
    """The index of the step named by a 1-based number or an id, with did-you-mean errors."""
    if selector.isdigit():
        number = int(selector)
        if 1 <= number <= len(step_ids):
            return number - 1
        raise InputError(f"there is no step {number}; there are steps 1 to {len(step_ids)}")
    if selector in step_ids:
        return step_ids.index(selector)
    close = difflib.get_close_matches(selector, step_ids, n=1)
    hint = f'did you mean "{close[0]}"?' if close else "steps: " + ", ".join(step_ids)
    raise InputError(f'unknown step "{selector}"', hint=hint)
