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
