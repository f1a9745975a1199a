"""What travels to a worker process: frames, and a JSON Lines output by its path."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from stepline.context import Item
from stepline.store.jsonl import JsonLines
from stepline.workers.messages import AttemptMessage, Reply, read_frame, write_frame


def test_frames_round_trip_and_a_cut_frame_reads_as_closed():
    stream = io.BytesIO()
    write_frame(stream, AttemptMessage("t", Item({"a": 1}, 3, "k")))
    write_frame(stream, Reply(value=[1, 2], read=frozenset({"x"})))
    whole = stream.getvalue()

    stream.seek(0)
    assert read_frame(stream) == AttemptMessage("t", Item({"a": 1}, 3, "k"))
    assert read_frame(stream) == Reply(value=[1, 2], read=frozenset({"x"}))
    assert read_frame(stream) is None  # the other side closed the pipe

    assert read_frame(io.BytesIO(whole[:-1])) is not None  # the first frame is whole
    cut = io.BytesIO(whole[: len(whole) // 2 + 1])
    read_frame(cut)
    assert read_frame(cut) is None  # a frame cut short by a death is no message


def test_a_json_lines_output_goes_to_a_worker_as_its_path_not_its_rows(tmp_path: Path):
    path = tmp_path / "out.jsonl"
    path.write_text("".join(f'{{"n": {n}}}\n' for n in range(1000)))
    rows = JsonLines(path)
    assert len(rows) == 1000  # read into memory here

    sent = pickle.dumps(rows)

    assert len(sent) < 200
    assert list(pickle.loads(sent))[999] == {"n": 999}
