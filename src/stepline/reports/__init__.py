"""Reading finished (or running) runs back for people: the overview behind ``pipeline show``,
the self-contained HTML report (``pipeline report``) and run comparison (``pipeline diff``).

Everything here only reads a run folder through ``store``; nothing imports the engine, jinja2
or an LLM SDK, so these commands stay as quick to start as ``pipeline list``.
"""
