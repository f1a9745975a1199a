"""Recognising a template that is one whole ``{{ expression }}`` (for ``for_each``).

Kept apart from ``templates`` so the config models can check it without importing Jinja2,
which the commands that run no pipeline (``list``, ``--help``) must not pay for.
"""

from __future__ import annotations

import re

_ONE_EXPRESSION = re.compile(r"^\s*\{\{(.*)\}\}\s*$", re.DOTALL)


def one_expression(source: str) -> re.Match[str] | None:
    """The match of a template that is exactly one ``{{ expression }}``, else None.

    Group 1 is the expression; text around it, or a second expression, is no match.
    """
    match = _ONE_EXPRESSION.match(source)
    return match if match is not None and "{{" not in match.group(1) else None
