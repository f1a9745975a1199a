"""Crash-safe file writes: temp file in the same folder, fsync, rename, fsync the folder.

A reader (or a resumed run after kill -9 or power loss) sees either the old file or the new
one, never a torn mix. Temp files carry a recognisable prefix so a crash's leftovers can be
ignored and cleaned. A write the operating system refuses (disk full, read-only, I/O error)
removes its temp file, leaves the previous file as it was and raises ``WriteFailed``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from stepline.errors import WriteFailed
from stepline.faults import crash_point

TEMP_PREFIX = ".tmp-"

# errno -> (what happened, what to do); anything else shows the system's own words
_CAUSES: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("the disk is full", "free some disk space"),
    errno.EDQUOT: ("the disk quota is used up", "free some space or raise the quota"),
    errno.EFBIG: (
        "the file is larger than this process may write",
        "raise the file size limit (ulimit -f)",
    ),
    errno.EROFS: ("the file system is read-only", "make the work folder writable"),
    errno.EACCES: ("permission denied", "make the work folder writable for you"),
    errno.EPERM: ("operation not permitted", "make the work folder writable for you"),
    errno.EIO: ("the disk reported an I/O error", "check the disk (dmesg) or use another one"),
}
_RETRY = "then try again; a run resumes where it stopped (pipeline resume RUN_ID)"


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably."""
    write_chunks_atomic(path, [data])


def write_chunks_atomic(path: Path, chunks: Iterable[bytes]) -> None:
    """Replace ``path`` with the chunks, written as they come (never joined in memory).

    On any failure the temp file is removed and ``path`` keeps its previous content. An
    ``OSError`` of the write itself becomes ``WriteFailed``; an error raised by whatever
    produces ``chunks`` passes through unchanged, since it is not about ``path``.
    """
    temp_name = _temp_path(path)
    try:
        fd = _create(temp_name)
    except FileNotFoundError:  # the folder is new: make it, once
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = _create(temp_name)
        except OSError as exc:
            raise write_failed(path, exc) from exc
    except OSError as exc:
        raise write_failed(path, exc) from exc
    try:
        _fill(os.fdopen(fd, "wb"), path, chunks)
        crash_point("before-rename:" + path.name)
        try:
            os.replace(temp_name, path)
        except OSError as exc:
            raise write_failed(path, exc) from exc
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    fsync_dir(path.parent)


def _temp_path(path: Path) -> str:
    """The temp file beside ``path`` for this process and thread: no two writers share one,
    and a name needs no random draw or exclusive create (the cost of ``mkstemp``)."""
    return os.path.join(
        path.parent, f"{TEMP_PREFIX}{path.name}.{os.getpid()}.{threading.get_ident()}"
    )


def _create(temp_name: str) -> int:
    """Open the temp file for writing, emptied; created with the user's usual permissions
    (0666 less the umask), as any file they make, not mkstemp's 0600."""
    return os.open(temp_name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)


def _fill(handle: BinaryIO, path: Path, chunks: Iterable[bytes]) -> None:
    """Write, flush and fsync the temp file behind ``handle``, then close it."""
    try:
        for chunk in chunks:
            try:
                handle.write(chunk)
            except OSError as exc:
                raise write_failed(path, exc) from exc
        try:
            handle.flush()
            os.fsync(handle.fileno())
        except OSError as exc:
            raise write_failed(path, exc) from exc
    finally:
        # After a failed write the buffer still holds bytes that close() would try (and fail)
        # to flush again; that second report of the same fault must not replace the first.
        # After a successful fsync there is nothing left for close() to lose.
        with contextlib.suppress(OSError):
            handle.close()


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, value: Any) -> None:
    """Write ``value`` as indented, human-editable JSON (with a trailing newline)."""
    write_text_atomic(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new entry in ``folder`` durable.

    A failure here comes after the rename: the new file is in place but might not survive a
    power cut, which the error says rather than carrying on as if it were safe.
    """
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        what, todo = _cause(exc)
        raise WriteFailed(
            f"cannot make the files in {folder} durable: {what}; the newest ones might not "
            "survive a power cut",
            hint=f"{todo}, {_RETRY}",
            errno=exc.errno,
        ) from exc


def write_failed(path: Path, exc: OSError) -> WriteFailed:
    """The readable error for an ``OSError`` while replacing ``path``."""
    what, todo = _cause(exc)
    before = "its previous version is unchanged" if path.exists() else "nothing was written"
    return WriteFailed(
        f"cannot write {path}: {what}; {before}", hint=f"{todo}, {_RETRY}", errno=exc.errno
    )


def append_failed(path: Path, exc: OSError) -> WriteFailed:
    """The readable error for an ``OSError`` while appending a line to ``path`` (a log)."""
    what, todo = _cause(exc)
    return WriteFailed(
        f"cannot append to {path}: {what}; the lines before are kept",
        hint=f"{todo}, {_RETRY}",
        errno=exc.errno,
    )


def _cause(exc: OSError) -> tuple[str, str]:
    if exc.errno in _CAUSES:
        return _CAUSES[exc.errno]
    return (exc.strerror or str(exc) or type(exc).__name__, "fix the cause")


def remove_stale_temp_files(folder: Path) -> None:
    """Delete temp files a crash left behind; they never hold committed data."""
    if folder.is_dir():
        for leftover in folder.glob(TEMP_PREFIX + "*"):
            with contextlib.suppress(OSError):
                leftover.unlink()
