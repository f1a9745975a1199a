"""``pipeline report``: one self-contained, escaped HTML file about a run, read back with the
standard library's HTML parser; and a screenshot in headless Chromium where it is installed.

The runs are real: an LLM step against the fake server (its reply is hostile HTML), Python
steps, a fan-out with a failed item written as JSON Lines, a large output, and a run that
fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import zlib
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.e2e.test_errors import assert_clean_error
from tests.fakes import FakeLLMServer, Reply
from tests.helpers import write

HOSTILE = "<script>alert(1)</script> & </pre><b>bold</b>"

CONFIG = """
name: report-demo
llm: {model: claude-haiku-4-5-20251001, cache: {enabled: false}}
steps:
  - id: ask
    label: Ask <i>the model</i>
    kind: llm
    prompt: "Say something about {{ input.text }}"
  - id: names
    kind: python
    function: helpers:names
  - id: each
    kind: python
    for_each: "{{ steps.names }}"
    item_key: "{{ item }}"
    on_item_error: collect
    output_format: jsonl
    function: helpers:shout
  - id: big
    kind: python
    function: helpers:big
  - id: finish
    kind: python
    function: helpers:finish
"""

HELPERS = """
from pathlib import Path


def names(ctx):
    return [f"n{number:02d}" for number in range(50)]


def shout(ctx):
    if ctx.item == "n07":
        raise ValueError("no <img src=x onerror=alert(2)> here")
    return ctx.item.upper()


def big(ctx):
    return "x" * 150_000


def finish(ctx):
    if Path(__file__).with_name("broken").exists():
        raise RuntimeError("finish is <broken>")
    return {"done": True}
"""


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)

    def find_all(self, tag: str, **attrs: str) -> list[Element]:
        found = [
            child
            for child in self.children
            if child.tag == tag
            and all(child.attrs.get(k.rstrip("_").replace("_", "-")) == v for k, v in attrs.items())
        ]
        for child in self.children:
            found += child.find_all(tag, **attrs)
        return found

    def find(self, tag: str, **attrs: str) -> Element:
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag} {attrs}>"
        return found[0]


VOID = {"meta", "br", "hr", "img", "input", "link", "col", "source", "wbr"}


class Page(HTMLParser):
    """A tiny DOM: every element with its attributes, its whole text and its children."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.root = Element("#document", {})
        self.stack = [self.root]
        self.all: list[Element] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(element)
        self.all.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        for element in self.stack:
            element.text += data


@pytest.fixture
def project(tmp_path: Path, fake_llm: FakeLLMServer) -> Path:
    write(tmp_path / "pipeline-config.yaml", CONFIG)
    write(tmp_path / "helpers.py", HELPERS)
    write(tmp_path / "in.txt", "reports")
    fake_llm.responder = lambda request: Reply(text=HOSTILE, input_tokens=123, output_tokens=45)
    return tmp_path


def report_of(cli, run_id: str) -> tuple[str, Page]:
    result = cli("report", run_id)
    assert result.exit_code == 0, result.output
    path = Path(result.stdout.strip())
    assert path == Path(".pipeline") / run_id / "report.html"
    text = path.read_text(encoding="utf-8")
    return text, Page(text)


def test_the_report_is_one_page_that_loads_nothing(cli, project: Path):
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0

    text, page = report_of(cli, "r")

    tags = {element.tag for element in page.all}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "base", "svg"}
    assert "http://" not in text and "https://" not in text
    for element in page.all:
        for name, value in element.attrs.items():
            assert "://" not in value and not name.startswith("on"), (element.tag, name)
    style = page.root.find("style").text
    assert "url(" not in style and "@import" not in style
    csp = page.root.find("meta", http_equiv="Content-Security-Policy").attrs["content"]
    assert "default-src 'none'" in csp and "script-src" not in csp


def test_hostile_output_and_labels_come_out_as_text(cli, project: Path):
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0

    text, page = report_of(cli, "r")

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text.lower() and "<b>" not in text and "<i>" not in text
    ask = page.root.find("details", data_step="ask")
    assert ask.find("pre").text == HOSTILE  # the reply, exactly, as text
    assert "Ask <i>the model</i>" in ask.find("summary").text


def test_the_report_has_the_run_its_steps_timeline_usage_and_outputs(cli, project: Path):
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    state = json.loads((project / ".pipeline/r/state.json").read_text())

    _, page = report_of(cli, "r")

    facts = page.root.find("dl", id="run").text
    assert "report-demo" in page.root.find("h1").text and "completed" in facts
    assert "1 request(s), 123 tokens in, 45 out, cost $0.0003" in facts
    ids = [step["id"] for step in state["steps"]]
    steps = page.root.find("section", id="steps")
    assert [
        row.attrs["data-step"] for row in steps.find_all("tr") if "data-step" in row.attrs
    ] == ids
    bars = [element for element in page.all if "bar" in element.attrs.get("class", "").split()]
    assert [bar.attrs["data-step"] for bar in bars] == ids
    for bar, step in zip(bars, state["steps"], strict=True):
        assert float(bar.attrs["data-duration-s"]) == pytest.approx(step["duration_s"], abs=0.05)
    by_step = page.root.find("section", id="usage-by-step").find("tr", data_name="ask").text
    by_model = page.root.find("section", id="usage-by-model")
    assert "123" in by_step and "45" in by_step and "$0.0003" in by_step
    assert "claude-haiku-4-5-20251001" in by_model.text
    assert [d.attrs["data-step"] for d in page.root.find_all("details")] == ids
    finish = page.root.find("details", data_step="finish").find("pre").text
    assert json.loads(finish) == {"done": True}


def test_large_outputs_are_cut_with_a_note_and_jsonl_shows_its_first_rows(cli, project: Path):
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0

    _, page = report_of(cli, "r")

    big = page.root.find("details", data_step="big")
    assert "truncated: showing 100,000 of 150,000 characters" in big.find("p").text
    assert big.find("pre").text == "x" * 100_000
    each = page.root.find("details", data_step="each")
    assert "showing the first 20 of 50 rows" in each.find("p").text
    rows = each.find("pre").text.splitlines()
    assert [json.loads(row) for row in rows[:2]] == ["N00", "N01"] and len(rows) == 20


def test_a_failed_run_shows_its_error_and_failed_items(cli, project: Path):
    (project / "broken").touch()
    assert cli("run", "in.txt", "--run-id", "f").exit_code == 1

    text, page = report_of(cli, "f")

    assert page.root.find("dd", class_="failed status").text == "failed"
    errors = page.root.find("section", id="errors")
    assert errors.text.count("finish is <broken>") == 1, "the run's error is its step's: once"
    assert "finish is <broken>" in errors.find("div", data_step="finish").text
    assert not errors.find_all("p", id="run-error")
    failed = errors.find("div", data_step="each")
    assert "1 of 50 items failed" in failed.text
    row = failed.find("table").find_all("tr")[1]
    assert row.children[0].text == "n07"
    assert "no <img src=x onerror=alert(2)> here" in row.children[1].text
    assert "<img" not in text
    assert "no output (failed)" in page.root.find("details", data_step="finish").text


def test_output_option_and_bad_targets(cli, project: Path):
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0

    result = cli("report", "r", "-o", "elsewhere.html", "--json")
    new_folder = cli("report", "r", "-o", "new/folder/report.html")
    (project / "folder").mkdir()

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"run_id": "r", "path": "elsewhere.html"}
    assert "report-demo" in Page((project / "elsewhere.html").read_text()).root.find("h1").text
    assert not (project / ".pipeline/r/report.html").exists()
    assert new_folder.exit_code == 0 and (project / "new/folder/report.html").is_file()
    assert_clean_error(cli("report", "r", "-o", "folder"), 2, "folder is a folder", "hint: ")
    assert_clean_error(cli("report", "r", "-o", "in.txt/r.html"), 2, "in.txt is not a folder")
    assert list((project / "folder").iterdir()) == []
    assert_clean_error(cli("report", "r2"), 2, 'no run "r2"', "did you mean: r")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_the_report_renders_in_headless_chromium(cli, project: Path, tmp_path: Path):
    (project / "broken").touch()
    assert cli("run", "in.txt", "--run-id", "f").exit_code == 1
    report = Path(cli("report", "f").stdout.strip()).resolve()
    shot = tmp_path / "shot.png"

    result = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--user-data-dir=" + str(tmp_path / "profile"), "--window-size=1200,1800",
         "--host-resolver-rules=MAP * ~NOTFOUND", f"--screenshot={shot}", report.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert result.returncode == 0 and shot.exists(), result.stderr
    width, height, pixels = png_pixels(shot.read_bytes())
    assert (width, height) == (1200, 1800)
    assert len(set(pixels)) > 20  # text, bars and status colours, not a blank page


def png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and the decompressed scanlines of a PNG (enough to tell it is not blank)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20]), int.from_bytes(data[20:24])
    chunks, position = [], 8
    while position < len(data):
        length = int.from_bytes(data[position : position + 4])
        kind = data[position + 4 : position + 8]
        if kind == b"IDAT":
            chunks.append(data[position + 8 : position + 8 + length])
        position += 12 + length
    return width, height, zlib.decompress(b"".join(chunks))
