"""What the runner and a worker send each other.

A step's shared part (``StepPayload``: its function, the outputs it may read, the input, the
vars; ``ShellPayload`` for a shell step on a cluster) is pickled once per step execution and
sent once to each worker that serves it; each attempt then sends only its item (a shell
step's: its rendered command), and the worker answers with a ``Reply``. Replies carry
errors as text, never as pickled exceptions: a user's exception class may not unpickle in the
runner, and the runner needs only what to show and whether trying again can help.

Frames on a pipe are an 8-byte big-endian length and a pickle.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from stepline.context import InputData, Item

FRAME_HEADER = struct.Struct(">Q")


@dataclass(frozen=True)
class StepPayload:
    """What every attempt of one step execution shares."""

    step_id: str
    function: str  # module:function
    base_dir: str  # the config's folder: where the function's module is found
    input: InputData
    outputs: Mapping[str, Any]  # of the steps this one waits for
    undeclared: frozenset[str]  # earlier steps it must not read (see UndeclaredRead)
    vars: Mapping[str, Any]
    run_id: str
    run_dir: str


@dataclass(frozen=True)
class ShellPayload:
    """What every attempt of one shell step execution shares on a cluster: each attempt
    sends its rendered command (``commands.ShellCommand``) as its item."""

    step_id: str
    base_dir: str  # the config's folder: where a worker on the same paths runs the command


@dataclass(frozen=True)
class StepMessage:
    """Hold this step's payload (``body``, pickled once) for the attempts that follow."""

    token: str
    body: bytes


@dataclass(frozen=True)
class AttemptMessage:
    """Run one attempt of the step ``token`` names, for ``item`` (None: not a fan-out)."""

    token: str
    item: Item | None


@dataclass(frozen=True)
class Reply:
    """How one attempt ended: ``value`` and ``read`` when ``error`` is None.

    ``logs`` are the attempt's ``ctx.log`` records as (level name, message), replayed into
    the run's events when the reply arrives.
    """

    value: Any = None
    read: frozenset[str] = frozenset()
    logs: tuple[tuple[str, str], ...] = ()
    error: str | None = None  # "ValueError: bad item (helpers.py:12)"
    hint: str | None = None
    retryable: bool = True
    cannot_run: bool = False  # the function cannot run here at all: no item's fault
    returncode: int | None = None  # a shell command's exit code, when it failed
    traceback: str | None = None  # for --debug


def frame(message: object) -> bytes:
    """A message as one frame: its length, then its pickle."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME_HEADER.pack(len(data)) + data


def write_frame(stream: BinaryIO, message: object) -> None:
    stream.write(frame(message))
    stream.flush()


def read_frame(stream: BinaryIO) -> object | None:
    """The next message, or None when the other side closed the pipe."""
    header = stream.read(FRAME_HEADER.size)
    if len(header) < FRAME_HEADER.size:
        return None
    (size,) = FRAME_HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        return None
    message: object = pickle.loads(data)
    return message
