"""Import the user's Python functions from the folder beside the config.

Two pipelines in one process may each have their own ``helpers.py``, and a person may edit
``helpers.py`` between a run and its resume. So a module this file imported is imported again
when it would now come from a different file, or when its file changed since; modules that
stepline did not import (the standard library, installed packages) are never touched.
"""

from __future__ import annotations

import difflib
import importlib
import sys
import sysconfig
import traceback
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from stepline.errors import SpecError

_loaded: dict[str, tuple[Path, int]] = {}
"""Top-level module name -> (file, mtime_ns) of modules loaded from a config folder."""

_unchanged: dict[tuple[str, Path], tuple[ModuleType, tuple[Path, int] | None]] = {}
"""(module name, config folder) -> the module last imported for it, and its file as found with
its mtime_ns (None for a module from elsewhere): a fan-out step imports its function once per
item, and a stat or two says nothing changed (the module in ``sys.modules`` must still be that
one: another config folder's ``helpers`` may have replaced it since)."""


def import_user_module(module_name: str, base_dir: Path) -> ModuleType:
    """Import ``module_name`` with ``base_dir`` first on ``sys.path``; raises what import raises.

    The module comes from the config's folder or from installed packages only: the current
    folder, which ``python -m stepline`` puts on ``sys.path``, is left out while importing, so
    a ``helpers.py`` lying wherever the command happens to run is never picked up.
    """
    key = (module_name, base_dir)
    if key in _unchanged:
        module, found = _unchanged[key]
        if sys.modules.get(module_name) is module and _found(module_name, base_dir) == found:
            return module
    folder = str(base_dir)
    others = [entry for entry in sys.path if entry != folder]
    here = _current_folder()
    sys.path[:] = [folder] + [entry for entry in others if _resolved(entry) != here]
    try:
        top = module_name.partition(".")[0]
        _forget_if_stale(top, base_dir)
        module = importlib.import_module(module_name)
        _remember(top, base_dir)
    finally:
        sys.path[:] = [folder] + others
    _unchanged[key] = (module, _found(module_name, base_dir))
    return module


def _found(module_name: str, base_dir: Path) -> tuple[Path, int] | None:
    """The config folder's file for the module's top-level name and its mtime, unresolved
    (a couple of stats); None for a module from elsewhere (installed packages)."""
    top = module_name.partition(".")[0]
    for candidate in (base_dir / top / "__init__.py", base_dir / f"{top}.py"):
        try:
            return candidate, candidate.stat().st_mtime_ns
        except OSError:
            continue
    return None


def _current_folder() -> Path | None:
    try:
        return Path.cwd().resolve()
    except OSError:  # the current folder was deleted: nothing can be imported from it
        return None


def _resolved(entry: str) -> Path | None:
    """A ``sys.path`` entry as a folder (``""`` is the current one: ``python -c``, a REPL)."""
    try:
        return Path(entry or ".").resolve()
    except (OSError, RuntimeError):
        return None


def _local_file(top: str, base_dir: Path) -> Path | None:
    for candidate in (base_dir / f"{top}.py", base_dir / top / "__init__.py"):
        if candidate.is_file():
            return candidate.resolve()
    return None


def _forget_if_stale(top: str, base_dir: Path) -> None:
    previous = _loaded.get(top)
    if previous is None or top not in sys.modules:
        return
    local = _local_file(top, base_dir)
    if local == previous[0] and local.stat().st_mtime_ns == previous[1]:
        return
    for name in [name for name in sys.modules if name == top or name.startswith(top + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    del _loaded[top]


def _remember(top: str, base_dir: Path) -> None:
    local = _local_file(top, base_dir)
    module_file = getattr(sys.modules.get(top), "__file__", None)
    if local is not None and module_file and Path(module_file).resolve() == local:
        _loaded[top] = (local, local.stat().st_mtime_ns)


def resolve_function(step_id: str, function: str, base_dir: Path) -> Callable[..., Any]:
    """Import ``module:function``; every failure is a ``SpecError`` naming the step."""
    module_name, _, attribute = function.partition(":")
    module = import_step_module(step_id, module_name, base_dir)
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            names = [name for name in dir(target) if not name.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            raise SpecError(
                f'step "{step_id}": module "{module_name}" has no attribute "{attribute}"'
                + (f'; did you mean "{close[0]}"?' if close else "")
            )
        target = getattr(target, part)
    if not callable(target):
        raise SpecError(f'step "{step_id}": {function} is not callable')
    return target  # type: ignore[no-any-return]


def import_step_module(step_id: str, module_name: str, base_dir: Path) -> Any:
    """Import a step's module; every failure is a ``SpecError`` naming the step."""
    try:
        return import_user_module(module_name, base_dir)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise SpecError(
                f'step "{step_id}": cannot import module "{module_name}"',
                hint=f"put {module_name.replace('.', '/')}.py next to the config "
                f"({base_dir}) or install it",
            ) from None
        raise SpecError(
            f'step "{step_id}": importing "{module_name}" failed: {describe_exception(exc)}'
        ) from exc
    except Exception as exc:
        raise SpecError(
            f'step "{step_id}": importing "{module_name}" failed: {describe_exception(exc)}'
        ) from exc


def describe_exception(exc: BaseException) -> str:
    """``ValueError: bad item (helpers.py:12)``: the exception and where user code raised it.

    Frames of stepline and of the standard library are passed over, so an error raised inside
    ``json.loads`` or a ``cached_property`` still points at the user's line that called it.
    """
    skipped = (str(Path(__file__).resolve().parent), sysconfig.get_paths()["stdlib"])
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not str(Path(frame.filename).resolve()).startswith(skipped)
    ]
    where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"
