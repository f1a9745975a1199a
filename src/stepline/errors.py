"""The whole exception tree of stepline, in one place.

Foreign exceptions (pydantic, yaml, jinja2, the anthropic SDK, OSError) are translated into
these where they enter, so the CLI's single error boundary can print one readable message, a
hint, and exit with the error's own code::

    StepLineError                 exit 1   message + hint
      SpecError                   exit 2   bad YAML, unknown key, bad step reference or template
      InputError                  exit 2   missing input file, bad --set, unknown run id, bad run id
      RunStoreError               exit 2   run locked by another process, damaged or too new
        WriteFailed               exit 1   a file could not be written (disk full, I/O error)
      StepFailed                  exit 1   a step failed; names the step, chains the cause
      RunInterrupted              exit 130 Ctrl-C or SIGTERM stopped the run (state is saved)
      ProviderError               exit 1   an LLM provider answered with an error
        RetryableProviderError             429, 5xx, 529, timeouts, connection resets
        ProviderAuthError                  hint names the environment variable to set
        ProviderRequestError               the provider refused the request (400, 404, 413)
          PromptTooLarge                   the prompt cannot fit the model's context window

Beside the tree: ``DoNotRetry`` (raised by users' functions), and ``WorkerLost`` and
``RemoteTraceback``, which never reach the CLI. ``steps.structured.ReplyProblem`` is the one
exception kept elsewhere: it never leaves the LLM step, which turns it into a repair turn or a
``StepFailed``.
"""

from __future__ import annotations


class StepLineError(Exception):
    """Base of every error stepline raises on purpose.

    ``message`` says what happened and where; ``hint`` says what to try next.
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class SpecError(StepLineError):
    """The pipeline config is wrong: YAML syntax, schema, references or templates."""

    exit_code = 2


class InputError(StepLineError):
    """Something the user passed is wrong: input file, --set, run id, step selector."""

    exit_code = 2


class BudgetReached(StepLineError):
    """The next LLM call could take the run past its budget: the run pauses before sending it
    (status paused, reason budget) and resumes with a higher ``--max-cost``."""

    exit_code = 3


class RunStoreError(StepLineError):
    """A run folder cannot be used: locked by another process, damaged, or too new."""

    exit_code = 2


class WriteFailed(RunStoreError):
    """A file of a run or of the work folder could not be written: disk full, read-only file
    system, an I/O error. The file's previous version is intact (writes are atomic), so the
    run can be resumed once the cause is gone. Exit 1: the run failed; nothing the user gave
    was wrong. ``errno`` is the operating system's error number."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, errno: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.errno = errno


class StepFailed(StepLineError):
    """A step did not produce an output. The original exception is chained as ``__cause__``.

    ``artifact`` is text worth keeping for a person, such as a model reply that failed to
    parse; the runner saves it beside the step's output.
    """

    def __init__(
        self,
        step_id: str,
        message: str,
        *,
        hint: str | None = None,
        artifact: str | None = None,
        retryable: bool = True,
        returncode: int | None = None,
    ) -> None:
        named = f'step "{step_id}"'  # a template error names its step and field already
        super().__init__(message if message.startswith(named) else f"{named}: {message}", hint=hint)
        self.step_id = step_id
        self.reason = message
        self.artifact = artifact
        self.retryable = retryable  # whether a step's retry: may try it again
        self.returncode = returncode  # a shell step's exit code (retry_on_exit decides)
        self.attempts = 1  # how many times the step (or item) was tried before this failure


class DoNotRetry(Exception):
    """Raise it from a Python step's function to fail the step (or the item) at once, with
    its message, however many attempts the step's ``retry:`` allows: for failures that
    trying again cannot fix, such as a malformed record."""


class WorkerLost(Exception):
    """A worker process ended in the middle of an attempt; the message says how. Never
    leaves ``workers/``, which turns it into a ``StepFailed`` of that attempt."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised on a worker, chained to the ``StepFailed`` it
    became so that ``--debug`` shows it."""

    def __str__(self) -> str:
        return "\n" + str(self.args[0])


class RunInterrupted(StepLineError):
    """A signal stopped the run; raised inside the engine where the work was cancelled."""

    exit_code = 130


class ProviderError(StepLineError):
    """An LLM provider answered with an error or not at all."""

    def __init__(
        self, message: str, *, hint: str | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code


class RetryableProviderError(ProviderError):
    """A transient failure worth retrying: rate limits, overload, 5xx, timeouts, resets.

    ``retry_after`` is the wait in seconds the provider asked for, when it asked.
    """

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint=hint, status_code=status_code)
        self.retry_after = retry_after


class ProviderAuthError(ProviderError):
    """The provider rejected the credentials; the hint names the variable to set."""


class ProviderRequestError(ProviderError):
    """The provider refused this request as such (bad parameters, too long, unknown model)."""


class PromptTooLarge(ProviderRequestError):
    """The prompt cannot fit the model's context window; a larger fallback model may take it."""
