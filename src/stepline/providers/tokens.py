"""Token counts before a call: a labelled heuristic, since exact counts need the provider.

Two numbers, for two uses. ``estimate_tokens`` (English prose at the model's characters per
token: about 4 on older tokenizers, 3 on the one of Claude Opus 4.7 and later, from the model
rules) is what ``--dry-run`` shows next to "heuristic". ``fewest_tokens`` assumes 5 characters
per token, more than real text averages on any tokenizer, so a prompt it finds too large for
the context window surely is: the pre-send check must never refuse a prompt that would fit.
"""

from __future__ import annotations

import math

from stepline.providers.base import LLMRequest
from stepline.spec.model_rules import chars_per_token

MOST_CHARS_PER_TOKEN = 5


def request_characters(request: LLMRequest) -> int:
    """Characters of everything the model reads: system prompt and messages."""
    return len(request.system or "") + sum(len(m["content"]) for m in request.messages())


def estimate_tokens(request: LLMRequest) -> int:
    """The input tokens a request probably costs (heuristic)."""
    return math.ceil(request_characters(request) / chars_per_token(request.model))


def fewest_tokens(request: LLMRequest) -> int:
    """A lower bound on the request's input tokens, for refusing oversized prompts."""
    return request_characters(request) // MOST_CHARS_PER_TOKEN
