"""``pipeline report``: one self-contained HTML file about a run.

The file must open in any browser with no network and be safe to open: model replies and
step outputs are untrusted text, so every value goes through ``html.escape`` and the page
carries a Content-Security-Policy that forbids scripts and every load, so a slip in escaping
still could not run anything or reach out. There is no JavaScript: the outputs fold with
``<details>`` and the timeline is CSS bars.
"""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path

from stepline import __version__
from stepline.errors import InputError
from stepline.reports.excerpts import output_excerpt
from stepline.reports.overview import RunOverview, Timeline, metric_notes
from stepline.spec import format_duration
from stepline.store.atomic import write_text_atomic
from stepline.store.state import RunUsage, StepState

REPORT_FILE = "report.html"
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

STYLE = """
:root { --ok: #2e7d32; --bad: #c62828; --warn: #b26a00; --run: #00838f; --dim: #888;
  --int: #8e24aa; --line: #ddd; --bg: #fff; --fg: #1d1d1f; --soft: #f5f5f7; }
@media (prefers-color-scheme: dark) { :root { --bg: #161618; --fg: #e8e8ea; --soft: #232326;
  --line: #3a3a3e; } }
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem;
  padding: 0 1rem; background: var(--bg); color: var(--fg); }
h1 { font-size: 1.5rem; margin-bottom: .25rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line);
  vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; }
dl.facts dt { color: var(--dim); } dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.status { font-weight: 600; }
.completed { color: var(--ok); } .failed, .unreadable { color: var(--bad); }
.paused { color: var(--warn); } .running { color: var(--run); }
.interrupted { color: var(--int); } .pending, .skipped { color: var(--dim); }
.timeline .row { display: grid; grid-template-columns: 14rem 1fr 5rem; gap: .6rem;
  align-items: center; margin: .2rem 0; }
.timeline .label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.timeline .track { position: relative; height: 1rem; background: var(--soft);
  border-radius: 3px; }
.timeline .bar { position: absolute; top: 0; bottom: 0; min-width: 2px; border-radius: 3px;
  background: var(--ok); }
.timeline .bar.failed { background: var(--bad); } .timeline .bar.running { background: var(--run); }
.timeline .dur { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: var(--warn); margin: .3rem 0; }
.error { color: var(--bad); white-space: pre-wrap; overflow-wrap: anywhere; }
details { border: 1px solid var(--line); border-radius: 4px; margin: .5rem 0;
  padding: .3rem .6rem; }
summary { cursor: pointer; } summary small { color: var(--dim); margin-left: .5rem; }
pre { background: var(--soft); padding: .6rem; overflow: auto; max-height: 40rem;
  white-space: pre-wrap; overflow-wrap: anywhere; }
footer { margin-top: 3rem; color: var(--dim); font-size: .85rem; }
"""


def _e(value: object) -> str:
    """Every value that reaches the page goes through here (quotes too: attributes)."""
    return html.escape(str(value), quote=True)


def write_report(overview: RunOverview, path: Path | None, *, generated_at: datetime) -> Path:
    """Write the report to ``path`` (default: ``<run>/report.html``) atomically."""
    target = path if path is not None else overview.run_dir.resolve(REPORT_FILE)
    _check_target(target)
    write_text_atomic(target, render_report(overview, generated_at=generated_at))
    return target


def _check_target(path: Path) -> None:
    """A folder, or a path under a file, is a mistake on the command line (exit 2), not a
    failed write; missing folders are created by the write."""
    if path.is_dir():
        raise InputError(f"{path} is a folder", hint=f"name a file, e.g. {path / REPORT_FILE}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"cannot write {path}: {parent} is not a folder")
            return


def render_report(overview: RunOverview, *, generated_at: datetime) -> str:
    """The whole page as one string."""
    state = overview.state
    title = f"{state.pipeline} · {state.run_id}"
    sections = [
        _header(overview),
        _problems(overview),
        _section("Timeline", "timeline", _timeline(overview.timeline)),
        _section("Steps", "steps", _steps_table(state.steps, overview)),
        _usage(overview),
        _section("Outputs", "outputs", "\n".join(_output(overview, s) for s in state.steps)),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(part for part in sections if part)
        + f"\n<footer>Generated by stepline {_e(__version__)} at "
        f"{generated_at:%Y-%m-%d %H:%M:%S} UTC.</footer>\n</body>\n</html>\n"
    )


def _section(title: str, anchor: str, body: str) -> str:
    if not body:
        return ""
    return f'<section id="{anchor}">\n<h2>{_e(title)}</h2>\n{body}\n</section>'


def _header(overview: RunOverview) -> str:
    state, status = overview.state, overview.status.value
    facts = [
        ("run", state.run_id),
        ("status", status),
        ("started", f"{state.started_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("finished", f"{state.finished_at:%Y-%m-%d %H:%M:%S} UTC" if state.finished_at else "-"),
        ("duration", format_duration(overview.duration_s)),
        ("steps", f"{state.completed_count} of {len(state.steps)} completed"),
        ("config", state.config_path or "(snapshot only)"),
        ("input", state.input_path),
    ]
    if state.usage.requests or state.usage.cache_hits or state.usage.replayed:
        facts.append(("LLM", _usage_sentence(state.usage)))
    rows = "\n".join(
        f'<dt>{_e(name)}</dt><dd class="{_e(status) + " status" if name == "status" else ""}">'
        f"{_e(value)}</dd>"
        for name, value in facts
    )
    return (
        f"<header>\n<h1>{_e(state.pipeline)}</h1>\n"
        f'<dl class="facts" id="run">\n{rows}\n</dl>\n</header>'
    )


def _usage_sentence(usage: RunUsage) -> str:
    text = (
        f"{usage.requests:,} request(s), {usage.input_tokens:,} tokens in, "
        f"{usage.output_tokens:,} out, cost {_cost(usage)}"
    )
    extras = [f"{usage.cache_hits} from the cache"] if usage.cache_hits else []
    extras += [f"{usage.replayed} replayed"] if usage.replayed else []
    return text + (f" ({', '.join(extras)})" if extras else "")


def _cost(usage: RunUsage) -> str:
    cost = usage.cost_known
    if cost is None:
        return "unknown"
    text = f"${cost:.4f}"
    return f"{text} + {usage.unpriced_calls} unpriced" if usage.unpriced_calls else text


def _problems(overview: RunOverview) -> str:
    """The run's error, each failed step's error and its failed items: what to fix first.

    A run that failed in a step records that step's error as its own too; it is shown once,
    under the step, and the run's error only when it says something else (an interruption,
    a refused write)."""
    parts = []
    run_error = overview.state.error
    if run_error and run_error not in {step.error for step in overview.state.steps}:
        parts.append(f'<p class="error" id="run-error">{_e(run_error)}</p>')
    for step in overview.state.steps:
        failures = step.metrics.get("failed_items") or []
        if not step.error and not failures:
            continue
        parts.append(f'<div class="step-problem" data-step="{_e(step.id)}">')
        parts.append(f"<h3>{step.number} · {_e(step.label or step.id)}</h3>")
        if step.error:
            parts.append(f'<p class="error">{_e(step.error)}</p>')
        if failures:
            parts.append(_failed_items(step, failures))
        parts.append("</div>")
    return _section("Errors", "errors", "\n".join(parts))


def _failed_items(step: StepState, failures: list[dict[str, object]]) -> str:
    total = int(step.metrics.get("items_failed") or len(failures))
    rows = "\n".join(
        f"<tr><td>{_e(item.get('item_key'))}</td>"
        f'<td class="error">{_e(item.get("error"))}</td></tr>'
        for item in failures
    )
    more = (
        f'<p class="note">and {total - len(failures):,} more</p>' if total > len(failures) else ""
    )
    return (
        f"<p>{total:,} of {_e(step.metrics.get('items', '?'))} items failed:</p>\n"
        f'<table class="failed-items">\n<tr><th>item</th><th>error</th></tr>\n{rows}\n</table>'
        + more
    )


def _timeline(timeline: Timeline) -> str:
    if not timeline.bars:
        return ""
    span = timeline.span_s or 1.0
    rows = []
    for bar in timeline.bars:
        left, width = 100 * bar.offset_s / span, 100 * bar.duration_s / span
        rows.append(
            f'<div class="row"><span class="label" title="{_e(bar.title)}">{bar.number} · '
            f'{_e(bar.title)}</span><span class="track"><span class="bar {_e(bar.status)}" '
            f'data-step="{_e(bar.step)}" data-offset-s="{bar.offset_s:.3f}" '
            f'data-duration-s="{bar.duration_s:.3f}" style="left:{left:.2f}%;width:{width:.2f}%" '
            f'title="{_e(bar.step)}: {_e(format_duration(bar.duration_s))}"></span></span>'
            f'<span class="dur">{_e(format_duration(bar.duration_s))}</span></div>'
        )
    note = ""
    if timeline.gaps_cut:
        note = f'<p class="note">{timeline.gaps_cut} idle gap(s) between steps are shortened.</p>'
    return '<div class="timeline">\n' + "\n".join(rows) + "\n</div>" + note


def _steps_table(steps: list[StepState], overview: RunOverview) -> str:
    """The steps, their status in the words of ``pipeline show`` (how far an unfinished
    fan-out got, out of date), tokens and cost from the call records as in the usage
    tables and totals."""
    usage = overview.usage.by_step
    head = "".join(
        f'<th class="num">{name}</th>' if name in _NUMERIC else f"<th>{name}</th>"
        for name in ("#", "step", "kind", "status", "duration", "attempts", "tokens in",
                     "tokens out", "cost", "output")
    )  # fmt: skip
    rows = [f"<tr>{head}</tr>"]
    for step in steps:
        metrics, used = step.metrics, usage.get(step.id)
        status = overview.notes.status(step)
        status += "".join(f" ({note})" for note, _ in metric_notes(metrics))
        cells = [
            (str(step.number), True),
            (step.label or step.id, False),
            (step.kind, False),
            (status, False),
            (format_duration(step.duration_s) if step.duration_s is not None else "", True),
            (str(step.attempts), True),
            (_count(used.input_tokens) if used else "", True),
            (_count(used.output_tokens) if used else "", True),
            (_cost(used) if used else "", True),
            (step.output or "", False),
        ]
        row = "".join(
            f'<td class="num">{_e(text)}</td>' if numeric else f"<td>{_e(text)}</td>"
            for text, numeric in cells
        )
        rows.append(f'<tr data-step="{_e(step.id)}" class="{_e(step.status.value)}">{row}</tr>')
    return "<table>\n" + "\n".join(rows) + "\n</table>"


_NUMERIC = {"#", "duration", "attempts", "tokens in", "tokens out", "cost"}


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else ""


def _usage(overview: RunOverview) -> str:
    tables = [
        (f"LLM usage by {name}", f"usage-by-{name}", table)
        for name, table in (("step", overview.usage.by_step), ("model", overview.usage.by_model))
        if table
    ]
    return "\n".join(
        _section(title, anchor, _usage_table(table)) for title, anchor, table in tables
    )


def _usage_table(table: dict[str, RunUsage]) -> str:
    head = "<tr><th>name</th>" + "".join(
        f'<th class="num">{name}</th>'
        for name in ("requests", "cached", "replayed", "tokens in", "tokens out", "cost")
    )
    rows = [head + "</tr>"]
    for name, usage in table.items():
        numbers = (usage.requests, usage.cache_hits, usage.replayed, usage.input_tokens,
                   usage.output_tokens)  # fmt: skip
        cells = "".join(f'<td class="num">{number:,}</td>' for number in numbers)
        rows.append(
            f'<tr data-name="{_e(name)}"><td>{_e(name)}</td>{cells}'
            f'<td class="num">{_e(_cost(usage))}</td></tr>'
        )
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def _output(overview: RunOverview, step: StepState) -> str:
    """One step's output, folded; a step without one says why."""
    title = f"{step.number} · {_e(step.label or step.id)}"
    if step.output is None:
        return (
            f'<details data-step="{_e(step.id)}"><summary>{title} <small>no output '
            f"({_e(step.status.value)})</small></summary></details>"
        )
    excerpt = output_excerpt(overview.run_dir, step.output)
    note = f'<p class="note">{_e(excerpt.note)}</p>' if excerpt.note else ""
    return (
        f'<details data-step="{_e(step.id)}"><summary>{title} <small>{_e(step.output)}, '
        f"{excerpt.size_bytes:,} bytes</small></summary>\n{note}<pre>{_e(excerpt.text)}</pre>\n"
        "</details>"
    )
