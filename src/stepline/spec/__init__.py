"""The pipeline config: its pydantic models and the loader that turns YAML into them."""

from stepline.spec.durations import Duration, format_duration, parse_duration
from stepline.spec.loader import config_hash, load_spec, parse_spec
from stepline.spec.models import (
    ITEM_SOURCES,
    STEP_KINDS,
    CacheSpec,
    ExecutorName,
    FallbackModel,
    ItemErrorStrategy,
    LLMDefaults,
    LLMParams,
    LLMStep,
    ModelPrice,
    PipelineSpec,
    PythonStep,
    RetrySpec,
    ShellStep,
    StepBase,
    StepSpec,
    select_step,
)

__all__ = [
    "ITEM_SOURCES",
    "CacheSpec",
    "ExecutorName",
    "ItemErrorStrategy",
    "STEP_KINDS",
    "Duration",
    "FallbackModel",
    "LLMDefaults",
    "LLMParams",
    "LLMStep",
    "ModelPrice",
    "PipelineSpec",
    "PythonStep",
    "RetrySpec",
    "ShellStep",
    "StepBase",
    "StepSpec",
    "config_hash",
    "format_duration",
    "load_spec",
    "parse_duration",
    "parse_spec",
    "select_step",
]
