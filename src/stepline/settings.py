"""The machine's environment: where runs live, whether to pause, which credentials exist.

Read once (``Settings()``) at the edge and passed down; nothing else reads ``os.environ`` for
these keys. Precedence: command-line flag > environment variable > default. Credentials are
``SecretStr`` so that printing a settings object never shows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from stepline.errors import InputError

DEFAULT_CONFIG_NAME = "pipeline-config.yaml"
MAX_NAME_BYTES = 255  # the longest file name Linux and macOS file systems accept


class Settings(BaseSettings):
    """Environment-level settings (``PIPELINE_*`` and provider credentials)."""

    model_config = SettingsConfigDict(env_prefix="PIPELINE_", extra="ignore")

    config: Path | None = Field(default=None, description="Pipeline config file (PIPELINE_CONFIG).")
    workdir: Path = Field(
        default=Path(".pipeline"), description="Folder that holds runs (PIPELINE_WORKDIR)."
    )
    no_pause: bool = Field(
        default=False, description="Pass pause points without stopping (PIPELINE_NO_PAUSE)."
    )
    debug: bool = Field(default=False, description="Show tracebacks (PIPELINE_DEBUG).")

    anthropic_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("ANTHROPIC_API_KEY")
    )
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL")
    )

    def config_path(self, cli_value: Path | None = None) -> Path:
        """Where the pipeline config is: ``-c``, else PIPELINE_CONFIG, else the default name."""
        return cli_value or self.config or Path(DEFAULT_CONFIG_NAME)


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (``overrides`` are command-line values and win).

    A malformed variable, say ``PIPELINE_NO_PAUSE=maybe``, is an ``InputError`` that names it.
    """
    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "?"
        variable = "PIPELINE_" + field.upper() if field in Settings.model_fields else field
        raise InputError(
            f"{variable}={error.get('input')!r} is not valid: {error['msg']}",
            hint=f"fix or unset {variable}",
        ) from None


def check_workdir(workdir: Path) -> None:
    """Refuse a work folder that could never hold runs, before anything is written.

    The work folder is the user's choice (absolute, relative, ``..`` all fine), but a file, a
    path under a file or an over-long name would otherwise surface as an operating system
    error deep inside a run (an internal error) instead of one line saying what to fix. (A NUL
    byte cannot reach here: the option parser and the environment refuse it.)
    """
    hint = (
        "pass --workdir (workdir= in Python) a folder, or fix PIPELINE_WORKDIR; "
        "it is created when missing"
    )
    text = str(workdir)
    if any(len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in workdir.parts):
        raise InputError(
            f"work folder {text}: a name in it is over {MAX_NAME_BYTES} bytes", hint=hint
        )
    for folder in (workdir, *workdir.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "is" if folder == workdir else f"is under {folder}, which is"
                raise InputError(f"work folder {text} {where} not a folder", hint=hint)
            return
