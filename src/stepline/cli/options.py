"""What the commands share: option types, the settings, JSON printing and lazy imports."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stepline.cli.completion import complete_run_id
from stepline.errors import InputError
from stepline.hashing import as_plain_json

if TYPE_CHECKING:  # pydantic-settings takes a third of `pipeline --help`'s start-up to import
    from stepline.settings import Settings

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="Pipeline config (default: PIPELINE_CONFIG, then pipeline-config.yaml).",
        show_default=False,
    ),
]
WorkdirOption = Annotated[
    Path | None,
    typer.Option(
        "--workdir",
        metavar="DIR",
        help="Folder holding runs (default: PIPELINE_WORKDIR or .pipeline).",
        show_default=False,
    ),
]
FromStepOption = Annotated[
    str | None,
    typer.Option("--from-step", metavar="STEP", help="Re-run from this step (number or id)."),
]
ToStepOption = Annotated[
    str | None, typer.Option("--to-step", metavar="STEP", help="Stop after this step.")
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Validate and show the plan; write nothing.")
]
PauseOption = Annotated[
    bool | None,
    typer.Option(
        "--pause/--no-pause",
        help="--pause stops at every pause point (exit 3); --no-pause passes them.",
        show_default=False,
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", metavar="NAME=VALUE", help="A template variable (repeatable)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
DebugOption = Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")]
ReplayOption = Annotated[
    Path | None,
    typer.Option(
        "--replay", metavar="FILE", help="Answer LLM steps from this cassette (JSONL), offline."
    ),
]
RecordOption = Annotated[
    Path | None,
    typer.Option(
        "--record", metavar="FILE", help="Append every real LLM completion to this cassette."
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", metavar="MODEL", help="Use this model for every LLM step (kept on resume)."
    ),
]
ProviderOption = Annotated[
    str | None,
    typer.Option(
        "--provider",
        metavar="NAME",
        help="Use this provider for every LLM step: anthropic, openai or replay.",
    ),
]
MaxCostOption = Annotated[
    float | None,
    typer.Option(
        "--max-cost",
        min=0,
        metavar="USD",
        help="The run's LLM budget in USD: pause (exit 3) before a call that could pass it; "
        "kept for resumes.",
        show_default=False,
    ),
]
BatchOption = Annotated[
    bool,
    typer.Option(
        "--batch",
        help="Send fan-out LLM steps through the provider's batch API: half price, results "
        "within 24 hours (Anthropic; kept for resumes).",
    ),
]
ConcurrencyOption = Annotated[
    int | None,
    typer.Option(
        "--concurrency",
        min=1,
        max=1000,
        metavar="N",
        help="Items at once in every fan-out step.",
        show_default=False,
    ),
]
ExecutorOption = Annotated[
    str | None,
    typer.Option(
        "--executor",
        metavar="NAME",
        help="Run every Python and shell step on this executor: threads, processes, ray or dask "
        "(default: each step's executor:, else the config's).",
        show_default=False,
    ),
]
JobsOption = Annotated[
    int | None,
    typer.Option(
        "--jobs",
        "-j",
        min=1,
        max=64,
        metavar="N",
        help="Steps at once, when they do not wait for each other (default: the config's "
        "max_parallel_steps, 4); 1 runs them in list order.",
        show_default=False,
    ),
]
SkipFailedOption = Annotated[
    bool,
    typer.Option(
        "--skip-failed", help="Leave fan-out items that failed failed; do not retry them."
    ),
]
FreshItemsOption = Annotated[
    bool,
    typer.Option(
        "--fresh-items", help="Redo every item of the fan-out steps that run (no checkpoints)."
    ),
]
NoCacheOption = Annotated[
    bool, typer.Option("--no-cache", help="Skip cached LLM replies (fresh ones are stored).")
]

RUN_ID_FORMS = "its id, a unique prefix of it, or last (the newest run)"


def run_id_argument(help: str, *, metavar: str = "RUN_ID") -> Any:
    """A run id argument: completes on Tab, and says the forms ``RunStore.resolve`` accepts."""
    return typer.Argument(
        help=f"{help}: {RUN_ID_FORMS}.",
        metavar=metavar,
        show_default=False,
        autocompletion=complete_run_id,
    )


def settings_for(workdir: Path | None, *, debug: bool = False) -> Settings:
    """The settings, with ``--workdir`` (and ``--debug``) applied and the work folder checked."""
    from stepline.settings import check_workdir, load_settings

    settings = load_settings(workdir=workdir, debug=debug or None)
    check_workdir(settings.workdir)
    return settings


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False, default=as_plain_json))


def lazy_module(name: str) -> ModuleType:
    """``name``, imported on first use (the importlib recipe), so ``--help`` skips it."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.loader is not None
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


def check_status(status: str | None) -> None:
    """Refuse a ``--status`` that no run can have, listing the ones that exist."""
    from stepline.store.state import RunStatus

    if status is not None and status not in {value.value for value in RunStatus}:
        raise InputError(
            f'unknown status "{status}"',
            hint="statuses: " + ", ".join(value.value for value in RunStatus),
        )
