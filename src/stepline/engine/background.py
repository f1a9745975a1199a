"""Background runs: start a run in a detached process, and stop a run from outside it.

``start_detached`` launches ``python -m stepline run|resume ...`` in a new session (stdin from
/dev/null, output to ``<run>/detached.log``) and returns only once the child has begun the
run, so the id it returns is real and ``cancel`` works at once; a child that ends before that
(a bad config, a locked run) is reported with its own error. ``cancel_run`` signals the process
that holds a run's lock and waits for the lock to be released, then cancels the run's open
provider batches (batch mode).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from stepline.errors import InputError, ProviderError, RunStoreError, StepLineError
from stepline.processes import ProcessGroups
from stepline.settings import Settings
from stepline.spec import LLMStep
from stepline.store.lock import holder, is_locked
from stepline.store.rundir import RunDir
from stepline.store.runs import effective_status
from stepline.store.state import RunStatus, load_state

if TYPE_CHECKING:
    from stepline.spec import PipelineSpec
    from stepline.store.batches import BatchLedger, SubmittedBatch

DETACHED_LOG = "detached.log"  # relative to the run folder; the last detached start's output
START_TIMEOUT_S = 60.0
KILLED_S = 5.0  # how long a SIGKILLed runner may take to let go of its lock
CANCEL_WAIT_S = 30.0
_POLL_S = 0.02


@dataclass(frozen=True)
class Detached:
    """A run that a background process has begun."""

    run_id: str
    pid: int
    run_dir: Path
    log_path: Path


@dataclass(frozen=True)
class Cancellation:
    """What ``cancel_run`` did: ``pid`` and ``signal`` are None when nothing was running."""

    run_id: str
    status: RunStatus
    pid: int | None = None
    signal: str | None = None
    batches: tuple[str, ...] = ()  # provider batches of the run that were canceled

    @property
    def was_running(self) -> bool:
        return self.pid is not None


def start_detached(
    args: Sequence[str], *, run_dir: RunDir, timeout_s: float = START_TIMEOUT_S
) -> Detached:
    """Run ``pipeline ARGS`` in a detached process that works on ``run_dir``; return once it
    has begun the run (its pid is in ``state.json``, so it holds the lock).

    The child's output goes first to a hidden file in the work folder (a new run's folder does
    not exist yet, and a failed start must not write into an existing run), which is moved
    into the run folder once the run has begun; the open file keeps receiving the output.
    """
    run_dir.path.parent.mkdir(parents=True, exist_ok=True)
    staging = run_dir.path.parent / f".detached-{run_dir.run_id}-{secrets.token_hex(4)}.log"
    with staging.open("wb") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "stepline", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # no controlling terminal: Ctrl-C and hang-ups pass it by
            close_fds=True,
        )
    try:
        begun = _wait_for_start(child, run_dir, timeout_s)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    if not begun:
        output = staging.read_text(encoding="utf-8", errors="replace")
        staging.unlink(missing_ok=True)
        raise _start_failure(child.returncode, output)
    log_path = run_dir.resolve(DETACHED_LOG)
    os.replace(staging, log_path)
    return Detached(run_dir.run_id, child.pid, run_dir.path, log_path)


def _wait_for_start(child: subprocess.Popen[bytes], run_dir: RunDir, timeout_s: float) -> bool:
    """True once the child has begun the run; False if it ended without beginning it."""
    deadline = time.monotonic() + timeout_s
    while not _has_begun(run_dir, child.pid):
        if child.poll() is not None:
            return _has_begun(run_dir, child.pid)  # it may have begun and ended in between
        if time.monotonic() > deadline:
            child.terminate()
            child.wait()
            raise StepLineError(
                f'the background run "{run_dir.run_id}" did not start within {timeout_s:g} s '
                "and was stopped",
                hint="run it in the foreground (without --detach) to see where it hangs",
            )
        time.sleep(_POLL_S)
    return True


def _has_begun(run_dir: RunDir, pid: int) -> bool:
    """The runner records its pid in ``state.json`` when it begins, holding the lock."""
    try:
        return load_state(run_dir.state_path).pid == pid
    except RunStoreError:  # not written yet (a new run), or written but not by this child
        return False


def _start_failure(exit_code: int, output: str) -> StepLineError:
    """The child's own ``error:``/``hint:`` lines as our error, with its exit code's class."""
    lines = output.rstrip().splitlines()
    starts = [n for n, line in enumerate(lines) if line.startswith("error: ")]
    if starts:
        body = lines[starts[-1] :]
        hints = [n for n, line in enumerate(body) if line.startswith("hint: ")]
        end = hints[0] if hints else len(body)
        message = "\n".join(body[:end]).removeprefix("error: ")
        hint = "\n".join(body[end:]).removeprefix("hint: ") or None
    else:
        how = (
            f"was killed by {signal.Signals(-exit_code).name}"
            if exit_code < 0
            else f"exited with code {exit_code}"
        )
        message = f"the background run {how} before it started"
        hint = "its output:\n" + "\n".join(lines[-20:]) if lines else None
    error_class = InputError if exit_code == InputError.exit_code else StepLineError
    return error_class(message, hint=hint)


def cancel_run(
    run_dir: RunDir,
    *,
    force: bool = False,
    wait_s: float = CANCEL_WAIT_S,
    settings: Settings | None = None,
) -> Cancellation:
    """Stop the process that holds ``run_dir``: SIGTERM (a graceful stop: the run records
    ``interrupted``), or SIGKILL with ``force`` (the state on disk stays valid and the run
    shows as ``interrupted``). Waits up to ``wait_s`` for the lock to be released; a run that
    is not running is left alone. With ``settings`` (credentials), the run's open provider
    batches are canceled too, running or not: a batch otherwise goes on being processed and
    billed."""
    stopped = _stop(run_dir, force=force, wait_s=wait_s)
    # SIGKILL gave the runner no chance to stop its shell steps' process groups. Once it is
    # gone (a killed process lets go of its lock at once) they are nobody's: stop them.
    if force and stopped.pid is not None and _wait_for_release(run_dir.lock_path, KILLED_S):
        ProcessGroups(run_dir.processes_dir).stop_all()
    if settings is None:
        return stopped
    batches = tuple(cancel_open_batches(run_dir, settings))
    return replace(stopped, batches=batches)


def _stop(run_dir: RunDir, *, force: bool, wait_s: float) -> Cancellation:
    pid = holder(run_dir.lock_path)
    if pid is None:
        return Cancellation(run_dir.run_id, _status(run_dir))
    sig = signal.SIGKILL if force else signal.SIGTERM
    _send(pid, sig, run_dir)
    if wait_s > 0 and not _wait_for_release(run_dir.lock_path, wait_s):
        raise StepLineError(
            f'run "{run_dir.run_id}" is still running {wait_s:g} s after {sig.name} '
            f"(process {pid})",
            hint="wait longer with --wait SECONDS, or stop it at once with --force",
        )
    return Cancellation(run_dir.run_id, _status(run_dir), pid=pid, signal=sig.name)


def _send(pid: int, sig: signal.Signals, run_dir: RunDir) -> None:
    """Signal ``pid`` only while it still holds the run. On Linux a pidfd pins the process
    before the check, so a pid recycled after the check cannot receive the signal."""
    pidfd: int | None = None
    try:
        if sys.platform == "linux":
            pidfd = os.pidfd_open(pid)
        if holder(run_dir.lock_path) != pid:
            return  # it ended (or handed the run over) in the meantime
        if pidfd is not None:
            signal.pidfd_send_signal(pidfd, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return  # it ended in the meantime: nothing left to stop
    except PermissionError:
        raise RunStoreError(
            f'run "{run_dir.run_id}" is held by process {pid}, which this user may not signal',
            hint="stop it as the user that started it",
        ) from None
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _wait_for_release(lock_path: Path, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while is_locked(lock_path):
        if time.monotonic() > deadline:
            return False
        time.sleep(_POLL_S * 5)
    return True


def _status(run_dir: RunDir) -> RunStatus:
    return effective_status(load_state(run_dir.state_path), run_dir)


def detached_log_tail(run_dir: RunDir, lines: int = 20) -> list[str]:
    """The last lines of the run's ``detached.log`` (empty when it was never detached)."""
    try:
        text = run_dir.resolve(DETACHED_LOG).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return text.rstrip().splitlines()[-lines:]


def cancel_open_batches(run_dir: RunDir, settings: Settings) -> list[str]:
    """Ask the provider to cancel every batch of the run still open (``pipeline cancel``).

    The provider then ends them with their unprocessed requests canceled; a resume collects
    what was processed and treats the rest as failed items (``on_item_error``). Each step's
    provider and endpoint come from the config a resume would use (the recorded path, else
    the run's snapshot, with relative files found beside the original).
    """
    from stepline.engine.prepare import resume_spec  # the config a resume would use
    from stepline.store.batches import BatchLedger
    from stepline.store.items import ItemStore

    if not run_dir.items_path.exists():
        return []
    store = ItemStore(run_dir.items_path)
    try:
        ledger = BatchLedger(store)
        # an ended batch cannot be canceled: its results only wait to be collected
        running = [b for b in ledger.batches() if b.is_open and b.status != "ended"]
        if not running:
            return []
        state = load_state(run_dir.state_path)
        spec = resume_spec(state, run_dir, None).with_llm_overrides(state.overrides)
        return asyncio.run(_cancel(running, spec, ledger, settings))
    finally:
        store.close()


async def _cancel(
    batches: list[SubmittedBatch], spec: PipelineSpec, ledger: BatchLedger, settings: Settings
) -> list[str]:
    from stepline.providers.pool import ProviderPool  # the SDK comes with it: only here
    from stepline.providers.requests import targets

    pool = ProviderPool(settings)
    steps = {step.id: step for step in spec.steps if isinstance(step, LLMStep)}
    canceled: list[str] = []
    try:
        for batch in batches:
            step = steps.get(batch.step)
            if step is None or batch.batch_id is None:
                continue  # the step is gone from the config: nothing knows its endpoint
            target = targets(spec.llm_params(step))[0]
            provider = pool.get(target.provider, target.base_url)
            if not hasattr(provider, "cancel_batch"):
                continue
            try:
                status = await provider.cancel_batch(batch.batch_id)
            except ProviderError as exc:
                raise ProviderError(
                    f"could not cancel batch {batch.batch_id} of step {batch.step}: {exc.message}",
                    hint=exc.hint or "try again, or cancel it in the provider's console",
                ) from exc
            await ledger.progress(
                batch.step, batch.submission, status.processing_status, status.counts
            )
            canceled.append(batch.batch_id)
    finally:
        await pool.aclose()
    return canceled
