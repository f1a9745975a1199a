"""Token counts before a call: a labelled heuristic, since exact counts need the provider.

Two numbers, for two uses. ``estimate_tokens`` (about 4 characters per token, typical of
English prose) is what ``--dry-run`` shows next to "heuristic". ``fewest_tokens`` assumes 5
characters per token, more than real text averages, so a prompt it finds too large for the
context window surely is: the pre-send check must never refuse a prompt that would fit.
"""

from __future__ import annotations

import math

from stepline.providers.base import LLMRequest

CHARS_PER_TOKEN = 4
MOST_CHARS_PER_TOKEN = 5


def request_characters(request: LLMRequest) -> int:
    """Characters of everything the model reads: system prompt and messages."""
    return len(request.system or "") + sum(len(m["content"]) for m in request.messages())


def estimate_tokens(request: LLMRequest) -> int:
    """The input tokens a request probably costs (heuristic)."""
    return math.ceil(request_characters(request) / CHARS_PER_TOKEN)


def fewest_tokens(request: LLMRequest) -> int:
    """A lower bound on the request's input tokens, for refusing oversized prompts."""
    return request_characters(request) // MOST_CHARS_PER_TOKEN
