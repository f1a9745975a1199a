"""Sandboxed Jinja2 templates for prompts, commands and paths, and what they refer to.

Templates come only from the config. Data (the input, step outputs, model replies) enters as
values and is never itself rendered, so ``{{ 7*7 }}`` inside an input stays literal. Lists and
dicts render as JSON rather than Python reprs, which is what a prompt or a command wants.

The sandbox refuses Python internals (``__class__``, ``_private``, ``str.format`` tricks), any
change to the data (``.append``, ``.update``: later steps read the same values), and
arithmetic whose result would exhaust memory or the CPU (``"x" * 10**12``, ``10**10**10``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import (
    StrictUndefined,
    Template,
    TemplateError,
    TemplateSyntaxError,
    Undefined,
    meta,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from stepline.errors import SpecError, StepLineError
from stepline.expressions import one_expression
from stepline.hashing import as_plain_json

CONTEXT_NAMES = frozenset({"input", "steps", "run", "vars"})
ITEM_NAMES = frozenset({"item", "item_index", "item_key"})
"""Names a fan-out step's templates see besides ``CONTEXT_NAMES``."""
INPUT_ATTRIBUTES = ("text", "path", "name", "json")
"""What ``input`` has in templates (``context.InputView``); ``json`` only for JSON input."""

MAX_REPEATED_LENGTH = 16 * 1024 * 1024
MAX_POWER_BITS = 100_000
"""Limits on ``*`` (a repeated text or list, in items) and ``**`` (bits of an integer power)."""


def _finalize(value: Any) -> Any:
    if isinstance(value, dict | list) or _is_lazy_list(value):
        return _to_json(value)
    return value


def _to_json(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent, default=as_plain_json)


def _is_lazy_list(value: Any) -> bool:
    """A read-only sequence such as a JSON Lines output (it renders as the list it holds)."""
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | list | tuple)


class _DataFirstEnvironment(ImmutableSandboxedEnvironment):
    """``a.b`` on a dict reads the key ``b`` even where dict has a method of that name.

    Step ids and output keys such as ``items`` or ``values`` must reach the data, not
    ``dict.items``; Jinja's default tries attributes first. ``*`` and ``**`` are checked
    before they are computed (Jinja then also leaves them out of constant folding).
    """

    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
        elif _is_int(left) and _is_int(right) and _power_bits(left, right) > MAX_POWER_BITS:
            raise SecurityError(f"{left} ** {right} is too large to compute")
        return super().call_binop(context, operator, left, right)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _power_bits(base: int, exponent: int) -> float:
    """About how many bits ``base ** exponent`` has (0 when it stays small whatever it is)."""
    return exponent * math.log2(abs(base)) if exponent > 0 and abs(base) > 1 else 0.0


def _check_repeat(sequence: Any, times: Any) -> None:
    is_repeat = isinstance(sequence, str | bytes | list | tuple) and _is_int(times)
    if is_repeat and len(sequence) * times > MAX_REPEATED_LENGTH:
        raise SecurityError(
            f"repeating {len(sequence):,} item(s) {times:,} times is too large to compute"
        )


MAX_KEYS_SHOWN = 12


class _DataUndefined(StrictUndefined):
    """Strict, with messages about the data rather than Python's types: a missing key of a
    step's output names the keys it has, so a typo is fixed without opening the file."""

    @property
    def _undefined_message(self) -> str:
        owner, name = self._undefined_obj, self._undefined_name
        if self._undefined_hint or owner is missing:
            return str(super()._undefined_message)
        if isinstance(owner, Mapping):
            keys = [str(key) for key in list(owner)[:MAX_KEYS_SHOWN]]
            more = ", ..." if len(owner) > MAX_KEYS_SHOWN else ""
            has = f"its keys are {', '.join(keys)}{more}" if keys else "it is empty"
            return f'no key "{name}" in this mapping ({has})'
        if isinstance(owner, Sequence) and not isinstance(owner, str) and _is_int(name):
            return f"no item {name} in a list of {len(owner)} item(s)"
        return f'{type(owner).__name__} value has no "{name}"'


@lru_cache(maxsize=1)
def _environment() -> ImmutableSandboxedEnvironment:
    env = _DataFirstEnvironment(
        undefined=_DataUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_finalize,
    )
    env.filters["json"] = _to_json
    return env


@dataclass(frozen=True)
class References:
    """What one template reads from the context."""

    names: frozenset[str] = frozenset()
    steps: frozenset[str] = frozenset()
    vars: frozenset[str] = frozenset()
    dynamic_steps: bool = False
    dynamic_vars: bool = False
    uses_run_dir: bool = False
    input_attributes: frozenset[str] = frozenset()  # read as input.x or input["x"]


@dataclass
class ReferenceSet:
    """The union of several templates' references (a step has several templated fields)."""

    names: set[str] = field(default_factory=set)
    steps: set[str] = field(default_factory=set)
    vars: set[str] = field(default_factory=set)
    dynamic_steps: bool = False
    dynamic_vars: bool = False
    uses_run_dir: bool = False

    def add(self, refs: References) -> None:
        self.names |= refs.names
        self.steps |= refs.steps
        self.vars |= refs.vars
        self.dynamic_steps = self.dynamic_steps or refs.dynamic_steps
        self.dynamic_vars = self.dynamic_vars or refs.dynamic_vars
        self.uses_run_dir = self.uses_run_dir or refs.uses_run_dir


def render(source: str, context: dict[str, Any], *, where: str) -> str:
    """Render ``source``; any failure is a ``SpecError`` that names ``where``.

    A Python error while rendering (``{{ 1 / 0 }}``, a method called with wrong arguments) is
    the template's problem too, not an internal error; stepline's own errors (an input too
    large to read whole) pass through as they are.
    """
    try:
        return _compiled(source).render(context)
    except StepLineError:
        raise
    except TemplateError as exc:
        raise SpecError(f"{where}: template error: {exc.message or exc}") from None
    except Exception as exc:
        raise SpecError(f"{where}: template error: {type(exc).__name__}: {exc}") from None


def evaluate(source: str, context: dict[str, Any], *, where: str) -> Any:
    """The value of a one-expression template ``{{ expr }}`` as data (a list stays a list)."""
    match = one_expression(source)
    if match is None:
        raise SpecError(
            f"{where}: must be a single {{{{ expression }}}}, e.g. {{{{ steps.extract }}}}"
        )
    try:
        value = _expression(match.group(1).strip())(**context)
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()  # raises, naming what is missing
        return value
    except StepLineError:
        raise
    except TemplateError as exc:
        raise SpecError(f"{where}: template error: {exc.message or exc}") from None
    except Exception as exc:
        raise SpecError(f"{where}: template error: {type(exc).__name__}: {exc}") from None


FALSE_WORDS = frozenset({"", "false", "no", "off", "0", "none"})
"""Text that counts as false in ``when`` and ``filter``: ``--set`` values are text, so
``when: "{{ vars.publish }}"`` with ``--set publish=false`` must skip the step."""


def truthy(value: Any) -> bool:
    """Whether a condition's value means true: Python's truth, except that text is false
    when it is one of ``FALSE_WORDS`` (any case, around spaces)."""
    if isinstance(value, str):
        return value.strip().lower() not in FALSE_WORDS
    return bool(value)


@lru_cache(maxsize=128)
def _expression(source: str) -> Any:
    return _environment().compile_expression(source, undefined_to_none=False)


def references(source: str, *, where: str) -> References:
    """Parse ``source`` and list the context names, ``steps.<id>`` and ``vars.<k>`` it uses."""
    try:
        tree = _environment().parse(source)
    except TemplateSyntaxError as exc:
        raise SpecError(
            f"{where}: template syntax error on line {exc.lineno}: {exc.message}"
        ) from None
    names = frozenset(meta.find_undeclared_variables(tree))
    steps, step_dynamic = _attribute_names(tree, "steps")
    variables, vars_dynamic = _attribute_names(tree, "vars")
    run_parts, run_dynamic = _attribute_names(tree, "run")
    input_attributes, _ = _attribute_names(tree, "input")
    return References(
        names=names,
        steps=frozenset(steps),
        vars=frozenset(variables),
        dynamic_steps=step_dynamic,
        dynamic_vars=vars_dynamic,
        uses_run_dir="dir" in run_parts or run_dynamic,
        input_attributes=frozenset(input_attributes),
    )


_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_ITEM_WORD = re.compile(r"\b(?:" + "|".join(sorted(ITEM_NAMES)) + r")\b")


@lru_cache(maxsize=128)
def item_free_prefix(source: str) -> str:
    """The start of template ``source`` that is the same for every item of a fan-out step.

    It ends before the first tag that names an item variable (any mention counts, so the cut
    can only come early, never late); a cut inside a block (``{% if %}...{{ item }}``) moves
    back to the tag that opened it, so the prefix is a template of its own. This is what
    ``cache_prompt`` marks as the prompt's cached part.
    """
    tags = list(_TAG.finditer(source))
    cut = next((tag.start() for tag in tags if _ITEM_WORD.search(tag.group(0))), len(source))
    openers = [tag.start() for tag in tags if tag.start() < cut and tag.group(0)[1] == "%"]
    while True:
        try:
            _environment().parse(source[:cut])
        except TemplateSyntaxError:
            if not openers:
                return ""
            cut = openers.pop()
            continue
        return source[:cut]


@lru_cache(maxsize=512)
def _compiled(source: str) -> Template:
    return _environment().from_string(source)


def _attribute_names(tree: nodes.Template, root: str) -> tuple[set[str], bool]:
    """Names read as ``root.x`` or ``root["x"]``; the flag is set for any other use of root."""
    found: set[str] = set()
    direct: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        target = node.node
        if not (isinstance(target, nodes.Name) and target.name == root):
            continue
        if isinstance(node, nodes.Getattr):
            found.add(node.attr)
            direct.add(id(target))
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            found.add(node.arg.value)
            direct.add(id(target))
    is_dynamic = any(
        name.name == root and id(name) not in direct for name in tree.find_all(nodes.Name)
    )
    return found, is_dynamic
