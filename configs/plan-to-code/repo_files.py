"""Python steps of the plan-to-code example: find a repository's files, load them chunk by
chunk just before each is judged, keep the relevant ones, and write plan.md.

Discovery returns chunk descriptions (path and line range) without content, so the step
outputs stay small and a file is read only when its chunk's turn comes in the fan-out.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

HERE = Path(__file__).parent
ALWAYS_SKIPPED = {".git", ".hg", ".svn", ".pipeline"}


def repository(ctx: Any) -> Path:
    """``vars.repo``: absolute, or relative to this example's folder."""
    return (HERE / str(ctx.vars["repo"])).resolve()


def discover(ctx: Any) -> list[dict[str, Any]]:
    """Every text file that .gitignore keeps, the include globs take and the exclude globs
    and ``max_file_kb`` do not drop, as chunks of at most ``chunk_lines`` lines."""
    root = repository(ctx)
    if not root.is_dir():
        raise ValueError(f"vars.repo: {root} is not a folder")
    include, exclude = _globs(ctx.vars["include"]), _globs(ctx.vars["exclude"])
    max_bytes, chunk_lines = int(ctx.vars["max_file_kb"]) * 1024, int(ctx.vars["chunk_lines"])
    ignored = GitIgnore.read(root / ".gitignore")
    chunks, skipped = [], {"too large": 0, "empty or binary": 0}
    for path in sorted(_walk(root, ignored)):
        relative = path.relative_to(root).as_posix()
        if not _matches(relative, include) or _matches(relative, exclude):
            continue
        if path.stat().st_size > max_bytes:
            skipped["too large"] += 1
            continue
        lines = _line_count(path)
        if not lines:
            skipped["empty or binary"] += 1
            continue
        for number, first in enumerate(range(1, lines + 1, chunk_lines), start=1):
            last = min(first + chunk_lines - 1, lines)
            chunks.append(
                {"path": relative, "chunk": number, "first_line": first, "last_line": last}
            )
    ctx.log.info("%d chunks from %s; skipped %s", len(chunks), root, skipped)
    return chunks


def load_chunk(ctx: Any) -> dict[str, Any]:
    """One chunk with its text, read now (the fan-out streams it to the judging step)."""
    chunk = ctx.item
    lines = (repository(ctx) / chunk["path"]).read_text(encoding="utf-8").splitlines()
    text = "\n".join(lines[chunk["first_line"] - 1 : chunk["last_line"]])
    return {**chunk, "text": text}


def select_relevant(ctx: Any) -> list[dict[str, Any]]:
    """The chunks judged relevant enough (``vars.min_relevance``), most relevant first."""
    minimum = float(ctx.vars["min_relevance"])
    chosen = [
        {**chunk, "relevance": verdict["relevance"], "reason": verdict["reason"]}
        for chunk, verdict in zip(ctx.steps["load"], ctx.steps["judge"], strict=True)
        if "error" not in verdict and verdict["relevance"] >= minimum
    ]
    return sorted(chosen, key=lambda chunk: -chunk["relevance"])


def write_plan(ctx: Any) -> dict[str, Any]:
    """Write the plan to ``vars.plan_file`` (empty: ``<run folder>/plan.md``)."""
    target = Path(str(ctx.vars["plan_file"]) or ctx.run_dir / "plan.md")
    files = sorted({chunk["path"] for chunk in ctx.steps["select"]})
    header = "# Plan\n\n" + f"Task: {ctx.input.text.strip()}\n\n"
    header += "Files read: " + ", ".join(f"`{name}`" for name in files) + "\n\n"
    target.write_text(header + ctx.steps["plan"].strip() + "\n", encoding="utf-8")
    return {"plan_file": str(target), "files": files}


class GitIgnore:
    """The patterns of one .gitignore: globs, ``dir/`` for folders only, ``/`` anchors a
    pattern at the root, ``!`` re-includes. Nested .gitignore files are not read."""

    def __init__(self, patterns: list[str]) -> None:
        self.rules = [(p.startswith("!"), p.lstrip("!")) for p in patterns]

    @classmethod
    def read(cls, path: Path) -> GitIgnore:
        if not path.exists():
            return cls([])
        lines = path.read_text(encoding="utf-8").splitlines()
        return cls([line.strip() for line in lines if line.strip() and not line.startswith("#")])

    def is_ignored(self, relative: str, is_dir: bool) -> bool:
        ignored = False
        for negated, pattern in self.rules:
            if pattern.endswith("/") and not is_dir:
                continue
            if self._match(relative, pattern.rstrip("/")):
                ignored = not negated
        return ignored

    @staticmethod
    def _match(relative: str, pattern: str) -> bool:
        if pattern.startswith("/") or "/" in pattern:
            return fnmatch.fnmatch(relative, pattern.lstrip("/"))
        return fnmatch.fnmatch(PurePosixPath(relative).name, pattern)


def _walk(root: Path, ignored: GitIgnore) -> list[Path]:
    found, folders = [], [root]
    while folders:
        for path in folders.pop().iterdir():
            relative = path.relative_to(root).as_posix()
            if path.name in ALWAYS_SKIPPED or path.is_symlink():
                continue
            if ignored.is_ignored(relative, path.is_dir()):
                continue
            (folders if path.is_dir() else found).append(path)
    return found


def _globs(value: Any) -> list[str]:
    return [glob.strip() for glob in str(value).split(",") if glob.strip()]


def _matches(relative: str, globs: list[str]) -> bool:
    """fnmatch, where ``**/`` also matches no folder at all (``**/*.py`` takes ``a.py``)."""
    return any(
        fnmatch.fnmatch(relative, glob)
        or (glob.startswith("**/") and fnmatch.fnmatch(relative, glob[3:]))
        for glob in globs
    )


def _line_count(path: Path) -> int:
    try:
        return len(path.read_text(encoding="utf-8").splitlines())
    except UnicodeDecodeError:
        return 0
